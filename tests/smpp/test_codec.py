"""The codec: round trips, limits, lenient responses, error statuses, fast == generic."""

from __future__ import annotations

import struct

import pytest

from gateway.smpp import (
    PDU_TYPES,
    BindReceiverResp,
    BindTransmitter,
    CommandId,
    CommandStatus,
    DataSm,
    DecodeError,
    DeliverSm,
    DeliverSmResp,
    EncodeError,
    EnquireLink,
    EnquireLinkResp,
    Frame,
    GenericNack,
    LocalProtocolError,
    Outbind,
    Pdu,
    PduBuffer,
    QuerySm,
    QuerySmResp,
    RemoteProtocolError,
    ReplaceSm,
    SmeAddress,
    SubmitMulti,
    SubmitMultiResp,
    SubmitSm,
    SubmitSmResp,
    Tlv,
    UnsuccessSme,
    decode,
    decode_header,
    encode,
    message_payload_tlv,
)
from gateway.smpp import codec as codec_mod

from .samples import ALL, sample_id


def hdr(cid: int, body: bytes = b"", status: int = 0, seq: int = 1) -> bytes:
    return struct.pack(">IIII", 16 + len(body), cid, status, seq) + body


def feed_whole(data: bytes) -> list[bytes]:
    buf = PduBuffer()
    buf.feed(data)
    return buf.frames()


def feed_bytewise(data: bytes) -> list[bytes]:
    """Feed one octet at a time; next_frame() is None until the frame is complete."""
    buf = PduBuffer()
    out = []
    for i in range(len(data)):
        buf.feed(data[i : i + 1])
        frame = buf.next_frame()
        if frame is None:
            continue
        out.append(frame)
    assert buf.next_frame() is None
    return out


# --- round trips --------------------------------------------------------------------------


@pytest.mark.parametrize("pdu", ALL, ids=sample_id)
def test_round_trip(pdu: Pdu) -> None:
    data = encode(pdu, seq=0x7FFFFFFF)
    frame = decode(data)
    assert frame == Frame(pdu.command_id, 0, 0x7FFFFFFF, pdu)
    assert type(frame.command_id) is CommandId
    assert encode(frame.pdu, seq=0x7FFFFFFF) == data
    # the generic (reference) layer gives the same bytes and the same PDU
    assert codec_mod._encode_generic(pdu, 0x7FFFFFFF, 0) == data
    assert codec_mod._decode_generic(type(pdu), data) == pdu


@pytest.mark.parametrize("pdu", ALL, ids=sample_id)
def test_whole_bytewise_and_trailing(pdu: Pdu) -> None:
    data = encode(pdu, seq=42)
    assert feed_whole(data) == [data]
    assert feed_bytewise(data) == [data]
    buf = PduBuffer()
    trailing = encode(EnquireLink(), seq=43)[:7]
    buf.feed(data + trailing)
    frame = buf.next_frame()
    assert frame == data
    assert buf.next_frame() is None
    assert buf.pending == len(trailing)
    assert decode(frame).pdu == pdu
    # two frames in one chunk, then the trailing half of a third
    buf = PduBuffer()
    buf.feed(data + data + trailing)
    assert buf.frames() == [data, data]
    assert buf.pending == 7


def test_header_and_status_survive() -> None:
    data = encode(SubmitSmResp(message_id="x"), seq=7, status=CommandStatus.RTHROTTLED)
    assert decode_header(data) == (len(data), CommandId.SUBMIT_SM_RESP, 0x58, 7)
    f = decode(data)
    assert (f.command_status, f.sequence_number) == (0x58, 7)


def test_known_bytes_submit_sm() -> None:
    """A frame checked by hand against SMPP 3.4 §4.4.1."""
    pdu = SubmitSm(source_addr_ton=5, source_addr="Shop", dest_addr_ton=1, dest_addr_npi=1,
                   destination_addr="4477", registered_delivery=1, short_message=b"hi")
    body = (b"\0" b"\x05\x00Shop\0" b"\x01\x014477\0" b"\x00\x00\x00" b"\0\0"
            b"\x01\x00\x00\x00" b"\x02hi")  # fmt: skip
    assert encode(pdu, seq=2) == hdr(4, body, seq=2)


