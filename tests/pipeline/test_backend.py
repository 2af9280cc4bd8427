"""GatewayBackend: the API's Backend over the pipeline (memory store), and over a socket."""

from __future__ import annotations

import pytest
import trio

from gateway.api import Api
from gateway.api_types import ConsentIn, InvalidRequest, MessageIn, PreviewIn
from gateway.backend import GatewayBackend
from gateway.config import GatewayConfig
from gateway.pipeline import Accepter, RecipientCache
from gateway.store import ErrorEntry, MemoryStore, StoreFullError, WriteBatch
from tests.api.client import request, start_server
from tests.pipeline.conftest import LA, LA2, NOW, NY, put_recipients


def make(store: MemoryStore, config: GatewayConfig, *,
         live: frozenset[str] = frozenset({"c1"})) -> GatewayBackend:
    rc = RecipientCache(store, policy=config.rules)
    acc = Accepter(store, config, rc)
    return GatewayBackend(config, store, acc, rc, ready_probe=lambda c: c in live,
                          clock=lambda: NOW)


async def test_consent_then_campaign_and_get_message(mem_store: MemoryStore,
                                                     config: GatewayConfig) -> None:
    be = make(mem_store, config)
    [r] = await be.submit([MessageIn(to=LA, text="Sale", metadata={"k": 1})])
    assert (r.status, r.reason) == ("rejected", "no_consent")
    out = await be.consent(ConsentIn(phone=LA, action="subscribe", source="web"))
    assert (out.state, out.changed, out.source) == ("subscribed", True, "web")
    [r2] = await be.submit([MessageIn(to=LA, text="Sale", metadata={"k": 1})])
    assert r2.status == "queued"
    got = await be.get_message(r2.id)
    assert got is not None and got.status == "queued" and got.metadata == {"k": 1}
    assert [p.part for p in got.parts] == [1] and got.parts[0].status == "pending"
    assert got.history[0].status == "queued"
    assert await be.get_message("nope") is None
    rec = await be.get_recipient(LA)
    assert rec is not None and rec.consent.state == "subscribed"
    assert rec.zones == ["America/Los_Angeles"]
    assert [s.message_id for s in rec.recent_sends] == [r2.id]
    assert await be.get_recipient(NY) is None
    evs = await be.events(None, 100, 0)
    types = [e.type for e in evs.events]
    assert types == ["message.status", "consent", "message.status"]
    assert evs.events[0].reason == "no_consent" and evs.events[0].metadata == {"k": 1}
    assert evs.next == evs.events[-1].id


async def test_double_opt_in_sends_confirmation_request(mem_store: MemoryStore,
                                                        config: GatewayConfig) -> None:
    be = make(mem_store, config)
    out = await be.consent(ConsentIn(phone=LA, action="subscribe", double_opt_in=True))
    assert out.state == "pending" and out.double_opt_in
    evs = (await be.events(None, 10, 0)).events
    assert [e.type for e in evs] == ["consent", "message.status"]
    assert evs[1].status == "queued"
    out = await be.consent(ConsentIn(phone=LA, action="confirm"))
    assert out.state == "subscribed"
    with pytest.raises(InvalidRequest):
        await be.consent(ConsentIn(phone="12", country="US", action="confirm"))


async def test_error_segment_streams_members(mem_store: MemoryStore,
                                             config: GatewayConfig) -> None:
    batch = WriteBatch()
    day = 86400.0
    batch.add_error(LA, ErrorEntry(at=NOW - 2 * day, error_class="temporary_unreachable"))
    batch.add_error(LA2, ErrorEntry(at=NOW - 60 * day, error_class="temporary_network"))
    batch.add_error(NY, ErrorEntry(at=NOW - 90 * day, error_class="disconnected"))
    batch.add_error(NY, ErrorEntry(at=NOW - 80 * day, error_class="disconnected"))
    await mem_store.commit(batch)
    be = make(mem_store, config)
    lines = [x async for x in be.error_segment(30)]
    # LA: recent temporary error; NY: two disconnections (sticky); LA2: too old.
    assert sorted((x.phone, x.errors, x.error_class) for x in lines) == [
        (NY, 2, "disconnected"), (LA, 1, "temporary_unreachable")]
    assert {x.phone for x in [x async for x in be.error_segment(90)]} == {LA, LA2, NY}


