"""InboundProcessor: which deliveries are read as receipts (the esm_class message type,
SMPP 3.4 §5.2.12): 0x04 receipts and 0x20 intermediate notifications, whatever the UDHI
or reply-path bits; anything else is an MO, even when its text looks like a receipt. And
which stored carrier id a receipt finds (its first lookup key, else the others)."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.config import GatewayConfig
from gateway.smpp import pdu as P
from gateway.smpp import receipted_message_id_tlv
from gateway.store import Store, WriteBatch
from gateway.store.keys import carrier_key

from .conftest import NOW
from .test_dispatch_harness import FakeInbound
from .test_inbound import receipt_pdu
from .test_inbound_writes import FR1, _events, _processor, _record, _submitted


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


async def _submitted_as(store: Store, mid: str, carrier_id: str) -> None:
    batch = WriteBatch()
    rec = _record(mid, 1)
    batch.put_message(msgspec.structs.replace(
        rec, parts=(msgspec.structs.replace(rec.parts[0], carrier_msg_id=carrier_id),)))
    batch.put_carrier_id("c1", carrier_id, mid, 0, NOW + 1)
    await store.commit(batch)


@pytest.mark.parametrize(("stored", "text_id", "tlv_id"), [
    ("B8BE19", "12107289", None),          # hex resp id, decimal receipt id: 2nd key
    ("12107289", "b8be19", None),          # decimal resp id, hex receipt id: 3rd key
    ("B8BE19", "00b8be19", "ffff0000"),    # TLV id unknown: the text id's key
])
async def test_receipt_found_under_a_later_key(mem_store: Store, config: GatewayConfig,
                                               stored: str, text_id: str,
                                               tlv_id: str | None) -> None:
    """Only the first key is tried alone; a miss there tries the others, in order."""
    await _submitted_as(mem_store, "M1", stored)
    pdu = receipt_pdu(FR1[1:], text_id, "DELIVRD")
    if tlv_id is not None:
        pdu = msgspec.structs.replace(pdu, tlvs=(receipted_message_id_tlv(tlv_id),))
    inb = FakeInbound(pdu)
    proc = _processor(mem_store, config)
    await proc.process([inb])  # type: ignore[list-item]
    rec = mem_store.get_message("M1")
    assert rec is not None and rec.status == "delivered" and inb.acked
    assert proc.statistics().unmatched == 0


@given(carrier=st.text(min_size=1, max_size=20), cid=st.text(max_size=70))
def test_lookup_key_is_carrier_key(carrier: str, cid: str) -> None:
    """``_lookup`` builds ``carrier_key(carrier, id)`` as the carrier's part (made once per
    batch) + the id: the same bytes whenever carrier_key accepts them."""
    try:
        expect = carrier_key(carrier, cid)
    except ValueError:
        return  # (_lookup then calls carrier_key itself, which raises the same)
    assert carrier_key(carrier, "x")[:-1] + cid.encode() == expect