def test_enquire_link_is_header_only() -> None:
    assert encode(EnquireLink(), seq=1) == bytes.fromhex("00000010000000150000000000000001")
    assert decode(hdr(0x15)).pdu == EnquireLink()


# --- responses without a body (SMPP 3.4 §4.4.2) -------------------------------------------


@pytest.mark.parametrize("cls", [c for c in PDU_TYPES.values() if c.command_id & 0x80000000])
def test_error_response_without_body(cls: type[Pdu]) -> None:
    f = decode(hdr(cls.command_id, status=0x45, seq=9))
    assert f.pdu == cls() and f.command_status == 0x45  # type: ignore[call-arg]
    # and we write the error form without a body too
    assert encode(f.pdu, seq=9, status=0x45) == hdr(cls.command_id, status=0x45, seq=9)


def test_error_response_with_body_is_kept() -> None:
    data = encode(SubmitSmResp(message_id="abc"), seq=1, status=0x58)
    assert len(data) == 20
    assert decode(data).pdu == SubmitSmResp(message_id="abc")


def test_ok_response_without_body_is_accepted() -> None:
    """Some SMSCs answer deliver_sm/bind with a bare header even on success."""
    assert decode(hdr(0x80000005)).pdu == DeliverSmResp()
    assert decode(hdr(0x80000001)).pdu == BindReceiverResp()
    assert encode(DeliverSmResp(), seq=1) == hdr(0x80000005, b"\0")


# --- size limits ---------------------------------------------------------------------------

LIMITS = [
    # (class, extra kwargs, field, max octets incl. NUL, status)
    (SubmitSm, {"destination_addr": "1"}, "service_type", 6, CommandStatus.RINVSERTYP),
    (SubmitSm, {"destination_addr": "1"}, "source_addr", 21, CommandStatus.RINVSRCADR),
    (SubmitSm, {}, "destination_addr", 21, CommandStatus.RINVDSTADR),
    (DeliverSm, {}, "destination_addr", 21, CommandStatus.RINVDSTADR),
    (DeliverSm, {"destination_addr": "1"}, "source_addr", 21, CommandStatus.RINVSRCADR),
    (SubmitSmResp, {}, "message_id", 65, CommandStatus.RINVMSGID),
    (BindTransmitter, {}, "system_id", 16, CommandStatus.RINVSYSID),
    (BindTransmitter, {}, "password", 9, CommandStatus.RINVPASWD),
    (BindTransmitter, {}, "system_type", 13, CommandStatus.RINVSYSTYP),
    (BindTransmitter, {}, "address_range", 41, CommandStatus.RBINDFAIL),
    (Outbind, {}, "system_id", 16, CommandStatus.RINVSYSID),
    (DataSm, {}, "destination_addr", 65, CommandStatus.RINVDSTADR),
    (DataSm, {"destination_addr": "1"}, "source_addr", 65, CommandStatus.RINVSRCADR),
    (QuerySm, {}, "message_id", 65, CommandStatus.RINVMSGID),
    (SubmitSm, {"destination_addr": "1"}, "schedule_delivery_time", 17, CommandStatus.RINVSCHED),
    (DeliverSm, {"destination_addr": "1"}, "validity_period", 17, CommandStatus.RINVEXPIRY),
    (ReplaceSm, {}, "message_id", 65, CommandStatus.RINVMSGID),
]


