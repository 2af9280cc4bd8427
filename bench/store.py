"""Store benchmark: commit throughput of the LMDB store, printed as ONE JSON object.

For each durability mode (fsync, os) and batch size (1, 100, 1000 message records, each
with its outbox entry):
* ``seq``: one trio task committing batch after batch (commit latency bound);
* ``concurrent``: 64 trio tasks committing at once (what group commit is for).
Plus the raw per-put cost inside one transaction and the cost of one fsync'ed
transaction per put (the pattern group commit avoids), and the read costs.

``lifecycle``: the writer's CPU per message of the batches one message causes in the
gateway (bench/e2e.py gsm1): accept (record, outbox entry, recipient update, ``queued``
event; 1,000 messages per batch), lease (outbox entry moved, with a Lease; 50 per batch),
outcome (carrier id, outbox entry removed, record update, ``submitted`` event; 50 per
batch) and receipt (record update, ``receipt`` + ``delivered`` events; 25 per batch),
the urgent ones 4 batches per group: ~21 groups per 1,000 messages, as measured in e2e.
The groups run on this thread (``durability="os"``, no fsync: CPU, not the disk;
``--durability fsync`` adds the CPU of the fsync'ed commits);
``apply_us_per_message`` is that thread's CPU time, ``build_us_per_message`` the CPU
time to build the batches from records, events and update functions in hand (the callers'
side: keys, record encoding, op tuples). ``--lifecycle-only`` runs just that.

``--txn-mix``: the writer thread's CPU per small write transaction of the single-message
mix (accept, lease, outcome, receipt of 14 messages, one transaction each, through the
real writer thread with fsync, then with ``os``; ``--rounds`` x 25 rounds, ``--repeats``).

``--builders``: the trio thread's CPU per message to build the write ops of one message's
lifecycle (the gsm1 mix: ``put_message``, ``outbox_add`` x2 (one with a lease),
``outbox_remove`` x2, ``update_message``, ``put_carrier_id``, ``append_event`` x4), from
records, events and functions in hand; best of ``--repeats``.

``--trio-txn``: CPU per small transaction through ``open_store`` in trio (1-event batches
committed one after another, ``durability="os"``), with and without a task waiting in
``wait_for_events`` (the dispatcher's idle wait, the long-poll feed): the writer thread's
CPU and the whole process's (the trio side of the hand-off included), per transaction.

usage: python bench/store.py [--seconds 1.0] [--dir DIR] [--lifecycle-only] [--txn-mix]
       [--builders] [--trio-txn]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import lmdb
import msgspec
import trio

from gateway.store import (
    Event,
    HistoryEntry,
    Lease,
    LmdbStore,
    MessageRecord,
    PartRecord,
    RecipientRecord,
    SendEntry,
    WriteBatch,
    open_store,
)

T0 = 1_790_000_000.0
TEXT = "Your order #12345 has shipped! Track it at https://ex.am/p/abc. Reply STOP to opt out."


def _batch(prefix: str, n: int) -> WriteBatch:
    batch = WriteBatch()
    for i in range(n):
        rec = MessageRecord(
            id=f"{prefix}-{i}",
            created_at=T0,
            to="+15551234567",
            text=TEXT,
            kind="campaign",
            campaign_id="spring",
            encoding="gsm7",
            segments=1,
        )
        batch.put_message(rec)
        batch.outbox_add(T0 + i, rec.id)
    return batch


async def _case(path: Path, durability: str, size: int, tasks: int, seconds: float) -> dict:
    shutil.rmtree(path, ignore_errors=True)
    counter = [0, 0]  # commits, messages
    async with open_store(path, durability=durability, map_size=1 << 30) as store:  # type: ignore[arg-type]
        deadline = trio.current_time() + seconds

        async def worker(w: int) -> None:
            i = 0
            while trio.current_time() < deadline:
                batch = _batch(f"w{w}-{i}", size)
                await store.commit(batch)
                counter[0] += 1
                counter[1] += size
                i += 1

        t0 = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for w in range(tasks):
                nursery.start_soon(worker, w)
        elapsed = time.perf_counter() - t0
        stats = store.statistics()
    return {
        "commits_per_s": round(counter[0] / elapsed, 1),
        "messages_per_s": round(counter[1] / elapsed, 1),
        "txns": stats.txns,
        "avg_group_size": round(stats.avg_group_size, 2),
        "us_per_message": round(elapsed / max(1, counter[1]) * 1e6, 2),
    }


def _raw_lmdb(path: Path, n_puts: int, n_sync: int) -> dict:
    shutil.rmtree(path, ignore_errors=True)
    env = lmdb.open(str(path), map_size=1 << 30, max_dbs=2, sync=True)
    db = env.open_db(b"t")
    value = b"x" * 150
    t0 = time.perf_counter()
    with env.begin(write=True) as txn:
        for i in range(n_puts):
            txn.put(b"k%09d" % i, value, db=db)
    put_us = (time.perf_counter() - t0) / n_puts * 1e6
    t0 = time.perf_counter()
    for i in range(n_sync):
        with env.begin(write=True) as txn:
            txn.put(b"s%09d" % i, value, db=db)
    sync_txn_us = (time.perf_counter() - t0) / n_sync * 1e6
    env.close()
    return {
        "put_in_one_txn_us": round(put_us, 2),
        "one_fsync_txn_per_put_us": round(sync_txn_us, 1),
    }


async def _reads(path: Path, n: int) -> dict:
    shutil.rmtree(path, ignore_errors=True)
    async with open_store(path, durability="os") as store:
        await store.commit(_batch("r", 1000))
        t0 = time.perf_counter()
        for i in range(n):
            store.get_message(f"r-{i % 1000}")
        get_us = (time.perf_counter() - t0) / n * 1e6
        ids = [f"r-{i}" for i in range(100)]
        t0 = time.perf_counter()
        for _ in range(n // 100):
            store.get_messages(ids)
        many_us = (time.perf_counter() - t0) / (n // 100 * 100) * 1e6
        t0 = time.perf_counter()
        for _ in range(n // 100):
            store.due_outbox(T0 + 10_000, 100)
        due_us = (time.perf_counter() - t0) / (n // 100 * 100) * 1e6
    return {
        "get_message_us": round(get_us, 2),
        "get_messages_100_per_message_us": round(many_us, 2),
        "due_outbox_100_per_entry_us": round(due_us, 2),
    }


_STATUS_DATA = (b'{"reason":null,"detail":null,"segments":1,"encoding":"gsm7",'
                b'"kind":"campaign","campaign_id":"spring"}')
_RECEIPT_DATA = b'{"carrier":"c1","part":0,"stat":"DELIVRD","err":"000","carrier_msg_id":"%s"}'


def _lc_record(mid: str, phone: str) -> MessageRecord:
    return MessageRecord(
        id=mid, created_at=T0, to=phone, text=TEXT, kind="campaign", campaign_id="spring",
        metadata=b'{"order":12345}', encoding="gsm7", segments=1, outbox_due=T0,
        parts=(PartRecord(0),), history=(HistoryEntry(T0, "queued"),), updated_at=T0)


def _lc_submitted(old: MessageRecord | None) -> MessageRecord | None:
    if old is None:
        return None
    part = msgspec.structs.replace(old.parts[0], status="accepted", carrier="c1",
                                   carrier_msg_id="cid-" + old.id, submit_status=0,
                                   submitted_at=T0 + 1)
    return msgspec.structs.replace(
        old, status="submitted", carrier="c1", route="default", outbox_due=None,
        parts=(part,), history=(*old.history, HistoryEntry(T0 + 1, "submitted")),
        updated_at=T0 + 1)


def _lc_delivered(old: MessageRecord | None) -> MessageRecord | None:
    if old is None:
        return None
    part = msgspec.structs.replace(old.parts[0], status="delivered", receipt_stat="DELIVRD",
                                   receipt_err="000", done_at=T0 + 2)
    return msgspec.structs.replace(
        old, status="delivered", parts=(part,),
        history=(*old.history, HistoryEntry(T0 + 2, "delivered")), updated_at=T0 + 2)


class _LcSend:
    __slots__ = ("mid",)

    def __init__(self, mid: str) -> None:
        self.mid = mid

    def __call__(self, old: RecipientRecord | None) -> RecipientRecord | None:
        if old is None:
            return None
        return msgspec.structs.replace(
            old, marketing_sends=(*old.marketing_sends[-4:], T0),
            recent=(*old.recent[-4:], SendEntry(T0, self.mid, "campaign", "spring")),
            updated_at=T0)


def _lc_event(kind: str, mid: str, phone: str, status: str, data: bytes) -> Event:
    return Event(seq=0, at=T0, type=kind, message_id=mid, phone=phone, status=status,
                 data=data)


class _LcInputs:
    """What the callers have in hand before they build the batches of one round."""

    def __init__(self, r: int, n: int) -> None:
        self.ids = ids = [f"{r:04d}-{i:06d}" for i in range(n)]
        self.phones = phones = [f"+1555{i % 10_000:07d}" for i in range(n)]
        self.records = [_lc_record(m, p) for m, p in zip(ids, phones, strict=True)]
        self.sends = [_LcSend(m) for m in ids]
        self.queued = [_lc_event("status", m, p, "queued", _STATUS_DATA)
                       for m, p in zip(ids, phones, strict=True)]
        self.submitted = [_lc_event("status", m, p, "submitted", _STATUS_DATA)
                          for m, p in zip(ids, phones, strict=True)]
        self.receipts = [_lc_event("receipt", m, p, "DELIVRD", _RECEIPT_DATA % m.encode())
                         for m, p in zip(ids, phones, strict=True)]
        self.delivered = [_lc_event("status", m, p, "delivered", _STATUS_DATA)
                          for m, p in zip(ids, phones, strict=True)]
        self.cids = ["cid-" + m for m in ids]
        self.lease = Lease("c1", (0,), T0)


def _lc_batches(x: _LcInputs) -> list[list[WriteBatch]]:
    """The groups of one round: see the module docstring."""
    n = len(x.ids)
    accept = WriteBatch()
    for i, mid in enumerate(x.ids):
        accept.put_message(x.records[i])
        accept.outbox_add(T0, mid)
        accept.update_recipient(x.phones[i], x.sends[i])
        accept.append_event(x.queued[i])
    urgent: list[WriteBatch] = []
    for k in range(0, n, 50):
        lease = WriteBatch(urgent=True)
        for mid in x.ids[k:k + 50]:
            lease.outbox_remove(T0, mid)
            lease.outbox_add(T0 + 30, mid, x.lease)
        urgent.append(lease)
        outcome = WriteBatch(urgent=True)
        for i in range(k, min(n, k + 50)):
            mid = x.ids[i]
            outcome.put_carrier_id("c1", x.cids[i], mid, 0, T0 + 1)
            outcome.outbox_remove(T0 + 30, mid)
            outcome.update_message(mid, _lc_submitted)
            outcome.append_event(x.submitted[i])
        urgent.append(outcome)
        for j in range(k, min(n, k + 50), 25):
            receipt = WriteBatch(urgent=True)
            for i in range(j, min(n, j + 25)):
                receipt.update_message(x.ids[i], _lc_delivered)
                receipt.append_event(x.receipts[i])
                receipt.append_event(x.delivered[i])
            urgent.append(receipt)
    return [[accept]] + [urgent[i:i + 4] for i in range(0, len(urgent), 4)]


def _lifecycle(path: Path, rounds: int, n: int = 1000, durability: str = "os") -> dict:
    shutil.rmtree(path, ignore_errors=True)
    store = LmdbStore.open(path, durability=durability, map_size=1 << 30)  # type: ignore[arg-type]
    try:
        seed = WriteBatch()
        for i in range(10_000):
            seed.put_recipient(RecipientRecord(
                phone=f"+1555{i:07d}", consent="subscribed", consent_source="api",
                consent_at=T0 - 86_400, region="US", state="NY", zones=("America/New_York",)))
        store._run_group([seed])
        build = apply = 0.0
        groups = 0
        per_round: list[float] = []
        for r in range(rounds):
            inputs = _LcInputs(r, n)
            t0 = time.thread_time()
            batches = _lc_batches(inputs)
            build += time.thread_time() - t0
            c0 = time.thread_time()
            for group in batches:
                outcomes = store._run_group(group)
                assert all(not isinstance(o, Exception) for o in outcomes), outcomes
            dt = time.thread_time() - c0
            apply += dt
            per_round.append(dt)
            groups += len(batches)
    finally:
        store._close_env()
    per_round.sort()
    return {
        "durability": durability,
        "messages": rounds * n,
        "groups_per_1000": round(groups / rounds * 1000 / n, 1),
        "apply_us_per_message": round(apply / (rounds * n) * 1e6, 2),
        "apply_us_per_message_median_round": round(per_round[len(per_round) // 2] / n * 1e6, 2),
        "apply_us_per_message_best_round": round(per_round[0] / n * 1e6, 2),
        "build_us_per_message": round(build / (rounds * n) * 1e6, 2),
    }


def _thread_user_sys(native_id: int) -> tuple[float, float]:
    fields = Path(f"/proc/self/task/{native_id}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def _thread_wchar(native_id: int) -> int:
    # Bytes the thread handed to write syscalls (LMDB's page writes: pwrite/writev).
    for line in Path(f"/proc/self/task/{native_id}/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    return 0


def _txn_mix(path: Path, rounds: int, repeats: int, durability: str = "fsync",
             n: int = 14, seed_messages: int = 20_000) -> dict:
    """Small transactions of the single-message mix through the real writer thread.

    Each round is what ``n`` single-message requests cause in e2e ``--mode single``
    (one write transaction per ~14 requests there): an accept of ``n`` messages, a
    lease, an outcome and a receipt batch (urgent), each committed (``commit_sync``) in a
    transaction of its own. Reported: the writer thread's CPU (``pthread_getcpuclockid``;
    user/sys split from /proc in clock ticks) per transaction and per op, the best and
    the median of ``repeats``.
    """
    shutil.rmtree(path, ignore_errors=True)
    store = LmdbStore.open(path, durability=durability, map_size=1 << 30)  # type: ignore[arg-type]
    seed = WriteBatch()
    for i in range(10_000):
        seed.put_recipient(RecipientRecord(
            phone=f"+1555{i:07d}", consent="subscribed", consent_source="api",
            consent_at=T0 - 86_400, region="US", state="NY", zones=("America/New_York",)))
    store._run_group([seed])
    # Older traffic, so the B-trees have a realistic depth (ids sort by time as in the
    # gateway: new messages land at the right edge).
    for r in range(seed_messages // 1000):
        for group in _lc_batches(_LcInputs(r, 1000)):
            store._run_group(group)
    store.start()
    writer = next(t for t in threading.enumerate() if t.name == "store-writer")
    assert writer.ident is not None and writer.native_id is not None
    clock = time.pthread_getcpuclockid(writer.ident)
    lease = Lease("c1", (0,), T0)
    runs: list[tuple[float, float, float, float, int, int, int]] = []
    base = seed_messages // 1000 + 1
    try:
        for rep in range(repeats):
            rounds_batches: list[list[WriteBatch]] = []
            for r in range(rounds):
                x = _LcInputs(base + rep * rounds + r, n)
                accept = WriteBatch()
                outcome = WriteBatch(urgent=True)
                lease_b = WriteBatch(urgent=True)
                receipt = WriteBatch(urgent=True)
                for i, mid in enumerate(x.ids):
                    phone = f"+1555{(r * n + i) * 7919 % 10_000:07d}"
                    accept.put_message(x.records[i])
                    accept.outbox_add(T0, mid)
                    accept.update_recipient(phone, x.sends[i])
                    accept.append_event(x.queued[i])
                    lease_b.outbox_remove(T0, mid)
                    lease_b.outbox_add(T0 + 30, mid, lease)
                    outcome.put_carrier_id("c1", x.cids[i], mid, 0, T0 + 1)
                    outcome.outbox_remove(T0 + 30, mid)
                    outcome.update_message(mid, _lc_submitted)
                    outcome.append_event(x.submitted[i])
                    receipt.update_message(mid, _lc_delivered)
                    receipt.append_event(x.receipts[i])
                    receipt.append_event(x.delivered[i])
                rounds_batches.append([accept, lease_b, outcome, receipt])
            s = store.statistics()
            txns0, ops0 = s.txns, s.ops
            u0, k0 = _thread_user_sys(writer.native_id)
            b0 = _thread_wchar(writer.native_id)
            c0 = time.clock_gettime(clock)
            w0 = time.perf_counter()
            for batches in rounds_batches:
                for b in batches:
                    store.commit_sync(b)
            wall = time.perf_counter() - w0
            cpu = time.clock_gettime(clock) - c0
            u1, k1 = _thread_user_sys(writer.native_id)
            written = _thread_wchar(writer.native_id) - b0
            s = store.statistics()
            runs.append((cpu, u1 - u0, k1 - k0, wall, s.txns - txns0, s.ops - ops0, written))
    finally:
        store.close()
    per_txn = sorted(r[0] / r[4] * 1e6 for r in runs)
    best = min(runs, key=lambda r: r[0] / r[4])
    return {
        "durability": durability,
        "txns_per_repeat": best[4],
        "ops_per_txn": round(best[5] / best[4], 1),
        "writer_cpu_us_per_txn_best": round(per_txn[0], 1),
        "writer_cpu_us_per_txn_median": round(per_txn[len(per_txn) // 2], 1),
        "writer_cpu_us_per_op_best": round(best[0] / best[5] * 1e6, 2),
        "writer_user_sys_us_per_txn_best": [round(best[1] / best[4] * 1e6),
                                            round(best[2] / best[4] * 1e6)],
        "wall_us_per_txn_best": round(min(r[3] / r[4] for r in runs) * 1e6, 1),
        # pages LMDB wrote per transaction (dirty pages + the meta page)
        "pages_written_per_txn": round(sum(r[6] for r in runs) / sum(r[4] for r in runs)
                                       / store._page_size, 2),
    }


def _builders(repeats: int, n: int = 1000) -> dict:
    """CPU per message of the per-message ``WriteBatch`` builders (module docstring)."""
    x = _LcInputs(0, n)
    lease = x.lease
    best = float("inf")
    for _ in range(repeats):
        c0 = time.thread_time()
        for _ in range(10):
            accept, leases, outcome, receipt = (WriteBatch(), WriteBatch(urgent=True),
                                                WriteBatch(urgent=True), WriteBatch(urgent=True))
            for i, mid in enumerate(x.ids):
                accept.put_message(x.records[i])
                accept.outbox_add(T0, mid)
                accept.append_event(x.queued[i])
                leases.outbox_remove(T0, mid)
                leases.outbox_add(T0 + 30, mid, lease)
                outcome.put_carrier_id("c1", x.cids[i], mid, 0, T0 + 1)
                outcome.outbox_remove(T0 + 30, mid)
                outcome.update_message(mid, _lc_submitted)
                outcome.append_event(x.submitted[i])
                receipt.append_event(x.receipts[i])
                receipt.append_event(x.delivered[i])
        best = min(best, (time.thread_time() - c0) / (10 * n))
    return {"builders_us_per_message_best": round(best * 1e6, 3), "repeats": repeats}


def _process_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)  # us resolution (os.times: clock ticks)
    return r.ru_utime + r.ru_stime


async def _trio_txn_case(path: Path, n: int, repeats: int, waiter: bool) -> dict:
    shutil.rmtree(path, ignore_errors=True)
    ev = Event(seq=0, at=T0, type="message.status", message_id="m1", phone="+15551234567",
               status="queued", data=_STATUS_DATA)
    runs: list[tuple[float, float]] = []
    async with open_store(path, durability="os") as store, trio.open_nursery() as nursery:
        if waiter:
            async def follow() -> None:
                seq = store.last_event_seq()
                while True:
                    await store.wait_for_events(seq)
                    seq = store.last_event_seq()
            nursery.start_soon(follow)
        await trio.sleep(0.05)
        writer = next(t for t in threading.enumerate() if t is not threading.main_thread())
        assert writer.ident is not None
        clock = time.pthread_getcpuclockid(writer.ident)
        for _ in range(repeats):
            batches = []
            for _ in range(n):
                b = WriteBatch(urgent=True)
                b.append_event(ev)
                batches.append(b)
            c0, p0 = time.clock_gettime(clock), _process_cpu()
            for b in batches:
                await store.commit(b)
            runs.append(((time.clock_gettime(clock) - c0) / n, (_process_cpu() - p0) / n))
        nursery.cancel_scope.cancel()
    writer_us = sorted(r[0] * 1e6 for r in runs)
    process_us = sorted(r[1] * 1e6 for r in runs)
    return {"waiter": waiter, "txns_per_repeat": n,
            "writer_cpu_us_per_txn_median": round(writer_us[len(runs) // 2], 2),
            "writer_cpu_us_per_txn_best": round(writer_us[0], 2),
            "process_cpu_us_per_txn_median": round(process_us[len(runs) // 2], 2)}


async def _trio_txn(path: Path, repeats: int) -> list[dict]:
    return [await _trio_txn_case(path, 3000, repeats, waiter) for waiter in (True, False)]


async def _main(base: Path, seconds: float) -> dict:
    out: dict = {"bench": "store", "seconds_per_case": seconds, "cases": {}}
    for durability in ("fsync", "os"):
        for size in (1, 100, 1000):
            for mode, tasks in (("seq", 1), ("concurrent", 64)):
                key = f"{durability}/batch{size}/{mode}"
                out["cases"][key] = await _case(base / "s", durability, size, tasks, seconds)
    out["lifecycle"] = _lifecycle(base / "lc", 20)
    out["raw_lmdb"] = _raw_lmdb(base / "raw", 100_000, 200)
    out["reads"] = await _reads(base / "reads", 100_000)
    out["python"] = sys.version.split()[0]
    out["lmdb"] = lmdb.__version__
    out["cpus"] = os.cpu_count()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=1.0, help="duration of each case")
    parser.add_argument("--dir", default=None, help="where to put the stores (default: tmp)")
    parser.add_argument("--lifecycle-only", action="store_true",
                        help="only the writer's CPU per message lifecycle")
    parser.add_argument("--rounds", type=int, default=20,
                        help="lifecycle rounds of 1,000 messages")
    parser.add_argument("--durability", default="os", choices=("os", "fsync"),
                        help="lifecycle: os (CPU of the apply) or fsync (+ the commit's)")
    parser.add_argument("--txn-mix", action="store_true",
                        help="only the writer's CPU per small transaction (single-mode mix, "
                             "fsync and os)")
    parser.add_argument("--repeats", type=int, default=5,
                        help="txn-mix / builders / trio-txn repeats")
    parser.add_argument("--builders", action="store_true",
                        help="only the per-message WriteBatch builders' CPU")
    parser.add_argument("--trio-txn", action="store_true",
                        help="only the CPU per 1-event transaction through open_store")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        if args.builders:
            result = {"bench": "store", "builders": _builders(max(args.repeats, 5))}
        elif args.trio_txn:
            result = {"bench": "store",
                      "trio_txn": trio.run(_trio_txn, Path(tmp) / "tt", max(args.repeats, 5))}
        elif args.txn_mix:
            result = {"bench": "store", "txn_mix": [
                _txn_mix(Path(tmp) / "tm", args.rounds * 25, args.repeats, durability=d)
                for d in ("fsync", "os")]}
        elif args.lifecycle_only:
            result = {"bench": "store", "lifecycle": _lifecycle(Path(tmp) / "lc", args.rounds,
                                                              durability=args.durability)}
        else:
            result = trio.run(_main, Path(tmp), args.seconds)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