async def test_events_long_poll(mem_store: MemoryStore, config: GatewayConfig,
                                autojump_clock: trio.testing.MockClock) -> None:
    be = make(mem_store, config)
    await put_recipients(mem_store, [LA])
    t0 = trio.current_time()
    out = await be.events("0", 10, 5.0)
    assert out.events == [] and out.next == "0" and trio.current_time() - t0 == 5.0
    got = []

    async def poll() -> None:
        got.append(await be.events("0", 10, 30.0))

    async with trio.open_nursery() as n:
        n.start_soon(poll)
        await trio.sleep(1)
        await be.submit([MessageIn(to=LA, text="hi", kind="transactional")])
    assert len(got[0].events) == 1 and got[0].next == "1"
    with pytest.raises(InvalidRequest):
        await be.events("x", 10, 0)


async def test_events_report_what_retention_removed_after_the_cursor(
        mem_store: MemoryStore, config: GatewayConfig) -> None:
    be = make(mem_store, config)
    for phone in (LA, LA2, NY):
        await be.consent(ConsentIn(phone=phone, action="subscribe", source="web"))
        await be.consent(ConsentIn(phone=phone, action="unsubscribe", source="web"))
    everything = await be.events(None, 100, 0)
    assert [e.id for e in everything.events] == [str(i) for i in range(1, 7)]
    assert everything.pruned == 0
    prune = WriteBatch()
    prune.delete_events_through(4)  # what the retention sweep commits
    await mem_store.commit(prune)
    out = await be.events("1", 100, 0)
    assert [e.id for e in out.events] == ["5", "6"] and out.pruned == 3  # 2, 3 and 4
    assert (await be.events("4", 100, 0)).pruned == 0  # the cursor is right before the feed
    assert (await be.events("5", 100, 0)).pruned == 0
    fresh = await be.events(None, 100, 0)  # no cursor: from the oldest event kept
    assert [e.id for e in fresh.events] == ["5", "6"] and fresh.pruned == 0
    assert (await be.events("6", 100, 0)) == type(out)(events=[], next="6", pruned=0)


async def test_preview_health_ready(mem_store: MemoryStore, config: GatewayConfig) -> None:
    be = make(mem_store, config)
    p = await be.preview(PreviewIn(text="a" * 161))
    assert (p.encoding, p.segments, p.per_segment) == ("gsm7", 2, 153)
    assert await be.health()
    assert await be.ready() == (True, "ok")
    down = make(mem_store, config, live=frozenset())
    ok, why = await down.ready()
    assert not ok and "c1" in why


async def test_api_over_socket(mem_store: MemoryStore, config: GatewayConfig) -> None:
    await put_recipients(mem_store, [LA])
    be = make(mem_store, config)
    with trio.fail_after(10):
        async with trio.open_nursery() as n:
            server = await start_server(n, Api(be))
            port = server.port
            r = await request(port, "POST", "/v1/messages",
                              json={"messages": [{"to": LA, "text": "Sale"},
                                                 {"to": "+15550000000", "text": "x"}]})
            assert r.status == 202
            res = r.json()["results"]
            assert [x["status"] for x in res] == ["queued", "rejected"]
            r = await request(port, "GET", f"/v1/messages/{res[0]['id']}")
            assert r.status == 200 and r.json()["status"] == "queued"
            r = await request(port, "GET", "/v1/recipients/%2B14155550100")
            assert r.status == 200 and r.json()["consent"]["state"] == "subscribed"
            r = await request(port, "GET", "/v1/events?after=0&limit=10&wait=0")
            assert r.status == 200 and len(r.json()["events"]) == 2
            mem_store.fail_commits(StoreFullError("full"))
            r = await request(port, "POST", "/v1/messages", json={"to": LA, "text": "again"})
            assert r.status == 507
            n.cancel_scope.cancel()

