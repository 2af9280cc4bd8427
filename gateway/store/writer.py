"""The group-commit writer: one thread owns every write transaction.

Why a thread and group commit (DESIGN.md performance table): a write transaction with
fsync costs milliseconds, and ``trio.to_thread.run_sync`` 90 us. So no trio task ever runs
a transaction itself. ``commit`` puts ``(batch, waiter)`` on a thread-safe queue and sleeps
on a ``trio.Event``; the writer thread takes everything that is queued, applies it in ONE
write transaction, makes it durable, and then wakes the waiters with ONE
``TrioToken.run_sync_soon`` per trio run per group. While a transaction runs (and fsyncs)
new batches pile up, and the next transaction takes them all: the more load, the bigger
the groups, the fewer fsyncs per batch. There is no timer and no artificial delay.

Two lanes: batches marked ``urgent`` (small, latency-bound: inbound receipts whose
deliver_sm_resp waits for the commit, the dispatcher's ``sending`` marks and outcomes)
are committed in their own group ahead of the normal batches queued (accept groups of
thousands of messages). Groups alternate between the lanes while both have work, so an
urgent batch waits for at most the transaction under way, and a normal one for at most
one urgent group; within a lane, batches keep their order. (Without it a receipt's ack
waited ~250 ms behind accept groups: 64 unacked receipts per session capped receipts at
~500/s while submitting, bench/RESULTS.md.)

Outcomes are per batch: a batch whose own logic fails (idempotency conflict, a failing
update function) fails alone; an environmental failure (map full after growth, disk
error) fails every batch of that group, and nothing of the group is written.

Waiters that are not in trio (bench, CLI, the crash test) use ``commit_sync``, which
blocks on a ``threading.Event``.

Cancellation: a trio task cancelled while waiting stops waiting, but its batch may still
commit (like any database client whose connection drops mid-commit). The caller that needs
to know should use an idempotency key and look it up.

Shutdown: ``stop()`` refuses new commits and puts a sentinel on the queue; the thread
commits everything queued before it, then returns. Nothing acknowledged is dropped.
"""

from __future__ import annotations

import contextlib
import copy
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Final

import trio

from .batch import WriteBatch
from .errors import StoreClosedError, StoreError, StoreUnavailableError
from .records import CommitResult

__all__ = ["EventsHook", "GroupCommitWriter", "GroupRunner", "WriterStats"]

# Runs one group in one transaction; returns one outcome per batch, or raises a
# StoreError that fails the whole group.
GroupRunner = Callable[[Sequence[WriteBatch]], list[CommitResult | Exception]]

_STOP: Final = object()


class _Pending:
    __slots__ = ("batch", "done", "enqueued", "outcome", "token")

    def __init__(
        self,
        batch: WriteBatch,
        token: trio.lowlevel.TrioToken | None,
        done: trio.Event | threading.Event,
    ) -> None:
        self.batch = batch
        self.token = token
        self.done = done
        self.enqueued = time.perf_counter()
        self.outcome: CommitResult | BaseException | None = None

    def result(self) -> CommitResult:
        outcome = self.outcome
        if isinstance(outcome, CommitResult):
            return outcome
        if outcome is None:  # pragma: no cover - the writer always sets an outcome
            raise StoreUnavailableError("commit finished without an outcome")
        raise outcome


class WriterStats:
    """Mutable counters owned by the writer thread (int updates are atomic under the GIL)."""

    __slots__ = (
        "batches",
        "commits",
        "events",
        "failed",
        "last_commit_latency",
        "last_txn_seconds",
        "max_group",
        "ops",
        "txns",
    )

    def __init__(self) -> None:
        self.commits = 0
        self.failed = 0
        self.batches = 0
        self.ops = 0
        self.txns = 0
        self.events = 0
        self.max_group = 0
        self.last_commit_latency = 0.0
        self.last_txn_seconds = 0.0


