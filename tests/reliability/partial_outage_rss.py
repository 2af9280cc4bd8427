"""Partial outage, real process (``smsgw run``): N messages for a route whose carrier is
down while the other route's carrier is bound; RssAnon and store commits while they wait.

``.venv/bin/python -m tests.reliability.partial_outage_rss [N=20000] [WAIT_S=60]`` prints
one JSON object (docs/reliability.md "2026-11-22 (session 4): per-route parking"). Not a
test: it waits in real time (the old code re-parked every entry every 30 s).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import trio

from tests.app.helpers import free_port
from tests.e2e.harness import GatewayUnderTest, sim_carrier
from tests.reliability.helpers import Load
from tests.reliability.test_resources import proc_mem


def store_commits(metrics_url: str) -> float:
    """``smsgw_store_commits_total`` from the metrics endpoint."""
    url = metrics_url if metrics_url.endswith("/metrics") else metrics_url + "/metrics"
    with urllib.request.urlopen(url, timeout=5) as reply:
        body = reply.read().decode()
    for line in body.splitlines():
        if line.startswith("smsgw_store_commits_total"):
            return float(line.split()[-1])
    return -1.0


async def measure(n: int, wait_s: float) -> dict[str, Any]:
    port = free_port()
    gut = GatewayUnderTest(
        Path(tempfile.mkdtemp(prefix="partial-outage")),
        carriers=[sim_carrier(port, "sandbox", "sandbox", name="up"),
                  sim_carrier(free_port(), "gw", "pw", name="down")],  # nobody listens
        routes=[{"prefix": "+3361", "carriers": ["down"]},  # every ``message(i)``
                {"prefix": "+", "carriers": ["up"]}],
        pipeline={"outbox_max": 10 * n},
        extra={"sandbox": {"enabled": True, "listen": f"127.0.0.1:{port}",
                           "dlr_delay_ms": 0}})
    async with gut.subprocess(wait_ready=False) as api:
        assert gut.proc is not None and gut.ready is not None
        pid, murl = gut.proc.pid, gut.ready.metrics_url
        assert murl is not None

        async def commits() -> float:
            return await trio.to_thread.run_sync(store_commits, murl)

        await Load(api, 0, 2000, batch=1000, recipients=1000).run()  # warm-up
        await trio.sleep(2)
        m0, c0 = proc_mem(pid), await commits()
        load = Load(api, 10_000, n, batch=1000, recipients=1000)
        await load.run()
        await trio.sleep(5)
        m1, c1, t1 = proc_mem(pid), await commits(), time.monotonic()
        samples = []
        for _ in range(int(wait_s // 10)):
            await trio.sleep(10)
            samples.append((round(time.monotonic() - t1),
                            proc_mem(pid)["RssAnon"] - m1["RssAnon"], await commits() - c1))
        m2, c2, t2 = proc_mem(pid), await commits(), time.monotonic()
    return {"waiting": n + 2000, "accepted": len(load.accepted),
            "rss_anon_mb": [round(m["RssAnon"] / 2**20, 1) for m in (m0, m1, m2)],
            "commits_during_accept_and_park": c1 - c0,
            "waiting_s": round(t2 - t1, 1), "commits_while_waiting": c2 - c1,
            "commits_per_s_while_waiting": round((c2 - c1) / (t2 - t1), 2),
            "samples_s_rssanon_delta_commits": samples}


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    wait_s = float(sys.argv[2]) if len(sys.argv) > 2 else 60.0
    print(json.dumps(trio.run(measure, n, wait_s)))


if __name__ == "__main__":
    main()
