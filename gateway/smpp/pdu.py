"""PDU bodies as frozen msgspec Structs: one class per SMPP 3.4 operation (§4).

Conventions:

- Field names are the SMPP 3.4 field names (``source_addr_ton``, ``destination_addr``,
  ``schedule_delivery_time``, ...), in spec order; length fields the codec can derive
  (``sm_length``, ``number_of_dests``, ``no_unsuccess``) are not stored.
- C-Octet-String fields are ``str`` holding one character per octet (latin-1, so any
  octet string round-trips losslessly); ``""`` is the NULL string. ``short_message`` and
  TLV values are ``bytes``.
- Integer fields are plain ``int`` (see ``constants`` for why); defaults are the spec's
  "NULL"/0 values, so ``SubmitSm(destination_addr="447700900123", short_message=b"hi")``
  is a complete, valid PDU.
- TLVs (optional parameters, §5.3) are kept in wire order in ``tlvs``; unknown tags are
  kept raw and re-encoded unchanged. Read them with ``tlv_get`` and the typed helpers.
- The header (command_length, command_status, sequence_number) is not part of a body: the
  codec takes ``seq``/``status`` as arguments and returns them in ``codec.Frame``.

Structs are ``gc=False``: a PDU holds only immutable scalars and tuples of Structs, so it
can never be part of a reference cycle, and skipping GC tracking makes creation cheaper.
They are ``array_like``: msgspec serialises them as arrays (compact in the store), and
the codec builds them with ``msgspec.convert(tuple_of_fields, cls)``, about 3x faster
than an 18-keyword call. Field order is therefore part of the codec's contract (checked
at import time in ``codec``); add new fields at the end only.
"""

from __future__ import annotations

from typing import ClassVar, Protocol

import msgspec

from .constants import CommandId, CommandStatus, Tag
from .errors import DecodeError, EncodeError

__all__ = [
    "PDU_TYPES",
    "AlertNotification",
    "BindReceiver",
    "BindReceiverResp",
    "BindTransceiver",
    "BindTransceiverResp",
    "BindTransmitter",
    "BindTransmitterResp",
    "CancelSm",
    "CancelSmResp",
    "DataSm",
    "DataSmResp",
    "DeliverSm",
    "DeliverSmResp",
    "DistributionList",
    "EnquireLink",
    "EnquireLinkResp",
    "GenericNack",
    "HasTlvs",
    "Outbind",
    "Pdu",
    "QuerySm",
    "QuerySmResp",
    "ReplaceSm",
    "ReplaceSmResp",
    "SmeAddress",
    "SubmitMulti",
    "SubmitMultiResp",
    "SubmitSm",
    "SubmitSmResp",
    "Tlv",
    "Unbind",
    "UnbindResp",
    "UnsuccessSme",
    "message_payload",
    "message_payload_tlv",
    "message_state",
    "message_state_tlv",
    "network_error_code",
    "network_error_code_tlv",
    "receipted_message_id",
    "receipted_message_id_tlv",
    "sar_info",
    "sar_tlvs",
    "sc_interface_version_tlv",
    "tlv_cstr",
    "tlv_get",
    "tlv_get_all",
    "tlv_int",
    "tlv_str",
    "tlv_u8",
    "tlv_u16",
    "tlv_u32",
]


class Tlv(msgspec.Struct, frozen=True, gc=False, array_like=True):
    """One optional parameter (SMPP 3.4 §3.2.4): a 16-bit tag and its raw value."""

    tag: int
    value: bytes


class _Body(msgspec.Struct, frozen=True, kw_only=True, gc=False, array_like=True):
    """Base of every PDU body; ``command_id`` identifies the operation."""

    command_id: ClassVar[CommandId]


# --- session management (§4.1, §4.2, §4.11) -------------------------------------------


