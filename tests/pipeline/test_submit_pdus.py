"""Encoding parts -> submit_sm: addresses (TON/NPI), UDH / SAR / payload, validity."""

from __future__ import annotations

import msgspec
import pytest

from gateway.config import CarrierConfig
from gateway.encoding import EncodingOptions, SegmentPlan, plan, split_udh
from gateway.pipeline.submit_pdus import SubmitBuilder, relative_validity, source_address
from gateway.smpp import codec
from gateway.smpp import pdu as P
from gateway.smpp.constants import Tag


def carrier(**kw: object) -> CarrierConfig:
    return CarrierConfig(name="c1", host="127.0.0.1", system_id="x", **kw)  # type: ignore[arg-type]


def planned(text: str, segmentation: str = "udh8") -> SegmentPlan:
    p = plan(text, EncodingOptions(segmentation=segmentation), ref=0x1234)  # type: ignore[arg-type]
    assert isinstance(p, SegmentPlan)
    return p


@pytest.mark.parametrize(("sender", "expected"), [
    ("ACME", ("ACME", 5, 0)),
    ("Shop 24", ("Shop 24", 5, 0)),
    ("+33612345678", ("33612345678", 1, 1)),
    ("12345", ("12345", 3, 0)),
    ("87654321", ("87654321", 3, 0)),
    ("447700900123", ("447700900123", 1, 1)),
    ("+ACME", ("+ACME", 5, 0)),
    (None, ("", 0, 0)),
    ("", ("", 0, 0)),
])
def test_source_address(sender: str | None, expected: tuple[str, int, int]) -> None:
    assert source_address(sender) == expected


def test_source_ton_npi_override() -> None:
    assert source_address("12345", ton=2, npi=9) == ("12345", 2, 9)
    b = SubmitBuilder(carrier(source_ton=6, source_npi=0))
    [pdu] = b.build("+33612345678", "1234", 0, planned("hi").parts)
    assert (pdu.source_addr, pdu.source_addr_ton, pdu.source_addr_npi) == ("1234", 6, 0)


def test_default_sender_used_when_message_has_none() -> None:
    b = SubmitBuilder(carrier(default_sender="BRAND"))
    [pdu] = b.build("+33612345678", None, 0, planned("hi").parts)
    assert (pdu.source_addr, pdu.source_addr_ton, pdu.source_addr_npi) == ("BRAND", 5, 0)
    [pdu] = b.build("+33612345678", "+15550001", 0, planned("hi").parts)
    assert (pdu.source_addr, pdu.source_addr_ton) == ("15550001", 1)


def test_single_part_fields() -> None:
    b = SubmitBuilder(carrier(registered_delivery=1, validity_s=86400, service_type="CMT"))
    p = planned("hello")
    [pdu] = b.build("+33612345678", "ACME", p.data_coding, p.parts)
    assert pdu.destination_addr == "33612345678"
    assert (pdu.dest_addr_ton, pdu.dest_addr_npi) == (1, 1)
    assert pdu.registered_delivery == 1
    assert pdu.validity_period == "000001000000000R"
    assert pdu.service_type == "CMT"
    assert pdu.esm_class == 0
    assert pdu.short_message == b"hello"
    assert pdu.tlvs == ()
    codec.encode(pdu, seq=1)  # a valid PDU for our codec


def test_udh_parts_have_udhi_and_concat_header() -> None:
    b = SubmitBuilder(carrier())
    p = planned("é€" * 60 + "x" * 100)  # gsm7 with escapes, 2+ parts
    pdus = b.build("+33612345678", "ACME", p.data_coding, p.parts)
    assert len(pdus) == p.segments >= 2
    for i, pdu in enumerate(pdus, 1):
        assert pdu.esm_class & 0x40
        udh, _ = split_udh(pdu.short_message)
        assert udh.concat is not None
        assert (udh.concat.total, udh.concat.seq) == (len(pdus), i)
        codec.encode(pdu, seq=i)


def test_ucs2_data_coding_kept() -> None:
    b = SubmitBuilder(carrier())
    p = planned("Привет " * 20)
    pdus = b.build("+79161234567", "ACME", p.data_coding, p.parts)
    assert p.data_coding == 8
    assert all(x.data_coding == 8 for x in pdus)


def test_sar_parts_carry_tlvs_not_udh() -> None:
    b = SubmitBuilder(carrier(segmentation="sar"))
    p = planned("x" * 400, "sar")
    pdus = b.build("+33612345678", "ACME", p.data_coding, p.parts)
    assert len(pdus) == 3
    for i, pdu in enumerate(pdus, 1):
        assert not pdu.esm_class & 0x40
        tags = {t.tag: t.value for t in pdu.tlvs}
        assert tags[Tag.SAR_MSG_REF_NUM] == (0x1234).to_bytes(2, "big")
        assert tags[Tag.SAR_TOTAL_SEGMENTS] == b"\x03"
        assert tags[Tag.SAR_SEGMENT_SEQNUM] == bytes([i])
        codec.encode(pdu, seq=i)


def test_payload_mode_one_pdu_sm_length_zero() -> None:
    b = SubmitBuilder(carrier(segmentation="payload"))
    p = planned("y" * 500, "payload")
    [pdu] = b.build("+33612345678", "ACME", p.data_coding, p.parts)
    assert pdu.short_message == b""
    [tlv] = pdu.tlvs
    assert tlv.tag == Tag.MESSAGE_PAYLOAD and tlv.value == b"y" * 500
    frame = codec.encode(pdu, seq=7)
    got = codec.decode(frame).pdu
    assert isinstance(got, P.SubmitSm) and got.tlvs[0].value == b"y" * 500


@pytest.mark.parametrize(("seconds", "text"), [
    (60, "000000000100000R"),
    (3600, "000000010000000R"),
    (86400, "000001000000000R"),
    (7 * 86400 + 61, "000007000101000R"),
    (400 * 86400, "010035000000000R"),
])
def test_relative_validity(seconds: int, text: str) -> None:
    assert relative_validity(seconds) == text
    assert len(text) == 16


def test_relative_validity_limits() -> None:
    with pytest.raises(ValueError):
        relative_validity(-1)


def test_no_validity_means_smsc_default() -> None:
    [pdu] = SubmitBuilder(carrier()).build("+1", "A", 0, planned("x").parts)
    assert pdu.validity_period == ""


def test_builder_output_equals_smpplib_view() -> None:
    """Fields survive a round trip through our codec (smpplib parity is the codec's test)."""
    b = SubmitBuilder(carrier(validity_s=3600))
    p = planned("hello world")
    [pdu] = b.build("+447700900123", "+447700900999", p.data_coding, p.parts)
    got = codec.decode(codec.encode(pdu, seq=3)).pdu
    assert msgspec.structs.asdict(got) == msgspec.structs.asdict(pdu)
