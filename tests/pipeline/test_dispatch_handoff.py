"""The accepter's hand-off to the dispatcher (``Dispatcher.accepted``): new ``queued``
records and their plans reach the dispatcher without a store read, and never stand in for
what the store says (a retry, a record changed meanwhile, a failed commit)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import pytest
import trio
import trio.testing

from gateway.api_types import StoreUnavailable
from gateway.bind import SubmitBatch
from gateway.encoding import SegmentPlan, plan
from gateway.pipeline.dispatch import HANDOFF_STALE_S
from gateway.smpp import pdu as P
from gateway.store import Store, StoreUnavailableError, open_memory_store

from .test_dispatch import _GatedStore
from .test_dispatch_harness import Rig, replace_sim, rig

PHONES = [f"+336123457{i:02d}" for i in range(30)]
Clock = trio.testing.MockClock
LONG = "x" * 400  # 3 parts
UCS2 = "Grüße aus Köln 🎉 " * 6  # UCS-2, 2 parts


class _Recording:
    """A carrier as the dispatcher sees it, keeping every PDU handed to it."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.pdus: list[P.SubmitSm] = []

    @property
    def can_submit(self) -> bool:
        return bool(self.inner.can_submit)

    async def enqueue(self, batch: SubmitBatch) -> None:
        self.pdus += batch.parts
        await self.inner.enqueue(batch)

    async def wait_until(self, predicate: Callable[[Any], bool]) -> None:
        await self.inner.wait_until(lambda _c: predicate(self))


def _record_pdus(r: Rig) -> dict[str, _Recording]:
    rec = {n: _Recording(c) for n, c in r.dispatcher._carriers.items()}
    r.dispatcher._carriers = dict(rec)
    return rec


async def test_fresh_messages_go_out_from_the_handoff(store: Store, clock: Clock) -> None:
    async with rig(store) as r:
        ids = await r.send(PHONES, "hello there")
        recs = await r.wait(ids, "delivered")
        for rec in recs:
            assert [h.status for h in rec.history] == ["queued", "submitted", "delivered"]
            assert rec.parts[0].carrier == "sb" and rec.carrier == "sb"
        st = r.dispatcher.statistics()
        assert (st.handoff_used, st.handoff_missed) == (len(PHONES), 0)
        assert st.submitted == len(PHONES) and r.server.stats.submits == len(PHONES)
        assert not r.dispatcher._handoff
        assert store.outbox_depth() == 0


@pytest.mark.parametrize("text", ["hello there", LONG, UCS2])
async def test_the_handoff_sends_what_a_store_read_would(autojump_clock: Clock,
                                                         text: str) -> None:
    sent: list[list[P.SubmitSm]] = []
    final: list[list[tuple[Any, ...]]] = []
    for handoff in (True, False):
        async with open_memory_store() as store, rig(store, run_dispatcher=False) as r:
            if not handoff:
                r.accepter.handoff = None
            rec = _record_pdus(r)
            ids = await r.send(PHONES[:4], text)
            await r.nursery.start(r.dispatcher.run)
            recs = await r.wait(ids, "delivered")
            st = r.dispatcher.statistics()
            assert st.handoff_used == (4 if handoff else 0)
            sent.append(rec["sb"].pdus)
            final.append([(x.status, x.segments, x.encoding, x.data_coding, x.carrier,
                           x.route, [(p.status, p.carrier) for p in x.parts]) for x in recs])
    assert sent[0] == sent[1]
    assert len(sent[0]) == 4 * {"hello there": 1, LONG: 3, UCS2: 2}[text]
    assert final[0] == final[1]


async def test_a_retry_is_read_from_the_store(mem_store: Store, autojump_clock: Clock) -> None:
    async with rig(mem_store, sim={"fail_rate": 1.0},
                   pipeline={"retry_backoff_min_s": 5.0}) as r:
        [mid] = await r.send(PHONES[0])
        await r.wait_until(lambda: r.dispatcher.statistics().retries >= 1)
        replace_sim(r.server, fail_rate=0.0)
        [rec] = await r.wait([mid], "delivered")
        assert rec.attempts == 1 and r.server.stats.submits == 2
        st = r.dispatcher.statistics()
        assert st.handoff_used == 1 and st.handoff_missed == 1