class _Bind(_Body, frozen=True, kw_only=True, gc=False):
    system_id: str = ""  # ≤16 incl. NUL
    password: str = ""  # ≤9
    system_type: str = ""  # ≤13
    interface_version: int = 0x34
    addr_ton: int = 0
    addr_npi: int = 0
    address_range: str = ""  # ≤41, a regular expression of MS addresses served (RX/TRX)


class BindTransmitter(_Bind, frozen=True, kw_only=True, gc=False):
    """bind_transmitter (§4.1.1): bind to submit messages."""

    command_id = CommandId.BIND_TRANSMITTER


class BindReceiver(_Bind, frozen=True, kw_only=True, gc=False):
    """bind_receiver (§4.1.3): bind to receive deliver_sm (receipts, MO)."""

    command_id = CommandId.BIND_RECEIVER


class BindTransceiver(_Bind, frozen=True, kw_only=True, gc=False):
    """bind_transceiver (§4.1.5): both directions on one session."""

    command_id = CommandId.BIND_TRANSCEIVER


class _BindResp(_Body, frozen=True, kw_only=True, gc=False):
    system_id: str = ""  # ≤16; the SMSC's id
    tlvs: tuple[Tlv, ...] = ()  # sc_interface_version (§5.3.2.25)


class BindTransmitterResp(_BindResp, frozen=True, kw_only=True, gc=False):
    """bind_transmitter_resp (§4.1.2). No body when command_status != 0."""

    command_id = CommandId.BIND_TRANSMITTER_RESP


class BindReceiverResp(_BindResp, frozen=True, kw_only=True, gc=False):
    """bind_receiver_resp (§4.1.4). No body when command_status != 0."""

    command_id = CommandId.BIND_RECEIVER_RESP


class BindTransceiverResp(_BindResp, frozen=True, kw_only=True, gc=False):
    """bind_transceiver_resp (§4.1.6). No body when command_status != 0."""

    command_id = CommandId.BIND_TRANSCEIVER_RESP


class Outbind(_Body, frozen=True, kw_only=True, gc=False):
    """outbind (§4.1.7): the SMSC asks the ESME to bind_receiver back."""

    command_id = CommandId.OUTBIND
    system_id: str = ""  # ≤16
    password: str = ""  # ≤9


class Unbind(_Body, frozen=True, kw_only=True, gc=False):
    """unbind (§4.2.1): header only."""

    command_id = CommandId.UNBIND


class UnbindResp(_Body, frozen=True, kw_only=True, gc=False):
    """unbind_resp (§4.2.2): header only."""

    command_id = CommandId.UNBIND_RESP


class EnquireLink(_Body, frozen=True, kw_only=True, gc=False):
    """enquire_link (§4.11.1): header only; a keep-alive from either side."""

    command_id = CommandId.ENQUIRE_LINK


class EnquireLinkResp(_Body, frozen=True, kw_only=True, gc=False):
    """enquire_link_resp (§4.11.2): header only."""

    command_id = CommandId.ENQUIRE_LINK_RESP


class GenericNack(_Body, frozen=True, kw_only=True, gc=False):
    """generic_nack (§4.3.1): header only; answers a PDU whose header is unusable."""

    command_id = CommandId.GENERIC_NACK


# --- message submission and delivery (§4.4-§4.7) ---------------------------------------


class _ShortMessage(_Body, frozen=True, kw_only=True, gc=False):
    # Identical mandatory layout for submit_sm (§4.4.1) and deliver_sm (§4.6.1).
    service_type: str = ""  # ≤6; "" = SMSC default
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""  # ≤21; "" = SMSC default (submit_sm)
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    destination_addr: str  # ≤21
    esm_class: int = 0
    protocol_id: int = 0
    priority_flag: int = 0
    schedule_delivery_time: str = ""  # "" or 16 chars YYMMDDhhmmsstnnp (§7.1.1)
    validity_period: str = ""  # "" or 16 chars
    registered_delivery: int = 0
    replace_if_present_flag: int = 0
    data_coding: int = 0
    sm_default_msg_id: int = 0
    short_message: bytes = b""  # ≤254 octets; sm_length is derived
    tlvs: tuple[Tlv, ...] = ()


