"""Statistics added for metrics: rejections by reason (also from re-evaluation) and the
submit -> receipt latency the inbound processor reports once a receipt is committed."""

from __future__ import annotations

from datetime import UTC, datetime

import trio
import trio.testing

from gateway.api_types import MessageIn
from gateway.config import GatewayConfig
from gateway.pipeline import Accepter, RecipientCache
from gateway.store import MemoryStore, Store

from .conftest import LA, LA2, NIGHT, NY, put_recipients
from .test_dispatch_harness import rig, stats


async def test_rejections_by_reason_include_reevaluation(mem_store: MemoryStore,
                                                         config: GatewayConfig) -> None:
    await put_recipients(mem_store, [LA, LA2, NY])
    rc = RecipientCache(mem_store, policy=config.rules)
    acc = Accepter(mem_store, config, rc)
    res = await acc.accept([MessageIn(to=LA, text="Sale"), MessageIn(to=LA2, text="Sale"),
                            MessageIn(to="+1555", text="Sale")], NIGHT)
    assert [r.status for r in res] == ["scheduled", "scheduled", "rejected"]
    assert acc.statistics().rejected_by_reason == {"invalid_number": 1}
    # LA2 unsubscribes while scheduled: the re-evaluation rejects it
    await put_recipients(mem_store, [LA2], consent="unsubscribed")
    rc.invalidate([LA2])
    recs = [mem_store.get_message(r.id) for r in res[:2]]
    wake = datetime(2026, 1, 2, 16, 30, tzinfo=UTC).timestamp()
    outs = await acc.reevaluate([r for r in recs if r is not None], wake)
    assert [o.action for o in outs] == ["send", "reject"]
    assert acc.statistics().rejected_by_reason == {"invalid_number": 1, "opted_out": 1}


async def test_receipt_latency_is_reported_after_the_commit(
        mem_store: Store, autojump_clock: trio.testing.MockClock) -> None:
    seen: list[tuple[str, float]] = []
    async with rig(mem_store, sim={"dlr_stats": stats("DELIVRD"), "dlr_delay": 3.0}) as r:
        r.inbound.on_receipt_latencies = seen.extend
        [mid] = await r.send(LA)
        await r.wait([mid], "delivered")
        assert len(seen) == 1
        carrier, seconds = seen[0]
        assert carrier == "sb" and 2.9 <= seconds <= 3.5
