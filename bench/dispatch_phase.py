"""Dispatcher micro-benchmark: CPU per message of the dispatch phase, printed as ONE JSON.

N 1-part GSM messages (bench/e2e.py's gsm1 text, transactional, distinct US numbers)
are accepted first through ``Accepter.accept`` (batches of 1,000, hand-off on), then the
``Dispatcher`` runs against a fake carrier (2 binds x window 256, like
bench/configs/single.toml) that answers every part OK at once, in reads of 64 answers
(as a bind reader would), until every message's outcome is committed. Measured over that
phase only: the trio thread's CPU (``time.thread_time``: feed, routing, submit_sm
building, lease commit batches, outcome commits), the whole process's CPU (the LMDB
writer thread included) and the number of write ops. ``--handoff-max 0`` dispatches
everything from store reads instead of the accepter's hand-off.

LMDB with ``durability="os"`` (CPU, not the disk). Several interleaved rounds; min and
median reported. Wall time is not the metric (other work on the machine).

``--store memory`` runs the same on the memory store: no writer thread, so less noise
from thread switches (its apply work then counts on the trio thread).

usage: python bench/dispatch_phase.py [-n 20000] [--rounds 5] [--handoff-max 20000]
       [--store lmdb|memory] [--profile FILE]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# Run as a script, bench/ is sys.path[0] and bench/rules.py would shadow the ``rules``
# package: drop it. The repository root goes LAST, so ``PYTHONPATH=<another tree>``
# measures that tree (before/after comparisons from a git worktree).
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
if str(_HERE.parent) not in sys.path:
    sys.path.append(str(_HERE.parent))

import trio  # noqa: E402

from gateway.api_types import MessageIn  # noqa: E402
from gateway.bind import OutcomeKind, SubmitBatch, SubmitOutcome  # noqa: E402
from gateway.config import CarrierConfig, GatewayConfig, PipelineConfig, RouteConfig  # noqa: E402
from gateway.pipeline.accept import Accepter  # noqa: E402
from gateway.pipeline.dispatch import Dispatcher  # noqa: E402
from gateway.pipeline.recipients import RecipientCache  # noqa: E402
from gateway.pipeline.routing import Router  # noqa: E402
from gateway.store import open_memory_store, open_store  # noqa: E402

NPAS = (212, 213, 305, 312, 404, 415, 503, 617, 702, 713, 718, 801, 206, 303, 602, 919)
GSM1 = ("Acme: 20% off everything this weekend at https://acme.example/sale Reply STOP "
        "to opt out")


#: ``--profile FILE``: cProfile of the dispatch phase (trio thread) of the last round.
PROFILE: str | None = None


def phone(i: int) -> str:
    npa = NPAS[i % len(NPAS)]
    sub = 2_000_000 + (i // len(NPAS)) * 7 % 7_000_000
    return f"+1{npa}{sub:07d}"


class FakeCarrier:
    """Answers every part OK (hex message ids), 64 answers per reader step."""

    def __init__(self) -> None:
        self.pending: list[SubmitBatch] = []
        self.evt = trio.Event()
        self.next_id = 0x1A2B3C00
        self.parts = 0

    @property
    def can_submit(self) -> bool:
        return True

    async def enqueue(self, batch: SubmitBatch) -> None:
        self.pending.append(batch)
        self.evt.set()

    async def wait_until(self, predicate: Any) -> None:
        await trio.sleep_forever()

    async def respond(self) -> None:
        n = 0
        while True:
            await self.evt.wait()
            self.evt = trio.Event()
            while self.pending:
                b = self.pending.pop(0)
                for i in range(len(b.parts)):
                    self.next_id += 1
                    b.resolve(i, SubmitOutcome(kind=OutcomeKind.ACCEPTED,
                                               message_id=f"{self.next_id:x}", bind="sim#0"))
                    self.parts += 1
                    n += 1
                    if n % 64 == 0:
                        await trio.lowlevel.checkpoint()


async def one_round(n: int, handoff_max: int, path: Path, kind: str) -> dict[str, float]:
    config = GatewayConfig(
        carriers=(CarrierConfig(name="sim", host="127.0.0.1", system_id="bench",  # type: ignore[arg-type]
                                binds=2, window=256),),
        routes=(RouteConfig(prefix="+", carriers=("sim",)),),
        pipeline=PipelineConfig(outbox_max=10_000_000))
    opened = (open_store(path, durability="os", map_size=1 << 32) if kind == "lmdb"
              else open_memory_store())
    async with opened as store:
        recipients = RecipientCache(store, policy=config.rules)
        accepter = Accepter(store, config, recipients)
        carrier = FakeCarrier()
        dispatcher = Dispatcher(store, config, {"sim": carrier}, Router(config.routes),
                                accepter, recipients=recipients, handoff_max=handoff_max)
        accepter.handoff = dispatcher
        for k in range(0, n, 1000):
            msgs = [MessageIn(to=phone(i), text=GSM1, kind="transactional")
                    for i in range(k, min(n, k + 1000))]
            await accepter.accept(msgs, time.time())
        # Start-up recovery scans the whole outbox (nothing in flight here): not part of
        # the per-message cost, so done before the clock starts.
        await dispatcher.recover()

        async def recovered() -> int:
            return 0

        dispatcher.recover = recovered  # type: ignore[method-assign]
        prof = None
        if PROFILE:
            import cProfile

            prof = cProfile.Profile()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(carrier.respond)
            if prof is not None:
                prof.enable()
            t0, p0, w0 = time.thread_time(), time.process_time(), time.perf_counter()
            await nursery.start(dispatcher.run)
            while dispatcher.statistics().submitted < n:  # noqa: ASYNC110 (a bench poll)
                await trio.sleep(0.005)
            await dispatcher.flush()
            t1, p1, w1 = time.thread_time(), time.process_time(), time.perf_counter()
            if prof is not None:
                prof.disable()
                prof.dump_stats(PROFILE)
            st = dispatcher.statistics()
            nursery.cancel_scope.cancel()
    assert st.submitted == n and st.inflight == 0, st
    return {"trio_us": (t1 - t0) / n * 1e6, "process_us": (p1 - p0) / n * 1e6,
            "wall_us": (w1 - w0) / n * 1e6, "handoff_used": st.handoff_used,
            "commits": st.commits}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--handoff-max", type=int, default=20_000)
    ap.add_argument("--store", choices=("lmdb", "memory"), default="lmdb",
                    help="memory: no writer thread (less noise; the store's own Python "
                    "work then runs on the trio thread)")
    ap.add_argument("--profile", help="cProfile the dispatch phase into this file")
    args = ap.parse_args()
    global PROFILE  # noqa: PLW0603 (a script's option)
    PROFILE = args.profile
    runs = []
    for _ in range(args.rounds):
        d = Path(tempfile.mkdtemp(prefix="dispatch-bench-"))
        try:
            runs.append(trio.run(one_round, args.n, args.handoff_max, d / "db", args.store))
        finally:
            shutil.rmtree(d, ignore_errors=True)
    import gateway

    out: dict[str, Any] = {"bench": "dispatch_phase",
                           "tree": str(Path(gateway.__file__).parent.parent),
                           "n": args.n, "rounds": args.rounds,
                           "handoff_max": args.handoff_max, "store": args.store,
                           "python": sys.version.split()[0]}
    for k in ("trio_us", "process_us", "wall_us"):
        vals = [r[k] for r in runs]
        out[k] = {"min": round(min(vals), 2), "median": round(statistics.median(vals), 2)}
    out["handoff_used"] = runs[-1]["handoff_used"]
    out["commits_per_round"] = runs[-1]["commits"]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