class SubmitSm(_ShortMessage, frozen=True, kw_only=True, gc=False):
    """submit_sm (§4.4.1): an ESME submits one short message."""

    command_id = CommandId.SUBMIT_SM


class SubmitSmResp(_Body, frozen=True, kw_only=True, gc=False):
    """submit_sm_resp (§4.4.2). Body omitted by most SMSCs when command_status != 0.

    ``tlvs`` is an SMPP 5.0 addition (e.g. additional_status_info_text) that some 3.4
    SMSCs send anyway.
    """

    command_id = CommandId.SUBMIT_SM_RESP
    message_id: str = ""  # ≤65; the SMSC's id, echoed in receipts
    tlvs: tuple[Tlv, ...] = ()


class DeliverSm(_ShortMessage, frozen=True, kw_only=True, gc=False):
    """deliver_sm (§4.6.1): the SMSC delivers an MO message or a delivery receipt."""

    command_id = CommandId.DELIVER_SM


class DeliverSmResp(_Body, frozen=True, kw_only=True, gc=False):
    """deliver_sm_resp (§4.6.2). message_id is unused and should be NULL."""

    command_id = CommandId.DELIVER_SM_RESP
    message_id: str = ""
    tlvs: tuple[Tlv, ...] = ()  # SMPP 5.0 addition


class DataSm(_Body, frozen=True, kw_only=True, gc=False):
    """data_sm (§4.7.1): either direction; the message is in the message_payload TLV."""

    command_id = CommandId.DATA_SM
    service_type: str = ""  # ≤6
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""  # ≤65 (longer than submit_sm's 21)
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    destination_addr: str  # ≤65
    esm_class: int = 0
    registered_delivery: int = 0
    data_coding: int = 0
    tlvs: tuple[Tlv, ...] = ()


class DataSmResp(_Body, frozen=True, kw_only=True, gc=False):
    """data_sm_resp (§4.7.2)."""

    command_id = CommandId.DATA_SM_RESP
    message_id: str = ""  # ≤65
    tlvs: tuple[Tlv, ...] = ()


class SmeAddress(msgspec.Struct, frozen=True, kw_only=True, gc=False, array_like=True):
    """A submit_multi destination of dest_flag 1 (§4.5.1.1): one SME address."""

    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    destination_addr: str  # ≤21


class DistributionList(msgspec.Struct, frozen=True, kw_only=True, gc=False, array_like=True):
    """A submit_multi destination of dest_flag 2 (§4.5.1.2): an SMSC distribution list."""

    dl_name: str  # ≤21


class SubmitMulti(_Body, frozen=True, kw_only=True, gc=False):
    """submit_multi (§4.5.1): one message to up to 254 SME addresses / distribution lists."""

    command_id = CommandId.SUBMIT_MULTI
    service_type: str = ""  # ≤6
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""  # ≤21
    dest_address: tuple[SmeAddress | DistributionList, ...]  # 1..254; number_of_dests derived
    esm_class: int = 0
    protocol_id: int = 0
    priority_flag: int = 0
    schedule_delivery_time: str = ""
    validity_period: str = ""
    registered_delivery: int = 0
    replace_if_present_flag: int = 0
    data_coding: int = 0
    sm_default_msg_id: int = 0
    short_message: bytes = b""
    tlvs: tuple[Tlv, ...] = ()


class UnsuccessSme(msgspec.Struct, frozen=True, kw_only=True, gc=False, array_like=True):
    """One failed destination in submit_multi_resp (§4.5.2.1)."""

    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    destination_addr: str = ""  # ≤21
    error_status_code: int = 0  # a command_status (u32)


