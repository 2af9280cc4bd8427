"""Accept benchmark: messages/s through ``Accepter.accept``, printed as ONE JSON object.

LMDB store with fsync durability, the default policy (all rules on), every recipient
subscribed with its number facts stored (the steady state after first contact), a
distinct recipient per message (so smart sending lets every campaign through), campaign
messages with the opt-out footer appended. For batch sizes 1, 100 and 1000, ``tasks``
concurrent callers (HTTP requests) share group commits. The per-stage costs come from
``Accepter(profile=True)``: rules (``evaluate`` + ``apply_send``), encoding (``plan``),
build (everything else before the commit: ids, records, batch ops, events, cache), and
commit (wall time awaiting ``store.commit`` per message, shared by concurrent callers).

``handler``: the accept as the gateway runs it for ``POST /v1/messages`` batches of 1000
(``Api`` handler -> ``AcceptCoalescer`` -> ``Accepter.accept`` -> commit, response
encoded), recipients new to the cache (one LMDB read per batch, as in a campaign), the
dispatcher hand-off on, GC tuned like ``smsgw run``: CPU per message of the calling (trio)
thread and of the other threads (the store's writer), from ``/proc`` (10 ms ticks).
``--handler-only`` runs just that (``--handler-n`` messages, default 40,000).

usage: python bench/accept.py [--dir DIR] [--scale 1.0] [--handler-only] [--handler-n N]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

# Run as a script, this file's directory is sys.path[0], and bench/http.py would shadow
# the standard library's `http` package (imported by gateway.http): drop it.
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import trio

from gateway.api_types import MessageIn
from gateway.config import CarrierConfig, GatewayConfig, RouteConfig
from gateway.pipeline import Accepter, RecipientCache
from gateway.store import RecipientRecord, WriteBatch, open_store
from rules.numbers import number_facts

NOW = datetime(2026, 1, 2, 17, 0, tzinfo=UTC).timestamp()  # open in every US zone
NPAS = (212, 213, 305, 312, 404, 415, 503, 617, 702, 713, 718, 801, 206, 303, 602, 919)
TEXT = "Acme: 20% off everything this weekend at https://acme.example/sale"


def phones(n: int, start: int) -> list[str]:
    out: list[str] = []
    i = start
    while len(out) < n:
        npa = NPAS[i % len(NPAS)]
        sub = 2_000_000 + (i // len(NPAS)) * 7 % 7_000_000
        out.append(f"+1{npa}{sub:07d}")
        i += 1
    return out


async def seed(store: object, nums: list[str]) -> None:
    for k in range(0, len(nums), 5000):
        batch = WriteBatch()
        for p in nums[k:k + 5000]:
            f = number_facts(p)
            batch.put_recipient(RecipientRecord(phone=p, consent="subscribed",
                                                region=f.region, state=f.state, zones=f.zones))
        await store.commit(batch)  # type: ignore[attr-defined]


async def run_size(path: Path, size: int, total: int, tasks: int) -> dict[str, float]:
    cfg = GatewayConfig(carriers=(CarrierConfig(name="c1", host="127.0.0.1", system_id="s"),),
                        routes=(RouteConfig(prefix="+", carriers=("c1",)),))
    async with open_store(path / f"b{size}", durability="fsync") as store:
        nums = phones(total, size * 7919)
        await seed(store, nums)
        rc = RecipientCache(store, policy=cfg.rules)
        acc = Accepter(store, cfg, rc, profile=True)
        msgs = [MessageIn(to=p, text=TEXT, campaign_id="bench") for p in nums]
        batches = [msgs[i:i + size] for i in range(0, total, size)]
        queued = 0

        async def worker(k: int) -> None:
            nonlocal queued
            for b in batches[k::tasks]:
                res = await acc.accept(b, NOW)
                queued += sum(r.status == "queued" for r in res)

        t0 = time.perf_counter()
        async with trio.open_nursery() as n:
            for k in range(tasks):
                n.start_soon(worker, k)
        dt = time.perf_counter() - t0
        st = acc.statistics()
        m = st.messages
        return {
            "batch": size, "tasks": tasks, "messages": m, "queued": queued,
            "msg_per_s": round(m / dt),
            "us_rules": round(st.t_rules / m * 1e6, 2),
            "us_encoding": round(st.t_encoding / m * 1e6, 2),
            "us_build": round(st.t_build / m * 1e6, 2),
            "us_commit_wall": round(st.t_commit / m * 1e6, 2),
            "us_total_wall": round(dt / m * 1e6, 2),
            "store_avg_group": round(store.statistics().avg_group_size, 2),
        }


def _thread_cpu() -> dict[str, float]:
    """CPU seconds per thread of this process (``/proc``; clock ticks)."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for task in Path("/proc/self/task").iterdir():
        fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        out[task.name] = (int(fields[11]) + int(fields[12])) / tick
    return out


