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


async def test_records_built_positionally_equal_keyword_built(mem_store: MemoryStore,
                                                              config: GatewayConfig) -> None:
    # The accept path builds MessageRecords positionally (speed): the same records as
    # keyword construction, field for field, for queued, scheduled and rejected ones.
    from gateway.store import HistoryEntry, MessageRecord, PartRecord

    await put_recipients(mem_store, [LA, NY])
    acc, _ = make(mem_store, config)
    trig = datetime.fromtimestamp(NOW, UTC) - timedelta(hours=1)
    full = {"from_": "ACME", "campaign_id": "c", "flow_id": "f", "flow_type": "welcome",
            "trigger_id": "t1", "trigger_at": trig, "metadata": {"k": 1},
            "smart_encoding": True, "bypass": ["smart_sending"], "idempotency_key": "k1"}
    q, r = await acc.accept([msg(LA, "Hello", kind="flow", **full),
                             msg("+1555", "x", **{**full, "idempotency_key": "k2"})], NOW)
    [s] = await acc.accept([msg(NY, "Night")], NIGHT)
    common = {"sender": "ACME", "campaign_id": "c", "flow_id": "f", "flow_type": "welcome",
              "trigger_id": "t1", "trigger_at": trig.timestamp(), "metadata": b'{"k":1}',
              "smart_encoding": True, "bypass": ("smart_sending",)}
    assert mem_store.get_message(q.id) == MessageRecord(
        id=q.id, created_at=NOW, to=LA, text="Hello\nReply STOP to opt out", kind="flow",
        **common, status="queued", encoding="gsm7", data_coding=0, segments=1,
        carrier="c1", route="+", outbox_due=NOW, parts=(PartRecord(0),),
        history=(HistoryEntry(NOW, "queued", None, None),), idempotency_key="k1",
        updated_at=NOW, ref=None)
    assert mem_store.get_message(r.id) == MessageRecord(
        id=r.id, created_at=NOW, to="+1555", text="x", kind="campaign", **common,
        status="rejected", reason="invalid_number",
        history=(HistoryEntry(NOW, "rejected", "invalid_number",
                              "not a valid phone number"),),
        idempotency_key="k2", updated_at=NOW)
    rec = mem_store.get_message(s.id)
    assert rec is not None and s.defer_until is not None
    until = s.defer_until.timestamp()
    assert until == datetime(2026, 1, 2, 13, 0, tzinfo=UTC).timestamp()  # 08:00 in NY
    assert rec == MessageRecord(
        id=s.id, created_at=NIGHT, to=NY, text="Night\nReply STOP to opt out",
        kind="campaign", status="scheduled", reason="quiet_hours", defer_until=until,
        encoding="gsm7", segments=1, carrier="c1", route="+", outbox_due=until,
        parts=(PartRecord(0),),
        history=(HistoryEntry(NIGHT, "scheduled", "quiet_hours",
                              "outside the local sending window"),),
        updated_at=NIGHT)


async def test_plans_reused_per_text_and_refs_still_counted(mem_store: MemoryStore,
                                                            config: GatewayConfig) -> None:
    # One-part plans are kept per (text, carrier, region, smart) and equal a fresh plan();
    # multipart plans carry a reference number and are never reused.
    from gateway.encoding import DEFAULT_OPTIONS, plan

    await put_recipients(mem_store, [LA, LA2, NY])
    acc, _ = make(mem_store, config)
    handed: list[tuple[object, ...]] = []

    class Sink:
        def accepted(self, items: object) -> None:
            handed.extend(items)  # type: ignore[call-overload]

        def not_accepted(self, ids: object) -> None:
            pass

    acc.handoff = Sink()
    res = await acc.accept([msg(LA, "Same text", kind="transactional"),
                            msg(LA2, "Same text", kind="transactional"),
                            msg(NY, "d" * 300, kind="transactional"),
                            msg(LA, "d" * 300, kind="transactional")], NOW)
    assert [r.status for r in res] == ["queued"] * 4
    plans = [h[1] for h in handed]
    assert plans[0] is plans[1]
    assert plans[0] == plan("Same text", DEFAULT_OPTIONS, ref=99, country="US")
    assert [p.ref for p in plans[2:]] == [0, 1]  # type: ignore[attr-defined]
    assert plans[3] == plan("d" * 300, DEFAULT_OPTIONS, ref=1, country="US")
    recs = [mem_store.get_message(r.id) for r in res]
    assert [r.ref for r in recs if r is not None] == [None, None, 0, 1]