class SubmitMultiResp(_Body, frozen=True, kw_only=True, gc=False):
    """submit_multi_resp (§4.5.2); no_unsuccess is derived from ``unsuccess_sme``."""

    command_id = CommandId.SUBMIT_MULTI_RESP
    message_id: str = ""  # ≤65
    unsuccess_sme: tuple[UnsuccessSme, ...] = ()
    tlvs: tuple[Tlv, ...] = ()  # SMPP 5.0 addition


# --- ancillary operations (§4.8-§4.12) -----------------------------------------------


class QuerySm(_Body, frozen=True, kw_only=True, gc=False):
    """query_sm (§4.8.1): ask the state of a previously submitted message."""

    command_id = CommandId.QUERY_SM
    message_id: str  # ≤65
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""  # ≤21


class QuerySmResp(_Body, frozen=True, kw_only=True, gc=False):
    """query_sm_resp (§4.8.2)."""

    command_id = CommandId.QUERY_SM_RESP
    message_id: str = ""  # ≤65
    final_date: str = ""  # "" or 16 chars
    message_state: int = 0  # MessageState
    error_code: int = 0  # network-specific (GSM) error


class CancelSm(_Body, frozen=True, kw_only=True, gc=False):
    """cancel_sm (§4.9.1): cancel one message (message_id) or all matching the addresses."""

    command_id = CommandId.CANCEL_SM
    service_type: str = ""  # ≤6
    message_id: str = ""  # ≤65; "" = cancel by service_type + addresses
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""  # ≤21
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    destination_addr: str = ""  # ≤21


class CancelSmResp(_Body, frozen=True, kw_only=True, gc=False):
    """cancel_sm_resp (§4.9.2): header only."""

    command_id = CommandId.CANCEL_SM_RESP


class ReplaceSm(_Body, frozen=True, kw_only=True, gc=False):
    """replace_sm (§4.10.1): replace a message still held at the SMSC."""

    command_id = CommandId.REPLACE_SM
    message_id: str  # ≤65
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""  # ≤21
    schedule_delivery_time: str = ""
    validity_period: str = ""
    registered_delivery: int = 0
    sm_default_msg_id: int = 0
    short_message: bytes = b""  # ≤254


class ReplaceSmResp(_Body, frozen=True, kw_only=True, gc=False):
    """replace_sm_resp (§4.10.2): header only."""

    command_id = CommandId.REPLACE_SM_RESP


class AlertNotification(_Body, frozen=True, kw_only=True, gc=False):
    """alert_notification (§4.12.1): the SMSC says an MS became available. No response."""

    command_id = CommandId.ALERT_NOTIFICATION
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""  # ≤65
    esme_addr_ton: int = 0
    esme_addr_npi: int = 0
    esme_addr: str = ""  # ≤65
    tlvs: tuple[Tlv, ...] = ()  # ms_availability_status


Pdu = (
    BindTransmitter
    | BindTransmitterResp
    | BindReceiver
    | BindReceiverResp
    | BindTransceiver
    | BindTransceiverResp
    | Outbind
    | Unbind
    | UnbindResp
    | EnquireLink
    | EnquireLinkResp
    | GenericNack
    | SubmitSm
    | SubmitSmResp
    | DeliverSm
    | DeliverSmResp
    | DataSm
    | DataSmResp
    | QuerySm
    | QuerySmResp
    | CancelSm
    | CancelSmResp
    | ReplaceSm
    | ReplaceSmResp
    | SubmitMulti
    | SubmitMultiResp
    | AlertNotification
)
"""Any PDU body."""