@pytest.mark.parametrize(("cls", "kw", "field", "size", "status"), LIMITS)
def test_cstring_limit_on_encode(
    cls: type[Pdu], kw: dict[str, str], field: str, size: int, status: int
) -> None:
    ok = cls(**kw, **{field: "a" * (size - 1)})  # type: ignore[arg-type]
    assert decode(encode(ok, seq=1)).pdu == ok
    with pytest.raises(EncodeError) as ei:
        encode(cls(**kw, **{field: "a" * size}), seq=1)  # type: ignore[arg-type]
    assert ei.value.field == field
    assert ei.value.status == status
    assert field in str(ei.value)
    assert isinstance(ei.value, LocalProtocolError) and isinstance(ei.value, ValueError)


@pytest.mark.parametrize(("cls", "kw", "field", "size", "status"), LIMITS)
def test_cstring_limit_on_decode(
    cls: type[Pdu], kw: dict[str, str], field: str, size: int, status: int
) -> None:
    # Build the frame with a placeholder of the max length, then widen it by one octet.
    marker = "Z" * (size - 1)
    good = encode(cls(**kw, **{field: marker}), seq=3)  # type: ignore[arg-type]
    i = good.index(marker.encode())
    body = good[16:i] + b"Z" * size + good[i + size - 1 :]
    with pytest.raises(DecodeError) as ei:
        decode(hdr(cls.command_id, body, seq=3))
    assert ei.value.field == field
    assert ei.value.status == status
    assert (ei.value.command_id, ei.value.sequence_number) == (cls.command_id, 3)


def test_encode_rejects_nul_and_non_latin1() -> None:
    with pytest.raises(EncodeError, match="source_addr"):
        encode(SubmitSm(source_addr="a\0b", destination_addr="1"), seq=1)
    with pytest.raises(EncodeError, match="destination_addr"):
        encode(SubmitSm(destination_addr="☃"), seq=1)
    with pytest.raises(EncodeError, match="message_id"):
        encode(SubmitSmResp(message_id="a\0"), seq=1)


def test_encode_rejects_bad_integers_and_times() -> None:
    with pytest.raises(EncodeError, match="esm_class"):
        encode(SubmitSm(destination_addr="1", esm_class=256), seq=1)
    with pytest.raises(EncodeError, match="source_addr_ton"):
        encode(SubmitSm(destination_addr="1", source_addr_ton=-1), seq=1)
    with pytest.raises(EncodeError, match="schedule_delivery_time"):
        encode(SubmitSm(destination_addr="1", schedule_delivery_time="2601"), seq=1)
    with pytest.raises(EncodeError, match="sequence_number"):
        encode(EnquireLink(), seq=2**32)
    with pytest.raises(EncodeError, match="sequence_number"):
        encode(SubmitSm(destination_addr="1"), seq=-1)
    with pytest.raises(EncodeError, match="tlvs"):
        encode(SubmitSm(destination_addr="1", tlvs=(Tlv(0x10000, b""),)), seq=1)


def test_short_message_limits_on_encode() -> None:
    encode(SubmitSm(destination_addr="1", short_message=b"x" * 254), seq=1)
    with pytest.raises(EncodeError, match="short_message") as ei:
        encode(SubmitSm(destination_addr="1", short_message=b"x" * 255), seq=1)
    assert ei.value.status == CommandStatus.RINVMSGLEN
    with pytest.raises(EncodeError, match="message_payload"):
        encode(SubmitSm(destination_addr="1", short_message=b"x",
                        tlvs=(message_payload_tlv(b"y"),)), seq=1)  # fmt: skip


def test_submit_multi_limits_on_encode() -> None:
    with pytest.raises(EncodeError, match="dest_address") as ei:
        encode(SubmitMulti(dest_address=()), seq=1)
    assert ei.value.status == CommandStatus.RINVNUMDESTS
    with pytest.raises(EncodeError, match="dest_address"):
        encode(SubmitMulti(dest_address=(SmeAddress(destination_addr="1"),) * 255), seq=1)


# --- decode errors -----------------------------------------------------------------------

SM_BODY = bytes(encode(SubmitSm(destination_addr="15550002222", short_message=b"abc"), seq=1))[16:]


