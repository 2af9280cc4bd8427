"""constants (spec tables, retry classes) and the TLV helpers of pdu."""

from __future__ import annotations

import pytest

from gateway.smpp import (
    PDU_TYPES,
    CommandId,
    CommandStatus,
    DecodeError,
    DeliverSm,
    EncodeError,
    EsmClass,
    MessageState,
    RetryClass,
    SubmitSm,
    Tag,
    Tlv,
    is_receipt,
    is_response,
    message_payload,
    message_payload_tlv,
    message_state,
    message_state_tlv,
    network_error_code,
    network_error_code_tlv,
    receipted_message_id,
    receipted_message_id_tlv,
    response_id,
    retry_class,
    sar_info,
    sar_tlvs,
    tlv_cstr,
    tlv_get,
    tlv_get_all,
    tlv_int,
    tlv_str,
    tlv_u8,
    tlv_u16,
    tlv_u32,
)

S = CommandStatus


def test_every_command_id_has_a_body_class() -> None:
    assert set(PDU_TYPES) == set(CommandId)
    for cid, cls in PDU_TYPES.items():
        assert cls.command_id == cid


def test_request_response_ids() -> None:
    assert response_id(CommandId.SUBMIT_SM) == CommandId.SUBMIT_SM_RESP
    assert is_response(CommandId.GENERIC_NACK) and is_response(CommandId.DELIVER_SM_RESP)
    assert not is_response(CommandId.OUTBIND)
    for cid in CommandId:
        if not is_response(cid) and cid not in (CommandId.OUTBIND, CommandId.ALERT_NOTIFICATION):
            assert response_id(cid) in PDU_TYPES, cid.name


def test_command_status_table_is_complete() -> None:
    """SMPP 3.4 §5.1.3 lists 48 codes (smpplib agrees)."""
    import smpplib.consts

    theirs = {v for k, v in vars(smpplib.consts).items() if k.startswith("SMPP_ESME_")}
    assert {int(s) for s in CommandStatus} == theirs


def test_tags_match_smpplib() -> None:
    import smpplib.consts

    theirs = {k.upper(): v for k, v in smpplib.consts.OPTIONAL_PARAMS.items()}
    assert {t.name: int(t) for t in Tag} == theirs


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (S.ROK, RetryClass.OK),
        (S.RTHROTTLED, RetryClass.THROTTLED),
        (S.RMSGQFUL, RetryClass.THROTTLED),
        (S.RSYSERR, RetryClass.TEMPORARY),
        (S.RX_T_APPN, RetryClass.TEMPORARY),
        (S.RSUBMITFAIL, RetryClass.AMBIGUOUS),
        (S.RDELIVERYFAILURE, RetryClass.AMBIGUOUS),
        (S.RUNKNOWNERR, RetryClass.AMBIGUOUS),
        (0x401, RetryClass.AMBIGUOUS),  # vendor range
        (0x09, RetryClass.AMBIGUOUS),  # reserved
        (0xFFFFFFFF, RetryClass.AMBIGUOUS),
        (S.RINVSRCADR, RetryClass.PERMANENT),
        (S.RINVDSTADR, RetryClass.PERMANENT),
        (S.RX_P_APPN, RetryClass.PERMANENT),
        (S.RX_R_APPN, RetryClass.PERMANENT),
        (S.RINVMSGLEN, RetryClass.PERMANENT),
        (S.RINVESMCLASS, RetryClass.PERMANENT),
        (S.RINVDSTTON, RetryClass.PERMANENT),
        (S.RINVSCHED, RetryClass.PERMANENT),
        (S.RINVOPTPARAMVAL, RetryClass.PERMANENT),
        (S.RINVBNDSTS, RetryClass.SESSION),
        (S.RALYBND, RetryClass.SESSION),
        (S.RBINDFAIL, RetryClass.BIND),
        (S.RINVPASWD, RetryClass.BIND),
        (S.RINVSYSID, RetryClass.BIND),
    ],
)
def test_retry_class(status: int, cls: RetryClass) -> None:
    assert retry_class(status) is cls


def test_every_standard_status_has_a_class() -> None:
    assert all(retry_class(s) is not RetryClass.AMBIGUOUS or s in (0x45, 0xFE, 0xFF)
               for s in CommandStatus)  # fmt: skip


def test_is_receipt() -> None:
    assert is_receipt(EsmClass.DELIVERY_RECEIPT)
    assert is_receipt(EsmClass.DELIVERY_RECEIPT | EsmClass.UDHI)
    assert not is_receipt(0)
    assert not is_receipt(EsmClass.DELIVERY_ACK)
    assert not is_receipt(EsmClass.INTERMEDIATE_NOTIFICATION)


# --- TLV helpers --------------------------------------------------------------------------


