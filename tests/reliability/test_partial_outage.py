"""A partial outage, in simulated time: one route down for an hour while another flows.

Before per-route parking the dispatcher parked every message of the down route with a
growing delay (0.5 s doubling to 30 s), rewriting each entry (outbox + record) every
<= 30 s and tracking it in memory: 20,000 waiting messages cost ~667 moves/s and ~5 MB
(1,000,000: ~33 commits/s of re-parking, hundreds of MB; docs/reliability.md). Now each
is parked once: store writes and memory stay flat however long the outage, and the
messages go out once the route is back.
"""

from __future__ import annotations

import gc
import json
from pathlib import Path

import pytest
import trio
import trio.testing

from gateway.store import open_memory_store
from tests.pipeline.test_dispatch_harness import rig

pytestmark = pytest.mark.slow

ROUTES = (("+3361", ("down",)), ("+", ("up",)))


def rss_anon() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    return 0


@pytest.mark.parametrize("n", [20_000])
async def test_down_route_waits_flat_while_another_route_flows(
        autojump_clock: trio.testing.MockClock, n: int) -> None:
    async with open_memory_store() as store, rig(
            store, carriers=("up", "down"), passwords={"down": "wrong"}, routes=ROUTES,
            sim={"dlr_delay": 0.05}) as r:
        d = r.dispatcher
        down_ids: list[str] = []
        for start in range(0, n, 1000):
            # 1,000 recipients: the recipient cache is not what is measured
            down_ids += await r.send([f"+33612{i % 1000:06d}" for i in range(start, start + 1000)])
        # let the dispatcher see every one of them
        await r.wait_until(lambda: d.statistics().parked >= n, limit=120)
        await trio.sleep(60)
        gc.collect()
        # half an hour with nothing else to do: nothing may be written
        rss0, st0, t0 = rss_anon(), store.statistics(), trio.current_time()
        rss_samples = []
        for _ in range(6):
            await trio.sleep(300)
            gc.collect()
            rss_samples.append(rss_anon() - rss0)
        st1, t1 = store.statistics(), trio.current_time()
        # half an hour: the other route flows (100 messages a minute), the down one waits
        up_ids: list[str] = []
        for minute in range(30):
            up_ids += await r.send([f"+33622{minute:03d}{i:03d}" for i in range(100)])
            await trio.sleep(60)
        await r.wait(up_ids, "delivered")
        st2, t2 = store.statistics(), trio.current_time()
        parked = d.statistics().parked
        # per-message state the dispatcher holds for the waiting ones (old: ``_parked``)
        state = len(getattr(d, "_parked", None) or getattr(d, "_parks", {}))
        assert set(r.statuses(down_ids[:: n // 100]).values()) == {"queued"}
        # back: every waiting message goes out, once
        r.server.settings.accounts["sandbox"] = "wrong"  # "down"'s password fits now
        t3 = trio.current_time()
        await r.wait(down_ids, "delivered", limit=3600)
        back_s = trio.current_time() - t3
        submits = r.server.stats.submits
    result = {
        "waiting": n, "parked_stat": parked, "dispatcher_park_entries": state,
        "quiet_commits_per_s": round((st1.commits - st0.commits) / (t1 - t0), 3),
        "quiet_ops_per_s": round((st1.ops - st0.ops) / (t1 - t0), 1),
        "quiet_rss_anon_growth_every_5min": rss_samples,
        "busy_commits_per_s": round((st2.commits - st1.commits) / (t2 - t1), 2),
        "busy_ops_per_s": round((st2.ops - st1.ops) / (t2 - t1), 1),
        "live_route_messages": len(up_ids),
        "deliver_after_back_s": round(back_s, 1), "submits": submits,
    }
    print("\npartial outage:", json.dumps(result))
    assert submits == n + len(up_ids)  # none twice, none lost
    assert parked == n and state <= 2  # a count per route, nothing per message
    # Flat: nothing written while only the down route waits (before: ~1,300 ops/s for
    # 20,000 waiting, growing with n) ...
    assert st1.ops == st0.ops and st1.commits == st0.commits, result
    # ... and beside a live route, only that route's traffic (accept, submit, outcome,
    # receipt: ~12 ops per message, 100 per minute -> ~20 ops/s).
    assert (st2.ops - st1.ops) <= 15 * len(up_ids), result
    # No memory per waiting message or per minute waited.
    assert max(rss_samples) < 2 * 2**20, result
