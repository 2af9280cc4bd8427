"""A long carrier outage, in simulated time (trio's autojump clock, memory store).

Regression: the dispatcher's per-route park level grew by one on every feed batch that
parked a message and was used as ``PARK_MIN_S * 2 ** level``: past level 1023 that is
an ``OverflowError`` in the dispatcher, which took the whole gateway down (exit 1). It
happened after ~1,024 parking rounds: ~800,000 messages accepted while the carrier was
down (bench/chaos.py memory section), or a few messages and a carrier down for ~9 h
(one round every 30 s).
"""

from __future__ import annotations

import pytest
import trio
import trio.testing

from gateway.store import open_memory_store
from tests.pipeline.test_dispatch_harness import rig

pytestmark = pytest.mark.slow

PHONES = [f"+336123456{i:02d}" for i in range(3)]


async def test_carrier_down_for_ten_hours_then_back(
        autojump_clock: trio.testing.MockClock) -> None:
    async with open_memory_store() as store, rig(store, passwords={"sb": "wrong"}) as r:
        ids = await r.send(PHONES)
        await trio.sleep(10 * 3600)
        assert set(r.statuses(ids).values()) == {"queued"}
        # not a hot loop (the bound of the old periodic parking, one round per 30 s; with
        # no carrier able to submit nothing is written at all now)
        assert store.statistics().commits < 10 * 3600 / 30 * 1.5
        r.server.settings.accounts["sandbox"] = "wrong"  # the password fits again
        t0 = trio.current_time()
        await r.wait(ids, "delivered")
        assert trio.current_time() - t0 < 10
