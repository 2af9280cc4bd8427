"""Dispatcher micro-benchmark of the exact per-message functions, printed as ONE JSON.

No trio loop, no store thread: the dispatcher's own steps on realistic inputs (1,000
fresh 1-part GSM messages as the accepter hands them over: record, plan, options), each
timed with ``timeit`` (min of ``--repeat``), in us per message:

* ``route``: ``Dispatcher._route_one`` for every message of a round (route, carrier,
  plan from the hand-off, submit_sm, lease ops);
* ``route_read``: the same for messages read back from the store (no hand-off: restart,
  retries, a backlog beyond the hand-off's bound);
* ``outcome``: the ``on_outcome`` callback a bind calls per submit_sm_resp;
* ``commit``: ``Dispatcher._commit_outcomes`` of one batch of all those outcomes (the
  decisions and the ops of the outcome commit; the store's ``commit`` is a no-op here);
* ``apply``: the outcome commit's record update functions run on the stored records (the
  part of the writer thread's work that the dispatcher's update function decides).

Run from a tree (``PYTHONPATH=<tree>``) to compare trees; the steps use private methods
that exist in every version since session 2.

usage: python bench/dispatch_funcs.py [-n 1000] [--repeat 15]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import timeit
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
if str(_HERE.parent) not in sys.path:
    sys.path.append(str(_HERE.parent))

from gateway.bind import OutcomeKind, SubmitBatch, SubmitOutcome  # noqa: E402
from gateway.config import (  # noqa: E402
    CarrierConfig,
    GatewayConfig,
    PipelineConfig,
    RouteConfig,
)
from gateway.encoding import SegmentPlan, plan  # noqa: E402
from gateway.pipeline.dispatch import Dispatcher  # noqa: E402
from gateway.pipeline.routing import Router  # noqa: E402
from gateway.store import MessageRecord, OutboxEntry, PartRecord, WriteBatch  # noqa: E402
from gateway.store.batch import UPDATE  # noqa: E402

GSM1 = ("Acme: 20% off everything this weekend at https://acme.example/sale Reply STOP "
        "to opt out")
NPAS = (212, 213, 305, 312, 404, 415, 503, 617, 702, 713, 718, 801, 206, 303, 602, 919)


class _Carrier:
    can_submit = True

    def __init__(self) -> None:
        self.batches: list[SubmitBatch] = []

    async def enqueue(self, batch: SubmitBatch) -> None:
        self.batches.append(batch)

    async def wait_until(self, predicate: Any) -> None:  # pragma: no cover - unused
        raise NotImplementedError


class _Store:
    """Enough of a store for the steps timed: commits are taken, never applied."""

    def get_messages(self, ids: Any) -> dict[str, MessageRecord]:
        return {}

    async def commit(self, batch: WriteBatch) -> None:
        return None


def _run(coro: Any) -> Any:
    """Drive a coroutine that never suspends (fake store and carrier)."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    raise RuntimeError("suspended")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=15)
    args = ap.parse_args()
    n = args.n
    cc = CarrierConfig(name="sim", host="127.0.0.1", system_id="bench",  # type: ignore[arg-type]
                       binds=2, window=256)
    config = GatewayConfig(carriers=(cc,), routes=(RouteConfig(prefix="+", carriers=("sim",)),),
                           pipeline=PipelineConfig())
    carrier = _Carrier()
    d = Dispatcher(_Store(), config, {"sim": carrier}, Router(config.routes))  # type: ignore[arg-type]
    now = time.time()
    opts = cc.encoding
    items = []
    for i in range(n):
        p = plan(GSM1, opts, ref=None)
        assert isinstance(p, SegmentPlan)
        to = f"+1{NPAS[i % len(NPAS)]}{2_000_000 + i * 7:07d}"
        rec = MessageRecord(id=f"01JBENCH{i:018d}", created_at=now - 1, to=to, text=GSM1,
                            kind="campaign", campaign_id="cmp-1", status="queued",
                            encoding=p.encoding, data_coding=p.data_coding,
                            segments=p.segments, carrier="sim", route="+",
                            outbox_due=now - 1, updated_at=now - 1, ref=p.ref,
                            parts=(PartRecord(index=0),))
        items.append((OutboxEntry(now - 1, rec.id), rec, (rec, p, opts, None)))
    live = {"sim"}
    kw: dict[str, Any] = {}
    if "picks" in Dispatcher._route_one.__code__.co_varnames:
        kw["picks"] = {}

    def route(handed: bool = True) -> tuple[WriteBatch, dict[str, Any], list[Any]]:
        batch = WriteBatch(urgent=True)
        per_carrier: dict[str, Any] = {}
        flights = []
        if kw:
            kw["picks"] = {}
        for e, rec, h in items:
            flights.append(d._route_one(batch, e, rec, now, per_carrier=per_carrier,
                                        live=live,
                                        handed=h if handed else None, **kw))
        return batch, per_carrier, flights

    out: dict[str, Any] = {"bench": "dispatch_funcs", "n": n,
                           "tree": str(Path(sys.modules["gateway"].__file__ or "").parent.parent)}
    out["route_us"] = min(timeit.repeat(route, number=1, repeat=args.repeat)) / n * 1e6
    out["route_read_us"] = min(timeit.repeat(lambda: route(handed=False), number=1,
                                             repeat=args.repeat)) / n * 1e6

    # outcomes: the callback of a SubmitBatch, as a bind reader calls it
    _batch, per_carrier, flights = route()
    metas, pdus = per_carrier["sim"]
    outcomes = [SubmitOutcome(kind=OutcomeKind.ACCEPTED, message_id=f"{0x1A2B3C00 + i:x}",
                              bind="sim#0") for i in range(len(pdus))]

    def outcome() -> list[Any]:
        carrier.batches.clear()
        d._outcomes = []
        _run(d._enqueue("sim", metas, pdus))
        cb = carrier.batches[0].on_outcome
        assert cb is not None
        for i, o in enumerate(outcomes):
            cb(i, o)
        return d._outcomes

    t = []
    for _ in range(args.repeat):
        carrier.batches.clear()
        d._outcomes = []
        _run(d._enqueue("sim", metas, pdus))
        cb = carrier.batches[0].on_outcome
        assert cb is not None
        t0 = time.perf_counter()
        for i, o in enumerate(outcomes):
            cb(i, o)
        t.append(time.perf_counter() - t0)
    out["outcome_us"] = min(t) / n * 1e6

    # the outcome commit: decisions and ops (no store)
    committed: list[WriteBatch] = []

    async def keep(batch: WriteBatch) -> None:
        committed.append(batch)

    d._commit = keep  # type: ignore[method-assign]
    t = []
    for _ in range(args.repeat):
        _b, _pc, flights = route()
        for fl in flights:
            d._flights[fl.message_id] = fl
        d._outcomes = []
        carrier.batches.clear()
        _run(d._enqueue("sim", _pc["sim"][0], _pc["sim"][1]))
        cb = carrier.batches[0].on_outcome
        assert cb is not None
        for i, o in enumerate(outcomes):
            cb(i, o)
        its = d._outcomes
        committed.clear()
        t0 = time.perf_counter()
        _run(d._commit_outcomes(its, now + 1))
        t.append(time.perf_counter() - t0)
    out["commit_us"] = min(t) / n * 1e6
    recs = {rec.id.encode(): rec for _e, rec, _h in items}
    ups = [(recs[op[2]], op[3]) for op in committed[0].ops if op[0] == UPDATE]
    assert len(ups) == n

    def apply() -> None:
        for rec, fn in ups:
            fn(rec)

    out["apply_us"] = min(timeit.repeat(apply, number=1, repeat=args.repeat)) / n * 1e6
    out["total_us"] = sum(out[k] for k in ("route_us", "outcome_us", "commit_us", "apply_us"))
    for k in list(out):
        if k.endswith("_us"):
            out[k] = round(out[k], 3)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
