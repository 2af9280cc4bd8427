"""``[store] writer = "process"``: what only the child-process writer does (writer_process.py).

The store contract itself runs against this writer too (conftest's "lmdb-process" kind);
here: batches that cannot travel, a child that dies, the parent adopting the map the child
grows, ``_reports`` copied back, flushing and the child's exit at close.

No ``autojump_clock`` here: the commits wait on the writer thread and the child process,
and an autojump clock would jump (and fire ``fail_after``) while they work; ``fail_after``
bounds every wait on the real clock instead, no test sleeps.
"""

from __future__ import annotations

import functools
import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, ClassVar

import lmdb
import msgspec
import pytest
import trio
import trio.testing

from gateway.store import (
    CommitResult,
    LmdbStore,
    MessageRecord,
    StoreFullError,
    StoreUnavailableError,
    WriteBatch,
    open_store,
)
from gateway.store.keys import error_key, to_ms
from gateway.store.kv import Db, KvTxn
from gateway.store.portable import Portable
from gateway.store.retention import PruneErrors

from .helpers import T0, error, event, message

TIMEOUT = 30  # starting the child takes a fraction of a second; generous for a loaded box
PROMPT = 5  # a dead child must fail a commit in well under this


def _one(mid: str, text: str | None = None) -> WriteBatch:
    batch = WriteBatch()
    rec = message(mid) if text is None else msgspec.structs.replace(message(mid), text=text)
    batch.put_message(rec)
    batch.outbox_add(T0, mid)
    batch.append_event(event(mid=mid))
    return batch


def _unpicklable(mid: str) -> WriteBatch:
    """A batch whose update function is a lambda: it cannot go to the child."""
    batch = WriteBatch()
    batch.put_message(message(mid))
    batch.update_message(mid, lambda old: old)
    return batch


@asynccontextmanager
async def _process_store(path: Path, **kw: Any) -> AsyncIterator[LmdbStore]:
    """``LmdbStore.open(..., writer="process")`` with its writer NOT running yet (see
    ``_one_group``); closed (writer stopped, child waited for) on the way out."""
    opener = functools.partial(LmdbStore.open, path, writer="process", **kw)
    store = await trio.to_thread.run_sync(opener)
    try:
        yield store
    finally:
        await trio.to_thread.run_sync(store.close)


async def _one_group(store: LmdbStore,
                     batches: list[WriteBatch]) -> list[CommitResult | Exception]:
    """Commit ``batches`` as ONE group, in this order: each is queued (its task blocked
    on the commit) before the next, and only then the writer starts."""
    outcomes: list[CommitResult | Exception | None] = [None] * len(batches)

    async def one(i: int) -> None:
        try:
            outcomes[i] = await store.commit(batches[i])
        except Exception as exc:
            outcomes[i] = exc

    async with trio.open_nursery() as nursery:
        for i in range(len(batches)):
            nursery.start_soon(one, i)
            await trio.testing.wait_all_tasks_blocked()
        assert store.statistics().queue_depth == len(batches)
        store.start()
    assert store.statistics().txns == 1 and store.statistics().max_group_size == len(batches)
    return [o for o in outcomes if o is not None]


# batches that cannot travel ---------------------------------------------------------------


async def test_an_unpicklable_batch_fails_alone_and_its_group_commits(tmp_path: Path) -> None:
    with trio.fail_after(TIMEOUT):
        async with _process_store(tmp_path / "s", durability="os") as store:
            good1, bad, good2 = await _one_group(
                store, [_one("g1"), _unpicklable("bad"), _one("g2")])
            assert isinstance(bad, TypeError) and "cannot be pickled" in str(bad)
            # the other outcomes stay with their batches (the refused one is not sent)
            assert good1 == CommitResult((1,)) and good2 == CommitResult((2,))
            assert store.get_message("g1") is not None and store.get_message("g2") is not None
            assert store.get_message("bad") is None
            stats = store.statistics()
            assert (stats.commits, stats.failed) == (2, 1)
            # a group of nothing but a refused batch sends nothing; the child still serves
            with pytest.raises(TypeError, match="cannot be pickled"):
                await store.commit(_unpicklable("bad2"))
            assert await store.commit(_one("g3")) == CommitResult((3,))
            assert store.get_message("bad2") is None


class _OddError(Exception):
    """Its args do not rebuild it: it cannot be unpickled in the parent."""

    def __init__(self, a: str, b: str) -> None:
        super().__init__(f"{a}/{b}")


def _odd_failure(old: MessageRecord | None) -> MessageRecord | None:
    raise _OddError("rule", "bug")


async def test_an_exception_that_cannot_travel_back_fails_its_batch_by_its_text(
        tmp_path: Path) -> None:
    bad = WriteBatch()
    bad.put_message(message("bad"))
    bad.update_message("bad", _odd_failure)
    with trio.fail_after(TIMEOUT):
        async with _process_store(tmp_path / "s", durability="os") as store:
            good, failed = await _one_group(store, [_one("g1"), bad])
            assert good == CommitResult((1,))
            assert isinstance(failed, StoreUnavailableError)
            assert str(failed) == "_OddError: rule/bug"
            assert store.get_message("bad") is None and store.get_message("g1") is not None
            assert await store.commit(_one("g2")) == CommitResult((2,))


