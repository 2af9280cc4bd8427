"""LMDB-only behaviour: group commit, durability, map growth and map full, disk errors,
reads during writes and resizes, shutdown."""

from __future__ import annotations

import errno
import threading
from pathlib import Path

import lmdb
import msgspec
import pytest
import trio
import trio.lowlevel
import trio.testing

from gateway.store import (
    CommitResult,
    LmdbStore,
    MessageRecord,
    StoreClosedError,
    StoreFullError,
    StoreUnavailableError,
    WriteBatch,
    open_store,
)

from .helpers import T0, event, message

TIMEOUT = 30


async def _hold_writer(store: LmdbStore, gate: threading.Event, nursery: trio.Nursery) -> None:
    """Block the writer thread (inside a transaction) until ``gate`` is set.

    Returns once the writer is inside that transaction, so every batch committed from
    now on queues behind it, deterministically.
    """
    entered = threading.Event()

    def hold(old: MessageRecord | None) -> None:
        entered.set()
        gate.wait(TIMEOUT)

    batch = WriteBatch()
    batch.update_message("hold", hold)
    nursery.start_soon(store.commit, batch)
    await trio.to_thread.run_sync(entered.wait, TIMEOUT)


def _one(mid: str, text: str | None = None) -> WriteBatch:
    batch = WriteBatch()
    rec = message(mid) if text is None else msgspec.structs.replace(message(mid), text=text)
    batch.put_message(rec)
    batch.outbox_add(T0, mid)
    batch.append_event(event(mid=mid))
    return batch


async def test_group_commit_merges_waiting_batches(tmp_path: Path) -> None:
    gate = threading.Event()
    with trio.fail_after(TIMEOUT):
        async with open_store(tmp_path / "s") as store, trio.open_nursery() as nursery:
            await _hold_writer(store, gate, nursery)
            for i in range(100):
                nursery.start_soon(store.commit, _one(f"m{i}"))
            await trio.testing.wait_all_tasks_blocked()  # all 100 are queued now
            gate.set()
        stats = store.statistics()
    assert stats.commits == 101 and stats.failed == 0
    assert stats.txns <= 2  # the holder, then everything that queued behind it
    assert stats.max_group_size >= 100
    assert stats.avg_group_size > 50
    assert stats.ops == 301
    assert stats.last_commit_latency > 0 and stats.map_used > 0


async def test_concurrent_commits_share_transactions(tmp_path: Path) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_store(tmp_path / "s") as store:
            async with trio.open_nursery() as nursery:
                for i in range(100):
                    nursery.start_soon(store.commit, _one(f"m{i}"))
            stats = store.statistics()
            assert stats.commits == 100
            assert stats.txns < 50  # group commit; typically 2 or 3
            assert store.outbox_depth() == 100
            assert sorted(e.seq for e in store.events_after(0, 1000)) == list(range(1, 101))


@pytest.mark.parametrize("durability", ["fsync", "os"])
async def test_data_persists_across_close_and_reopen(tmp_path: Path, durability: str) -> None:
    path = tmp_path / "s"
    with trio.fail_after(TIMEOUT):
        async with open_store(path, durability=durability) as store:  # type: ignore[arg-type]
            for i in range(5):
                await store.commit(_one(f"m{i}"))
            assert store.statistics().durability == durability
    reopened = LmdbStore.open(path)
    try:
        assert len(reopened.get_messages(f"m{i}" for i in range(5))) == 5
        assert reopened.outbox_depth() == 5
        assert reopened.last_event_seq() == 5
    finally:
        reopened.close()


async def test_shutdown_commits_everything_queued(tmp_path: Path) -> None:
    gate = threading.Event()
    results: list[tuple[int, ...]] = []

    async def commit(store: LmdbStore, i: int) -> None:
        results.append((await store.commit(_one(f"q{i}"))).event_seqs)

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery, open_store(tmp_path / "s") as store:
            await _hold_writer(store, gate, nursery)
            for i in range(10):
                nursery.start_soon(commit, store, i)
            await trio.testing.wait_all_tasks_blocked()
            gate.set()
                # leaving the block now: the writer must still commit the 10 queued batches
        assert len(results) == 10
        with pytest.raises(StoreClosedError):
            await store.commit(_one("late"))
    reopened = LmdbStore.open(tmp_path / "s")
    try:
        assert len(reopened.get_messages(f"q{i}" for i in range(10))) == 10
    finally:
        reopened.close()


