"""InboundStats: deliver_sm arrival -> ack, the time that bounds receipts/s per session
(an SMSC sends at most its window of unacked deliveries)."""

from __future__ import annotations

import trio
import trio.testing

from gateway.config import GatewayConfig
from gateway.pipeline.inbound import ACK_LATENCY_BUCKETS, InboundProcessor
from gateway.pipeline.recipients import RecipientCache
from gateway.store import Store

from .conftest import NOW
from .test_dispatch_harness import FakeInbound
from .test_inbound import receipt_pdu
from .test_inbound_writes import FR1, _submitted

Clock = trio.testing.MockClock


class _Timed(FakeInbound):
    """A delivery with its arrival time at the bind (trio's clock), like ``Inbound``."""

    def __init__(self, cid: str) -> None:
        super().__init__(receipt_pdu(FR1[1:], cid, "DELIVRD"))
        self.received_at = trio.current_time()


async def test_arrival_to_ack_is_counted_per_delivery(mem_store: Store, config: GatewayConfig,
                                                      autojump_clock: Clock) -> None:
    await _submitted(mem_store, "M1", 1)
    await _submitted(mem_store, "M2", 1)
    proc = InboundProcessor(mem_store, config, RecipientCache(mem_store, policy=config.rules),
                            None, None, clock=lambda: NOW + 5)
    empty = proc.statistics()
    assert empty.ack_latency_count == 0 and empty.ack_latency_sum == 0.0
    assert [n for _, n in empty.ack_latency_buckets] == [0] * (len(ACK_LATENCY_BUCKETS) + 1)
    a = _Timed("AM10")
    await trio.sleep(0.03)
    b = _Timed("AM20")
    await trio.sleep(0.002)
    unknown = _Timed("NOSUCH")  # unmatched: acked too
    untimed = FakeInbound(receipt_pdu(FR1[1:], "NOSUCH2", "DELIVRD"))  # no arrival time
    await proc.process([a, b, unknown, untimed])  # type: ignore[list-item]
    assert a.acked and b.acked and unknown.acked and untimed.acked
    st = proc.statistics()
    assert st.acked == 4 and st.ack_latency_count == 3
    assert abs(st.ack_latency_sum - (0.032 + 0.002 + 0.0)) < 1e-6
    buckets = dict(st.ack_latency_buckets)
    assert buckets[0.001] == 1  # unknown: 0 s
    assert buckets[0.0025] == 2  # b: 2 ms (le)
    assert buckets[0.025] == 2 and buckets[0.05] == 3  # a: 32 ms
    assert buckets[float("inf")] == 3
    assert [le for le, _ in st.ack_latency_buckets] == [*ACK_LATENCY_BUCKETS, float("inf")]
