"""InboundProcessor: which deliveries are read as receipts (the esm_class message type,
SMPP 3.4 §5.2.12): 0x04 receipts and 0x20 intermediate notifications, whatever the UDHI
or reply-path bits; anything else is an MO, even when its text looks like a receipt."""

from __future__ import annotations

import msgspec

from gateway.config import GatewayConfig
from gateway.smpp import pdu as P
from gateway.store import Store

from .test_dispatch_harness import FakeInbound
from .test_inbound import receipt_pdu
from .test_inbound_writes import FR1, _events, _processor, _submitted


def _with_esm(pdu: P.DeliverSm, esm: int) -> P.DeliverSm:
    return msgspec.structs.replace(pdu, esm_class=esm)


async def test_intermediate_notification_is_a_receipt(mem_store: Store,
                                                      config: GatewayConfig) -> None:
    await _submitted(mem_store, "M1", 1)
    inb = FakeInbound(_with_esm(receipt_pdu(FR1[1:], "AM10", "ENROUTE"), 0x20))
    proc = _processor(mem_store, config)
    await proc.process([inb])  # type: ignore[list-item]
    rec = mem_store.get_message("M1")
    assert rec is not None and inb.acked
    assert rec.parts[0].receipt_stat == "ENROUTE" and rec.parts[0].status == "accepted"
    assert _events(mem_store, "M1") == [("receipt", "accepted")]
    assert proc.statistics().receipts == 1 and proc.statistics().mo == 0


async def test_receipt_with_reply_path_bit_is_a_receipt(mem_store: Store,
                                                        config: GatewayConfig) -> None:
    await _submitted(mem_store, "M1", 1)
    inb = FakeInbound(_with_esm(receipt_pdu(FR1[1:], "AM10", "DELIVRD"), 0x84))
    proc = _processor(mem_store, config)
    await proc.process([inb])  # type: ignore[list-item]
    rec = mem_store.get_message("M1")
    assert rec is not None and rec.status == "delivered" and inb.acked


async def test_receipt_text_without_the_receipt_type_is_an_mo(mem_store: Store,
                                                              config: GatewayConfig) -> None:
    await _submitted(mem_store, "M1", 1)
    inb = FakeInbound(_with_esm(receipt_pdu(FR1[1:], "AM10", "DELIVRD"), 0x00))
    proc = _processor(mem_store, config)
    await proc.process([inb])  # type: ignore[list-item]
    rec = mem_store.get_message("M1")
    assert rec is not None and rec.status == "submitted" and inb.acked
    assert proc.statistics().receipts == 0 and proc.statistics().mo == 1