class _Sink:
    """The dispatcher's side of the hand-off (``Accepter.handoff``), doing nothing."""

    def accepted(self, items: object) -> None:
        pass

    def not_accepted(self, ids: object) -> None:
        pass


async def run_handler(path: Path, total: int) -> dict[str, float]:
    """The ``handler`` measurement (module doc)."""
    from gateway.api import Api
    from gateway.backend import AcceptCoalescer
    from gateway.http import Request

    cfg = GatewayConfig(carriers=(CarrierConfig(name="c1", host="127.0.0.1", system_id="s"),),
                        routes=(RouteConfig(prefix="+", carriers=("c1",)),))
    text = TEXT + " Reply STOP to opt out"  # bench/e2e.py's gsm1 text
    async with open_store(path / "handler", durability="fsync") as store:
        nums = phones(total, 0)
        await seed(store, nums)
        rc = RecipientCache(store, policy=cfg.rules)
        acc = Accepter(store, cfg, rc)
        acc.handoff = _Sink()
        coalescer = AcceptCoalescer(acc.accept, clock=lambda: NOW)

        class Backend:
            async def submit(self, messages: list[MessageIn]) -> object:
                return await coalescer.submit(messages)

        api = Api(Backend(), max_batch=1000)  # type: ignore[arg-type]
        bodies = [json.dumps({"messages": [
            {"to": p, "text": text, "kind": "campaign", "campaign_id": "bench"}
            for p in nums[k:k + 1000]]}).encode() for k in range(0, total, 1000)]
        headers = [(b"content-type", b"application/json"), (b"host", b"127.0.0.1")]
        gc.collect()
        gc.freeze()
        gc.set_threshold(100_000, 50, 100)  # as gateway.app.tune_gc
        me = str(threading.get_native_id())
        c0 = _thread_cpu()
        t0 = time.thread_time()
        queued = 0
        for body in bodies:
            resp = await api._submit_messages(Request("POST", "/v1/messages", headers, body))
            queued += bytes(resp.body).count(b'"queued"')  # type: ignore[arg-type]
        main = time.thread_time() - t0
        c1 = _thread_cpu()
        gc.unfreeze()
        other = sum(v - c0.get(k, 0.0) for k, v in c1.items() if k != me)
        return {"messages": total, "queued": queued,
                "us_main_thread": round(main / total * 1e6, 2),
                "us_other_threads": round(other / total * 1e6, 2)}


async def main(args: argparse.Namespace) -> None:
    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="bench-accept-"))
    try:
        s = args.scale
        out: dict[str, object] = {"durability": "fsync", "python": sys.version.split()[0]}
        if not args.handler_only:
            out["results"] = [
                await run_size(base, 1, int(3000 * s), 64),
                await run_size(base, 100, int(30_000 * s), 4),
                await run_size(base, 1000, int(60_000 * s), 2),
            ]
        out["handler"] = await run_handler(base, args.handler_n)
        print(json.dumps(out))
    finally:
        if not args.dir:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir")
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--handler-only", action="store_true")
    ap.add_argument("--handler-n", type=int, default=40_000)
    trio.run(main, ap.parse_args())
