"""Chaos run: the reliability tests' scenarios, longer, as ONE JSON object (issue 8).

Sections (``--only`` to pick some; sizes scale with ``--scale``, 1.0 = the numbers below):

* ``crash``: SIGKILL during accept / submits / receipts against smsc_sim.js, restart on
  the same store, audit (tests/reliability/test_crash.py), for ``fsync`` and ``os``;
* ``drops``: the connection cut every 500 submits (RST and FIN), 5,000 messages: audit,
  time from each cut to the next accepted submit;
* ``memory``: 1,000,000 messages accepted while the carrier is down (a ``smsgw run``
  subprocess): RssAnon/RssFile before and after, accept rate, store commits per second
  while the messages wait (none expected: with no carrier able to submit the dispatcher
  leaves the outbox alone; a partial outage parks each message once, docs/reliability.md);
* ``reconnects``: 1,000 session cuts by the in-process sandbox SMSC: fds and trio tasks
  before/after, reconnects per second.

    .venv/bin/python bench/chaos.py                  # everything (~10 min on 2 cores)
    .venv/bin/python bench/chaos.py --only crash,drops --scale 0.5

Needs node and ../shared/peers (``make peers``) for ``crash`` and ``drops``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
# bench/http.py would shadow the standard library's `http` package: drop bench/ from the path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
ROOT = _HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import trio  # noqa: E402

from tests.app.helpers import free_port  # noqa: E402
from tests.e2e.harness import TERMINAL, GatewayUnderTest, poll, sim_carrier  # noqa: E402
from tests.peers import run_sim  # noqa: E402
from tests.reliability.helpers import (  # noqa: E402
    Load,
    audit,
    message,
    sim_log,
    wait_receipts_recorded,
)
from tests.reliability.test_crash import crash_run  # noqa: E402
from tests.reliability.test_resources import (  # noqa: E402
    RECIPIENTS,
    open_fds,
    proc_mem,
    trio_tasks,
)


async def metric_value(gut: GatewayUnderTest, name: str) -> float:
    from tests.api.client import request

    assert gut.ready is not None and gut.ready.metrics_port is not None
    reply = await request(gut.ready.metrics_port, "GET", "/metrics")
    total = 0.0
    for line in reply.body.decode().splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.rpartition(" ")[2])
    return total


async def crash(work: Path, scale: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for durability in ("fsync", "os"):
        d = work / f"crash-{durability}"
        d.mkdir()
        with run_sim("--system-id", "gw", "--password", "pw", "--resp-delay", "40",
                     "--dlr-delay", "150", tmp_path=d, log=True) as sim:
            counts = await crash_run(d, sim, durability, n_accept=int(6000 * scale),
                                     n_submit=int(5000 * scale), n_receipt=int(3000 * scale))
        counts.pop("examples", None)
        out[durability] = counts
    return out


async def drops(work: Path, scale: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    n = int(5000 * scale)
    for mode in ("rst", "fin"):
        d = work / f"drops-{mode}"
        d.mkdir()
        with run_sim("--system-id", "gw", "--password", "pw", "--dlr-delay", "20",
                     "--drop-after", "500", "--drop-mode", mode, tmp_path=d,
                     log=True) as sim:
            gut = GatewayUnderTest(d, carriers=[sim_carrier(sim, "gw", "pw")])
            async with gut.in_process() as api:
                t0 = time.monotonic()
                load = Load(api, 0, n, batch=500)
                await load.run()
                await api.wait_status(load.accepted.values(), TERMINAL, interval=0.2)
                await wait_receipts_recorded(api, sim)
                took = time.monotonic() - t0
                a = await audit(api, sim, load.accepted)
            log = await sim_log(sim)
        gaps = []
        for i, line in enumerate(log):
            if line["result"] == "dropped":
                nxt = next((x for x in log[i + 1:] if x["session"] != line["session"]
                            and x["result"] == "ok"), None)
                if nxt is not None:
                    gaps.append(int(nxt["ts"]) - int(line["ts"]))
        counts = {k: v for k, v in a.as_dict().items() if k != "examples"}
        counts.update(seconds=round(took, 2), cuts=len(gaps),
                      resume_ms={"max": max(gaps, default=0),
                                 "mean": round(sum(gaps) / len(gaps), 1) if gaps else 0},
                      unknown_per_cut=round(a.unknown / max(1, len(gaps)), 1))
        out[mode] = counts
    return out


async def memory(work: Path, scale: float) -> dict[str, Any]:
    n = int(1_000_000 * scale)
    gut = GatewayUnderTest(work, name="memory", carriers=[sim_carrier(free_port(), "gw", "pw")],
                           pipeline={"outbox_max": n + 10_000})
    async with gut.subprocess(wait_ready=False) as api:
        assert gut.proc is not None
        pid = gut.proc.pid
        await Load(api, 0, 5000, batch=1000, recipients=RECIPIENTS).run()
        await trio.sleep(2.0)
        before = proc_mem(pid)
        t0 = time.monotonic()
        load = Load(api, 10_000, n, batch=1000, recipients=RECIPIENTS, prefix="w")
        await load.run()
        accept_s = time.monotonic() - t0
        mid = proc_mem(pid)
        c0 = await metric_value(gut, "smsgw_store_commits_total")
        t1 = time.monotonic()
        await trio.sleep(30.0)  # waiting: the old code re-parked every <= 30 s
        commits = (await metric_value(gut, "smsgw_store_commits_total") - c0)
        after = proc_mem(pid)
        depth = await metric_value(gut, "smsgw_outbox_depth")
        waited = time.monotonic() - t1
    growth = after["RssAnon"] - before["RssAnon"]
    return {"waiting": n, "accepted": len(load.accepted), "outbox_depth": depth,
            "accept_per_s": round(n / accept_s), "rss_before": before,
            "rss_after_accept": mid, "rss_after_30s_waiting": after,
            "rss_anon_growth_bytes": growth,
            "rss_anon_bytes_per_waiting_message": round(growth / max(1, n), 1),
            "store_commits_per_s_while_waiting": round(commits / waited, 1)}


async def reconnects(work: Path, scale: float) -> dict[str, Any]:
    n = max(100, int(1000 * scale))
    port = free_port()
    gut = GatewayUnderTest(
        work, name="reconnects",
        carriers=[{**sim_carrier(port, "sandbox", "sandbox"), "reconnect_min_s": 0.001,
                   "reconnect_max_s": 0.002}],
        extra={"sandbox": {"enabled": True, "listen": f"127.0.0.1:{port}", "dlr_delay_ms": 0}})

    async with gut.in_process() as api:
        assert gut.gateway is not None
        sim = gut.gateway.components["sandbox"]
        carrier = gut.gateway.components["carriers"]["sim"]

        async def cycle() -> None:
            await carrier.wait_until(lambda c: bool(c.live_binds))
            sim.drop_all()
            await carrier.wait_until(lambda c: not c.live_binds)

        for _ in range(20):
            await cycle()
        await trio.sleep(0.1)
        fd0, task0, mem0 = open_fds(), trio_tasks(), proc_mem(os.getpid())
        t0 = time.monotonic()
        for i in range(n):
            if i % 100 == 0:
                await api.submit([message(j) for j in range(i, i + 5)])
            await cycle()
        took = time.monotonic() - t0
        await carrier.wait_until(lambda c: bool(c.live_binds))

        async def settled() -> bool | None:
            return True if open_fds() <= fd0 and trio_tasks() <= task0 else None
        with trio.move_on_after(5):
            await poll(settled, 0.05)
        fd1, task1, mem1 = open_fds(), trio_tasks(), proc_mem(os.getpid())
    return {"reconnects": n, "seconds": round(took, 2),
            "per_s": round(n / took, 1), "fds": [fd0, fd1], "tasks": [task0, task1],
            "rss_anon": [mem0["RssAnon"], mem1["RssAnon"]]}


SECTIONS = {"crash": crash, "drops": drops, "memory": memory, "reconnects": reconnects}


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {"scale": args.scale, "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="smsgw-chaos-") as tmp:
        for name in args.only.split(","):
            work = (Path(args.workdir) if args.workdir else Path(tmp)) / name
            work.mkdir(parents=True)
            t0 = time.monotonic()
            result[name] = await SECTIONS[name](work, args.scale)
            result[name]["section_s"] = round(time.monotonic() - t0, 1)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", default=",".join(SECTIONS),
                   help=f"comma-separated sections ({', '.join(SECTIONS)})")
    p.add_argument("--scale", type=float, default=1.0, help="multiply the sizes")
    p.add_argument("--workdir", help="keep configs, stores and logs here (default: a "
                   "temporary directory, removed)")
    args = p.parse_args(argv)
    for name in args.only.split(","):
        if name not in SECTIONS:
            p.error(f"unknown section {name!r}")
    print(json.dumps(trio.run(main_async, args)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
