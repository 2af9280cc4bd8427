"""In-memory fake of the store for tests of other modules: same interface, same logic.

It runs the store logic (``logic.py``) over dicts with sorted keys instead of LMDB, and
keeps values encoded exactly as LMDB would, so a record that would not survive the real
store does not survive the fake either. ``commit`` applies the batch at once (a trio
checkpoint, no thread, no group commit) and passes the same contract suite as
``LmdbStore`` (tests/store/test_contract.py).

For testing failure paths elsewhere: ``fail_commits(StoreFullError(...))`` makes every
following commit raise a fresh copy of that error until ``fail_commits(None)``.
"""

from __future__ import annotations

import bisect
import copy
import functools
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import TypeVar, cast

import trio

from . import logic
from .batch import WriteBatch
from .errors import StoreClosedError, StoreError
from .kv import Db, KvTxn
from .reads import StoreReads
from .records import (
    CommitResult,
    StoreStats,
)

__all__ = ["MemoryStore", "open_memory_store"]

T = TypeVar("T")
_ABSENT = object()


class _Table:
    __slots__ = ("data", "keys")

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}
        self.keys: list[bytes] = []  # sorted


class _MemTxn:
    """``KvTxn`` over the tables; writes keep an undo log so ``abort`` can roll back."""

    __slots__ = ("_parent", "_tables", "_undo")

    def __init__(self, tables: dict[Db, _Table], parent: _MemTxn | None = None) -> None:
        self._tables = tables
        self._parent = parent
        self._undo: list[tuple[Db, bytes, object]] = []

    def get(self, db: Db, key: bytes) -> bytes | None:
        return self._tables[db].data.get(key)

    def _set(self, db: Db, key: bytes, value: bytes) -> None:
        t = self._tables[db]
        old = t.data.get(key, _ABSENT)
        if old is _ABSENT:
            bisect.insort(t.keys, key)
        t.data[key] = value
        self._undo.append((db, key, old))

    def put(self, db: Db, key: bytes, value: bytes) -> None:
        self._set(db, bytes(key), bytes(value))

    def add(self, db: Db, key: bytes, value: bytes) -> bool:
        if key in self._tables[db].data:
            return False
        self._set(db, bytes(key), bytes(value))
        return True

    def delete(self, db: Db, key: bytes) -> bool:
        t = self._tables[db]
        old = t.data.pop(key, _ABSENT)
        if old is _ABSENT:
            return False
        del t.keys[bisect.bisect_left(t.keys, key)]
        self._undo.append((db, key, old))
        return True

    def getter(self, db: Db) -> Callable[[bytes], bytes | None]:
        return self._tables[db].data.get

    def putter(self, db: Db) -> Callable[[bytes, bytes], object]:
        return functools.partial(self.put, db)

    def deleter(self, db: Db) -> Callable[[bytes], object]:
        return functools.partial(self.delete, db)

    def scan(self, db: Db, start: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        t = self._tables[db]
        i = bisect.bisect_left(t.keys, start)
        while i < len(t.keys):
            key = t.keys[i]
            yield key, t.data[key]
            i += 1

    def last(self, db: Db) -> tuple[bytes, bytes] | None:
        t = self._tables[db]
        if not t.keys:
            return None
        return t.keys[-1], t.data[t.keys[-1]]

    def count(self, db: Db) -> int:
        return len(self._tables[db].keys)

    def child(self) -> KvTxn:
        return _MemTxn(self._tables, self)

    def commit(self) -> None:
        if self._parent is not None:
            self._parent._undo.extend(self._undo)
        self._undo = []

    def abort(self) -> None:
        for db, key, old in reversed(self._undo):
            t = self._tables[db]
            if old is _ABSENT:
                del t.data[key]
                del t.keys[bisect.bisect_left(t.keys, key)]
            else:
                if key not in t.data:
                    bisect.insort(t.keys, key)
                t.data[key] = cast(bytes, old)
        self._undo = []


class MemoryStore(StoreReads):
    """The in-memory ``Store``. Single trio run, not thread-safe."""

    def __init__(self) -> None:
        self._tables = {db: _Table() for db in Db}
        self._closed = False
        self._fail_with: StoreError | None = None
        self._events_changed: trio.Event | None = None
        self._commits = self._failed = self._ops = self._txns = self._events = 0
        self._last_latency = 0.0
        logic.init_schema(_MemTxn(self._tables))
        self.durability = "memory"

    def close(self) -> None:
        """Refuse further commits and reads."""
        self._closed = True

    def fail_commits(self, error: StoreError | None) -> None:
        """Make following commits raise a copy of ``error`` (None: work again)."""
        self._fail_with = error

    # writes --------------------------------------------------------------------------

    async def commit(self, batch: WriteBatch) -> CommitResult:
        """Apply ``batch`` atomically and at once (see ``LmdbStore.commit``)."""
        await trio.lowlevel.checkpoint()
        return self.commit_sync(batch)

    def commit_sync(self, batch: WriteBatch, timeout: float | None = None) -> CommitResult:
        """The same, without the checkpoint."""
        if self._closed:
            raise StoreClosedError("store is closed")
        t0 = time.perf_counter()
        if self._fail_with is not None:
            self._failed += 1
            raise copy.copy(self._fail_with)
        tx = _MemTxn(self._tables)
        outcomes, applied, _ = logic.apply_group(tx, [batch])
        if applied:
            tx.commit()
        else:
            tx.abort()
        self._txns += 1
        outcome = outcomes[0]
        self._last_latency = time.perf_counter() - t0
        if isinstance(outcome, Exception):
            self._failed += 1
            raise outcome
        self._commits += 1
        self._ops += len(batch)
        if outcome.event_seqs:
            self._events += len(outcome.event_seqs)
            ev, self._events_changed = self._events_changed, None
            if ev is not None:
                ev.set()
        return outcome

    async def wait_for_events(self, after_seq: int) -> None:
        """Sleep until an event with ``seq > after_seq`` exists."""
        while self.last_event_seq() <= after_seq:
            if self._events_changed is None:
                self._events_changed = trio.Event()
            await self._events_changed.wait()

    # reads ---------------------------------------------------------------------------

    def _read(self, fn: Callable[[KvTxn], T]) -> T:
        if self._closed:
            raise StoreClosedError("store is closed")
        return fn(_MemTxn(self._tables))

    def statistics(self) -> StoreStats:
        """Counters in the same shape as ``LmdbStore.statistics``."""
        return StoreStats(
            commits=self._commits,
            failed=self._failed,
            batches=self._commits + self._failed,
            ops=self._ops,
            txns=self._txns,
            events=self._events,
            avg_group_size=1.0 if self._txns else 0.0,
            max_group_size=1 if self._txns else 0,
            avg_batch_ops=self._ops / self._commits if self._commits else 0.0,
            last_commit_latency=self._last_latency,
            durability="memory",
        )


@asynccontextmanager
async def open_memory_store() -> AsyncIterator[MemoryStore]:
    """``open_store``'s twin for tests: yields a fresh ``MemoryStore``, closes it on exit."""
    store = MemoryStore()
    try:
        yield store
    finally:
        store.close()
