"""Session 5 writer-thread fast paths, each against the general path it replaces:

* the last event sequence number carried from one committed group to the next
  (``LmdbStore._seq``, used when no other transaction committed in between) instead of
  read from the store at the start of every group;
* a group of one batch applied without a nested transaction;
* the event notification folded into the waiters' wake-up (one ``run_sync_soon`` per
  group), and none at all when nobody waits for events.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lmdb
import pytest
import trio
import trio.lowlevel
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.store import (
    CommitResult,
    LmdbStore,
    MessageRecord,
    WriteBatch,
    logic,
    open_store,
)
from gateway.store.kv import Db, KvTxn
from gateway.store.lmdb_store import _LmdbTxn
from gateway.store.writer import GroupCommitWriter

from .helpers import event, message

TIMEOUT = 10

# One action of a batch (see ``_build``).
_action = st.one_of(
    st.tuples(st.just("events"), st.integers(0, 3)),
    st.tuples(st.just("fail"), st.just(0)),  # the batch fails alone
    st.tuples(st.just("fatal"), st.just(0)),  # the whole group fails (an LMDB error)
    st.tuples(st.just("prune"), st.integers(0, 12)),
    st.tuples(st.just("drop_newest"), st.just(0)),
    st.tuples(st.just("put"), st.just(0)),
)
_group = st.lists(st.lists(_action, min_size=1, max_size=4), min_size=1, max_size=3)
_step = st.one_of(_group, st.just("reopen"))


def _drop_newest(tx: KvTxn) -> list[Any]:
    last = tx.last(Db.EVENTS)
    if last is not None:
        tx.delete(Db.EVENTS, last[0])
    return []


def _raise(exc: BaseException) -> Callable[[MessageRecord | None], MessageRecord | None]:
    def fn(old: MessageRecord | None) -> MessageRecord | None:
        raise exc

    return fn


def _build(actions: list[tuple[str, int]], tag: str) -> WriteBatch:
    batch = WriteBatch()
    for i, (kind, n) in enumerate(actions):
        if kind == "events":
            for _ in range(n):
                batch.append_event(event(mid=tag))
        elif kind == "fail":
            batch.update_message("x", _raise(ValueError("bad update")))
        elif kind == "fatal":
            batch.update_message("x", _raise(lmdb.Error("disk", 5)))
        elif kind == "prune":
            batch.delete_events_through(n)
        elif kind == "drop_newest":
            batch.run_in_txn(_drop_newest)
        else:
            batch.put_message(message(f"{tag}-{i}"))
    return batch


def _outcome(o: CommitResult | Exception) -> object:
    return o.event_seqs if isinstance(o, CommitResult) else type(o).__name__


def _run(store: LmdbStore, batches: Sequence[WriteBatch]) -> list[object]:
    try:
        return [_outcome(o) for o in store._run_group(batches)]
    except Exception as exc:  # the whole group failed
        return [type(exc).__name__] * len(batches)


def _state(store: LmdbStore) -> tuple[int, list[tuple[int, str | None]]]:
    return store.last_event_seq(), [(e.seq, e.message_id) for e in store.events_after(0, 1000)]


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(_step, min_size=1, max_size=10))
def test_carried_sequence_number_matches_reading_it(tmp_path_factory: pytest.TempPathFactory,
                                                    steps: list[Any]) -> None:
    # The same groups through two stores: one carries the last sequence number from group
    # to group (the fast path), the other forgets it before every group and so reads it
    # from the store each time (the general path). Same outcomes, same feed, and the
    # carried number is always what the store holds.
    base = tmp_path_factory.mktemp("seq")
    paths = {"fast": base / "fast", "read": base / "read"}
    stores = {k: LmdbStore.open(p, durability="os") for k, p in paths.items()}
    try:
        for n, step in enumerate(steps):
            if step == "reopen":
                for k, old in list(stores.items()):
                    old.close()
                    stores[k] = LmdbStore.open(paths[k], durability="os")
                continue
            got = {}
            for k, store in stores.items():
                if k == "read":
                    store._seq = None
                got[k] = _run(store, [_build(b, f"g{n}b{i}") for i, b in enumerate(step)])
            assert got["fast"] == got["read"]
            assert _state(stores["fast"]) == _state(stores["read"])
            fast = stores["fast"]
            if fast._seq is not None:
                assert fast._seq == fast.last_event_seq()
    finally:
        for store in stores.values():
            store.close()


def test_a_failed_group_does_not_move_the_carried_number(tmp_path: Path) -> None:
    store = LmdbStore.open(tmp_path / "s", durability="os")
    try:
        ok = WriteBatch()
        ok.append_event(event())
        assert _run(store, [ok]) == [(1,)]
        doomed = _build([("events", 2), ("fatal", 0)], "f")
        assert _run(store, [doomed]) == ["StoreUnavailableError"]
        again = WriteBatch()
        again.append_event(event())
        assert _run(store, [again]) == [(2,)]
        assert store._seq == store.last_event_seq() == 2
    finally:
        store.close()


_OTHER_WRITER = textwrap.dedent("""
    import sys
    from gateway.store import Event, LmdbStore, WriteBatch
    store = LmdbStore.open(sys.argv[1], durability="os")
    batch = WriteBatch()
    batch.append_event(Event(seq=0, at=1.0, type="status", message_id="b"))
    batch.append_event(Event(seq=0, at=1.0, type="status", message_id="b"))
    store._run_group([batch])
    store._close_env()