def test_sync_api_outside_trio(tmp_path: Path) -> None:
    store = LmdbStore.open(tmp_path / "s", durability="os", os_sync_interval=0.01)
    store.start()
    try:
        result = store.commit_sync(_one("s1"), timeout=TIMEOUT)
        assert result.event_seqs == (1,)
        assert store.get_message("s1") is not None
    finally:
        store.close()
    store.close()  # idempotent
    with pytest.raises(StoreClosedError):
        store.commit_sync(_one("s2"))


async def test_map_full_fails_cleanly_and_the_store_stays_usable(tmp_path: Path) -> None:
    path = tmp_path / "s"
    big = WriteBatch()
    for i in range(1500):
        big.put_message(msgspec.structs.replace(message(f"big{i}"), text="x" * 1000))
    with trio.fail_after(TIMEOUT):
        async with open_store(path, map_size=1 << 20, max_map_size=1 << 20) as store:
            await store.commit(_one("before"))
            with pytest.raises(StoreFullError, match="map full") as info:
                await store.commit(big)
            assert isinstance(info.value.__cause__, lmdb.MapFullError)
            assert store.get_message("big0") is None  # nothing of the failed group
            assert store.get_message("before") is not None
            await store.commit(_one("after"))  # small writes still fit
            stats = store.statistics()
            assert stats.failed == 1 and stats.map_size == 1 << 20
        # recovery: the operator raises the cap; the same batch now fits
        async with open_store(path, map_size=1 << 20, max_map_size=64 << 20) as store:
            await store.commit(big)
            assert store.get_message("big1499") is not None
            assert store.get_message("after") is not None
            assert store.statistics().map_grows >= 1


async def test_map_grows_while_readers_read(tmp_path: Path) -> None:
    """Pairs written together are always read together, also across map resizes."""
    stop = threading.Event()
    torn: list[int] = []
    reads = [0]

    def reader(store: LmdbStore) -> None:
        while not stop.is_set():
            last = store.last_event_seq()
            for i in (last, max(0, last - 1)):
                got = store.get_messages([f"a{i}", f"b{i}"])
                if len(got) == 1:
                    torn.append(i)
            reads[0] += 1

    async def trio_reader(store: LmdbStore) -> None:
        while not stop.is_set():
            n = store.outbox_depth()
            assert n % 2 == 0
            await trio.lowlevel.checkpoint()

    with trio.fail_after(TIMEOUT):
        async with open_store(
            tmp_path / "s", durability="os", map_size=1 << 20, max_map_size=256 << 20
        ) as store:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(trio.to_thread.run_sync, reader, store)
                nursery.start_soon(trio_reader, store)
                for i in range(1, 150):
                    batch = WriteBatch()
                    for name in (f"a{i}", f"b{i}"):
                        batch.put_message(
                            msgspec.structs.replace(message(name), text="y" * 8000)
                        )
                        batch.outbox_add(T0, name)
                    batch.append_event(event())
                    await store.commit(batch)
                stop.set()
            assert store.statistics().map_grows >= 2
    assert torn == [] and reads[0] > 0


@pytest.mark.parametrize(
    ("cause", "expected"),
    [
        (lmdb.Error("mdb_txn_commit", errno.EIO), StoreUnavailableError),
        (lmdb.DiskError("mdb_txn_commit", errno.ENOSPC), StoreFullError),
    ],
)
async def test_disk_error_fails_the_whole_group_and_writes_nothing(
    tmp_path: Path, cause: lmdb.Error, expected: type[Exception]
) -> None:
    # An lmdb error raised inside the transaction stands in for the disk failing: it
    # takes the same path (fatal for the group, transaction aborted).
    gate = threading.Event()

    def disk_error(old: MessageRecord | None) -> None:
        gate.wait(TIMEOUT)
        raise cause

    failing = WriteBatch()
    failing.put_message(message("x"))
    failing.update_message("x", disk_error)
    outcomes: dict[str, str] = {}

    async def commit(name: str, batch: WriteBatch) -> None:
        try:
            await store.commit(batch)
            outcomes[name] = "ok"
        except expected as exc:
            assert exc.__cause__ is cause
            outcomes[name] = "failed"

    with trio.fail_after(TIMEOUT):
        async with open_store(tmp_path / "s") as store:
            async with trio.open_nursery() as nursery:
                await _hold_writer(store, gate, nursery)
                nursery.start_soon(commit, "failing", failing)
                await trio.testing.wait_all_tasks_blocked()
                nursery.start_soon(commit, "bystander", _one("y"))
                await trio.testing.wait_all_tasks_blocked()
                gate.set()
            assert outcomes == {"failing": "failed", "bystander": "failed"}
            assert store.get_message("x") is None and store.get_message("y") is None
            await store.commit(_one("z"))  # the next group is fine
            assert store.get_message("z") is not None