async def test_repeated_recipient_sees_every_earlier_send(mem_store: MemoryStore,
                                                          config: GatewayConfig) -> None:
    # Florida's cap (3 per 24 h): the SENDs of a batch are applied to the facts when the
    # recipient comes again, also across batches (the cache converts the new record).
    fl = "+13055550100"
    await put_recipients(mem_store, [fl])
    acc, rc = make(mem_store, config)
    sale = {"bypass": ["smart_sending"]}
    res = await acc.accept([msg(fl, f"Sale {i}", **sale) for i in range(2)], NOW)
    res += await acc.accept([msg(fl, f"Sale {i}", **sale) for i in range(2, 5)], NOW + 1)
    assert [(r.status, r.reason) for r in res] == [("queued", None)] * 3 + [
        ("rejected", "state_frequency_cap")] * 2
    assert rc.facts(fl).marketing_sends == tuple(
        datetime.fromtimestamp(t, UTC) for t in (NOW, NOW, NOW + 1))
    stored = mem_store.get_recipient(fl)
    assert stored is not None and stored.marketing_sends == (NOW, NOW, NOW + 1)


async def test_route_memo_matches_the_router(mem_store: MemoryStore) -> None:
    # Routes are remembered per number prefix of the longest route's length: the same
    # answers as the router, for numbers longer and shorter than that length.
    from gateway.pipeline.routing import Router

    cfg = make_config(routes=[("+1", ("c1",)), ("+1212", ("c2", "c1")), ("+33", ("c2",))],
                      carriers=("c1", "c2"))
    acc, _ = make(mem_store, cfg)
    router = Router(cfg.routes)
    numbers = ["+12125550100", "+12135550100", "+1212", "+121", "+1", "+33612345678",
               "+4412345678", "+3", "+"]
    for n in numbers + numbers:  # computed, then remembered
        carriers = router.route(n)
        assert acc._route(n) == (carriers, router.matched_prefix(n) if carriers else None)


def test_delta_is_the_plain_record_change() -> None:
    # _Delta.__call__ (runs on the trio thread and, when the store changed, the writer)
    # against the change written out field by field, over sends, marks and confirmations.
    import msgspec

    from gateway.pipeline.accept import RECENT_SENDS, _Delta
    from gateway.store import MessageRecord, RecipientRecord, SendEntry
    from rules.model import Action, Decision, Marks, Reason

    now_dt = datetime.fromtimestamp(NOW, UTC)
    keep = 86_400.0
    recs = [RecipientRecord(phone=LA),
            RecipientRecord(phone=LA, marketing_sends=(NOW - 2 * keep, NOW - 10),
                            flow_marks={"f:1": NOW - 5}, opt_out_confirmed=True,
                            recent=tuple(SendEntry(NOW - i, f"m{i}", "campaign")
                                         for i in range(RECENT_SENDS))),
            RecipientRecord(phone=LA, marketing_sends=(NOW + 50,))]
    marks = [Marks(marketing_send_at=now_dt), Marks(marketing_send_at=now_dt, flow_mark="f:2"),
             Marks(opt_out_confirmation=True), Marks()]
    for rec in recs:
        for mk in marks:
            d = _Delta(NOW, keep, now_dt)
            dec = Decision(action=Action.SEND, reason=Reason.OK, marks=mk)
            m = MessageRecord(id="m", created_at=NOW, to=LA, text="t", kind="campaign")
            d.add(dec, NOW, m)
            sends = tuple(sorted((*rec.marketing_sends, NOW) if mk.marketing_send_at
                                 else rec.marketing_sends))
            want = msgspec.structs.replace(
                rec, marketing_sends=tuple(t for t in sends if t >= NOW - keep),
                flow_marks={**rec.flow_marks, **({mk.flow_mark: NOW} if mk.flow_mark else {})},
                opt_out_confirmed=rec.opt_out_confirmed or mk.opt_out_confirmation,
                recent=(*rec.recent, SendEntry(NOW, "m", "campaign"))[-RECENT_SENDS:],
                updated_at=NOW)
            assert d(rec) == want
