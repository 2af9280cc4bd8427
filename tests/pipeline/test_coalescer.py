"""``AcceptCoalescer``: concurrent small requests share one accept; each gets its own
results in its own order after that accept's commit; failures reach every request of it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio

from gateway.api_types import Backpressure, MessageIn, MessageResult, StoreUnavailable
from gateway.backend import AcceptCoalescer, GatewayBackend
from gateway.config import GatewayConfig
from gateway.pipeline import Accepter, RecipientCache
from gateway.store import MemoryStore
from tests.pipeline.conftest import NOW, put_recipients


class FakeAccept:
    """Records each accept's texts; answers one result per message after a delay."""

    def __init__(self, delay: float = 0.01, fail: BaseException | None = None) -> None:
        self.calls: list[list[str]] = []
        self.delay = delay
        self.fail = fail

    async def __call__(self, messages: list[MessageIn], now: float) -> list[MessageResult]:
        self.calls.append([m.text for m in messages])
        await trio.sleep(self.delay)
        if self.fail is not None:
            raise self.fail
        return [MessageResult(id=m.text, status="queued") for m in messages]


def msgs(tag: str, n: int = 1) -> list[MessageIn]:
    return [MessageIn(to="+12125550100", text=f"{tag}.{i}") for i in range(n)]


@asynccontextmanager
async def running(co: AcceptCoalescer) -> AsyncIterator[None]:
    """The coalescer's workers, as the app runs them (``nursery.start(co.run)``)."""
    async with trio.open_nursery() as n:
        await n.start(co.run)
        yield
        n.cancel_scope.cancel()


async def test_concurrent_requests_share_accepts_and_get_their_own_results() -> None:
    fake = FakeAccept()
    co = AcceptCoalescer(fake, max_inflight=1)
    got: dict[int, list[str]] = {}
    async with running(co):
        async def one(k: int) -> None:
            res = await co.submit(msgs(f"r{k}", 1 + k % 3))
            got[k] = [r.id for r in res]

        async with trio.open_nursery() as n:
            for k in range(20):
                n.start_soon(one, k)
        for k in range(20):
            assert got[k] == [f"r{k}.{i}" for i in range(1 + k % 3)]
        # all 20 were queued before the worker (started by the first) ran: one accept
        assert len(fake.calls) == 1
        assert sum(len(c) for c in fake.calls) == sum(1 + k % 3 for k in range(20))
        assert co.statistics()["inflight"] == 0


async def test_batches_are_bounded_and_big_requests_go_alone() -> None:
    fake = FakeAccept()
    co = AcceptCoalescer(fake, max_request=5, max_batch=6, max_inflight=1)
    async with running(co):
        async with trio.open_nursery() as n:
            for k in range(6):
                n.start_soon(co.submit, msgs(f"s{k}", 3))
            n.start_soon(co.submit, msgs("big", 9))
        assert ["big.0" in c for c in fake.calls].count(True) == 1
        assert next(c for c in fake.calls if "big.0" in c) == [f"big.{i}" for i in range(9)]
        assert all(len(c) <= 6 for c in fake.calls if "big.0" not in c)
        assert sum(len(c) for c in fake.calls) == 27


async def test_a_failed_accept_fails_every_request_in_it() -> None:
    fake = FakeAccept(fail=Backpressure(1.0, "full"))
    co = AcceptCoalescer(fake, max_inflight=1)
    errors: list[BaseException] = []
    async with running(co):
        async def one(k: int) -> None:
            try:
                await co.submit(msgs(f"e{k}"))
            except Backpressure as e:
                errors.append(e)

        async with trio.open_nursery() as n:
            for k in range(5):
                n.start_soon(one, k)
        assert len(errors) == 5
        assert co.statistics() == {"batches": 1, "requests": 5, "queued": 0, "inflight": 0}
        # the worker survived the failure: the next request is served
        fake.fail = None
        [r] = await co.submit(msgs("after"))
        assert r.id == "after.0"


async def submit_recording(co: AcceptCoalescer, tag: str, done: list[str]) -> None:
    """Submit one message tagged ``tag``; append its result's id to ``done``."""
    [r] = await co.submit(msgs(tag))
    done.append(r.id)