@pytest.mark.parametrize(
    ("frame", "field", "status"),
    [
        (b"", "command_length", CommandStatus.RINVCMDLEN),
        (b"\x00" * 15, "command_length", CommandStatus.RINVCMDLEN),
        (struct.pack(">IIII", 17, 0x15, 0, 1), "command_length", CommandStatus.RINVCMDLEN),
        (hdr(0x0A), "command_id", CommandStatus.RINVCMDID),
        (hdr(0x80000015 | 0x100), "command_id", CommandStatus.RINVCMDID),
        (hdr(0x15, b"\0"), "command_length", CommandStatus.RINVCMDLEN),
        (hdr(0x80000000, b"junk"), "command_length", CommandStatus.RINVCMDLEN),
        (hdr(4, b""), "service_type", CommandStatus.RINVCMDLEN),
        (hdr(4, SM_BODY[:-2]), "short_message", CommandStatus.RINVMSGLEN),
        (hdr(4, SM_BODY[:-4] + b"\xff" + b"x" * 300), "sm_length", CommandStatus.RINVMSGLEN),
        (hdr(4, SM_BODY[:-4]), "sm_length", CommandStatus.RINVCMDLEN),
        (hdr(4, SM_BODY + b"\x00"), "tlvs", CommandStatus.RINVOPTPARSTREAM),
        (hdr(4, SM_BODY + b"\x04\x24\x00\x05abc"), "tlvs", CommandStatus.RINVOPTPARSTREAM),
        (hdr(0x80000004, b"abc"), "message_id", CommandStatus.RINVCMDLEN),
        (hdr(0x80000004, b"a" * 65), "message_id", CommandStatus.RINVMSGID),
        (hdr(0x21, b"\0\0\0\0" + b"\x00"), "number_of_dests", CommandStatus.RINVNUMDESTS),
        (hdr(0x21, b"\0\0\0\0" + b"\x01\x03"), "dest_flag", CommandStatus.RINVDESTFLAG),
        (hdr(0x21, b"\0\0\0\0\x01\x02" + b"d" * 21), "dl_name", CommandStatus.RINVDLNAME),
        (hdr(0x80000021, b"m\0\x01\x01\x01a\0\0\0"), "error_status_code",
         CommandStatus.RINVCMDLEN),
        (hdr(0x80000003, b"m\0\0"), "message_state", CommandStatus.RINVCMDLEN),
        (hdr(6, b"\0"), "command_length", CommandStatus.RINVCMDLEN),
    ],
)  # fmt: skip
def test_decode_errors(frame: bytes, field: str, status: int) -> None:
    with pytest.raises(DecodeError) as ei:
        decode(frame)
    assert (ei.value.field, ei.value.status) == (field, status)
    assert isinstance(ei.value, RemoteProtocolError)
    if len(frame) >= 16:
        assert ei.value.sequence_number == struct.unpack(">I", frame[12:16])[0]


def test_decode_header_short() -> None:
    with pytest.raises(DecodeError):
        decode_header(b"\0" * 10)


def test_decode_is_lenient_on_short_message_plus_payload() -> None:
    """Some SMSCs send receipt text in both; decode keeps both (encode refuses)."""
    body = SM_BODY + b"\x04\x24\x00\x02hi"
    pdu = decode(hdr(4, body)).pdu
    assert isinstance(pdu, SubmitSm)
    assert pdu.short_message == b"abc" and pdu.tlvs == (Tlv(0x0424, b"hi"),)


def test_decode_latin1_is_lossless() -> None:
    body = bytearray(SM_BODY)
    i = body.index(b"15550002222")
    body[i : i + 2] = b"\xe9\xff"
    pdu = decode(hdr(4, bytes(body))).pdu
    assert isinstance(pdu, SubmitSm)
    assert pdu.destination_addr == "\xe9\xff550002222"
    assert encode(pdu, seq=1) == hdr(4, bytes(body))