async def test_a_record_handed_over_after_its_first_sight_is_never_used(
        mem_store: Store, autojump_clock: Clock) -> None:
    # The race the hand-off is built against: a record handed over only after the
    # dispatcher took its entry (here: after a first attempt) must not stand in for the
    # stored one when the entry comes back (a retry, due at another time).
    async with rig(mem_store, sim={"fail_rate": 1.0},
                   pipeline={"retry_backoff_min_s": 5.0}) as r:
        r.accepter.handoff = None
        rec = _record_pdus(r)
        [mid] = await r.send(PHONES[0])
        accepted = r.get(mid)
        await r.wait_until(lambda: r.dispatcher.statistics().retries >= 1)
        opts = r.config.carriers[0].encoding
        p = plan("STALE", opts, ref=0)
        assert isinstance(p, SegmentPlan)
        stale = msgspec.structs.replace(accepted, text="STALE")
        r.dispatcher.accepted([(stale, p, opts, None)])
        assert mid in r.dispatcher._handoff
        replace_sim(r.server, fail_rate=0.0)
        [done] = await r.wait([mid], "delivered")
        assert done.attempts == 1 and done.text == accepted.text
        assert mid not in r.dispatcher._handoff  # taken at that sight, and not used
        assert all(b"STALE" not in pdu.short_message for pdu in rec["sb"].pdus)
        assert len(rec["sb"].pdus) == 2
        st = r.dispatcher.statistics()
        assert st.handoff_used == 0 and st.handoff_missed == 2


async def test_records_are_handed_over_before_their_commit(mem_store: Store,
                                                          autojump_clock: Clock) -> None:
    gated = _GatedStore(mem_store)
    async with rig(gated) as r:  # type: ignore[arg-type]
        gated.arm(skip=0)  # the accept's commit waits at the gate
        ids: list[str] = []

        async def send() -> None:
            ids.extend(await r.send(PHONES[:3]))

        r.nursery.start_soon(send)
        with trio.fail_after(10):
            await gated.entered.wait()
        # Not committed yet, already handed over: the feed can't see an entry first.
        assert len(r.dispatcher._handoff) == 3
        assert mem_store.outbox_depth() == 0
        gated.release()
        await r.wait_until(lambda: len(ids) == 3)
        await r.wait(ids, "delivered")
        assert r.dispatcher.statistics().handoff_used == 3


async def test_a_failed_accept_commit_takes_its_records_back(mem_store: Store,
                                                             autojump_clock: Clock) -> None:
    async with rig(mem_store, run_dispatcher=False) as r:
        mem_store.fail_commits(StoreUnavailableError("disk gone"))  # type: ignore[attr-defined]
        with pytest.raises(StoreUnavailable):
            await r.send(PHONES[:3])
        assert not r.dispatcher._handoff
        mem_store.fail_commits(None)  # type: ignore[attr-defined]
        ids = await r.send(PHONES[3:5])
        assert set(r.dispatcher._handoff) == set(ids)
        await r.nursery.start(r.dispatcher.run)
        await r.wait(ids, "delivered")
        assert r.server.stats.submits == 2


async def test_nothing_is_kept_while_no_carrier_can_submit(mem_store: Store,
                                                           autojump_clock: Clock) -> None:
    async with rig(mem_store, passwords={"sb": "wrong"}) as r:
        ids = await r.send(PHONES[:3])
        assert not r.dispatcher._handoff  # an outage can queue millions: not in memory
        r.server.settings.accounts["sandbox"] = "wrong"  # the carrier's password fits now
        await r.wait(ids, "delivered")
        st = r.dispatcher.statistics()
        assert st.handoff_used == 0 and st.handoff_missed == 3


async def test_the_handoff_is_bounded(mem_store: Store, autojump_clock: Clock) -> None:
    async with rig(mem_store, run_dispatcher=False) as r:
        r.dispatcher._handoff_max = 5
        ids = await r.send(PHONES[:12])
        assert len(r.dispatcher._handoff) == 5
        await r.nursery.start(r.dispatcher.run)
        await r.wait(ids, "delivered")
        st = r.dispatcher.statistics()
        assert (st.handoff_used, st.handoff_missed) == (5, 7)
        assert r.server.stats.submits == 12


async def test_a_full_handoff_drops_stale_entries(mem_store: Store,
                                                  autojump_clock: Clock) -> None:
    async with rig(mem_store, run_dispatcher=False) as r:
        r.dispatcher._handoff_max = 2
        old = await r.send(PHONES[:2])
        assert set(r.dispatcher._handoff) == set(old)
        await trio.sleep(HANDOFF_STALE_S + 1)
        new = await r.send(PHONES[2:4])
        assert set(r.dispatcher._handoff) == set(new)
        await r.nursery.start(r.dispatcher.run)
        await r.wait(old + new, "delivered")
        assert r.dispatcher.statistics().handoff_used == 2


async def test_failover_carrier_plans_again(mem_store: Store, autojump_clock: Clock) -> None:
    # Planned at accept for "a" (the route's first carrier), sent through "b": the
    # record comes from the hand-off, the parts from a plan for "b".
    async with rig(mem_store, carriers=("a", "b"), passwords={"a": "wrong"}) as r:
        ids = await r.send(PHONES[:3], LONG)
        recs = await r.wait(ids, "delivered")
        assert {p.carrier for rec in recs for p in rec.parts} == {"b"}
        assert all(rec.segments == 3 for rec in recs)
        assert r.dispatcher.statistics().handoff_used == 3