async def test_a_cancelled_waiter_is_left_out_and_others_proceed() -> None:
    fake = FakeAccept(delay=0.05)
    co = AcceptCoalescer(fake, max_inflight=1)
    done: list[str] = []
    async with running(co):
        async with trio.open_nursery() as n:
            n.start_soon(submit_recording, co, "first", done)
            await trio.sleep(0.01)
            with trio.move_on_after(0.01):
                await co.submit(msgs("gone"))  # waits behind "first", then cancelled
            n.start_soon(submit_recording, co, "later", done)
        assert sorted(done) == ["first.0", "later.0"]
        assert all("gone.0" not in c for c in fake.calls)
        assert co.statistics()["inflight"] == 0


async def test_a_cancelled_request_in_a_running_accept_does_not_fail_the_others() -> None:
    fake = FakeAccept(delay=0.05)
    co = AcceptCoalescer(fake, max_inflight=1)
    done: list[str] = []
    async with running(co):
        async with trio.open_nursery() as n:
            with trio.move_on_after(0.01):
                n.start_soon(submit_recording, co, "other", done)
                await co.submit(msgs("first"))  # taken into the accept; its caller gives up
        assert sorted(done) == ["other.0"]
        assert fake.calls[0][0] == "first.0"  # committed all the same


class _Steps(trio.abc.Instrument):
    """Counts task steps (a task runs from one schedule point to the next)."""

    def __init__(self) -> None:
        self.n = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.n += 1


async def test_a_worker_takes_the_next_group_in_the_step_its_accept_ended() -> None:
    """Under load no round of the run queue passes between one accept's end and the next
    one's start (a waiting request woken to lead the next accept starts it a step later):
    the "b"s queue behind "a", the "c"s behind the "b"s, and the worker goes on."""
    steps = _Steps()
    marks: list[tuple[str, int]] = []

    async def accept(messages: list[MessageIn], now: float) -> list[MessageResult]:
        marks.append((messages[0].text, steps.n))
        await trio.sleep(0.01)
        marks.append(("end", steps.n))
        return [MessageResult(id=m.text, status="queued") for m in messages]

    co = AcceptCoalescer(accept, max_inflight=1)
    trio.lowlevel.add_instrument(steps)
    try:
        async with running(co), trio.open_nursery() as n:
            n.start_soon(co.submit, msgs("a"))
            await trio.sleep(0.005)  # "a" runs
            for k in range(3):
                n.start_soon(co.submit, msgs(f"b{k}"))
            await trio.sleep(0.01)  # "a" ended, the "b"s run
            for k in range(2):
                n.start_soon(co.submit, msgs(f"c{k}"))
    finally:
        trio.lowlevel.remove_instrument(steps)
    # (the requests of one round are queued in any order: look at their group's letter)
    assert [m[0][0] for m in marks] == ["a", "e", "b", "e", "c", "e"]
    assert marks[2][1] == marks[1][1]  # same step
    assert marks[4][1] == marks[3][1]
    assert co.statistics() == {"batches": 3, "requests": 6, "queued": 0, "inflight": 0}


async def test_a_big_request_runs_in_its_own_task_when_a_slot_is_free() -> None:
    """A request of ``lead_min`` messages or more, with a slot free and nobody waiting,
    runs its accept in the caller's task (no worker's round to wait for); a smaller one,
    or one that finds requests waiting, goes through a worker."""
    tasks: list[tuple[str, trio.lowlevel.Task]] = []

    async def accept(messages: list[MessageIn], now: float) -> list[MessageResult]:
        tasks.append((messages[0].text, trio.lowlevel.current_task()))
        await trio.sleep(0.01)
        return [MessageResult(id=m.text, status="queued") for m in messages]

    co = AcceptCoalescer(accept, max_inflight=1, lead_min=3)
    me = trio.lowlevel.current_task()
    async with running(co):
        await co.submit(msgs("big", 3))
        await co.submit(msgs("small", 2))
        assert [(t, task is me) for t, task in tasks] == [("big.0", True), ("small.0", False)]
        tasks.clear()
        async with trio.open_nursery() as n:  # a small one is running: the big one queues
            n.start_soon(co.submit, msgs("first", 1))
            await trio.sleep(0.001)
            await co.submit(msgs("queued", 3))
        assert [(t, task is me) for t, task in tasks] == [("first.0", False),
                                                          ("queued.0", False)]
        assert co.statistics() == {"batches": 4, "requests": 4, "queued": 0, "inflight": 0}