def test_tlv_constructors_and_readers() -> None:
    p = DeliverSm(
        destination_addr="1",
        tlvs=(
            receipted_message_id_tlv("00B8BE19"),
            message_state_tlv(MessageState.UNDELIVERABLE),
            network_error_code_tlv(3, 0x0101),
            *sar_tlvs(0x1234, 3, 2),
            message_payload_tlv(b"payload"),
            tlv_u32(0x1400, 7),
            tlv_u8(0x1401, 1),
            tlv_u8(0x1401, 2),
        ),
    )
    assert receipted_message_id(p) == "00B8BE19"
    assert tlv_get(p, Tag.RECEIPTED_MESSAGE_ID) == b"00B8BE19\0"
    assert message_state(p) == MessageState.UNDELIVERABLE
    assert network_error_code(p) == (3, 0x0101)
    assert sar_info(p) == (0x1234, 3, 2)
    assert message_payload(p) == b"payload"
    assert tlv_int(p, 0x1400) == 7
    assert tlv_get_all(p, 0x1401) == [b"\x01", b"\x02"]
    empty = SubmitSm(destination_addr="1")
    assert receipted_message_id(empty) is None
    assert message_state(empty) is None
    assert network_error_code(empty) is None
    assert sar_info(empty) is None
    assert tlv_int(empty, 1) is None
    assert tlv_str(empty, 1) is None
    assert message_payload(empty) is None


def test_tlv_readers_are_lenient_on_strings_and_strict_on_sizes() -> None:
    p = DeliverSm(
        destination_addr="1",
        tlvs=(
            Tlv(Tag.RECEIPTED_MESSAGE_ID, b"no-nul"),
            Tlv(Tag.MESSAGE_STATE, b"\x00\x02"),
            Tlv(Tag.NETWORK_ERROR_CODE, b"\x03"),
            Tlv(Tag.SAR_MSG_REF_NUM, b"\x01\x02\x03"),
            Tlv(Tag.SAR_TOTAL_SEGMENTS, b"\x02"),
            Tlv(Tag.SAR_SEGMENT_SEQNUM, b"\x01"),
            Tlv(0x1500, b"ab\0cd"),
        ),
    )
    assert receipted_message_id(p) == "no-nul"
    assert tlv_str(p, 0x1500) == "ab"
    with pytest.raises(DecodeError) as ei:
        message_state(p)
    assert ei.value.field == "message_state" and ei.value.status == S.RINVPARLEN
    with pytest.raises(DecodeError, match="network_error_code"):
        network_error_code(p)
    with pytest.raises(DecodeError, match="sar_msg_ref_num"):
        sar_info(p)
    with pytest.raises(DecodeError, match="tlv_0x1500"):
        tlv_int(p, 0x1500)


def test_tlv_constructor_limits() -> None:
    with pytest.raises(EncodeError, match="receipted_message_id"):
        receipted_message_id_tlv("x" * 65)
    receipted_message_id_tlv("x" * 64)
    with pytest.raises(EncodeError):
        tlv_cstr(0x1500, "a\0b")
    with pytest.raises(EncodeError):
        tlv_cstr(0x1500, "€")
    with pytest.raises(EncodeError, match="message_state"):
        message_state_tlv(256)
    with pytest.raises(EncodeError, match="sar_msg_ref_num"):
        tlv_u16(Tag.SAR_MSG_REF_NUM, 0x10000)
    with pytest.raises(EncodeError):
        sar_tlvs(1, 2, 3)
    with pytest.raises(EncodeError):
        sar_tlvs(1, 0, 0)
    with pytest.raises(EncodeError):
        network_error_code_tlv(3, 0x10000)
    with pytest.raises(EncodeError):
        message_payload_tlv(b"x" * 0x10000)


def test_error_hierarchy_and_messages() -> None:
    from gateway.smpp import FramingError, LocalProtocolError, ProtocolError, RemoteProtocolError

    e = DecodeError("message_id", 0x401, "vendor", command_id=4, sequence_number=9)
    assert isinstance(e, RemoteProtocolError) and isinstance(e, ProtocolError)
    assert (e.field, e.status, e.command_id, e.sequence_number) == ("message_id", 0x401, 4, 9)
    assert "0x401" in str(e) and "message_id" in str(e)
    assert "RINVMSGID" in str(DecodeError("message_id", S.RINVMSGID))
    f = FramingError(3, "too short")
    assert isinstance(f, RemoteProtocolError) and f.status == S.RINVCMDLEN and f.length == 3
    assert LocalProtocolError("misuse").status == S.RSYSERR
    enc = EncodeError("source_addr", "too long", S.RINVSRCADR)
    assert isinstance(enc, LocalProtocolError) and isinstance(enc, ValueError)
    assert str(enc) == "source_addr: too long"
