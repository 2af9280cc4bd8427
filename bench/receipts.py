"""Receipt path micro-benchmark: ``parse_receipt`` + ``receipt_lookup_keys`` per receipt.

Prints ONE JSON object: microseconds per receipt (parse + all lookup keys; parse + the
first key alone, as ``gateway.pipeline.inbound`` computes them; parse alone) for receipt
deliver_sm PDUs shaped like the ones
the node-smpp simulator sends (``/work/shared/peers/smsc_sim.js`` ``buildReceipt``: the
Appendix B text with a 20-char ``text:``, ``receipted_message_id`` + ``message_state``
TLVs, and ``network_error_code`` with ``--dlr-network-error``), plus a text-only receipt
(no TLVs, Kannel style).

Each case cycles through 4,096 distinct receipts (consecutive ids, the dates changing
every 64 receipts, a mix of stats), decoded once by our codec, so the timed loop sees
what the bind hands the inbound processor: a ``DeliverSm`` with ``Tlv`` objects.

``hooks_us``: the metrics hooks on the message path (``hooks``), per call.

``inbound_us`` (``--inbound N``, default 20,000; 0 = skip): the whole inbound processor,
``InboundProcessor.process`` on batches of 64 simulator-shaped DELIVRD receipts (hex ids)
against an LMDB store (``durability = "os"``: no fsync, the CPU is what is measured)
holding N submitted 1-part messages: CPU per receipt of the trio thread
(``time.thread_time``, everything but the store's writer thread) and of the whole process
(the writer thread's ``_WriteReceipts`` and event puts included), best of ``--rounds``
fresh stores. Acks go to a no-op (the bind's deliver_sm_resp is not measured).
``--store memory`` runs it against the ``MemoryStore`` instead, whose commit applies the
batch on the calling thread: one thread, steadier figures on a busy machine.

``--inbound-batch K`` (default 64) sets the receipts per ``process`` call: one message per
HTTP request (``bench/e2e.py --mode single``) brings batches of a few receipts.
``--pending`` makes each receipt arrive right behind its submit_sm_resp, as in single
mode: the messages are stored still ``sending`` and their carrier ids are only known to a
stand-in dispatcher (``pending_carrier_id``) until the processor waits for them
(``wait_committed``), which commits them (carrier id + part accepted, one urgent commit
per wait, as the dispatcher's outcome commit does; that commit's CPU is in
``process_us``, not in ``trio_thread_us``). ``carrier_id_gets_per_receipt`` and
``message_gets_per_receipt`` count the processor's reads in one more, untimed, round.

    .venv/bin/python bench/receipts.py [--seconds 0.5] [--inbound 20000] [--rounds 3]
                                       [--store lmdb|memory] [--inbound-batch 64]
                                       [--pending]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

# Run as a script, this file's directory is sys.path[0], and bench/http.py would shadow
# the standard library's `http` package (imported by prometheus_client): drop it.
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.receipts import parse_receipt, receipt_first_key, receipt_lookup_keys
from gateway.smpp import (
    DeliverSm,
    Tlv,
    decode,
    encode,
    message_state_tlv,
    network_error_code_tlv,
    receipted_message_id_tlv,
)

N = 4096
#: (stat, err, message_state) as the simulator draws them; DELIVRD dominates.
STATS = [("DELIVRD", "000", 2)] * 6 + [("UNDELIV", "001", 5), ("EXPIRED", "000", 3),
                                        ("REJECTD", "069", 8), ("DELIVRD", "000", 2)]
TEXTS = ["Spring sale: 20% off", "Your code is 123456", "Hello world", "Reminder: appt at 3"]
T0 = datetime(2026, 11, 22, 15, 39)


def _date(i: int) -> str:
    return (T0 + timedelta(minutes=i // 64)).strftime("%y%m%d%H%M")


def build(kind: str) -> list[DeliverSm]:
    """N decoded receipt deliver_sm PDUs of one kind (see the module docstring)."""
    out = []
    base = 1_795_361_967_996_000  # Date.now() * 1000, the simulator's first id
    for i in range(N):
        stat, err, ms = STATS[i % len(STATS)]
        n = base + i
        mid = format(n, "x") if kind in ("sim_hex", "sim_hex_nec") else str(n)
        if kind == "text_only_dec":
            mid = str(1_603_202_138 + i)  # 10-digit Kannel-style ids
        text = (f"id:{mid} sub:001 dlvrd:{'001' if stat == 'DELIVRD' else '000'} "
                f"submit date:{_date(i)} done date:{_date(i + 16)} stat:{stat} err:{err} "
                f"text:{TEXTS[i % len(TEXTS)]}")
        tlvs: tuple[Tlv, ...] = ()
        if kind != "text_only_dec":
            tlvs = (receipted_message_id_tlv(mid), message_state_tlv(ms))
            if kind == "sim_hex_nec" and err != "000":
                tlvs += (network_error_code_tlv(3, int(err)),)
        pdu = DeliverSm(source_addr_ton=1, source_addr_npi=1, source_addr="447700900123",
                        dest_addr_ton=5, destination_addr="ShopCo", esm_class=0x04,
                        short_message=text.encode("latin-1"), tlvs=tlvs)
        frame = decode(encode(pdu, seq=i + 1))
        assert isinstance(frame.pdu, DeliverSm)
        out.append(frame.pdu)
    return out


def rate(fn: Callable[[], object], seconds: float, per_call: int) -> float:
    """Calls per second of fn (times per_call): the best of many short runs (as codec.py)."""
    best = float("inf")
    deadline = time.perf_counter() + seconds
    while True:
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
        if time.perf_counter() >= deadline:
            break
    return per_call / best


def receipt_path(pdus: list[DeliverSm]) -> Callable[[], object]:
    """One pass over pdus doing what the inbound processor does per receipt."""
    def run() -> None:
        for p in pdus:
            r = parse_receipt(p.esm_class, p.short_message, p.tlvs, data_coding=p.data_coding)
            assert r is not None
            receipt_lookup_keys(r, "auto")
    return run


def parse_and_first_key(pdus: list[DeliverSm]) -> Callable[[], object]:
    """parse_receipt + the first lookup key, as the inbound processor does per receipt (the
    other keys only after a miss)."""
    def run() -> None:
        for p in pdus:
            r = parse_receipt(p.esm_class, p.short_message, p.tlvs, data_coding=p.data_coding)
            assert r is not None
            receipt_first_key(r, "auto")
    return run


def hooks(seconds: float) -> dict[str, float]:
    """Microseconds per call of the metrics hooks on the message path (``hooks_us``):
    ``ObservedCarrier``'s outcome hook per part (around a no-op dispatcher callback),
    ``Instruments.observe_receipts`` per receipt (batches of 64), ``observe_commit`` per
    commit, and one ``prometheus_client.Histogram.observe`` for scale (what each of these
    called per observation before session 3)."""
    import trio
    from prometheus_client import CollectorRegistry, Histogram

    from gateway.app import ObservedCarrier
    from gateway.bind import OutcomeKind, SubmitBatch, SubmitOutcome
    from gateway.metrics import LATENCY_BUCKETS, Metrics

    class Carrier:
        async def enqueue(self, batch: SubmitBatch) -> None:
            pass

    m = Metrics(carriers=["sim"])
    batch = SubmitBatch([], lambda _i, _o: None)
    trio.run(ObservedCarrier(Carrier(), m.instruments.submit_series("sim")).enqueue,  # type: ignore[arg-type]
             batch)
    hook = batch.on_outcome
    assert hook is not None
    outcomes = [SubmitOutcome(kind=OutcomeKind.ACCEPTED, latency=0.002 + i * 1e-6)
                for i in range(1000)]
    latencies = [("sim", 0.5 + i * 1e-3) for i in range(64)]
    observe = Histogram("x_seconds", "x", ["carrier"], buckets=LATENCY_BUCKETS,
                        registry=CollectorRegistry()).labels("sim").observe
    receipts = m.instruments.observe_receipts
    commit = m.instruments.observe_commit

    def outcome_hook() -> None:
        for o in outcomes:
            hook(0, o)

    def prometheus_observe() -> None:
        for o in outcomes:
            observe(o.latency)

    return {
        "outcome_hook_per_part": round(1e6 / rate(outcome_hook, seconds, 1000), 3),
        "receipt_latency_per_receipt": round(
            1e6 / rate(lambda: receipts(latencies), seconds, 64), 3),
        "observe_commit": round(1e6 / rate(lambda: commit(0.001, 12), seconds, 1), 3),
        "prometheus_histogram_observe": round(1e6 / rate(prometheus_observe, seconds, 1000),
                                              3),
    }


def parse_only(pdus: list[DeliverSm]) -> Callable[[], object]:
    """parse_receipt alone."""
    def run() -> None:
        for p in pdus:
            parse_receipt(p.esm_class, p.short_message, p.tlvs, data_coding=p.data_coding)
    return run


class _Inbound:
    """What the bind hands the inbound processor (``gateway.bind.Inbound``), ack a no-op."""

    __slots__ = ("acked", "bind", "carrier", "pdu", "received_at")
    is_receipt = True

    def __init__(self, pdu: DeliverSm, received_at: float) -> None:
        self.pdu = pdu
        self.bind = "sim#0"
        self.carrier = "sim"
        self.received_at = received_at
        self.acked = False

    def ack(self, status: int = 0) -> bool:
        self.acked = True
        return True


class _Pending:
    """The dispatcher as ``--pending`` has it (see the module docstring)."""

    def __init__(self, store: object, now: float) -> None:
        self.store = store
        self.now = now
        self.uncommitted: dict[tuple[str, str], tuple[str, int]] = {}

    def pending_carrier_id(self, carrier: str, keys: object) -> tuple[str, int] | None:
        for k in keys:  # type: ignore[attr-defined]
            hit = self.uncommitted.get((carrier, k))
            if hit is not None:
                return hit
        return None

    def awaiting_response(self, carrier: str | None = None) -> int:
        return 0

    async def wait_committed(self) -> None:
        import msgspec

        from gateway.store import WriteBatch

        batch = WriteBatch(urgent=True)
        for (carrier, cid), (mid, part) in self.uncommitted.items():
            batch.put_carrier_id(carrier, cid, mid, part, self.now + 1)
            batch.update_message(mid, lambda old: None if old is None else msgspec.structs.replace(
                old, status="submitted", parts=tuple(msgspec.structs.replace(
                    p, status="accepted") for p in old.parts)))
        self.uncommitted.clear()
        await self.store.commit(batch)  # type: ignore[attr-defined]


class _CountingStore:
    """The store, counting the gets of its read transactions per database."""

    def __init__(self, store: object) -> None:
        import collections

        self._store = store
        self.gets: collections.Counter[str] = collections.Counter()

    def read(self, fn: Callable[[object], object]) -> object:
        outer = self

        class Txn:
            def __init__(self, tx: object) -> None:
                self._tx = tx

            def getter(self, db: object) -> Callable[[bytes], object]:
                get = self._tx.getter(db)  # type: ignore[attr-defined]
                name = db.name  # type: ignore[attr-defined]

                def counted(key: bytes) -> object:
                    outer.gets[name] += 1
                    return get(key)
                return counted

            def __getattr__(self, name: str) -> object:
                return getattr(self._tx, name)

        return self._store.read(lambda tx: fn(Txn(tx)))  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)


def inbound(n: int, rounds: int, store_kind: str = "lmdb", batch_size: int = 64,
            pending: bool = False) -> dict[str, float]:
    """CPU us per receipt of ``InboundProcessor.process`` (see the module docstring)."""
    import tempfile

    import trio

    from gateway.config import CarrierConfig, GatewayConfig
    from gateway.pipeline.inbound import InboundProcessor
    from gateway.pipeline.recipients import RecipientCache
    from gateway.store import (
        HistoryEntry,
        MessageRecord,
        PartRecord,
        WriteBatch,
        open_memory_store,
        open_store,
    )

    config = GatewayConfig(carriers=(CarrierConfig(name="sim", host="127.0.0.1",
                                                   system_id="sys"),))
    now = 1_795_361_967.0
    base = 1_795_361_967_996_000
    pdus = []
    for i in range(n):
        mid = format(base + i, "x")
        text = (f"id:{mid} sub:001 dlvrd:001 submit date:{_date(i)} done date:{_date(i + 16)} "
                f"stat:DELIVRD err:000 text:{TEXTS[i % len(TEXTS)]}")
        pdu = DeliverSm(source_addr_ton=1, source_addr_npi=1, source_addr=f"1555{i:07d}",
                        dest_addr_ton=5, destination_addr="ShopCo", esm_class=0x04,
                        short_message=text.encode("latin-1"),
                        tlvs=(receipted_message_id_tlv(mid), message_state_tlv(2)))
        frame = decode(encode(pdu, seq=i + 1))
        assert isinstance(frame.pdu, DeliverSm)
        pdus.append(frame.pdu)

    async def one_round(count: bool = False) -> tuple[float, float, float]:
        with tempfile.TemporaryDirectory() as tmp:
            async with (open_store(f"{tmp}/db", durability="os") if store_kind == "lmdb"
                        else open_memory_store()) as store:
                d = _Pending(store, now) if pending else None
                for start in range(0, n, 1000):
                    batch = WriteBatch()
                    for i in range(start, min(n, start + 1000)):
                        mid, cid = f"m{i:08d}", format(base + i, "X")
                        batch.put_message(MessageRecord(
                            id=mid, created_at=now, to=f"+1555{i:07d}",
                            text=TEXTS[i % len(TEXTS)], kind="campaign", campaign_id="bench",
                            status="sending" if pending else "submitted", encoding="gsm7",
                            segments=1, carrier="sim", route="+", parts=(PartRecord(
                                index=0, carrier="sim", carrier_msg_id=cid, submit_status=0,
                                submitted_at=now + 1,
                                status="sending" if pending else "accepted"),),
                            history=(HistoryEntry(now, "queued"),
                                     HistoryEntry(now + 1, "submitted")),
                            updated_at=now + 1))
                        if not pending:
                            batch.put_carrier_id("sim", cid, mid, 0, now + 1)
                    await store.commit(batch)
                reads = _CountingStore(store) if count else store
                proc = InboundProcessor(reads, config,  # type: ignore[arg-type]
                                        RecipientCache(store, policy=config.rules), None, d,
                                        clock=lambda: now + 3)
                t = trio.current_time()
                batches = [[_Inbound(p, t) for p in pdus[i:i + batch_size]]
                           for i in range(0, n, batch_size)]
                per_batch = []
                thread0, proc0 = time.thread_time(), time.process_time()
                for b, items in enumerate(batches):
                    if d is not None:  # the batch's submit_sm_resps came just before it
                        for i in range(b * batch_size, b * batch_size + len(items)):
                            d.uncommitted[("sim", format(base + i, "X"))] = (f"m{i:08d}", 0)
                    t0 = time.thread_time()
                    await proc.process(items)  # type: ignore[arg-type]
                    per_batch.append((time.thread_time() - t0) * 1e6 / len(items))
                thread1, proc1 = time.thread_time(), time.process_time()
                st = proc.statistics()
                assert st.receipts == n and st.unmatched == 0 and st.duplicates == 0
                assert all(b[-1].acked for b in batches)
                if count:
                    assert isinstance(reads, _CountingStore)
                    return (reads.gets["CARRIER_IDS"] / n, reads.gets["MESSAGES"] / n, 0.0)
        per_batch.sort()
        return ((thread1 - thread0) * 1e6 / n, (proc1 - proc0) * 1e6 / n,
                per_batch[len(per_batch) // 10])

    results = [trio.run(one_round) for _ in range(rounds)]
    gets = trio.run(one_round, True)
    return {"trio_thread_us_per_receipt": round(min(r[0] for r in results), 2),
            "process_us_per_receipt": round(min(r[1] for r in results), 2),
            # the 10th percentile of the batches' trio-thread CPU: what a batch costs
            # when nothing else preempts it (steadier than the totals on a busy machine)
            "trio_thread_us_per_receipt_p10": round(min(r[2] for r in results), 2),
            "batch": batch_size, "pending": pending,
            "carrier_id_gets_per_receipt": round(gets[0], 3),
            "message_gets_per_receipt": round(gets[1], 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=0.5, help="time per measurement")
    ap.add_argument("--inbound", type=int, default=20_000,
                    help="receipts through InboundProcessor.process (0 = skip)")
    ap.add_argument("--rounds", type=int, default=3, help="fresh stores for --inbound")
    ap.add_argument("--store", choices=("lmdb", "memory"), default="lmdb",
                    help="--inbound's store (memory: the writes run on the one thread too, "
                         "steadier on a busy machine)")
    ap.add_argument("--inbound-batch", type=int, default=64,
                    help="receipts per process() call for --inbound")
    ap.add_argument("--pending", action="store_true",
                    help="--inbound: carrier ids answered but not committed yet (single mode)")
    ap.add_argument("--inbound-only", action="store_true",
                    help="skip the parse and hooks figures")
    args = ap.parse_args()
    if args.inbound_only:
        print(json.dumps({"inbound_us": inbound(args.inbound, args.rounds, args.store,
                                                args.inbound_batch, args.pending)}))
        return
    us: dict[str, float] = {}
    for kind in ("sim_hex", "sim_dec", "sim_hex_nec", "text_only_dec"):
        pdus = build(kind)
        us[f"{kind}_parse_and_keys"] = round(1e6 / rate(receipt_path(pdus), args.seconds, N), 3)
        us[f"{kind}_parse_and_first_key"] = round(
            1e6 / rate(parse_and_first_key(pdus), args.seconds, N), 3)
        us[f"{kind}_parse_only"] = round(1e6 / rate(parse_only(pdus), args.seconds, N), 3)
    print(json.dumps({
        "python": platform.python_version(),
        "unit": "microseconds per receipt (best of repeated passes over 4,096 receipts)",
        "receipts_us": us,
        "hooks_us": hooks(args.seconds),
        "inbound_us": inbound(args.inbound, args.rounds, args.store, args.inbound_batch,
                              args.pending) if args.inbound else None,
    }))


if __name__ == "__main__":
    main()