PDU_TYPES: dict[int, type[Pdu]] = {
    cls.command_id: cls
    for cls in (
        BindTransmitter, BindTransmitterResp, BindReceiver, BindReceiverResp,
        BindTransceiver, BindTransceiverResp, Outbind, Unbind, UnbindResp, EnquireLink,
        EnquireLinkResp, GenericNack, SubmitSm, SubmitSmResp, DeliverSm, DeliverSmResp,
        DataSm, DataSmResp, QuerySm, QuerySmResp, CancelSm, CancelSmResp, ReplaceSm,
        ReplaceSmResp, SubmitMulti, SubmitMultiResp, AlertNotification,
    )
}  # fmt: skip
"""command_id -> body class, for every operation in SMPP 3.4."""


# --- TLV access -------------------------------------------------------------------------


class HasTlvs(Protocol):
    """Any PDU body with optional parameters."""

    @property
    def tlvs(self) -> tuple[Tlv, ...]: ...


def tlv_get(pdu: HasTlvs, tag: int) -> bytes | None:
    """The raw value of the first TLV with ``tag``, or None when absent."""
    for t in pdu.tlvs:
        if t.tag == tag:
            return t.value
    return None


def tlv_get_all(pdu: HasTlvs, tag: int) -> list[bytes]:
    """Every value with ``tag``, in wire order (the spec allows a tag once; peers repeat)."""
    return [t.value for t in pdu.tlvs if t.tag == tag]


def _tag_name(tag: int) -> str:
    try:
        return Tag(tag).name.lower()
    except ValueError:
        return f"tlv_0x{tag:04x}"


def tlv_int(pdu: HasTlvs, tag: int) -> int | None:
    """An Integer TLV (1, 2 or 4 octets, big-endian), or None when absent.

    Raises DecodeError(tag name, RINVPARLEN) for any other length.
    """
    v = tlv_get(pdu, tag)
    if v is None:
        return None
    if len(v) not in (1, 2, 4):
        raise DecodeError(_tag_name(tag), CommandStatus.RINVPARLEN, f"{len(v)}-octet integer")
    return int.from_bytes(v, "big")


def tlv_str(pdu: HasTlvs, tag: int) -> str | None:
    """A C-Octet-String TLV as text (latin-1), or None when absent.

    Lenient by design: carriers omit the NUL terminator, so one trailing NUL is
    stripped if present and anything after an inner NUL is dropped.
    """
    v = tlv_get(pdu, tag)
    if v is None:
        return None
    i = v.find(0)
    return (v if i < 0 else v[:i]).decode("latin-1")


def tlv_u8(tag: int, value: int) -> Tlv:
    """A 1-octet Integer TLV."""
    return Tlv(tag, _int_bytes(tag, value, 1))


def tlv_u16(tag: int, value: int) -> Tlv:
    """A 2-octet Integer TLV."""
    return Tlv(tag, _int_bytes(tag, value, 2))


def tlv_u32(tag: int, value: int) -> Tlv:
    """A 4-octet Integer TLV."""
    return Tlv(tag, _int_bytes(tag, value, 4))


def _int_bytes(tag: int, value: int, size: int) -> bytes:
    try:
        return value.to_bytes(size, "big")
    except OverflowError:
        raise EncodeError(_tag_name(tag), f"{value} does not fit in {size} octet(s)") from None


def tlv_cstr(tag: int, value: str, max_size: int = 65) -> Tlv:
    """A C-Octet-String TLV: latin-1 text plus NUL, at most ``max_size`` octets."""
    try:
        raw = value.encode("latin-1")
    except UnicodeEncodeError:
        raise EncodeError(_tag_name(tag), "not representable in latin-1") from None
    if len(raw) >= max_size or 0 in raw:
        raise EncodeError(_tag_name(tag), f"must be < {max_size} octets without NUL")
    return Tlv(tag, raw + b"\0")


# Constructors for the TLVs the gateway uses (§5.3.2.x).


