"""The dispatcher indexes each part that becomes ``unknown`` (``gateway.store.unknown_parts``)
and the inbound processor reconciles its receipt, in-process against the sandbox SMSC.

Where a part becomes ``unknown``: no submit_sm_resp (a cut, a response timeout) and a
part a previous process left ``sending`` (``Dispatcher.recover``); with
``unknown_outcome = "retry"`` nothing is indexed (the part is sent again and gets its own
carrier id).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import msgspec
import pytest
import trio
import trio.testing

from gateway.receipts import normalise_message_id
from gateway.store import Lease, Store, WriteBatch
from gateway.store.kv import Db
from gateway.store.records import UnknownPart
from gateway.store.unknown_parts import UNKNOWN_PART, entries_for

from .test_dispatch_harness import rig

Clock = trio.testing.MockClock
PHONE = "+33612345678"


def index(store: Store) -> list[UnknownPart]:
    return store.read(lambda tx: [UNKNOWN_PART.decode(v) for _, v in tx.scan(Db.UNKNOWN_PARTS)])


@pytest.fixture
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The sandbox SMSC writes receipt dates in local time, as SMSCs do: make it UTC."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


async def test_a_part_without_an_answer_is_indexed(mem_store: Store,
                                                   autojump_clock: Clock) -> None:
    async with rig(mem_store, sim={"drop_after": 1}) as r:
        [mid] = await r.send(PHONE)
        await r.wait([mid], "unknown")
    [e] = index(mem_store)
    assert (e.message_id, e.part) == (mid, 0)
    assert e.sent_at <= e.until == e.at
    assert mem_store.read(lambda tx: [x.message_id for _, x in entries_for(
        tx, "sb", PHONE[1:])]) == [mid]


async def test_nothing_is_indexed_when_unknowns_are_sent_again(
        mem_store: Store, autojump_clock: Clock) -> None:
    async with rig(mem_store, sim={"drop_after": 1},
                   pipeline={"unknown_outcome": "retry", "retry_backoff_min_s": 1.0}) as r:
        await r.send(PHONE)
        await r.wait_until(lambda: r.server.stats.submits >= 1)
        await trio.sleep(10)
    assert index(mem_store) == []


@pytest.mark.parametrize("how", ["sending", "lease"])
async def test_parts_left_in_flight_by_a_crash_are_indexed(
        mem_store: Store, autojump_clock: Clock, how: str) -> None:
    async with rig(mem_store, run_dispatcher=False, run_inbound=False) as r:
        [mid] = await r.send(PHONE)
        rec = r.get(mid)
        batch = WriteBatch()
        lease = rec.created_at + 3600
        batch.outbox_remove(rec.outbox_due or rec.created_at, mid)
        if how == "lease":
            batch.outbox_add(lease, mid, Lease("sb", (0,), rec.created_at + 1))
        else:
            batch.outbox_add(lease, mid)
            batch.put_message(msgspec.structs.replace(
                rec, outbox_due=lease, updated_at=rec.created_at + 1,
                parts=(msgspec.structs.replace(rec.parts[0], status="sending",
                                               carrier="sb"),)))
        await mem_store.commit(batch)
        assert await r.dispatcher.recover() == 1
    assert r.get(mid).status == "unknown"
    [e] = index(mem_store)
    assert (e.message_id, e.part, e.sent_at) == (mid, 0, rec.created_at + 1)
    assert e.until >= e.sent_at


async def test_a_late_answer_then_its_receipt_reconciled(mem_store: Store, utc: None,
                                                         autojump_clock: Clock) -> None:
    """The SMSC answers after the response timeout: the part is ``unknown``; its receipt
    (no carrier id to match) finds it in the index and the message ends ``delivered``."""
    async with rig(mem_store, sim={"resp_delay": 3.0, "dlr_delay": 4.0},
                   carrier={"response_timeout_s": 1.0}, base=time.time()) as r:
        ids = await r.send(["+33612345601", "+33612345602"])
        await r.wait(ids, "unknown")
        recs = await r.wait(ids, "delivered")
        st = r.inbound.statistics()
    assert st.reconciled == 2 and st.unmatched == 0
    for rec in recs:
        cid = rec.parts[0].carrier_msg_id
        assert cid is not None
        hit = mem_store.lookup_carrier_id("sb", normalise_message_id(cid))
        assert hit is not None and hit.message_id == rec.id
        assert [h.status for h in rec.history][-3:] == ["unknown", "unknown", "delivered"]
    assert index(mem_store) == []


async def test_unanswered_dests_are_the_parts_in_flight(mem_store: Store,
                                                        autojump_clock: Clock) -> None:
    async with rig(mem_store, sim={"resp_delay": 3.0}) as r:
        [mid] = await r.send(PHONE)
        await r.wait_until(lambda: r.server.stats.submits >= 1)
        assert r.dispatcher.unanswered_dests() == {("sb", PHONE[1:])}
        await r.wait([mid], "submitted")
        assert r.dispatcher.unanswered_dests() == set()
