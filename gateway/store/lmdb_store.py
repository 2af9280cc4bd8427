"""LMDB store: one environment, named databases, group-commit writer thread.

Usage in trio (structured: the writer thread belongs to a task of a nursery that the
context manager owns; leaving it commits what is queued, stops the thread, closes LMDB)::

    async with open_store("./data", durability="fsync") as store:
        batch = WriteBatch()
        batch.put_message(record)
        batch.outbox_add(record.created_at, record.id)
        await store.commit(batch)      # returns once durable
        store.get_message(record.id)   # sync, one short read txn, no thread hop

Outside trio: ``store = LmdbStore.open(path); store.start(); store.commit_sync(batch);
store.close()``.

Durability (``durability=``):

* ``"fsync"`` (default): the environment is opened with ``sync=True, metasync=True``, so
  ``mdb_txn_commit`` fdatasyncs data and meta pages before it returns, and ``commit``
  returns only after that. An acknowledged batch survives a process crash and a power loss.
* ``"os"``: ``sync=False, metasync=False``: a commit ends when LMDB has written the pages
  to the OS page cache. It survives a crash of the process (the kernel still writes the
  pages), NOT a power loss or kernel crash: the last transactions (those since the last
  flush) can be lost, and on a filesystem that does not keep write order the file can even
  be damaged (LMDB's MDB_NOSYNC caveat). To bound that window the writer calls
  ``env.sync(True)`` when it has been idle for ``os_sync_interval`` seconds, and at close.

Reads are synchronous methods, each in one short read transaction opened and closed in
the call (about 0.5 us to open with the spare-txn cache), so trio code calls them directly
without a thread hop. Values are copied out (``buffers=False``), so nothing read points
into the map after the transaction. ``iter_error_segment`` reads each chunk in its own
transaction and holds none across a ``yield``.

Map size: LMDB needs a fixed maximum map. We start at ``map_size`` and grow (double, up to
``max_map_size``): ahead of need when a commit leaves the map 3/4 used, and on
``MapFullError`` (then the group is retried once). Growing needs no transaction alive in
the process (``mdb_env_set_mapsize``; LMDB does not check readers, and a reader on the old
mapping would read unmapped memory), so readers pass a gate that the writer closes for the
instant of the resize. When the map cannot grow, the group fails with ``StoreFullError``;
so does ENOSPC from the disk (``lmdb.DiskError``); any other LMDB error (EIO, panic)
fails it with ``StoreUnavailableError``. Either
way the transaction was aborted: the store holds exactly the groups that committed. After
a failed fsync of the meta page LMDB refuses all further writes (MDB_PANIC), which we
report as ``StoreUnavailableError`` until the process restarts.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from typing import Final, Literal, TypeVar

import lmdb
import trio

from . import logic
from .batch import WriteBatch
from .errors import StoreClosedError, StoreError, StoreFullError, StoreUnavailableError
from .kv import Db, KvTxn
from .reads import StoreReads
from .records import (
    CommitResult,
    StoreStats,
)
from .writer import GroupCommitWriter

__all__ = [
    "DEFAULT_MAP_SIZE",
    "DEFAULT_MAX_MAP_SIZE",
    "Durability",
    "LmdbStore",
    "open_store",
]

Durability = Literal["fsync", "os"]

DEFAULT_MAP_SIZE: Final = 256 << 20  # 256 MiB to start; sparse, grows on demand
DEFAULT_MAX_MAP_SIZE: Final = 64 << 30  # 64 GiB: a cap an operator can raise
_GROW_AT: Final = 0.75  # grow ahead of need when a commit leaves the map this full
_MAP_FULL_RETRIES: Final = 2

T = TypeVar("T")


class _ResizeGate:
    """Readers share it; a map resize takes it alone (see module docstring)."""

    def __init__(self) -> None:
        # Readers take the condition's lock itself: ``with Condition`` is Python code
        # around the same acquire (0.74 -> 0.33 us per read; one or two reads a message).
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._readers = 0
        self._resizing = False

    def enter_read(self) -> None:
        with self._lock:
            while self._resizing:
                self._cond.wait()
            self._readers += 1

    def exit_read(self) -> None:
        with self._lock:
            self._readers -= 1
            if self._resizing and not self._readers:
                self._cond.notify_all()

    def run_exclusive(self, fn: Callable[[], None]) -> None:
        with self._cond:
            self._resizing = True
            try:
                while self._readers:
                    self._cond.wait()
                fn()
            finally:
                self._resizing = False
                self._cond.notify_all()


class _LmdbTxn:
    """``KvTxn`` over an ``lmdb.Transaction``."""

    __slots__ = ("_cursors", "_dbs", "_env", "_txn")

    def __init__(
        self,
        env: lmdb.Environment,
        dbs: dict[Db, lmdb._Database],
        txn: lmdb.Transaction[bytes],
    ) -> None:
        self._env = env
        self._dbs = dbs
        self._txn = txn
        self._cursors: dict[Db, lmdb.Cursor[bytes]] | None = None

    # Positional arguments: py-lmdb parses keywords on every call (~0.1 us).
    def get(self, db: Db, key: bytes) -> bytes | None:
        return self._txn.get(key, None, self._dbs[db])

    def put(self, db: Db, key: bytes, value: bytes) -> None:
        self._txn.put(key, value, True, True, False, self._dbs[db])

    def add(self, db: Db, key: bytes, value: bytes) -> bool:
        return self._txn.put(key, value, True, False, False, self._dbs[db])

    def delete(self, db: Db, key: bytes) -> bool:
        return self._txn.delete(key, b"", self._dbs[db])

    # The writer's hot loop: one cursor per database and transaction, whose bound C
    # methods need neither a handle nor keywords (get/put/delete ~0.15 us cheaper than
    # Transaction's with db=, bench/store.py lifecycle). Cursors die with the transaction.
    def _cursor(self, db: Db) -> lmdb.Cursor[bytes]:
        cursors = self._cursors
        if cursors is None:
            cursors = self._cursors = {}
        cur = cursors.get(db)
        if cur is None:
            cur = cursors[db] = self._txn.cursor(self._dbs[db])
        return cur

    def getter(self, db: Db) -> Callable[[bytes], bytes | None]:
        return self._cursor(db).get

    def putter(self, db: Db) -> Callable[[bytes, bytes], object]:
        return self._cursor(db).put

    def deleter(self, db: Db) -> Callable[[bytes], object]:
        return self._cursor(db).pop  # deletes; returns the old value (None: absent)

    def scan(self, db: Db, start: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        with self._txn.cursor(self._dbs[db]) as cur:
            if not (cur.set_range(start) if start else cur.first()):
                return
            yield from cur

    def last(self, db: Db) -> tuple[bytes, bytes] | None:
        with self._txn.cursor(self._dbs[db]) as cur:
            return cur.item() if cur.last() else None

    def count(self, db: Db) -> int:
        return self._txn.stat(self._dbs[db])["entries"]

    def child(self) -> KvTxn:
        return _LmdbTxn(self._env, self._dbs, self._env.begin(write=True, parent=self._txn))

    def commit(self) -> None:
        self._txn.commit()

    def abort(self) -> None:
        # A transaction whose commit failed is already gone: nothing left to undo.
        with contextlib.suppress(lmdb.Error):
            self._txn.abort()


class LmdbStore(StoreReads):
    """The LMDB-backed ``Store``. Create with ``LmdbStore.open`` or ``open_store``."""

    def __init__(
        self,
        env: lmdb.Environment,
        dbs: dict[Db, lmdb._Database],
        *,
        path: str,
        durability: Durability,
        max_map_size: int,
        os_sync_interval: float,
    ) -> None:
        self._env = env
        self._dbs = dbs
        self.path = path
        self.durability: Durability = durability
        self._gate = _ResizeGate()
        self._map_size = int(env.info()["map_size"])
        self._max_map_size = max(max_map_size, self._map_size)
        self._page_size = int(env.stat()["psize"])
        self._map_used = 0
        self._map_grows = 0
        self._env_closed = False
        self._events_token: trio.lowlevel.TrioToken | None = None
        self._events_changed: trio.Event | None = None
        # The last assigned event sequence number as of the last committed group and that
        # transaction's id (writer thread only; None: read it from the store). It is used
        # only when the next write transaction is the very next one (id + 1): a write by
        # anyone else in between (another process on the same files) makes the group read
        # it again. A failing group resets it.
        self._seq: int | None = None
        self._seq_txn = -1
        self._writer = GroupCommitWriter(
            self._run_group,
            idle_timeout=os_sync_interval if durability == "os" else None,
            on_idle=self._flush if durability == "os" else None,
            on_events=self._events_hook,
        )

    # lifecycle -----------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        durability: Durability = "fsync",
        map_size: int = DEFAULT_MAP_SIZE,
        max_map_size: int = DEFAULT_MAX_MAP_SIZE,
        os_sync_interval: float = 1.0,
    ) -> LmdbStore:
        """Open (creating if needed) the environment at directory ``path``.

        The writer is not running yet: call ``start()`` (or use ``open_store`` in trio).
        Raises ``StoreUnavailableError`` when LMDB cannot open it.
        """
        if durability not in ("fsync", "os"):
            raise ValueError(f"durability must be 'fsync' or 'os', not {durability!r}")
        path = os.fspath(path)
        os.makedirs(path, exist_ok=True)
        sync = durability == "fsync"
        try:
            env = lmdb.open(
                path,
                map_size=map_size,
                max_dbs=len(Db),
                sync=sync,
                metasync=sync,
                max_spare_txns=8,
                # One process owns the store; trio reads on the event loop thread and
                # the writer writes on its own thread.
                max_readers=126,
            )
        except lmdb.Error as exc:
            raise StoreUnavailableError(f"cannot open store at {path}: {exc}") from exc
        try:
            with env.begin(write=True) as txn:
                dbs = {db: env.open_db(db.value, txn=txn) for db in Db}
                logic.init_schema(_LmdbTxn(env, dbs, txn))
        except BaseException:
            env.close()
            raise
        return cls(
            env,
            dbs,
            path=path,
            durability=durability,
            max_map_size=max_map_size,
            os_sync_interval=os_sync_interval,
        )

    def start(self) -> None:
        """Run the writer in a plain daemon thread (for use outside trio)."""
        self._writer.start_thread()

    def close(self) -> None:
        """Commit what is queued, stop the writer, flush and close LMDB. Idempotent.

        Blocks until the writer has finished (under ``open_store``, leaving the context
        manager does all this; there is no need to call it).
        """
        self._writer.stop()
        self._writer.join()
        self._close_env()

    def _close_env(self) -> None:
        if self._env_closed:
            return
        self._env_closed = True
        if self.durability == "os":
            self._flush()
        self._gate.run_exclusive(self._env.close)

    async def _serve_writer(self, *, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        # The writer thread is a trio worker thread owned by this task: the nursery
        # cannot exit before it has flushed and returned.
        await trio.to_thread.run_sync(self._writer.run)

    # writes --------------------------------------------------------------------------

    async def commit(self, batch: WriteBatch) -> CommitResult:
        """Apply ``batch`` atomically (group commit); return once it is durable.

        Raises ``StoreFullError``, ``StoreUnavailableError`` (``StoreClosedError``),
        ``IdempotencyConflictError``, or what an update function raised.
        """
        return await self._writer.commit(batch)

    def commit_sync(self, batch: WriteBatch, timeout: float | None = None) -> CommitResult:
        """Blocking ``commit`` for threads outside trio (never call it from trio)."""
        return self._writer.commit_sync(batch, timeout)

    def _run_group(self, batches: Sequence[WriteBatch]) -> list[CommitResult | Exception]:
        # Writer thread only. On MapFullError the aborted group is retried after the map
        # grew to fit it (an estimate: twice its bytes, B-tree pages are at least half
        # full); a few tries, because the estimate can be short for tiny maps.
        for attempt in range(1, _MAP_FULL_RETRIES + 2):
            try:
                return self._txn_group(batches)
            except lmdb.MapFullError as exc:
                need = max(self._map_size * 2, self._map_used + 2 * _group_bytes(batches))
                if attempt <= _MAP_FULL_RETRIES and self._grow(need=need + (1 << 20)):
                    continue
                raise StoreFullError(
                    f"store map full at {self._map_size} bytes (max_map_size "
                    f"{self._max_map_size}); {len(batches)} batch(es) not written"
                ) from exc
            except lmdb.DiskError as exc:  # ENOSPC: the disk, not the map, is full
                raise StoreFullError(
                    f"disk full under {self.path}; {len(batches)} batch(es) not written"
                ) from exc
            except lmdb.Error as exc:
                raise StoreUnavailableError(f"store write failed: {exc}") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _txn_group(self, batches: Sequence[WriteBatch]) -> list[CommitResult | Exception]:
        txn = self._env.begin(write=True)
        tx = _LmdbTxn(self._env, self._dbs, txn)
        txn_id = txn.id()
        seq = self._seq if txn_id == self._seq_txn + 1 else None
        self._seq = None  # until this group is through
        try:
            outcomes, applied, seq = logic.apply_group(tx, batches, (lmdb.Error,), seq)
            if applied:
                txn.commit()  # with durability="fsync" this returns after fdatasync
                self._seq_txn = txn_id
            else:
                txn.abort()
        except BaseException:
            tx.abort()
            raise
        self._seq = seq
        self._after_commit()
        return outcomes

    def _after_commit(self) -> None:
        info = self._env.info()
        self._map_used = (int(info["last_pgno"]) + 1) * self._page_size
        if self._map_used > self._map_size * _GROW_AT:
            self._grow(need=self._map_size * 2)

    def _grow(self, need: int) -> bool:
        new = min(self._max_map_size, max(need, self._map_size))
        if new <= self._map_size:
            return False
        self._gate.run_exclusive(functools.partial(self._env.set_mapsize, new))
        self._map_size = new
        self._map_grows += 1
        return True

    def _flush(self) -> None:
        # A failed flush is not lost: the next commit hits the same disk and reports it.
        with contextlib.suppress(lmdb.Error):
            self._env.sync(True)

    # event notification ----------------------------------------------------------------

    def _events_hook(self) -> tuple[trio.lowlevel.TrioToken, Callable[[], None]] | None:
        # Writer thread, after a group that appended events: what to run in trio (the
        # writer folds it into its wake-up of the group's waiters: one ``run_sync_soon``).
        # Nothing when nobody waits: ``wait_for_events`` sets ``_events_changed`` before
        # it reads the last sequence number, so a waiter that this check misses read the
        # store after this group's commit and saw its events.
        token = self._events_token
        if token is None or self._events_changed is None:
            return None
        return token, self._bump_events

    def _bump_events(self) -> None:
        ev = self._events_changed
        if ev is not None:
            self._events_changed = None
            ev.set()

    async def wait_for_events(self, after_seq: int) -> None:
        """Sleep until an event with ``seq > after_seq`` exists (for the long-poll feed).

        Wrap in ``trio.move_on_after``. Woken by the writer only for stores opened with
        ``open_store`` in this trio run.
        """
        while True:
            changed = self._events_changed
            if changed is None:
                changed = self._events_changed = trio.Event()
            # Read after the event is in place (see ``_events_hook``).
            if self.last_event_seq() > after_seq:
                return
            await changed.wait()

    # reads ---------------------------------------------------------------------------

    def _read(self, fn: Callable[[KvTxn], T]) -> T:
        if self._env_closed:
            raise StoreClosedError("store is closed")
        self._gate.enter_read()
        try:
            txn = self._env.begin()
            try:
                return fn(_LmdbTxn(self._env, self._dbs, txn))
            finally:
                txn.abort()
        except StoreError:
            raise
        except lmdb.Error as exc:
            raise StoreUnavailableError(f"store read failed: {exc}") from exc
        finally:
            self._gate.exit_read()

    def statistics(self) -> StoreStats:
        """Counters for metrics (cheap; no transaction)."""
        s = self._writer.stats
        return StoreStats(
            commits=s.commits,
            failed=s.failed,
            batches=s.batches,
            ops=s.ops,
            txns=s.txns,
            events=s.events,
            avg_group_size=s.batches / s.txns if s.txns else 0.0,
            max_group_size=s.max_group,
            avg_batch_ops=s.ops / s.commits if s.commits else 0.0,
            last_commit_latency=s.last_commit_latency,
            last_txn_seconds=s.last_txn_seconds,
            queue_depth=self._writer.queue_depth(),
            map_size=self._map_size,
            map_used=self._map_used,
            map_grows=self._map_grows,
            durability=self.durability,
        )


def _group_bytes(batches: Sequence[WriteBatch]) -> int:
    # Bytes of keys and values a group writes (events and updates counted roughly).
    total = 0
    for batch in batches:
        for op in batch.ops:
            total += 64 + sum(len(x) for x in op if isinstance(x, bytes))
    return total




@asynccontextmanager
async def open_store(
    path: str | os.PathLike[str],
    *,
    durability: Durability = "fsync",
    map_size: int = DEFAULT_MAP_SIZE,
    max_map_size: int = DEFAULT_MAX_MAP_SIZE,
    os_sync_interval: float = 1.0,
) -> AsyncIterator[LmdbStore]:
    """Open the LMDB store with its writer thread owned by a nursery (see module doc).

    On exit (also on error or cancellation) the writer commits everything queued, then
    the environment is flushed and closed.
    """
    opener = functools.partial(
        LmdbStore.open,
        path,
        durability=durability,
        map_size=map_size,
        max_map_size=max_map_size,
        os_sync_interval=os_sync_interval,
    )
    store = await trio.to_thread.run_sync(opener)
    store._events_token = trio.lowlevel.current_trio_token()
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(store._serve_writer)
            try:
                yield store
            finally:
                store._writer.stop()
    finally:
        store._events_token = None
        store._close_env()
