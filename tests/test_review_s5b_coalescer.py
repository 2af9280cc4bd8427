"""Session 5b review: the accept coalescer (c7dfab8, c78e552) with real accepts.

A coalesced accept carries several requests; an error that belongs to one request's
message must not reach the others, whose messages were committed.
"""

from __future__ import annotations

import random

import pytest
import trio
import trio.testing

from gateway.api_types import Backpressure, MessageIn, MessageResult, StoreUnavailable
from gateway.backend import AcceptCoalescer, GatewayBackend
from gateway.config import GatewayConfig
from gateway.pipeline import Accepter, RecipientCache
from gateway.store import MemoryStore, WriteBatch
from gateway.store.errors import StoreUnavailableError
from tests.pipeline.conftest import NOW, config, mem_store, put_recipients  # noqa: F401
from tests.pipeline.test_coalescer import running

PHONES = [f"+1212555{k:04d}" for k in range(10)]


async def test_a_failed_idempotency_leader_fails_only_the_request_that_followed_it(
        mem_store: MemoryStore, config: GatewayConfig) -> None:  # noqa: F811
    """Request A's accept (key K) is committing when B (key K) and C (no key) are
    coalesced into the next accept: B follows A's key, C's message is committed. A's
    commit fails: B gets 503, but C's message was stored and C must get its result."""
    await put_recipients(mem_store, PHONES)
    rc = RecipientCache(mem_store, policy=config.rules)
    be = GatewayBackend(config, mem_store, Accepter(mem_store, config, rc), rc,
                        clock=lambda: NOW)
    gate = trio.Event()
    orig = mem_store.commit
    first = [True]

    async def commit(batch: WriteBatch):  # type: ignore[no-untyped-def]
        if first[0]:
            first[0] = False
            await gate.wait()
            raise StoreUnavailableError("disk gone")
        return await orig(batch)

    mem_store.commit = commit  # type: ignore[method-assign]
    got: dict[str, list[MessageResult] | BaseException] = {}

    async def one(tag: str, phone: str, key: str | None) -> None:
        try:
            got[tag] = await be.submit([MessageIn(to=phone, text="Sale", idempotency_key=key)])
        except StoreUnavailable as e:
            got[tag] = e

    with trio.fail_after(5):
        async with running(be.coalescer), trio.open_nursery() as n:
            n.start_soon(one, "A", PHONES[0], "K")
            await trio.testing.wait_all_tasks_blocked()  # A's accept waits in its commit
            n.start_soon(one, "B", PHONES[1], "K")
            n.start_soon(one, "C", PHONES[2], None)
            await trio.testing.wait_all_tasks_blocked()  # B+C committed, following K
            assert be.coalescer.statistics()["batches"] == 2
            gate.set()
    assert isinstance(got["A"], StoreUnavailable)
    assert isinstance(got["B"], StoreUnavailable)
    c = got["C"]
    assert isinstance(c, list), f"C's message was committed, yet C got {c!r}"
    rec = await be.get_message(c[0].id)
    assert rec is not None and rec.to == PHONES[2]


# --- probes that found no bug ---------------------------------------------------------


@pytest.mark.parametrize("seed", range(12))
async def test_probe_random_load_every_request_answered_in_order_within_inflight(
        seed: int, autojump_clock: trio.testing.MockClock) -> None:
    """Random sizes (lead path and queue), arrival times, accept delays, failures and
    cancellations: every request not cancelled gets its own results in its order (or
    its accept's error); never more than ``max_inflight`` coalesced or lead accepts at
    once; nothing left queued or counted busy; nobody left waiting (``fail_after``)."""
    rng = random.Random(seed)
    inflight = [0, 0]  # now, max
    accepted: list[str] = []

    async def accept(messages: list[MessageIn], now: float) -> list[MessageResult]:
        big = messages[0].text.startswith("B")  # over max_request: its own accept, always
        inflight[0] += not big
        inflight[1] = max(inflight[1], inflight[0])
        try:
            await trio.sleep(rng.choice((0, 0.001, 0.003, 0.01)))
            if rng.random() < 0.1:
                raise Backpressure(1.0)
            accepted.extend(m.text for m in messages)
            return [MessageResult(id=m.text, status="queued") for m in messages]
        finally:
            inflight[0] -= not big

    max_inflight = rng.choice((1, 2, 3))
    co = AcceptCoalescer(accept, max_request=20, max_batch=25, max_inflight=max_inflight,
                         lead_min=5)
    answered: dict[str, str] = {}
    gone_queued: list[str] = []

    async def one(tag: str, n: int, cancel_after: float | None) -> None:
        await trio.sleep(rng.random() * 0.02)
        texts = [f"{tag}.{i}" for i in range(n)]
        with trio.CancelScope() as scope:
            if cancel_after is not None:
                scope.deadline = trio.current_time() + cancel_after
            try:
                res = await co.submit([MessageIn(to="+12125550100", text=t) for t in texts])
            except Backpressure:
                answered[tag] = "429"
                return
            assert [r.id for r in res] == texts
            answered[tag] = "ok"
        if scope.cancelled_caught:
            gone_queued.append(tag)

    with trio.fail_after(60):
        async with trio.open_nursery() as workers:
            await workers.start(co.run)
            async with trio.open_nursery() as n:
                for k in range(80):
                    size = rng.choice((1, 1, 1, 2, 3, 5, 8, 25))
                    cancel = rng.choice((None, None, None, 0.0, 0.002, 0.005))
                    n.start_soon(one, f"{'B' if size > 20 else 'r'}{k}", size, cancel)
            await trio.sleep(1)  # accepts of requests cancelled in them end meanwhile
            st = co.statistics()
            assert st["queued"] == 0 and st["inflight"] == 0 and inflight[0] == 0
            workers.cancel_scope.cancel()
    assert inflight[1] <= max_inflight
    for tag in gone_queued:
        assert tag not in answered
    assert len(answered) + len(gone_queued) == 80