""")


@pytest.mark.slow
def test_events_of_another_writer_in_between_are_kept(tmp_path: Path) -> None:
    # Another process committing to the same files between two of our groups (not how
    # the gateway runs, but LMDB allows it): the carried number is not used then.
    path = tmp_path / "s"
    store = LmdbStore.open(path, durability="os")
    try:
        first = WriteBatch()
        first.append_event(event(mid="a"))
        assert _run(store, [first]) == [(1,)]
        subprocess.run([sys.executable, "-c", _OTHER_WRITER, str(path)], check=True,
                       timeout=60)
        again = WriteBatch()
        again.append_event(event(mid="c"))
        assert _run(store, [again]) == [(4,)]
        assert [(e.seq, e.message_id) for e in store.events_after(0, 10)] == [
            (1, "a"), (2, "b"), (3, "b"), (4, "c")]
    finally:
        store.close()


def test_a_failing_single_batch_group_writes_nothing(tmp_path: Path) -> None:
    # Applied without a nested transaction: its failure aborts the whole transaction.
    store = LmdbStore.open(tmp_path / "s", durability="os")
    try:
        batch = _build([("put", 0), ("events", 2), ("fail", 0)], "f")
        assert _run(store, [batch]) == ["ValueError"]
        assert store.get_message("f-0") is None
        assert store.events_after(0, 10) == []
        assert store.last_event_seq() == 0
    finally:
        store.close()


# event notification ---------------------------------------------------------------------


class _Calls:
    """Counts ``TrioToken.run_sync_soon`` calls (the writer's wake-ups of trio)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.n = 0
        orig = trio.lowlevel.TrioToken.run_sync_soon

        def counting(token: trio.lowlevel.TrioToken, *args: Any, **kw: Any) -> None:
            self.n += 1
            orig(token, *args, **kw)

        monkeypatch.setattr(trio.lowlevel.TrioToken, "run_sync_soon", counting)


async def commit_one_event_to_a_waiter(store: Any, after: int, calls: _Calls) -> int:
    """A task waits in ``wait_for_events(after)``; one event is committed; returns the
    ``run_sync_soon`` calls the commit made, once the waiter has woken."""
    woke = trio.Event()

    async def waiter() -> None:
        await store.wait_for_events(after)
        woke.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()
        batch = WriteBatch()
        batch.append_event(event())
        before = calls.n
        await store.commit(batch)
        made = calls.n - before
        await woke.wait()
    return made


async def test_one_wakeup_per_group_with_a_waiter(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _Calls(monkeypatch)
    with trio.fail_after(TIMEOUT):
        async with open_store(tmp_path / "s") as store:
            # the committing task's wake-up also woke the waiter
            assert await commit_one_event_to_a_waiter(store, 0, calls) == 1


async def test_no_event_wakeup_without_a_waiter(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _Calls(monkeypatch)
    with trio.fail_after(TIMEOUT):
        async with open_store(tmp_path / "s") as store:
            before = calls.n
            for _ in range(3):
                batch = WriteBatch()
                batch.append_event(event())
                await store.commit(batch)
            assert calls.n - before == 3  # the commits' own wake-ups only
            # a waiter that comes later still sees what is there, and the next event
            await store.wait_for_events(2)
            await commit_one_event_to_a_waiter(store, 3, calls)


async def test_wait_for_events_arms_before_it_reads(tmp_path: Path) -> None:
    # The writer skips the notification when nobody waits: a waiter must be visible
    # (``_events_changed``) before it reads the last number, or an event committed between
    # its read and its arming would not wake it.
    with trio.fail_after(TIMEOUT):
        async with open_store(tmp_path / "s") as store:
            armed: list[bool] = []
            real = store.last_event_seq

            def spy() -> int:
                armed.append(store._events_changed is not None)
                return real()

            store.last_event_seq = spy  # type: ignore[method-assign]
            with trio.move_on_after(0.05):
                await store.wait_for_events(0)
            assert armed and all(armed)


def test_writer_runs_the_event_hook_on_its_own_without_trio_waiters() -> None:
    # commit_sync waiters have no trio token: the hook's function gets its own call.
    ran: list[object] = []

    class Token:
        def run_sync_soon(self, fn: Callable[..., object], *args: object) -> None:
            ran.append((fn, args))

    token = Token()

    def notify() -> None:
        pass

    hooks: list[int] = []

    def hook() -> Any:
        hooks.append(1)
        return (token, notify) if len(hooks) == 1 else None

    def runner(batches: Sequence[WriteBatch]) -> list[CommitResult | Exception]:
        return [CommitResult((1,) if len(b) else ()) for b in batches]

    writer = GroupCommitWriter(runner, on_events=hook)
    writer.start_thread()
    try:
        with_event = WriteBatch()
        with_event.append_event(event())
        writer.commit_sync(with_event, TIMEOUT)
        assert ran == [(notify, ())]
        writer.commit_sync(WriteBatch(), TIMEOUT)  # no events: the hook is not asked
        assert hooks == [1]
        writer.commit_sync(with_event, TIMEOUT)  # the hook says nobody waits
        assert hooks == [1, 1] and len(ran) == 1
    finally:
        writer.stop()
        writer.join()


def test_apply_group_reads_the_number_only_when_not_given(tmp_path: Path) -> None:
    store = LmdbStore.open(tmp_path / "s", durability="os")
    try:
        batch = WriteBatch()
        batch.append_event(event())
        store._run_group([batch])
        txn = store._env.begin(write=True)
        try:
            tx = _LmdbTxn(store._env, store._dbs, txn)
            b2 = WriteBatch()
            b2.append_event(event())
            _, _, seq = logic.apply_group(tx, [b2])
            assert seq == 2
            b3 = WriteBatch()
            b3.append_event(event())
            outcomes, applied, seq = logic.apply_group(tx, [b3], (), 10)
            assert applied == 1 and seq == 11
            assert isinstance(outcomes[0], CommitResult) and outcomes[0].event_seqs == (11,)
        finally:
            txn.abort()
    finally:
        store.close()
