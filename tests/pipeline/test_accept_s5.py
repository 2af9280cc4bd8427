"""Accepter: building a batch takes no schedule point (session 5), and cancellation before
the build still stores nothing."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from gateway.api_types import MessageIn
from gateway.config import GatewayConfig
from gateway.pipeline import Accepter, RecipientCache, ReplyRequest
from gateway.store import MemoryStore, WriteBatch
from rules.model import ReplyKind
from tests.pipeline.conftest import LA, NIGHT, NOW, NY, put_recipients


class _Steps(trio.abc.Instrument):
    """Counts the steps of one task: a schedule point ends a step."""

    def __init__(self, task: trio.lowlevel.Task) -> None:
        self.task = task
        self.n = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if task is self.task:
            self.n += 1


class _SpyStore:
    """The store, noting the task's step count when a commit comes in."""

    def __init__(self, inner: MemoryStore) -> None:
        self._inner = inner
        self.steps: _Steps | None = None
        self.seen: list[int] = []

    async def commit(self, batch: WriteBatch) -> Any:
        assert self.steps is not None
        self.seen.append(self.steps.n)
        return await self._inner.commit(batch)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@pytest.mark.parametrize("what", ["accept", "reevaluate", "replies"])
async def test_no_schedule_point_between_call_and_commit(
        mem_store: MemoryStore, config: GatewayConfig, what: str) -> None:
    """The build is synchronous, so no lock and no yield before it: under load a yield
    there cost the accept a whole round of the run queue (~1 ms) before it was built.
    With the old ``async with trio.Lock()`` the task takes a step more and this fails."""
    await put_recipients(mem_store, [LA, NY])
    store = _SpyStore(mem_store)
    rc = RecipientCache(store, policy=config.rules)  # type: ignore[arg-type]
    acc = Accepter(store, config, rc)  # type: ignore[arg-type]
    steps = store.steps = _Steps(trio.lowlevel.current_task())
    scheduled = None
    if what == "reevaluate":
        [r] = await acc.accept([MessageIn(to=NY, text="Big sale", kind="campaign",
                                          campaign_id="c")], NIGHT)
        assert r.status == "scheduled"
        scheduled = mem_store.get_message(r.id)
        assert scheduled is not None
    trio.lowlevel.add_instrument(steps)
    try:
        store.seen.clear()
        before = steps.n
        if what == "accept":
            res = await acc.accept([MessageIn(to=LA, text="Your code is 1234",
                                              kind="transactional")], NOW)
            assert res[0].status == "queued"
        elif what == "reevaluate":
            assert scheduled is not None
            await acc.reevaluate([scheduled], NOW)
        else:
            await acc.accept_replies([ReplyRequest(phone=LA, text="Help: call us",
                                                   reply_to=ReplyKind.HELP)], NOW)
        assert store.seen == [before]
        await trio.lowlevel.checkpoint()
        assert steps.n > before  # the instrument does count this task's steps
    finally:
        trio.lowlevel.remove_instrument(steps)


async def test_cancelled_before_the_build_stores_nothing(
        mem_store: MemoryStore, config: GatewayConfig) -> None:
    await put_recipients(mem_store, [LA])
    rc = RecipientCache(mem_store, policy=config.rules)
    acc = Accepter(mem_store, config, rc)
    with trio.CancelScope() as scope:
        scope.cancel()
        await acc.accept([MessageIn(to=LA, text="Your code is 1234", kind="transactional")],
                         NOW)
    assert scope.cancelled_caught
    assert mem_store.events_after(0, 10) == []
    assert acc.stats.batches == 0