async def test_probe_stopping_with_a_lead_accept_and_queued_requests(
        autojump_clock: trio.testing.MockClock) -> None:
    """``run`` cancelled while a big request runs its own accept (caller's task) and a
    worker's accept is under way: both answer; a request queued meanwhile gets 503; a
    request after the stop runs its own accept."""
    async def accept(messages: list[MessageIn], now: float) -> list[MessageResult]:
        await trio.sleep(0.05)
        return [MessageResult(id=m.text, status="queued") for m in messages]

    co = AcceptCoalescer(accept, max_inflight=2, lead_min=3)
    got: dict[str, object] = {}

    async def one(tag: str, n: int) -> None:
        try:
            got[tag] = [r.id for r in await co.submit(
                [MessageIn(to="+12125550100", text=f"{tag}.{i}") for i in range(n)])]
        except StoreUnavailable:
            got[tag] = "503"

    with trio.fail_after(5):
        async with trio.open_nursery() as outer:
            async with trio.open_nursery() as workers:
                await workers.start(co.run)
                outer.start_soon(one, "lead", 3)
                await trio.testing.wait_all_tasks_blocked()  # in its own accept
                outer.start_soon(one, "small", 1)
                await trio.sleep(0.01)  # both accepts under way, the 2 slots taken
                assert co.statistics()["inflight"] == 2
                outer.start_soon(one, "queued", 1)
                await trio.sleep(0.001)
                workers.cancel_scope.cancel()
            assert co.statistics()["queued"] == 0
            outer.start_soon(one, "after", 1)
    assert got == {"lead": ["lead.0", "lead.1", "lead.2"], "small": ["small.0"],
                   "queued": "503", "after": ["after.0"]}


async def test_a_restarted_run_keeps_counting_an_accept_still_under_way(
        autojump_clock: trio.testing.MockClock) -> None:
    """``run`` stopped while a big request's accept runs in its caller's task, then
    started again (same coalescer): that accept still holds its slot, so with
    ``max_inflight=1`` the next request waits for it instead of running beside it."""
    inflight = [0, 0]

    async def accept(messages: list[MessageIn], now: float) -> list[MessageResult]:
        inflight[0] += 1
        inflight[1] = max(inflight[1], inflight[0])
        await trio.sleep(0.05)
        inflight[0] -= 1
        return [MessageResult(id=m.text, status="queued") for m in messages]

    co = AcceptCoalescer(accept, max_inflight=1, lead_min=3)

    def batch(tag: str, n: int) -> list[MessageIn]:
        return [MessageIn(to="+12125550100", text=f"{tag}.{i}") for i in range(n)]

    with trio.fail_after(5):
        async with trio.open_nursery() as outer:
            async with trio.open_nursery() as workers:
                await workers.start(co.run)
                outer.start_soon(co.submit, batch("lead", 3))
                await trio.testing.wait_all_tasks_blocked()
                assert co.statistics()["inflight"] == 1
                workers.cancel_scope.cancel()
            async with trio.open_nursery() as workers:
                await workers.start(co.run)
                await co.submit(batch("next", 1))
                workers.cancel_scope.cancel()
    assert inflight[1] == 1
    assert co.statistics()["inflight"] == 0