def test_each_trio_run_gets_its_own_workers() -> None:
    fake = FakeAccept(delay=0.001)
    co = AcceptCoalescer(fake)

    async def main(tag: str) -> list[str]:
        with trio.fail_after(5):  # workers of an ended run would never answer
            async with running(co):
                async with trio.open_nursery() as n:
                    for k in range(3):
                        n.start_soon(co.submit, msgs(f"{tag}{k}"))
                [r] = await co.submit(msgs(f"{tag}-last"))
        return [r.id]

    assert trio.run(main, "x") == ["x-last.0"]
    assert trio.run(main, "y") == ["y-last.0"]  # the first run's workers ended with it
    assert co.statistics()["requests"] == 8


async def test_without_its_workers_every_request_runs_its_own_accept() -> None:
    """A coalescer whose ``run`` is not running (a backend used on its own): each request
    is accepted alone, in its own task, nothing coalesced and nothing left waiting."""
    tasks: list[trio.lowlevel.Task] = []

    async def accept(messages: list[MessageIn], now: float) -> list[MessageResult]:
        tasks.append(trio.lowlevel.current_task())
        await trio.sleep(0.001)
        return [MessageResult(id=m.text, status="queued") for m in messages]

    co = AcceptCoalescer(accept)
    with trio.fail_after(5):
        async with trio.open_nursery() as n:
            for k in range(4):
                n.start_soon(co.submit, msgs(f"alone{k}"))
        [r] = await co.submit(msgs("me"))
    assert r.id == "me.0" and len(tasks) == 5 and len(set(tasks)) == 5
    assert co.statistics()["batches"] == 0


async def test_requests_queued_when_the_workers_stop_get_store_unavailable() -> None:
    """The gateway stopping (``run`` cancelled): the accept under way answers its requests
    (shielded); those still queued get 503 ``StoreUnavailable``, nothing of them stored."""
    fake = FakeAccept(delay=0.05)
    co = AcceptCoalescer(fake, max_inflight=1)
    got: dict[str, str] = {}

    async def one(tag: str) -> None:
        try:
            [r] = await co.submit(msgs(tag))
            got[tag] = r.id
        except StoreUnavailable:
            got[tag] = "503"

    with trio.fail_after(5):
        async with trio.open_nursery() as outer, trio.open_nursery() as workers:
            await workers.start(co.run)
            outer.start_soon(one, "running")
            await trio.sleep(0.01)  # "running" is in its accept
            outer.start_soon(one, "queued")
            await trio.sleep(0.001)
            workers.cancel_scope.cancel()
    assert got == {"running": "running.0", "queued": "503"}
    assert fake.calls == [["running.0"]]
    async with trio.open_nursery() as n:
        await n.start(co.run)
        with pytest.raises(RuntimeError):  # one run at a time
            await co.run()
        n.cancel_scope.cancel()


@pytest.mark.parametrize("key_twice", [True, False])
async def test_backend_coalesces_real_accepts(mem_store: MemoryStore, config: GatewayConfig,
                                              key_twice: bool) -> None:
    phones = [f"+1212555{k:04d}" for k in range(30)]
    await put_recipients(mem_store, phones)
    rc = RecipientCache(mem_store, policy=config.rules)
    be = GatewayBackend(config, mem_store, Accepter(mem_store, config, rc), rc,
                        clock=lambda: NOW)
    got: dict[int, MessageResult] = {}

    async def one(k: int) -> None:
        key = "same" if key_twice and k < 2 else None
        [got[k]] = await be.submit([MessageIn(to=phones[k], text="Sale",
                                              idempotency_key=key)])

    async with running(be.coalescer), trio.open_nursery() as n:
        for k in range(30):
            n.start_soon(one, k)
    assert be.coalescer.statistics()["batches"] < 30
    ids = {r.id for r in got.values()}
    if key_twice:
        assert got[0] == got[1] and len(ids) == 29
    else:
        assert len(ids) == 30
    for k, r in got.items():
        rec = await be.get_message(r.id)
        assert rec is not None and rec.status == r.status
        if not (key_twice and k < 2):
            assert rec.to == phones[k]
