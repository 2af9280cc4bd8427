"""Accepter.accept: results, records, outbox, idempotency, exact check-and-set, failures."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trio

from gateway.api_types import Backpressure, MessageIn, MessageResult, StoreFull, StoreUnavailable
from gateway.config import GatewayConfig
from gateway.pipeline import Accepter, RecipientCache, ReplyRequest
from gateway.store import (
    MemoryStore,
    Store,
    StoreFullError,
    StoreUnavailableError,
    open_store,
)
from rules.model import ReplyKind
from tests.pipeline.conftest import FR, LA, LA2, NIGHT, NOW, NY, make_config, put_recipients


def make(store: Store, config: GatewayConfig) -> tuple[Accepter, RecipientCache]:
    rc = RecipientCache(store, policy=config.rules)
    return Accepter(store, config, rc), rc


def msg(to: str = LA, text: str = "Big sale today", **kw: object) -> MessageIn:
    return MessageIn(to=to, text=text, **kw)  # type: ignore[arg-type]


def outbox(store: Store) -> list[tuple[float, str]]:
    return [(e.due, e.message_id) for e in store.due_outbox(1e12, 10_000)]


async def test_batch_records_outbox_and_results_in_order(mem_store: MemoryStore,
                                                         config: GatewayConfig) -> None:
    await put_recipients(mem_store, [LA, NY])
    acc, _ = make(mem_store, config)
    res = await acc.accept([msg(LA, campaign_id="c"), msg(NY, "Your code is 1234",
                                                          kind="transactional"),
                            msg("+1555", "x")], NOW)
    assert [r.status for r in res] == ["queued", "queued", "rejected"]
    assert res[2].reason == "invalid_number"
    assert len({r.id for r in res}) == 3
    assert [r.id for r in res] == sorted(r.id for r in res)  # time-sortable, in order
    assert res[0].segments == 1 and res[0].encoding == "gsm7"
    rec = mem_store.get_message(res[0].id)
    assert rec is not None
    assert rec.status == "queued" and rec.to == LA and rec.carrier == "c1" and rec.route == "+"
    assert rec.text.endswith("Reply STOP to opt out")  # Decision.text: what is sent
    assert [p.status for p in rec.parts] == ["pending"] and rec.parts[0].index == 0
    assert rec.history[0].status == "queued" and rec.outbox_due == NOW
    assert rec.campaign_id == "c"
    bad = mem_store.get_message(res[2].id)
    assert bad is not None and bad.status == "rejected" and bad.reason == "invalid_number"
    assert sorted(outbox(mem_store)) == sorted([(NOW, res[0].id), (NOW, res[1].id)])
    evs = mem_store.events_after(0, 10)
    assert [(e.type, e.message_id, e.status) for e in evs] == [
        ("message.status", r.id, r.status) for r in res]
    stored = mem_store.get_recipient(LA)
    assert stored is not None and stored.marketing_sends == (NOW,)
    assert stored.region == "US" and stored.state == "CA"
    assert stored.recent[0].message_id == res[0].id


async def test_national_number_normalised(mem_store: MemoryStore, config: GatewayConfig) -> None:
    await put_recipients(mem_store, [LA])
    acc, _ = make(mem_store, config)
    [r] = await acc.accept([msg("(415) 555-0100", country="US")], NOW)
    assert r.status == "queued"
    rec = mem_store.get_message(r.id)
    assert rec is not None and rec.to == LA


async def test_no_route(mem_store: MemoryStore) -> None:
    cfg = make_config(routes=[("+33", ("c1",))])
    await put_recipients(mem_store, [LA])
    acc, _ = make(mem_store, cfg)
    [r] = await acc.accept([msg(LA)], NOW)
    assert (r.status, r.reason) == ("rejected", "no_route")
    assert outbox(mem_store) == []


async def test_longest_prefix_route_picks_carrier_options(mem_store: MemoryStore) -> None:
    cfg = make_config(routes=[("+", ("c1",)), ("+1415", ("c2", "c1"))], carriers=("c1", "c2"))
    await put_recipients(mem_store, [LA, NY])
    acc, _ = make(mem_store, cfg)
    a, b = await acc.accept([msg(LA), msg(NY)], NOW)
    ra, rb = mem_store.get_message(a.id), mem_store.get_message(b.id)
    assert ra is not None and rb is not None
    assert (ra.carrier, ra.route) == ("c2", "+1415")
    assert (rb.carrier, rb.route) == ("c1", "+")


async def test_idempotency_returns_first_result(mem_store: MemoryStore,
                                                config: GatewayConfig) -> None:
    await put_recipients(mem_store, [LA])
    acc, _ = make(mem_store, config)
    [a] = await acc.accept([msg(idempotency_key="k1")], NOW)
    [b] = await acc.accept([msg(idempotency_key="k1")], NOW + 1)
    assert a == b
    # Inside one batch too.
    c, d = await acc.accept([msg(NY, kind="transactional", idempotency_key="k2"),
                             msg(NY, kind="transactional", idempotency_key="k2")], NOW)
    assert c == d and c.status == "queued"
    assert len(outbox(mem_store)) == 2


async def test_concurrent_same_key_one_message(mem_store: MemoryStore,
                                               config: GatewayConfig) -> None:
    await put_recipients(mem_store, [LA])
    acc, _ = make(mem_store, config)
    results: list[MessageResult] = []

    async def one() -> None:
        results.extend(await acc.accept([msg(kind="transactional", idempotency_key="k")], NOW))

    async with trio.open_nursery() as n:
        for _ in range(5):
            n.start_soon(one)
    assert len(results) == 5 and len({r.id for r in results}) == 1
    assert len(outbox(mem_store)) == 1


async def test_smart_sending_exact_in_one_batch(mem_store: MemoryStore,
                                                config: GatewayConfig) -> None:
    await put_recipients(mem_store, [LA])
    acc, _ = make(mem_store, config)
    res = await acc.accept([msg(), msg(text="Second sale")], NOW)
    assert [(r.status, r.reason) for r in res] == [("queued", None),
                                                   ("rejected", "smart_sending")]


async def test_smart_sending_exact_across_concurrent_accepts(mem_store: MemoryStore,
                                                             config: GatewayConfig) -> None:
    await put_recipients(mem_store, [LA])
    acc, _ = make(mem_store, config)
    results: list[MessageResult] = []

    async def one(i: int) -> None:
        results.extend(await acc.accept([msg(text=f"Sale {i}")], NOW))

    async with trio.open_nursery() as n:
        for i in range(4):
            n.start_soon(one, i)
    assert sorted(r.status for r in results) == ["queued", "rejected", "rejected", "rejected"]
    rec = mem_store.get_recipient(LA)
    assert rec is not None and rec.marketing_sends == (NOW,)


async def test_flow_limit_exact(mem_store: MemoryStore, config: GatewayConfig) -> None:
    await put_recipients(mem_store, [LA], double_opt_in="confirmed")
    acc, _ = make(mem_store, config)
    trig = datetime.fromtimestamp(NOW, UTC) - timedelta(hours=1)
    cart = {"kind": "flow", "flow_id": "f", "flow_type": "abandoned_cart",
            "trigger_id": "cart-1", "trigger_at": trig, "bypass": ["smart_sending"]}
    res: list[MessageResult] = []

    async def one() -> None:
        res.extend(await acc.accept([msg(text="You left items", **cart)], NOW))

    async with trio.open_nursery() as n:
        n.start_soon(one)
        n.start_soon(one)
    assert sorted((r.status, r.reason) for r in res) == [
        ("queued", None), ("rejected", "flow_limit_reached")]
    rec = mem_store.get_recipient(LA)
    assert rec is not None and len(rec.flow_marks) == 1 and rec.flow_marks.popitem()[1] == NOW


async def test_quiet_hours_scheduled(mem_store: MemoryStore, config: GatewayConfig) -> None:
    await put_recipients(mem_store, [LA])
    acc, _ = make(mem_store, config)
    [r] = await acc.accept([msg()], NIGHT)
    assert (r.status, r.reason) == ("scheduled", "quiet_hours")
    assert r.defer_until == datetime(2026, 1, 2, 16, 0, tzinfo=UTC)  # 08:00 in LA
    due = r.defer_until.timestamp()
    assert outbox(mem_store) == [(due, r.id)]
    rec = mem_store.get_message(r.id)
    assert rec is not None and rec.status == "scheduled" and rec.outbox_due == due
    # Not a send yet: no marketing send recorded.
    stored = mem_store.get_recipient(LA)
    assert stored is not None and stored.marketing_sends == ()


async def test_opted_out_and_no_consent_rejected(mem_store: MemoryStore,
                                                 config: GatewayConfig) -> None:
    await put_recipients(mem_store, [LA], consent="unsubscribed")
    acc, _ = make(mem_store, config)
    a, b = await acc.accept([msg(LA), msg(NY)], NOW)
    assert (a.status, a.reason) == ("rejected", "opted_out")
    assert (b.status, b.reason) == ("rejected", "no_consent")
    assert outbox(mem_store) == []
    # The new recipient's number facts were stored anyway (computed once).
    ny = mem_store.get_recipient(NY)
    assert ny is not None and ny.region == "US" and ny.state == "NY"


async def test_too_many_segments_and_empty_text(mem_store: MemoryStore,
                                                config: GatewayConfig) -> None:
    await put_recipients(mem_store, [LA, NY])
    acc, _ = make(mem_store, config)
    a, b = await acc.accept([msg(LA, "a" * 1600, kind="transactional"),
                             msg(NY, '{{ x | default: "" }}', kind="transactional",
                                 vars={"x": ""})], NOW)
    assert (a.status, a.reason) == ("rejected", "too_many_segments")
    assert (b.status, b.reason) == ("rejected", "empty_text")
    stored = mem_store.get_recipient(LA)
    assert stored is not None and stored.recent == ()


async def test_multipart_reference_numbers_per_carrier(mem_store: MemoryStore,
                                                       config: GatewayConfig) -> None:
    await put_recipients(mem_store, [LA, NY])
    acc, _ = make(mem_store, config)
    res = await acc.accept([msg(LA, "b" * 300, kind="transactional"),
                            msg(NY, "c" * 300, kind="transactional")], NOW)
    recs = [mem_store.get_message(r.id) for r in res]
    assert [r.segments for r in res] == [2, 2]
    assert [r.ref for r in recs if r is not None] == [0, 1]
    assert all(r is not None and len(r.parts) == 2 for r in recs)


async def test_backpressure_before_storing(mem_store: MemoryStore) -> None:
    cfg = make_config(outbox_max=2)
    await put_recipients(mem_store, [LA, NY])
    acc, _ = make(mem_store, cfg)
    await acc.accept([msg(LA, kind="transactional"), msg(NY, kind="transactional")], NOW)
    before = mem_store.last_event_seq()
    with pytest.raises(Backpressure) as ei:
        await acc.accept([msg(LA, kind="transactional")], NOW)
    assert ei.value.retry_after > 0
    assert mem_store.last_event_seq() == before and len(outbox(mem_store)) == 2
    acc.outbox_removed(2)
    [r] = await acc.accept([msg(LA, kind="transactional")], NOW)
    assert r.status == "queued"


@pytest.mark.parametrize(("error", "expected"), [
    (StoreFullError("map full"), StoreFull),
    (StoreUnavailableError("EIO"), StoreUnavailable),
])
async def test_commit_failure_maps_and_invalidates(
        mem_store: MemoryStore, config: GatewayConfig, error: Exception,
        expected: type[Exception]) -> None:
    await put_recipients(mem_store, [LA])
    acc, rc = make(mem_store, config)
    mem_store.fail_commits(error)  # type: ignore[arg-type]
    with pytest.raises(expected):
        await acc.accept([msg(idempotency_key="k")], NOW)
    assert LA not in rc  # invalidated: reloaded from the store on next use
    mem_store.fail_commits(None)
    assert mem_store.get_message("x") is None and outbox(mem_store) == []
    # Nothing of the failed batch counts: smart sending lets the retry through, and the
    # idempotency key is free.
    [r] = await acc.accept([msg(idempotency_key="k")], NOW)
    assert r.status == "queued"


async def test_reevaluate_send_defer_reject(mem_store: MemoryStore,
                                            config: GatewayConfig) -> None:
    await put_recipients(mem_store, [LA, LA2, NY])
    acc, _ = make(mem_store, config)
    res = await acc.accept([msg(LA), msg(LA2), msg(NY)], NIGHT)
    assert [r.status for r in res] == ["scheduled"] * 3
    recs = [mem_store.get_message(r.id) for r in res]
    # NY's schedule wakes at 13:00 UTC; LA's at 16:00. LA2 unsubscribes meanwhile.
    await put_recipients(mem_store, [LA2], consent="unsubscribed")
    acc._recipients.invalidate([LA2])
    wake = datetime(2026, 1, 2, 14, 0, tzinfo=UTC).timestamp()
    outs = await acc.reevaluate([r for r in recs if r is not None], wake)
    assert [o.action for o in outs] == ["defer", "reject", "send"]
    assert outs[1].reason == "opted_out"
    assert outs[0].due == datetime(2026, 1, 2, 16, 0, tzinfo=UTC).timestamp()
    la, la2, ny = (mem_store.get_message(r.id) for r in res)
    assert la is not None and la.status == "scheduled" and la.outbox_due == outs[0].due
    assert la2 is not None and la2.status == "rejected" and la2.outbox_due is None
    assert ny is not None and ny.status == "queued" and ny.history[-1].status == "queued"
    assert sorted(m for _, m in outbox(mem_store)) == sorted([res[0].id, res[2].id])
    nyr = mem_store.get_recipient(NY)
    assert nyr is not None and nyr.marketing_sends == (wake,)


async def test_replies_into_callers_batch(mem_store: MemoryStore,
                                          config: GatewayConfig) -> None:
    await put_recipients(mem_store, [LA], consent="unsubscribed")
    acc, _ = make(mem_store, config)
    rq = ReplyRequest(phone=LA, text="You are unsubscribed.", reply_to=ReplyKind.OPT_OUT)
    [r] = await acc.accept_replies([rq], NOW)
    assert r.status == "queued"
    rec = mem_store.get_message(r.id)
    assert rec is not None and rec.kind == "reply"
    stored = mem_store.get_recipient(LA)
    assert stored is not None and stored.opt_out_confirmed
    [r2] = await acc.accept_replies([rq], NOW)  # one confirmation only
    assert (r2.status, r2.reason) == ("rejected", "opted_out")


async def test_lmdb_durable_across_reopen(tmp_path: Path, config: GatewayConfig) -> None:
    path = tmp_path / "db"
    async with open_store(path, durability="fsync") as store:
        await put_recipients(store, [LA, NY])
        acc, _ = make(store, config)
        res = await acc.accept([msg(LA), msg(NY, idempotency_key="k")], NOW)
    async with open_store(path) as store:
        assert {e.message_id for e in store.due_outbox(NOW, 10)} == {r.id for r in res}
        rec = store.get_message(res[0].id)
        assert rec is not None and rec.status == "queued"
        acc, _ = make(store, config)
        [again] = await acc.accept([msg(NY, idempotency_key="k")], NOW + 5)
        assert again == res[1]
        [smart] = await acc.accept([msg(LA)], NOW + 5)
        assert smart.reason == "smart_sending"


async def test_national_invalid_and_fr(mem_store: MemoryStore, config: GatewayConfig) -> None:
    await put_recipients(mem_store, [FR])
    acc, _ = make(mem_store, config)
    a, b = await acc.accept([msg("0612345678", country="FR", kind="transactional"),
                             msg("12", country="FR")], NOW)
    assert a.status == "queued"
    assert (b.status, b.reason) == ("rejected", "invalid_number")