def sar_tlvs(ref: int, total: int, seqnum: int) -> tuple[Tlv, Tlv, Tlv]:
    """sar_msg_ref_num (u16), sar_total_segments (u8), sar_segment_seqnum (u8), §5.3.2.22-24.

    ``seqnum`` is 1-based; total and seqnum must lie in 1..255.
    """
    if not (1 <= total <= 255 and 1 <= seqnum <= total):
        raise EncodeError("sar_segment_seqnum", f"segment {seqnum} of {total}")
    return (
        tlv_u16(Tag.SAR_MSG_REF_NUM, ref),
        tlv_u8(Tag.SAR_TOTAL_SEGMENTS, total),
        tlv_u8(Tag.SAR_SEGMENT_SEQNUM, seqnum),
    )


def message_payload_tlv(data: bytes) -> Tlv:
    """message_payload (§5.3.2.32): the message when it exceeds 254 octets; sm_length 0."""
    if len(data) > 0xFFFF:
        raise EncodeError("message_payload", f"{len(data)} octets > 65535")
    return Tlv(Tag.MESSAGE_PAYLOAD, data)


def receipted_message_id_tlv(message_id: str) -> Tlv:
    """receipted_message_id (§5.3.2.12): C-string ≤65, the submit_sm_resp message_id."""
    return tlv_cstr(Tag.RECEIPTED_MESSAGE_ID, message_id, 65)


def message_state_tlv(state: int) -> Tlv:
    """message_state (§5.3.2.35): 1 octet, see ``MessageState``."""
    return tlv_u8(Tag.MESSAGE_STATE, state)


def network_error_code_tlv(network_type: int, code: int) -> Tlv:
    """network_error_code (§5.3.2.31): network type octet + 2-octet error code."""
    if not (0 <= network_type <= 0xFF and 0 <= code <= 0xFFFF):
        raise EncodeError("network_error_code", f"({network_type}, {code}) out of range")
    return Tlv(Tag.NETWORK_ERROR_CODE, bytes((network_type, code >> 8, code & 0xFF)))


def sc_interface_version_tlv(version: int = 0x34) -> Tlv:
    """sc_interface_version (§5.3.2.25) for bind responses."""
    return tlv_u8(Tag.SC_INTERFACE_VERSION, version)


# Typed readers (None when absent; DecodeError when malformed).


def receipted_message_id(pdu: HasTlvs) -> str | None:
    """The receipted_message_id TLV (§5.3.2.12) as text."""
    return tlv_str(pdu, Tag.RECEIPTED_MESSAGE_ID)


def message_state(pdu: HasTlvs) -> int | None:
    """The message_state TLV (§5.3.2.35); compare with ``MessageState``."""
    v = tlv_get(pdu, Tag.MESSAGE_STATE)
    if v is None:
        return None
    if len(v) != 1:
        raise DecodeError("message_state", CommandStatus.RINVPARLEN, f"{len(v)} octets")
    return v[0]


def network_error_code(pdu: HasTlvs) -> tuple[int, int] | None:
    """The network_error_code TLV (§5.3.2.31) as (network type, error code)."""
    v = tlv_get(pdu, Tag.NETWORK_ERROR_CODE)
    if v is None:
        return None
    if len(v) != 3:
        raise DecodeError("network_error_code", CommandStatus.RINVPARLEN, f"{len(v)} octets")
    return v[0], (v[1] << 8) | v[2]


def message_payload(pdu: HasTlvs) -> bytes | None:
    """The message_payload TLV (§5.3.2.32)."""
    return tlv_get(pdu, Tag.MESSAGE_PAYLOAD)


def sar_info(pdu: HasTlvs) -> tuple[int, int, int] | None:
    """(ref, total, seqnum) from the three SAR TLVs, or None unless all three are present."""
    ref = tlv_int(pdu, Tag.SAR_MSG_REF_NUM)
    total = tlv_int(pdu, Tag.SAR_TOTAL_SEGMENTS)
    seqnum = tlv_int(pdu, Tag.SAR_SEGMENT_SEQNUM)
    if ref is None or total is None or seqnum is None:
        return None
    return ref, total, seqnum

