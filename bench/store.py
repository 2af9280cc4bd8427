"""Store benchmark: commit throughput of the LMDB store, printed as ONE JSON object.

For each durability mode (fsync, os) and batch size (1, 100, 1000 message records, each
with its outbox entry):
* ``seq``: one trio task committing batch after batch (commit latency bound);
* ``concurrent``: 64 trio tasks committing at once (what group commit is for).
Plus the raw per-put cost inside one transaction and the cost of one fsync'ed
transaction per put (the pattern group commit avoids), and the read costs.

usage: python bench/store.py [--seconds 1.0] [--dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import lmdb
import trio

from gateway.store import MessageRecord, WriteBatch, open_store

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


async def _main(base: Path, seconds: float) -> dict:
    out: dict = {"bench": "store", "seconds_per_case": seconds, "cases": {}}
    for durability in ("fsync", "os"):
        for size in (1, 100, 1000):
            for mode, tasks in (("seq", 1), ("concurrent", 64)):
                key = f"{durability}/batch{size}/{mode}"
                out["cases"][key] = await _case(base / "s", durability, size, tasks, seconds)
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
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        result = trio.run(_main, Path(tmp), args.seconds)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
