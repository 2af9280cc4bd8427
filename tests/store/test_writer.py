"""GroupCommitWriter on its own, with a plain function as the group runner (no LMDB)."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

from gateway.store import (
    CommitResult,
    StoreClosedError,
    StoreFullError,
    StoreUnavailableError,
    WriteBatch,
)
from gateway.store.writer import GroupCommitWriter

from .helpers import message

TIMEOUT = 10


class Runner:
    """Records each group; fails groups while ``fail_with`` is set."""

    def __init__(self) -> None:
        self.groups: list[int] = []
        self.fail_with: Exception | None = None
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def __call__(self, batches: Sequence[WriteBatch]) -> list[CommitResult | Exception]:
        self.entered.set()
        self.gate.wait(TIMEOUT)
        self.groups.append(len(batches))
        if self.fail_with is not None:
            raise self.fail_with
        return [CommitResult((i,)) for i, _ in enumerate(batches)]


def _batch(n: int = 1) -> WriteBatch:
    b = WriteBatch()
    for i in range(n):
        b.put_message(message(f"m{i}"))
    return b


@asynccontextmanager
async def running(writer: GroupCommitWriter) -> AsyncIterator[trio.Nursery]:
    """The writer's thread in a nursery; stopped on the way out, also on failure."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.to_thread.run_sync, writer.run)
        try:
            yield nursery
        finally:
            writer.stop()


async def test_groups_and_per_waiter_errors() -> None:
    runner = Runner()
    writer = GroupCommitWriter(runner)
    errors: list[BaseException] = []

    async def commit() -> None:
        try:
            await writer.commit(_batch())
        except StoreFullError as exc:
            errors.append(exc)

    with trio.fail_after(TIMEOUT):
        async with running(writer) as nursery:
            runner.gate.clear()
            nursery.start_soon(commit)
            await trio.to_thread.run_sync(runner.entered.wait, TIMEOUT)
            runner.fail_with = StoreFullError("full")
            for _ in range(5):
                nursery.start_soon(commit)
            await trio.testing.wait_all_tasks_blocked()
            assert writer.queue_depth() == 5
            runner.gate.set()
            while len(errors) < 6:
                await trio.lowlevel.checkpoint()
            # each waiter got its own exception object
            assert len({id(e) for e in errors}) == 6
            assert all(str(e) == "full" for e in errors)
            runner.fail_with = None
            assert (await writer.commit(_batch())).event_seqs == (0,)
    # the first group failed as a whole too (it was the one running when we set fail_with)
    assert runner.groups == [1, 5, 1]
    assert writer.stats.failed == 6 and writer.stats.commits == 1


async def test_unexpected_exception_becomes_unavailable_and_writer_survives() -> None:
    runner = Runner()
    runner.fail_with = KeyError("bug")
    writer = GroupCommitWriter(runner)
    with trio.fail_after(TIMEOUT):
        async with running(writer):
            with pytest.raises(StoreUnavailableError) as info:
                await writer.commit(_batch())
            assert isinstance(info.value.__cause__, KeyError)
            runner.fail_with = None
            await writer.commit(_batch())


async def test_max_group_ops_splits_groups() -> None:
    runner = Runner()
    writer = GroupCommitWriter(runner, max_group_ops=10)
    with trio.fail_after(TIMEOUT):
        async with running(writer) as nursery:
            runner.gate.clear()
            nursery.start_soon(writer.commit, _batch())
            await trio.to_thread.run_sync(runner.entered.wait, TIMEOUT)
            for _ in range(6):
                nursery.start_soon(writer.commit, _batch(4))
            await trio.testing.wait_all_tasks_blocked()
            runner.gate.set()
    assert runner.groups == [1, 3, 3]  # 3 batches of 4 ops reach the limit of 10


def test_sync_commits_idle_hook_and_stop() -> None:
    runner = Runner()
    idle = threading.Event()
    writer = GroupCommitWriter(runner, idle_timeout=0.001, on_idle=idle.set)
    writer.start_thread()
    assert writer.commit_sync(_batch(), timeout=TIMEOUT).event_seqs == (0,)
    assert idle.wait(TIMEOUT)  # after a quiet moment the writer flushed (os mode)
    writer.stop()
    writer.stop()
    writer.join()
    with pytest.raises(StoreClosedError):
        writer.commit_sync(_batch())


def test_commit_sync_timeout() -> None:
    runner = Runner()
    writer = GroupCommitWriter(runner)  # never started
    with pytest.raises(StoreUnavailableError, match="not done"):
        writer.commit_sync(_batch(), timeout=0.001)


class Recorder(Runner):
    """Records each group as (urgent, ops) per batch, in the order the group applies them."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[list[tuple[bool, int]]] = []

    def __call__(self, batches: Sequence[WriteBatch]) -> list[CommitResult | Exception]:
        out = super().__call__(batches)
        self.seen.append([(b.urgent, len(b)) for b in batches])
        return out


def _tagged(n: int, *, urgent: bool) -> WriteBatch:
    b = WriteBatch(urgent=urgent)
    for i in range(n):
        b.put_message(message(f"m{i}"))
    return b


async def _groups_after(first_urgent: bool, queued: list[WriteBatch],
                        **kw: int) -> list[list[tuple[bool, int]]]:
    """Hold the writer in a group, queue ``queued`` meanwhile, release: the groups after."""
    runner = Recorder()
    writer = GroupCommitWriter(runner, **kw)
    with trio.fail_after(TIMEOUT):
        async with running(writer) as nursery:
            runner.gate.clear()
            nursery.start_soon(writer.commit, _tagged(1, urgent=first_urgent))
            await trio.to_thread.run_sync(runner.entered.wait, TIMEOUT)
            for b in queued:
                nursery.start_soon(writer.commit, b)
                await trio.testing.wait_all_tasks_blocked()  # queued in this order
            assert writer.queue_depth() == len(queued)
            runner.gate.set()
    assert runner.seen[0] == [(first_urgent, 1)]
    return runner.seen[1:]


async def test_urgent_batch_waits_only_for_the_group_under_way() -> None:
    # Queued behind an accept group (normal) that is running, an urgent batch commits
    # next, ahead of the normal batch queued before it.
    groups = await _groups_after(False, [
        _tagged(50, urgent=False), _tagged(1, urgent=True)])
    assert groups == [[(True, 1)], [(False, 50)]]


async def test_lanes_alternate_under_max_group_ops() -> None:
    # With no room to mix, the lanes take turns (an urgent batch waits for at most the
    # group under way), each lane in its own order.
    groups = await _groups_after(False, [
        _tagged(6, urgent=False), _tagged(5, urgent=True), _tagged(6, urgent=False),
        _tagged(5, urgent=True)], max_group_ops=5)
    assert groups == [[(True, 5)], [(False, 6)], [(True, 5)], [(False, 6)]]