def test_query_sm_resp_and_submit_multi_resp_decode() -> None:
    f = decode(hdr(0x80000003, b"abc\0\0\x02\x00"))
    assert f.pdu == QuerySmResp(message_id="abc", message_state=2)
    f = decode(hdr(0x80000021, b"m\0\x01\x01\x01a\0\x00\x00\x00\x0b"))
    assert isinstance(f.pdu, SubmitMultiResp)
    assert f.pdu.unsuccess_sme[0].error_status_code == 0x0B


def test_generic_nack_has_no_body() -> None:
    data = encode(GenericNack(), seq=5, status=CommandStatus.RINVCMDID)
    assert data == hdr(0x80000000, status=3, seq=5)
    assert decode(data) == Frame(CommandId.GENERIC_NACK, 3, 5, GenericNack())


def test_encode_rejects_non_pdu() -> None:
    with pytest.raises(EncodeError):
        encode(Tlv(1, b""), seq=1)  # type: ignore[arg-type]


def test_decode_accepts_bytearray_and_memoryview() -> None:
    data = encode(SubmitSm(destination_addr="1", short_message=b"x"), seq=1)
    for view in (bytearray(data), memoryview(data)):
        pdu = decode(view).pdu  # type: ignore[arg-type]
        assert isinstance(pdu, SubmitSm) and type(pdu.short_message) is bytes


@pytest.mark.parametrize(
    ("pdu", "field"),
    [
        (SubmitSm(destination_addr=b"1"), "destination_addr"),  # type: ignore[arg-type]
        (SubmitSm(destination_addr=None), "destination_addr"),  # type: ignore[arg-type]
        (SubmitSm(destination_addr="1", esm_class=1.0), "esm_class"),  # type: ignore[arg-type]
        (SubmitSm(destination_addr="1", short_message="hi"), "short_message"),  # type: ignore[arg-type]
        (SubmitSm(destination_addr="1", tlvs=(Tlv(1, "x"),)), "tlvs"),  # type: ignore[arg-type]
        (SubmitSm(destination_addr="1", tlvs=(Tlv(1, b"x" * 0x10000),)), "tlvs"),
        (SubmitMulti(dest_address=("1",)), "dest_address"),  # type: ignore[arg-type]
        (SubmitMultiResp(unsuccess_sme=(UnsuccessSme(),) * 256), "unsuccess_sme"),
        (SubmitMultiResp(unsuccess_sme=(UnsuccessSme(error_status_code=-1),)),
         "error_status_code"),
        (SubmitSmResp(message_id="x" * 65), "message_id"),
        (DeliverSmResp(message_id="\u20ac"), "message_id"),
    ],
)  # fmt: skip
def test_encode_rejects_wrong_types_naming_the_field(pdu: Pdu, field: str) -> None:
    with pytest.raises(EncodeError) as ei:
        encode(pdu, seq=1)
    assert ei.value.field == field


def test_encode_rejects_bad_status() -> None:
    with pytest.raises(EncodeError, match="command_status"):
        encode(SubmitSm(destination_addr="1"), seq=1, status=-1)
    with pytest.raises(EncodeError, match="command_status"):
        encode(SubmitSmResp(message_id="1"), seq=1, status=2**32)
    with pytest.raises(EncodeError, match="command_status"):
        encode(EnquireLinkResp(), seq=1, status=2**32)


HOT_SAMPLES = [p for p in ALL if type(p) in codec_mod._FAST_DECODERS]


@pytest.mark.parametrize("pdu", HOT_SAMPLES, ids=sample_id)
def test_fast_paths_take_the_samples(pdu: Pdu) -> None:
    """The hot PDUs decode without falling back to the generic decoder (a perf guard)."""
    data = encode(pdu, seq=1)
    fast = codec_mod._FAST_DECODERS[type(pdu)]
    if type(pdu) is DeliverSmResp and pdu != DeliverSmResp():
        return  # a non-NULL message_id is left to the generic decoder on purpose
    assert fast(data) == pdu