def _refuse_to_load() -> None:
    raise RuntimeError("this object cannot be loaded in the writer process")


class _Unloadable:
    """Pickles in the parent, fails to unpickle in the child: like an update function
    defined in a script's ``__main__`` (the child's ``__main__`` is writer_child)."""

    def __reduce__(self) -> tuple[Any, tuple[()]]:
        return _refuse_to_load, ()

    def __call__(self, old: MessageRecord | None) -> MessageRecord | None:
        return old


@pytest.mark.xfail(strict=True, raises=AssertionError,
                   reason="writer_process.child_main unpickles the group outside any "
                   "try: one batch that fails to load kills the child, its whole group and "
                   "every later commit fail with StoreUnavailableError")
def test_a_batch_that_cannot_be_loaded_in_the_child_fails_alone(tmp_path: Path) -> None:
    # A sync test around trio.run: the assertions run outside trio, so the xfail sees
    # their AssertionError itself (not wrapped in a nursery's ExceptionGroup).
    bad = WriteBatch()
    bad.update_message("bad", _Unloadable())

    async def run() -> tuple[list[CommitResult | Exception], CommitResult | Exception]:
        with trio.fail_after(TIMEOUT):
            async with _process_store(tmp_path / "s", durability="os") as store:
                outcomes = await _one_group(store, [_one("g1"), bad, _one("g2")])
                try:
                    later: CommitResult | Exception = await store.commit(_one("g3"))
                except Exception as exc:
                    later = exc
                return outcomes, later

    (good1, failed, good2), later = trio.run(run)
    assert not isinstance(failed, CommitResult)
    assert good1 == CommitResult((1,)) and good2 == CommitResult((2,))
    assert later == CommitResult((3,))


# a dead child -------------------------------------------------------------------------------


async def test_a_dead_child_fails_commits_promptly_and_reads_go_on(tmp_path: Path) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_store(tmp_path / "s", writer="process", durability="os") as store:
            await store.commit(_one("before"))
            assert store._child is not None
            proc = store._child._proc
            proc.kill()
            assert await trio.to_thread.run_sync(proc.wait) == -signal.SIGKILL
            with trio.fail_after(PROMPT):
                with pytest.raises(StoreUnavailableError, match="writer process ended"):
                    await store.commit(_one("after"))
                # and every later one, without waiting for anything
                with pytest.raises(StoreUnavailableError, match="writer process ended"):
                    await store.commit(_one("later"))
            # reads are the parent's own: they still work
            assert store.get_message("before") is not None
            assert store.get_message("after") is None and store.get_message("later") is None
            assert store.outbox_depth() == 1 and store.last_event_seq() == 1
            stats = store.statistics()
            assert (stats.commits, stats.failed) == (1, 2)
        # leaving the block closed the store without hanging (fail_after)
    reopened = LmdbStore.open(tmp_path / "s")
    try:
        assert reopened.get_message("before") is not None
        assert reopened.last_event_seq() == 1
    finally:
        reopened.close()


# map growth ---------------------------------------------------------------------------------


async def test_the_parent_adopts_the_map_the_child_grows(tmp_path: Path) -> None:
    resized: list[lmdb.MapResizedError] = []
    sizes: list[int] = []
    text = "z" * 8000
    with trio.fail_after(TIMEOUT):
        async with open_store(tmp_path / "s", writer="process", durability="os",
                              map_size=1 << 20, max_map_size=256 << 20) as store:
            # A read that meets a map the child grew and the writer thread did not adopt
            # falls back to adopting it itself (LmdbStore._read): record when it has to.
            read_once = store._read_once

            def watched(fn: Any) -> Any:
                try:
                    return read_once(fn)
                except lmdb.MapResizedError as exc:
                    resized.append(exc)
                    raise

            store._read_once = watched  # type: ignore[method-assign]
            for i in range(100):
                batch = WriteBatch()
                recs = [msgspec.structs.replace(message(f"m{i}.{j}"), text=text)
                        for j in range(10)]
                for rec in recs:
                    batch.put_message(rec)
                await store.commit(batch)
                # right after the commit, every value of it reads back in the parent
                assert store.get_messages(r.id for r in recs) == {r.id: r for r in recs}
                sizes.append(store.statistics().map_size)
            stats = store.statistics()
            assert stats.map_size == store._env.info()["map_size"]  # the parent's own map
            assert len(store.get_messages(f"m{i}.{j}" for i in range(100) for j in range(10))) \
                == 1000
    assert resized == []  # the writer thread adopted every growth before waking the commit
    assert sizes == sorted(sizes)
    assert sizes[0] <= 2 << 20 and sizes[-1] >= 8 << 20
    assert len(set(sizes)) >= 4  # grew several times
    assert stats.map_grows >= 3  # the child's count


