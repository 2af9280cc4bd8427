"""The dispatcher yields to receipts in progress (``ReceiptGate``, docs/pipeline.md).

The SMSC sends its next receipts only when the ones it sent are acked, after their
commit; while a receipt batch is in progress the feed waits (bounded) for it before a
round, and keeps that round short.
"""

from __future__ import annotations

import trio
import trio.testing

from gateway.config import GatewayConfig
from gateway.pipeline.dispatch import RECEIPT_SHARE_ROUND, RECEIPT_YIELD_MAX_S, ReceiptGate
from gateway.pipeline.inbound import InboundProcessor
from gateway.pipeline.recipients import RecipientCache
from gateway.store import CommitResult, OutboxEntry, Store, StoreUnavailableError, WriteBatch

from .conftest import NOW
from .test_dispatch_harness import FakeInbound, rig
from .test_inbound import receipt_pdu
from .test_inbound_writes import FR1, _submitted

PHONES = [f"+3361234{i:04d}" for i in range(600)]


class _Rounds:
    """The store, noting (time, limit) of each ``due_outbox`` read that found entries."""

    def __init__(self, inner: Store) -> None:
        self._inner = inner
        self.reads: list[tuple[float, int]] = []

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)

    def due_outbox(self, now: float, limit: int) -> list[OutboxEntry]:
        got = self._inner.due_outbox(now, limit)
        if got:
            self.reads.append((trio.current_time(), limit))
        return got


async def test_gate_wait_returns_at_once_when_idle_else_at_leave_or_limit(
        autojump_clock: trio.testing.MockClock) -> None:
    gate = ReceiptGate()
    t0 = trio.current_time()
    await gate.wait(1.0)
    assert trio.current_time() == t0
    gate.enter()
    await gate.wait(0.5)  # nobody leaves: the limit
    assert trio.current_time() - t0 == 0.5
    async with trio.open_nursery() as nursery:
        nursery.start_soon(gate.wait, 10.0)
        await trio.sleep(0.25)
        gate.leave()
    assert trio.current_time() - t0 == 0.75 and gate.busy == 0


async def test_rounds_wait_for_receipts_and_stay_short_while_they_come(
        mem_store: Store, autojump_clock: trio.testing.MockClock) -> None:
    rounds = _Rounds(mem_store)
    async with rig(rounds, carrier={"window": 512}) as r:  # type: ignore[arg-type]
        gate = ReceiptGate()
        r.dispatcher.share_with(gate)
        gate.enter()  # a receipt batch in progress that never ends
        t0 = trio.current_time()
        ids = await r.send(PHONES)
        await r.wait_until(lambda: bool(rounds.reads))
        # The first round waited for the batch (here: the bound) and took a short one.
        first_at, first_limit = rounds.reads[0]
        assert first_at - t0 >= RECEIPT_YIELD_MAX_S
        assert first_limit == RECEIPT_SHARE_ROUND
        await r.wait_until(lambda: r.dispatcher.statistics().dispatched >= 2 * RECEIPT_SHARE_ROUND)
        assert all(limit == RECEIPT_SHARE_ROUND for _, limit in rounds.reads)
        gate.leave()  # receipts done (the round already waiting stays short)
        await r.wait(ids, {"submitted", "delivered"})
        n = len(rounds.reads)
        t1 = trio.current_time()
        await r.send([p.replace("+33612", "+33613") for p in PHONES])
        await r.wait_until(lambda: len(rounds.reads) > n)
        # Nothing in progress: a full round, without waiting.
        assert rounds.reads[n][1] > RECEIPT_SHARE_ROUND and rounds.reads[n][0] - t1 < 0.01


async def test_round_starts_when_the_receipt_batch_is_acked(
        mem_store: Store, autojump_clock: trio.testing.MockClock) -> None:
    rounds = _Rounds(mem_store)
    async with rig(rounds) as r:  # type: ignore[arg-type]
        gate = ReceiptGate()
        r.dispatcher.share_with(gate)
        gate.enter()
        t0 = trio.current_time()

        async def ack_soon() -> None:
            await trio.sleep(RECEIPT_YIELD_MAX_S / 4)
            gate.leave()

        r.nursery.start_soon(ack_soon)
        await r.send(PHONES[:10])
        await r.wait_until(lambda: bool(rounds.reads))
        assert rounds.reads[0][0] - t0 == RECEIPT_YIELD_MAX_S / 4


class _Dispatcher:
    """What the inbound processor uses of the dispatcher, and the gate it registers."""

    def __init__(self) -> None:
        self.gate: ReceiptGate | None = None

    def share_with(self, gate: ReceiptGate) -> None:
        self.gate = gate

    def pending_carrier_id(self, carrier: str, keys: object) -> None:
        return None

    def awaiting_response(self, carrier: str | None = None) -> int:
        return 0

    async def wait_committed(self) -> None:
        return None


class _SeeGate:
    """The store, noting the gate's state at each commit; fails commits while ``fail``."""

    def __init__(self, inner: Store, d: _Dispatcher) -> None:
        self._inner = inner
        self._d = d
        self.busy_at_commit: list[int] = []
        self.fail = False

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)

    async def commit(self, batch: WriteBatch) -> CommitResult:
        assert self._d.gate is not None
        self.busy_at_commit.append(self._d.gate.busy)
        if self.fail:
            raise StoreUnavailableError("disk gone")
        return await self._inner.commit(batch)


async def test_inbound_holds_the_gate_from_build_to_ack(mem_store: Store,
                                                        config: GatewayConfig) -> None:
    d = _Dispatcher()
    store = _SeeGate(mem_store, d)
    proc = InboundProcessor(store, config, RecipientCache(store, policy=config.rules),  # type: ignore[arg-type]
                            None, d, clock=lambda: NOW + 5)
    assert d.gate is not None
    await _submitted(mem_store, "M1", 2)
    a = FakeInbound(receipt_pdu(FR1[1:], "AM10", "DELIVRD"))
    await proc.process([a])  # type: ignore[list-item]
    assert store.busy_at_commit == [1] and d.gate.busy == 0 and a.acked
    store.fail = True
    b = FakeInbound(receipt_pdu(FR1[1:], "AM11", "DELIVRD"))
    await proc.process([b])  # type: ignore[list-item]
    assert store.busy_at_commit == [1, 1] and d.gate.busy == 0 and not b.acked


async def test_a_stop_while_yielding_takes_no_round(
        mem_store: Store, autojump_clock: trio.testing.MockClock) -> None:
    # drain() while the feed waits for a receipt batch: the feed looks again after the
    # wait and sees the stop; no round (no lease, nothing handed to a bind) after drain.
    rounds = _Rounds(mem_store)
    async with rig(rounds) as r:  # type: ignore[arg-type]
        gate = ReceiptGate()
        r.dispatcher.share_with(gate)
        gate.enter()
        [mid] = await r.send(PHONES[0])
        await trio.sleep(RECEIPT_YIELD_MAX_S / 2)  # the feed is waiting on the gate
        assert await r.dispatcher.drain(5.0)
        await trio.sleep(1.0)
        assert rounds.reads == [] and r.server.stats.submits == 0
        assert r.dispatcher.statistics().dispatched == 0
        assert r.get(mid).parts[0].status == "pending"
