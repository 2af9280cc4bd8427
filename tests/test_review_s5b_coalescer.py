"""Session 5b review: the accept coalescer (c7dfab8, c78e552) with real accepts.

A coalesced accept carries several requests; an error that belongs to one request's
message must not reach the others, whose messages were committed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio
import trio.testing

from gateway.api_types import MessageIn, MessageResult, StoreUnavailable
from gateway.backend import AcceptCoalescer, GatewayBackend
from gateway.config import GatewayConfig
from gateway.pipeline import Accepter, RecipientCache
from gateway.store import MemoryStore, WriteBatch
from gateway.store.errors import StoreUnavailableError
from tests.pipeline.conftest import NOW, config, mem_store, put_recipients  # noqa: F401

PHONES = [f"+1212555{k:04d}" for k in range(10)]


@asynccontextmanager
async def running(co: AcceptCoalescer) -> AsyncIterator[None]:
    async with trio.open_nursery() as n:
        await n.start(co.run)
        yield
        n.cancel_scope.cancel()


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
