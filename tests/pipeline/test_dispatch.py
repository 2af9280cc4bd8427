"""Dispatcher against our in-process sandbox SMSC (memory and LMDB stores, autojump clock)."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from gateway.store import Store

from .test_dispatch_harness import rig

PHONES = [f"+336123456{i:02d}" for i in range(40)]
Clock = trio.testing.MockClock


@pytest.fixture(params=["memory", "lmdb"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def clock(kind: str) -> Clock:
    """Autojump; with LMDB only after 20 ms of real idleness: its commits run in a thread,
    which trio's clock cannot see (a jump mid-commit would fire timeouts early)."""
    return Clock(autojump_threshold=0.0 if kind == "memory" else 0.02)


@pytest.fixture
def store(kind: str, mem_store: Store, lmdb_store: Store) -> Store:
    return mem_store if kind == "memory" else lmdb_store


async def test_batch_goes_out_and_every_message_is_delivered(store: Store, clock: Clock) -> None:
    async with rig(store) as r:
        ids = await r.send(PHONES, "hello there")
        recs = await r.wait(ids, "delivered")
        for rec in recs:
            assert [p.status for p in rec.parts] == ["delivered"]
            assert rec.parts[0].carrier == "sb" and rec.parts[0].carrier_msg_id
            assert [h.status for h in rec.history] == ["queued", "submitted", "delivered"]
        assert store.outbox_depth() == 0
        st = r.dispatcher.statistics()
        assert st.submitted == len(PHONES) and st.inflight == 0
        assert st.by_carrier == {"sb": {"accepted": len(PHONES)}}
        assert r.server.stats.submits == len(PHONES)
        events = store.events_after(0, 10_000)
        kinds = [(e.type, e.status) for e in events if e.message_id == ids[0]]
        assert kinds == [("message.status", "queued"), ("message.status", "submitted"),
                         ("receipt", "delivered"), ("message.status", "delivered")]
