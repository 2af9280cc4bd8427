"""Review of session 5 (2b81ed2): the feed sleeps on one wake event, and a long-lived
``_watch_events`` task sets it when the store has an event newer than the seq the feed
read before its round. Probes: an accept's event wakes the sleeping feed at once, with
either store, whatever phase the feed's timed sleeps are in (the watcher may still be
waiting from an earlier sleep with an older seq when the feed goes to sleep again)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
import trio.testing

from gateway.store import MemoryStore, Store, open_store

from .pipeline.test_dispatch_harness import rig

PHONES = [f"+336123457{i:02d}" for i in range(40)]


@pytest.fixture(params=["memory", "lmdb"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def clock(kind: str) -> trio.testing.MockClock:
    # LMDB commits run in the writer thread, which the clock cannot see.
    return trio.testing.MockClock(autojump_threshold=0.0 if kind == "memory" else 0.02)


@pytest.fixture
async def store(kind: str, tmp_path: Path) -> AsyncIterator[Store]:
    if kind == "memory":
        yield MemoryStore()
        return
    async with open_store(tmp_path / "db", durability="os") as s:
        yield s


@pytest.mark.slow
async def test_an_accept_wakes_the_sleeping_feed_in_every_phase(
        store: Store, clock: trio.testing.MockClock) -> None:
    # Offsets around the feed's IDLE_MAX_S (60 s) timed wake-ups and the 0.2 s receipt
    # delay of the simulator (the feed's retry/receipt rounds): each send lands in another
    # phase of the feed/watcher hand-over.
    offsets = [50.0, 0.05, 9.95, 60.0, 59.99, 0.001, 0.2, 60.2, 30.0, 120.0, 0.0]
    async with rig(store, sim={"dlr_delay": 0.2}) as r:
        for i, off in enumerate(offsets):
            await trio.sleep(off)
            t0 = trio.current_time()
            [mid] = await r.send(PHONES[i])
            await r.wait([mid], {"submitted", "delivered"})
            assert trio.current_time() - t0 < 0.5, (i, off)


@pytest.mark.slow
async def test_a_commit_with_an_event_wakes_the_feed_without_a_handoff(
        store: Store, clock: trio.testing.MockClock) -> None:
    # No handoff and no wakeup(): only the store's event can wake the feed.
    async with rig(store, sim={"dlr_delay": 0.0}) as r:
        r.accepter.handoff = None
        for i in range(3):
            await trio.sleep(45.0)  # idle: the feed sleeps up to IDLE_MAX_S at a time
            t0 = trio.current_time()
            [mid] = await r.send(PHONES[10 + i])
            await r.wait([mid], {"submitted", "delivered"})
            assert trio.current_time() - t0 < 0.5, i