#: ``on_events``'s answer: a function to run in that trio run, or None.
EventsHook = Callable[[], tuple[trio.lowlevel.TrioToken, Callable[[], None]] | None]


def _wake_trio(pendings: list[_Pending], also: Callable[[], None] | None = None) -> None:
    # Runs in the trio thread (via run_sync_soon): one call wakes a whole group (and runs
    # the store's event notification when it was folded in).
    for p in pendings:
        done = p.done
        assert isinstance(done, trio.Event)
        done.set()
    if also is not None:
        also()


def _fresh(exc: BaseException) -> BaseException:
    # Each waiter raises its own exception object: one instance raised in many tasks
    # would have its __traceback__ rewritten under the others' feet.
    try:
        new = copy.copy(exc)
    except Exception:  # an exception type that cannot be rebuilt from its args
        new = StoreUnavailableError(str(exc))
    new.__cause__ = exc.__cause__
    new.__traceback__ = None
    return new


class GroupCommitWriter:
    """Queue + thread that applies batches with group commit (see module docstring).

    ``run`` is the thread's body; the owner runs it (``trio.to_thread.run_sync`` inside a
    nursery for ``open_store``, or a plain thread via ``start_thread``).
    ``idle_timeout``/``on_idle``: after a group, if no batch arrives within the timeout,
    ``on_idle`` runs once (the ``os`` durability mode flushes to disk there).
    ``on_events``: called on the writer thread after a group that appended events; it
    returns ``(token, fn)`` to run ``fn`` in that trio run (folded into the group's
    wake-up when its waiters are in the same run: one ``run_sync_soon``), or None.
    """

    def __init__(
        self,
        run_group: GroupRunner,
        *,
        max_group_ops: int = 100_000,
        idle_timeout: float | None = None,
        on_idle: Callable[[], None] | None = None,
        on_events: EventsHook | None = None,
    ) -> None:
        self._run_group = run_group
        self._max_group_ops = max_group_ops
        self._idle_timeout = idle_timeout
        self._on_idle = on_idle
        self._on_events = on_events
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._closed = False
        self._started = threading.Event()
        self._stopped = threading.Event()
        self.stats = WriterStats()

    @property
    def closed(self) -> bool:
        """True once ``stop`` was called: no new commits are taken."""
        return self._closed

    def queue_depth(self) -> int:
        """Batches waiting for the writer (approximate)."""
        return self._queue.qsize()

    def _enqueue(self, pending: _Pending) -> None:
        with self._lock:
            if self._closed:
                raise StoreClosedError("store is closed")
            self._queue.put(pending)

    async def commit(self, batch: WriteBatch) -> CommitResult:
        """Queue ``batch`` and sleep until it is durable (or failed)."""
        pending = _Pending(batch, trio.lowlevel.current_trio_token(), trio.Event())
        self._enqueue(pending)
        done = pending.done
        assert isinstance(done, trio.Event)
        await done.wait()
        return pending.result()

    def commit_sync(self, batch: WriteBatch, timeout: float | None = None) -> CommitResult:
        """Blocking ``commit`` for threads that are not trio's (bench, CLI, tests)."""
        done = threading.Event()
        pending = _Pending(batch, None, done)
        self._enqueue(pending)
        if not done.wait(timeout):
            raise StoreUnavailableError(f"commit not done after {timeout} s")
        return pending.result()

    def stop(self) -> None:
        """Refuse new commits; the thread commits what is queued and then returns."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._queue.put(_STOP)

    def start_thread(self, name: str = "store-writer") -> None:
        """Run the writer in a plain daemon thread (for callers outside trio)."""
        self._started.set()  # before the thread runs: a join() right after must wait
        threading.Thread(target=self.run, name=name, daemon=True).start()

    def join(self) -> None:
        """Wait until ``run`` has returned, whoever runs it (no-op if it never started)."""
        if self._started.is_set():
            self._stopped.wait()

    def run(self) -> None:
        """The writer thread's body: take groups, run them, wake waiters, until stopped."""
        self._started.set()
        try:
            self._loop()
        finally:
            # Only reached early on a bug in the loop itself: nobody may wait forever.
            with self._lock:
                self._closed = True
            leftovers: list[_Pending] = []
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if isinstance(item, _Pending):
                    leftovers.append(item)
            if leftovers:
                self._finish(leftovers, StoreClosedError("store writer stopped"))
            self._stopped.set()

    def _loop(self) -> None:
        dirty = False
        get = self._queue.get
        urgent: deque[_Pending] = deque()
        normal: deque[_Pending] = deque()
        stop = False
        prefer_normal = False
        while True:
            if not urgent and not normal:
                if stop:
                    return
                timeout = self._idle_timeout if dirty else None
                try:
                    first = get(timeout=timeout)
                except queue.Empty:
                    dirty = False
                    if self._on_idle is not None:
                        self._on_idle()
                    continue
                if first is _STOP:
                    return
                assert isinstance(first, _Pending)
                (urgent if first.batch.urgent else normal).append(first)
            # Take everything queued meanwhile into the two lanes.
            while not stop:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True  # commit what came before it, then return
                    break
                assert isinstance(item, _Pending)
                (urgent if item.batch.urgent else normal).append(item)
            lane = normal if (prefer_normal and normal) or not urgent else urgent
            prefer_normal = lane is urgent
            group = [lane.popleft()]
            n_ops = len(group[0].batch)
            while lane and n_ops < self._max_group_ops:
                item = lane.popleft()
                group.append(item)
                n_ops += len(item.batch)
            try:
                self._process(group)
            except Exception as exc:  # pragma: no cover - a bug; never leave waiters hanging
                self._finish(group, StoreUnavailableError(f"store writer failed: {exc!r}"))
            dirty = True

    def _process(self, group: list[_Pending]) -> None:
        t0 = time.perf_counter()
        outcomes: Sequence[CommitResult | BaseException]
        try:
            outcomes = self._run_group([p.batch for p in group])
        except StoreError as exc:
            outcomes = [_fresh(exc) for _ in group]
        except Exception as exc:  # a bug or an unexpected backend error: fail, keep going
            err = StoreUnavailableError(f"store write failed: {exc!r}")
            err.__cause__ = exc
            outcomes = [_fresh(err) for _ in group]
        stats = self.stats
        now = time.perf_counter()
        stats.txns += 1
        stats.batches += len(group)
        stats.max_group = max(stats.max_group, len(group))
        stats.last_txn_seconds = now - t0
        n_events = 0
        for p, outcome in zip(group, outcomes, strict=True):
            if isinstance(outcome, CommitResult):
                stats.commits += 1
                stats.ops += len(p.batch)
                n_events += len(outcome.event_seqs)
                p.outcome = outcome
            else:  # each batch's own exception, or a fresh copy of the group's
                stats.failed += 1
                p.outcome = outcome
        stats.events += n_events
        stats.last_commit_latency = now - group[0].enqueued  # the group's longest wait
        also = self._on_events() if n_events and self._on_events is not None else None
        self._wake(group, also)

    def _finish(self, group: list[_Pending], exc: BaseException) -> None:
        for p in group:
            p.outcome = _fresh(exc)
        self._wake(group)

    def _wake(self, group: list[_Pending],
              also: tuple[trio.lowlevel.TrioToken, Callable[[], None]] | None = None) -> None:
        by_token: dict[trio.lowlevel.TrioToken, list[_Pending]] = {}
        for p in group:
            if p.token is None:
                done = p.done
                assert isinstance(done, threading.Event)
                done.set()
            else:
                by_token.setdefault(p.token, []).append(p)
        for token, pendings in by_token.items():
            fn = None
            if also is not None and also[0] is token:
                fn, also = also[1], None
            # A finished trio run has nobody waiting any more.
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(_wake_trio, pendings, fn)
        if also is not None:
            with contextlib.suppress(trio.RunFinishedError):
                also[0].run_sync_soon(also[1])