async def test_a_failing_batch_does_not_fail_its_group(tmp_path: Path) -> None:
    gate = threading.Event()

    def bad(old: MessageRecord | None) -> None:
        raise ValueError("bad update")

    outcomes: dict[str, str] = {}

    async def commit(name: str, batch: WriteBatch) -> None:
        try:
            await store.commit(batch)
            outcomes[name] = "ok"
        except ValueError:
            outcomes[name] = "failed"

    with trio.fail_after(TIMEOUT):
        async with open_store(tmp_path / "s") as store:
            async with trio.open_nursery() as nursery:
                await _hold_writer(store, gate, nursery)
                nursery.start_soon(commit, "a", _one("a"))
                failing = _one("b")
                failing.update_message("b", bad)
                nursery.start_soon(commit, "b", failing)
                nursery.start_soon(commit, "c", _one("c"))
                await trio.testing.wait_all_tasks_blocked()
                gate.set()
            assert outcomes == {"a": "ok", "b": "failed", "c": "ok"}
            assert store.get_message("b") is None
            # events of the failed batch took no sequence numbers
            assert sorted(e.message_id or "" for e in store.events_after(0, 10)) == ["a", "c"]
            assert store.statistics().txns == 2


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    store = LmdbStore.open(tmp_path / "s")
    store.close()
    env = lmdb.open(str(tmp_path / "s"), max_dbs=10)
    with env.begin(write=True) as txn:
        txn.put(b"schema", (99).to_bytes(4, "big"), db=env.open_db(b"meta", txn=txn))
    env.close()
    with pytest.raises(RuntimeError, match="newer"):
        LmdbStore.open(tmp_path / "s")


def test_bad_durability_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="durability"):
        LmdbStore.open(tmp_path / "s", durability="maybe")  # type: ignore[arg-type]


def _meta_seq(path: Path) -> bytes | None:
    env = lmdb.open(str(path), max_dbs=20, readonly=True, lock=False)
    try:
        with env.begin() as txn:
            return txn.get(b"event_seq", db=env.open_db(b"meta", txn=txn, create=False))
    finally:
        env.close()


def test_event_counter_written_only_when_the_newest_event_goes(tmp_path: Path) -> None:
    # Appends leave meta alone (the last key is the counter: one B-tree page less per
    # commit); a group whose later batch prunes what an earlier one appended writes it.
    path = tmp_path / "s"
    store = LmdbStore.open(path)
    try:
        for _ in range(3):
            batch = WriteBatch()
            batch.append_event(event())
            store._run_group([batch])
    finally:
        store.close()
    assert _meta_seq(path) is None
    store = LmdbStore.open(path)
    try:
        first, second = WriteBatch(), WriteBatch()
        first.append_event(event())
        first.append_event(event())
        second.delete_events_through(5)
        outcomes = store._run_group([first, second])
        assert [getattr(o, "event_seqs", o) for o in outcomes] == [(4, 5), ()]
        assert store.events_after(0, 10) == []
        assert store.last_event_seq() == 5
    finally:
        store.close()
    assert _meta_seq(path) == (5).to_bytes(8, "big")
    store = LmdbStore.open(path)
    try:
        batch = WriteBatch()
        batch.append_event(event())
        assert store._run_group([batch])[0] == CommitResult((6,))
    finally:
        store.close()
    assert _meta_seq(path) == (5).to_bytes(8, "big")  # the newest (6) exists again