async def test_map_full_in_the_child_fails_the_group_and_the_store_stays_usable(
        tmp_path: Path) -> None:
    big = WriteBatch()
    for i in range(1500):
        big.put_message(msgspec.structs.replace(message(f"big{i}"), text="x" * 1000))
    with trio.fail_after(TIMEOUT):
        async with open_store(tmp_path / "s", writer="process", durability="os",
                              map_size=1 << 20, max_map_size=1 << 20) as store:
            await store.commit(_one("before"))
            with pytest.raises(StoreFullError, match="map full"):
                await store.commit(big)
            assert store.get_message("big0") is None
            await store.commit(_one("after"))
            assert store.get_message("before") is not None
            assert store.get_message("after") is not None
            stats = store.statistics()
            assert stats.failed == 1 and stats.map_size == 1 << 20


# reports ------------------------------------------------------------------------------------


class _Probe(Portable):
    """A run_in_txn function that reports what it saw, and where it ran."""

    __slots__ = ("found", "keys", "pid")
    _reports: ClassVar = ("found", "pid")

    def __init__(self, keys: list[bytes]) -> None:
        self.keys = tuple(keys)
        self.found = -1
        self.pid = 0

    def __call__(self, tx: KvTxn) -> tuple[()]:
        self.found = sum(tx.get(Db.MESSAGES, k) is not None for k in self.keys)
        self.pid = os.getpid()
        return ()


def _fail_txn(tx: KvTxn) -> tuple[()]:
    raise RuntimeError("a later op fails")


async def test_run_in_txn_reports_are_copied_back(tmp_path: Path) -> None:
    seed = WriteBatch()
    for i in range(3):
        seed.add_error("+1", error(T0 + i))
    seed.put_message(message("m1"))
    prune = PruneErrors([error_key("+1", to_ms(T0 + i)) for i in (0, 2)]
                        + [error_key("+1", 99)])
    probe = _Probe([b"m1", b"m2", b"absent"])
    reporting = WriteBatch()
    reporting.put_message(message("m2"))
    reporting.run_in_txn(prune)
    reporting.run_in_txn(probe)
    failing_probe = _Probe([b"m1"])
    failing = WriteBatch()
    failing.run_in_txn(failing_probe)
    failing.run_in_txn(_fail_txn)
    with trio.fail_after(TIMEOUT):
        async with _process_store(tmp_path / "s", durability="os") as store:
            assert store._child is not None
            child_pid = store._child._proc.pid
            # a refused batch ahead of it: the reports still go to the right objects
            refused, seeded, committed, failed = await _one_group(
                store, [_unpicklable("x"), seed, reporting, failing])
            assert isinstance(refused, TypeError) and isinstance(failed, RuntimeError)
            assert isinstance(seeded, CommitResult) and isinstance(committed, CommitResult)
            assert prune.deleted == 2
            assert (probe.found, probe.pid) == (2, child_pid)  # ran in the child, m2 included
            assert child_pid != os.getpid()
            assert (failing_probe.found, failing_probe.pid) == (-1, 0)  # not committed
            assert [e.at for e in store.get_errors("+1")] == [T0 + 1]


# durability and shutdown ----------------------------------------------------------------------


async def test_os_durability_in_the_child_keeps_data_across_close(tmp_path: Path) -> None:
    path = tmp_path / "s"
    with trio.fail_after(TIMEOUT):
        # No idle flush during the test (60 s): the flush that counts is the child's at close.
        async with open_store(path, writer="process", durability="os",
                              os_sync_interval=60) as store:
            assert store._child is not None
            proc = store._child._proc
            for i in range(5):
                await store.commit(_one(f"m{i}"))
            assert store.statistics().durability == "os"
    # The child left through its close path (which flushes ``os`` data), not by a signal.
    assert proc.returncode == 0
    reopened = LmdbStore.open(path)  # the thread writer reads what the child wrote
    try:
        assert len(reopened.get_messages(f"m{i}" for i in range(5))) == 5
        assert reopened.outbox_depth() == 5 and reopened.last_event_seq() == 5
        reopened.start()
        assert reopened.commit_sync(_one("m5"), TIMEOUT).event_seqs == (6,)
    finally:
        reopened.close()


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def test_the_child_exits_when_the_store_closes(tmp_path: Path) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_store(tmp_path / "s", writer="process") as store:
            assert store._child is not None
            proc = store._child._proc
            assert proc.poll() is None and not _gone(proc.pid)
            await store.commit(_one("m1"))
        assert proc.poll() == 0 and _gone(proc.pid)


def test_the_child_exits_when_a_sync_store_closes(tmp_path: Path) -> None:
    store = LmdbStore.open(tmp_path / "s", writer="process", durability="os")
    assert store._child is not None
    proc = store._child._proc
    store.start()
    try:
        assert store.commit_sync(_one("m1"), TIMEOUT).event_seqs == (1,)
    finally:
        store.close()
    assert proc.poll() == 0 and _gone(proc.pid)
    store.close()  # idempotent
    # a store that never started its writer stops its child too
    idle = LmdbStore.open(tmp_path / "s", writer="process")
    assert idle._child is not None
    idle_proc = idle._child._proc
    idle.close()
    assert idle_proc.poll() == 0 and _gone(idle_proc.pid)
