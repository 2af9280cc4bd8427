"""Session 5b review: ``Accepter.accept`` whose build fails half-way (a store read
failing) must not leave the idempotency keys it had claimed "being committed": a later
request with such a key would wait for that commit forever (inside the coalescer's
shielded accept: a request never answered, a worker stuck, the shutdown hung)."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from gateway.api_types import MessageIn
from gateway.config import GatewayConfig
from gateway.pipeline import Accepter, RecipientCache
from gateway.store import MemoryStore
from gateway.store.errors import StoreUnavailableError
from tests.pipeline.conftest import NOW, config, mem_store, put_recipients  # noqa: F401

PHONES = ["+12125550100", "+12125550101"]


async def test_a_build_failing_half_way_releases_the_keys_it_claimed(
        mem_store: MemoryStore, config: GatewayConfig,  # noqa: F811
        autojump_clock: trio.testing.MockClock) -> None:
    await put_recipients(mem_store, PHONES)
    rc = RecipientCache(mem_store, policy=config.rules)
    acc = Accepter(mem_store, config, rc)
    orig = mem_store.get_idempotency

    def get_idempotency(key: str):  # type: ignore[no-untyped-def]
        if key == "K2":
            raise StoreUnavailableError("read failed")
        return orig(key)

    mem_store.get_idempotency = get_idempotency  # type: ignore[method-assign]
    with pytest.raises(StoreUnavailableError):
        await acc.accept([MessageIn(to=PHONES[0], text="a", idempotency_key="K1"),
                          MessageIn(to=PHONES[1], text="b", idempotency_key="K2")], NOW)
    mem_store.get_idempotency = orig  # type: ignore[method-assign]
    with trio.fail_after(5):  # waited for the failed build's "commit" forever
        [r] = await acc.accept([MessageIn(to=PHONES[0], text="a", idempotency_key="K1")],
                               NOW)
    rec = mem_store.get_message(r.id)
    assert rec is not None and rec.status == r.status


async def test_a_build_failing_in_the_recipient_updates_leaves_no_phantom_send_cached(
        mem_store: MemoryStore, config: GatewayConfig,  # noqa: F811
        autojump_clock: trio.testing.MockClock) -> None:
    # The cache is write-through: if writing the batch's recipient updates fails after
    # the first phone's, that phone's cached facts held a send that was never committed
    # (smart sending / caps would then refuse its next message wrongly).
    await put_recipients(mem_store, PHONES)

    class FailingCache(RecipientCache):
        def update(self, phone: str, *args: Any, **kw: Any) -> None:
            if phone == PHONES[1] and self.failing:
                raise StoreUnavailableError("read failed")
            super().update(phone, *args, **kw)

    rc = FailingCache(mem_store, policy=config.rules)
    rc.failing = True
    acc = Accepter(mem_store, config, rc)
    with pytest.raises(StoreUnavailableError):
        await acc.accept([MessageIn(to=PHONES[0], text="a", kind="campaign"),
                          MessageIn(to=PHONES[1], text="b", kind="campaign")], NOW)
    rc.failing = False
    assert mem_store.get_recipient(PHONES[0]) is not None
    assert rc.facts(PHONES[0]).marketing_sends == ()  # nothing was committed
