"""Sans-IO SMPP 3.4 codec: PDU body Structs <-> frames (bytes).

``encode(pdu, seq=..., status=...)`` returns one complete frame; ``decode(frame)`` takes one
complete frame (as cut by ``framing.PduBuffer``) and returns a ``Frame``.

Two layers:

- A table-driven generic codec (``_SPECS``) covers every PDU and is the reference: it
  validates every field and names the failing one in ``EncodeError`` / ``DecodeError``.
- Hand-written fast paths cover the hot PDUs (submit_sm, submit_sm_resp, deliver_sm,
  deliver_sm_resp, enquire_link(_resp)). They check the same limits, but when anything is
  off they do not diagnose: they hand the same input to the generic codec, which either
  raises the precise error or (never, by test) produces the answer. Tests assert the
  two layers agree on valid, mutated and random input.

Text: C-Octet-Strings are decoded as latin-1, a lossless octet<->code point mapping, so
any peer's octets (including non-ASCII junk in a message_id) survive a round trip
unchanged and decoding can never fail. The spec says these fields are ASCII; we do not
reject non-ASCII on decode (Postel), and on encode any latin-1 text is sent as is.

Types are trusted, values are checked: like msgspec, we leave "is this an int" to mypy
--strict (a fast path would, e.g., take a 1-character str in an int field for its code
point), but every size and range limit is enforced, and a wrongly typed value that
cannot be encoded raises EncodeError rather than anything else.

Limits (SMPP 3.4 §4, sizes include the NUL) are enforced both ways. Decode failures carry
the command_status to answer with: field-specific (RINVSRCADR, RINVDSTADR, RINVMSGID,
RINVSERTYP, RINVSCHED, ...) for an over-long field, RINVMSGLEN for a short_message that
does not fit sm_length, RINVOPTPARSTREAM for a broken TLV stream, RINVCMDLEN for a body
that ends early or has octets left over, RINVCMDID for an unknown command_id.

Lenient where carriers are sloppy: a response whose body is absent decodes to the
defaults (SMPP 3.4 §4.1.2, §4.4.2: "the body is not returned if command_status is
non-zero"; some SMSCs also omit it on success), and a short_message together with a
message_payload TLV is accepted on decode (some SMSCs put receipt text in both) but
refused on encode.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Final

import msgspec

from .constants import CommandId, CommandStatus, Tag
from .errors import DecodeError, EncodeError
from .pdu import (
    PDU_TYPES,
    AlertNotification,
    BindReceiver,
    BindReceiverResp,
    BindTransceiver,
    BindTransceiverResp,
    BindTransmitter,
    BindTransmitterResp,
    CancelSm,
    CancelSmResp,
    DataSm,
    DataSmResp,
    DeliverSm,
    DeliverSmResp,
    DistributionList,
    EnquireLink,
    EnquireLinkResp,
    GenericNack,
    Outbind,
    Pdu,
    QuerySm,
    QuerySmResp,
    ReplaceSm,
    ReplaceSmResp,
    SmeAddress,
    SubmitMulti,
    SubmitMultiResp,
    SubmitSm,
    SubmitSmResp,
    Tlv,
    Unbind,
    UnbindResp,
    UnsuccessSme,
)

__all__ = [
    "MAX_SHORT_MESSAGE",
    "Frame",
    "decode",
    "decode_header",
    "encode",
    "fast_deliver_sm",
    "fast_submit_sm_resp",
]

MAX_SHORT_MESSAGE: Final = 254
"""SMPP 3.4 §4.4.1: sm_length 0-254; longer messages go in message_payload."""

_HDR: Final = struct.Struct(">IIII")
_HDR_NUL: Final = struct.Struct(">IIIIx")  # a header and one NUL: a response with no message_id
_TL: Final = struct.Struct(">HH")
_U32: Final = struct.Struct(">I")


class Frame(msgspec.Struct, frozen=True, gc=False):
    """One decoded PDU: the header fields and the body."""

    command_id: CommandId
    command_status: int
    sequence_number: int
    pdu: Pdu


# --------------------------------------------------------------------------------------
# Field tables (the generic codec)
# --------------------------------------------------------------------------------------

_CSTR, _TIME, _U8, _SM, _DESTS, _UNSUCC, _TLVS = range(7)

_St = CommandStatus
# (kind, field name, max octets incl. NUL, status for an over-long value)
_Field = tuple[int, str, int, int]


def _c(name: str, size: int, status: int) -> _Field:
    return (_CSTR, name, size, status)


def _u8(name: str) -> _Field:
    return (_U8, name, 1, _St.RINVCMDLEN)


def _t(name: str, status: int) -> _Field:
    # Time fields (§7.1): "" or exactly 16 characters; C-string of 1 or 17 octets.
    return (_TIME, name, 17, status)


_SM_F: Final = (_SM, "short_message", MAX_SHORT_MESSAGE, _St.RINVMSGLEN)
_TLVS_F: Final = (_TLVS, "tlvs", 0, _St.RINVOPTPARSTREAM)
_SERVICE_TYPE: Final = _c("service_type", 6, _St.RINVSERTYP)
_MESSAGE_ID: Final = _c("message_id", 65, _St.RINVMSGID)
_SRC21: Final = (_u8("source_addr_ton"), _u8("source_addr_npi"),
                 _c("source_addr", 21, _St.RINVSRCADR))  # fmt: skip
_DST21: Final = (_u8("dest_addr_ton"), _u8("dest_addr_npi"),
                 _c("destination_addr", 21, _St.RINVDSTADR))  # fmt: skip
_BIND_F: Final = (
    _c("system_id", 16, _St.RINVSYSID),
    _c("password", 9, _St.RINVPASWD),
    _c("system_type", 13, _St.RINVSYSTYP),
    _u8("interface_version"),
    _u8("addr_ton"),
    _u8("addr_npi"),
    _c("address_range", 41, _St.RBINDFAIL),
)
_BIND_RESP_F: Final = (_c("system_id", 16, _St.RINVSYSID), _TLVS_F)
_SM_BODY_F: Final = (
    _SERVICE_TYPE, *_SRC21, *_DST21,
    _u8("esm_class"), _u8("protocol_id"), _u8("priority_flag"),
    _t("schedule_delivery_time", _St.RINVSCHED), _t("validity_period", _St.RINVEXPIRY),
    _u8("registered_delivery"), _u8("replace_if_present_flag"), _u8("data_coding"),
    _u8("sm_default_msg_id"), _SM_F, _TLVS_F,
)  # fmt: skip

_SPECS: Final[dict[type[Pdu], tuple[_Field, ...]]] = {
    BindTransmitter: _BIND_F,
    BindReceiver: _BIND_F,
    BindTransceiver: _BIND_F,
    BindTransmitterResp: _BIND_RESP_F,
    BindReceiverResp: _BIND_RESP_F,
    BindTransceiverResp: _BIND_RESP_F,
    Outbind: (_c("system_id", 16, _St.RINVSYSID), _c("password", 9, _St.RINVPASWD)),
    Unbind: (),
    UnbindResp: (),
    EnquireLink: (),
    EnquireLinkResp: (),
    GenericNack: (),
    SubmitSm: _SM_BODY_F,
    DeliverSm: _SM_BODY_F,
    SubmitSmResp: (_MESSAGE_ID, _TLVS_F),
    DeliverSmResp: (_MESSAGE_ID, _TLVS_F),
    DataSm: (
        _SERVICE_TYPE,
        _u8("source_addr_ton"), _u8("source_addr_npi"), _c("source_addr", 65, _St.RINVSRCADR),
        _u8("dest_addr_ton"), _u8("dest_addr_npi"), _c("destination_addr", 65, _St.RINVDSTADR),
        _u8("esm_class"), _u8("registered_delivery"), _u8("data_coding"), _TLVS_F,
    ),
    DataSmResp: (_MESSAGE_ID, _TLVS_F),
    QuerySm: (_MESSAGE_ID, *_SRC21),
    QuerySmResp: (_MESSAGE_ID, _t("final_date", _St.RSYSERR), _u8("message_state"),
                  _u8("error_code")),
    CancelSm: (_SERVICE_TYPE, _MESSAGE_ID, *_SRC21, *_DST21),
    CancelSmResp: (),
    ReplaceSm: (
        _MESSAGE_ID, *_SRC21,
        _t("schedule_delivery_time", _St.RINVSCHED), _t("validity_period", _St.RINVEXPIRY),
        _u8("registered_delivery"), _u8("sm_default_msg_id"), _SM_F,
    ),
    ReplaceSmResp: (),
    SubmitMulti: (
        _SERVICE_TYPE, *_SRC21, (_DESTS, "dest_address", 254, _St.RINVNUMDESTS),
        _u8("esm_class"), _u8("protocol_id"), _u8("priority_flag"),
        _t("schedule_delivery_time", _St.RINVSCHED), _t("validity_period", _St.RINVEXPIRY),
        _u8("registered_delivery"), _u8("replace_if_present_flag"), _u8("data_coding"),
        _u8("sm_default_msg_id"), _SM_F, _TLVS_F,
    ),
    SubmitMultiResp: (_MESSAGE_ID, (_UNSUCC, "unsuccess_sme", 255, _St.RINVNUMDESTS), _TLVS_F),
    AlertNotification: (
        _u8("source_addr_ton"), _u8("source_addr_npi"), _c("source_addr", 65, _St.RINVSRCADR),
        _u8("esme_addr_ton"), _u8("esme_addr_npi"), _c("esme_addr", 65, _St.RINVDSTADR),
        _TLVS_F,
    ),
}  # fmt: skip

# Responses with a body, as decoded from a frame whose body is absent.
_EMPTY_RESP: Final[dict[type[Pdu], Pdu]] = {
    BindTransmitterResp: BindTransmitterResp(),
    BindReceiverResp: BindReceiverResp(),
    BindTransceiverResp: BindTransceiverResp(),
    SubmitSmResp: SubmitSmResp(),
    DeliverSmResp: DeliverSmResp(),
    DataSmResp: DataSmResp(),
    QuerySmResp: QuerySmResp(),
    SubmitMultiResp: SubmitMultiResp(),
}
_CONSTRUCTORS: Final[dict[type[Pdu], Callable[..., Pdu]]] = {c: c for c in PDU_TYPES.values()}

_DEST_ADDR_F: Final = _c("destination_addr", 21, _St.RINVDSTADR)
_DL_NAME_F: Final = _c("dl_name", 21, _St.RINVDLNAME)


# --------------------------------------------------------------------------------------
# Generic encoder
# --------------------------------------------------------------------------------------


def _enc_cstr(out: bytearray, f: _Field, value: str) -> None:
    _, name, size, status = f
    try:
        raw = value.encode("latin-1")
    except UnicodeEncodeError:
        raise EncodeError(name, "not representable as octets (latin-1)", status) from None
    except AttributeError:
        raise EncodeError(name, f"expected str, got {type(value).__name__}", status) from None
    if len(raw) >= size:
        raise EncodeError(name, f"{len(raw)} octets; at most {size - 1} plus NUL", status)
    if 0 in raw:
        raise EncodeError(name, "contains NUL", status)
    if f[0] == _TIME and len(raw) not in (0, 16):
        raise EncodeError(name, "time must be empty or 16 characters (SMPP 3.4 §7.1)", status)
    out += raw
    out.append(0)


def _enc_u8(out: bytearray, name: str, value: int) -> None:
    if type(value) is not int and not isinstance(value, int):
        raise EncodeError(name, f"expected int, got {type(value).__name__}")
    if not 0 <= value <= 0xFF:
        raise EncodeError(name, f"{value} not in 0..255")
    out.append(value)


def _enc_tlvs(out: bytearray, tlvs: tuple[Tlv, ...]) -> None:
    for t in tlvs:
        if not 0 <= t.tag <= 0xFFFF:
            raise EncodeError("tlvs", f"tag {t.tag} not in 0..65535")
        if not isinstance(t.value, bytes):
            raise EncodeError("tlvs", f"tag 0x{t.tag:04x}: value must be bytes")
        if len(t.value) > 0xFFFF:
            raise EncodeError("tlvs", f"tag 0x{t.tag:04x}: {len(t.value)} octets > 65535")
        out += _TL.pack(t.tag, len(t.value))
        out += t.value


def _has_payload(tlvs: tuple[Tlv, ...]) -> bool:
    return any(t.tag == Tag.MESSAGE_PAYLOAD for t in tlvs)


def _encode_generic(pdu: Pdu, seq: int, status: int) -> bytes:
    cls = type(pdu)
    spec = _SPECS[cls]
    if not 0 <= seq <= 0xFFFFFFFF:
        raise EncodeError("sequence_number", f"{seq} not in 0..0xFFFFFFFF")
    if not 0 <= status <= 0xFFFFFFFF:
        raise EncodeError("command_status", f"{status} not in 0..0xFFFFFFFF")
    out = bytearray(16)
    # SMPP 3.4 §4.1.2/§4.4.2: a resp body is not returned if command_status != 0. Omit it
    # when there is nothing to say; send it when the caller filled something in.
    if not (status and pdu == _EMPTY_RESP.get(cls)):
        for f in spec:
            kind, name = f[0], f[1]
            if kind in (_CSTR, _TIME):
                _enc_cstr(out, f, getattr(pdu, name))
            elif kind == _U8:
                _enc_u8(out, name, getattr(pdu, name))
            elif kind == _SM:
                sm: bytes = getattr(pdu, name)
                if not isinstance(sm, bytes):
                    raise EncodeError(name, "must be bytes", CommandStatus.RINVMSGLEN)
                if len(sm) > MAX_SHORT_MESSAGE:
                    raise EncodeError(
                        name, f"{len(sm)} octets > 254: use message_payload",
                        CommandStatus.RINVMSGLEN,
                    )  # fmt: skip
                if sm and _has_payload(getattr(pdu, "tlvs", ())):
                    # §5.3.2.32: message_payload replaces short_message; never both.
                    raise EncodeError(
                        "message_payload", "short_message must be empty with message_payload",
                        CommandStatus.RINVMSGLEN,
                    )  # fmt: skip
                out.append(len(sm))
                out += sm
            elif kind == _TLVS:
                _enc_tlvs(out, getattr(pdu, name))
            elif kind == _DESTS:
                dests = getattr(pdu, name)
                if not 1 <= len(dests) <= 254:
                    raise EncodeError(name, f"{len(dests)} destinations; 1..254", f[3])
                out.append(len(dests))
                for d in dests:
                    if isinstance(d, SmeAddress):
                        out.append(1)
                        _enc_u8(out, "dest_addr_ton", d.dest_addr_ton)
                        _enc_u8(out, "dest_addr_npi", d.dest_addr_npi)
                        _enc_cstr(out, _DEST_ADDR_F, d.destination_addr)
                    elif isinstance(d, DistributionList):
                        out.append(2)
                        _enc_cstr(out, _DL_NAME_F, d.dl_name)
                    else:
                        raise EncodeError(name, f"unexpected {type(d).__name__}")
            else:  # _UNSUCC
                items = getattr(pdu, name)
                if len(items) > 255:
                    raise EncodeError(name, f"{len(items)} entries > 255")
                out.append(len(items))
                for u in items:
                    _enc_u8(out, "dest_addr_ton", u.dest_addr_ton)
                    _enc_u8(out, "dest_addr_npi", u.dest_addr_npi)
                    _enc_cstr(out, _DEST_ADDR_F, u.destination_addr)
                    if not 0 <= u.error_status_code <= 0xFFFFFFFF:
                        raise EncodeError("error_status_code", f"{u.error_status_code} not u32")
                    out += _U32.pack(u.error_status_code)
    _HDR.pack_into(out, 0, len(out), cls.command_id, status, seq)
    return bytes(out)


# --------------------------------------------------------------------------------------
# Generic decoder
# --------------------------------------------------------------------------------------


def _dec_cstr(frame: bytes, pos: int, f: _Field) -> tuple[str, int]:
    _, name, size, status = f
    end = frame.find(0, pos, pos + size)
    if end < 0:
        if len(frame) - pos >= size:
            raise DecodeError(name, status, f"no NUL within {size} octets")
        raise DecodeError(name, CommandStatus.RINVCMDLEN, "body ends inside the field")
    return frame[pos:end].decode("latin-1"), end + 1


def _dec_u8(frame: bytes, pos: int, name: str) -> int:
    if pos >= len(frame):
        raise DecodeError(name, CommandStatus.RINVCMDLEN, "body ends before the field")
    return frame[pos]


def _dec_tlvs(frame: bytes, pos: int) -> tuple[Tlv, ...]:
    n = len(frame)
    out = []
    while pos < n:
        if pos + 4 > n:
            raise DecodeError("tlvs", CommandStatus.RINVOPTPARSTREAM, "truncated TLV header")
        tag, ln = _TL.unpack_from(frame, pos)
        pos += 4
        end = pos + ln
        if end > n:
            raise DecodeError(
                "tlvs", CommandStatus.RINVOPTPARSTREAM, f"tag 0x{tag:04x} length {ln} overruns"
            )
        out.append(Tlv(tag, frame[pos:end]))
        pos = end
    return tuple(out)


def _decode_generic(cls: type[Pdu], frame: bytes) -> Pdu:
    n = len(frame)
    if n == 16:
        empty = _EMPTY_RESP.get(cls)
        if empty is not None:
            return empty  # absent response body (see module docstring)
    pos = 16
    kw: dict[str, object] = {}
    for f in _SPECS[cls]:
        kind, name = f[0], f[1]
        if kind in (_CSTR, _TIME):
            kw[name], pos = _dec_cstr(frame, pos, f)
        elif kind == _U8:
            kw[name] = _dec_u8(frame, pos, name)
            pos += 1
        elif kind == _SM:
            ln = _dec_u8(frame, pos, "sm_length")
            pos += 1
            if ln > MAX_SHORT_MESSAGE:
                raise DecodeError("sm_length", CommandStatus.RINVMSGLEN, f"{ln} > 254")
            if pos + ln > n:
                raise DecodeError(
                    "short_message", CommandStatus.RINVMSGLEN, f"sm_length {ln} overruns body"
                )
            kw[name] = frame[pos : pos + ln]
            pos += ln
        elif kind == _TLVS:
            kw[name] = _dec_tlvs(frame, pos)
            pos = n
        elif kind == _DESTS:
            count = _dec_u8(frame, pos, "number_of_dests")
            pos += 1
            if not 1 <= count <= 254:
                raise DecodeError("number_of_dests", CommandStatus.RINVNUMDESTS, f"{count}")
            dests: list[SmeAddress | DistributionList] = []
            for _ in range(count):
                flag = _dec_u8(frame, pos, "dest_flag")
                pos += 1
                if flag == 1:
                    ton = _dec_u8(frame, pos, "dest_addr_ton")
                    npi = _dec_u8(frame, pos + 1, "dest_addr_npi")
                    addr, pos = _dec_cstr(frame, pos + 2, _DEST_ADDR_F)
                    dests.append(
                        SmeAddress(dest_addr_ton=ton, dest_addr_npi=npi, destination_addr=addr)
                    )
                elif flag == 2:
                    dl, pos = _dec_cstr(frame, pos, _DL_NAME_F)
                    dests.append(DistributionList(dl_name=dl))
                else:
                    raise DecodeError("dest_flag", CommandStatus.RINVDESTFLAG, f"{flag}")
            kw[name] = tuple(dests)
        else:  # _UNSUCC
            count = _dec_u8(frame, pos, "no_unsuccess")
            pos += 1
            items: list[UnsuccessSme] = []
            for _ in range(count):
                ton = _dec_u8(frame, pos, "dest_addr_ton")
                npi = _dec_u8(frame, pos + 1, "dest_addr_npi")
                addr, pos = _dec_cstr(frame, pos + 2, _DEST_ADDR_F)
                if pos + 4 > n:
                    raise DecodeError("error_status_code", CommandStatus.RINVCMDLEN, "truncated")
                (code,) = _U32.unpack_from(frame, pos)
                pos += 4
                items.append(
                    UnsuccessSme(
                        dest_addr_ton=ton, dest_addr_npi=npi, destination_addr=addr,
                        error_status_code=code,
                    )
                )  # fmt: skip
            kw[name] = tuple(items)
    if pos != n:
        raise DecodeError("command_length", CommandStatus.RINVCMDLEN, f"{n - pos} octets left")
    return _CONSTRUCTORS[cls](**kw)


# --------------------------------------------------------------------------------------
# Fast paths (hot PDUs). Any failure falls back to the generic codec for the diagnosis.
# --------------------------------------------------------------------------------------
#
# Measured choices (CPython 3.11, bench/codec.py): one str %-format plus one latin-1
# encode builds the mandatory part of submit_sm; it beat bytes %-format with five encodes
# (~10%) and b"".join with bytes((...)) runs (~30%). msgspec.convert(tuple, cls) on an
# array_like Struct beats an 18-keyword constructor call (~3x), but for 1-2 keywords the
# plain call is faster.

# submit_sm / deliver_sm mandatory part, SMPP 3.4 §4.4.1: 5 C-strings and 12 octets, the
# last one sm_length; then short_message and the TLVs.
_SM_FMT: Final = "%s\0%c%c%s\0%c%c%s\0%c%c%c%s\0%s\0%c%c%c%c%c"
_FRAME_FMT: Final = b"%b%b%b%b"
_NUL_STR: Final = "\0"


_convert: Final = msgspec.convert
_join: Final = b"".join
_SM_FIELDS: Final = (
    "service_type", "source_addr_ton", "source_addr_npi", "source_addr", "dest_addr_ton",
    "dest_addr_npi", "destination_addr", "esm_class", "protocol_id", "priority_flag",
    "schedule_delivery_time", "validity_period", "registered_delivery",
    "replace_if_present_flag", "data_coding", "sm_default_msg_id", "short_message", "tlvs",
)  # fmt: skip
# The fast decoders build tuples in this order; a reordered Struct must fail loudly.
if SubmitSm.__struct_fields__ != _SM_FIELDS or DeliverSm.__struct_fields__ != _SM_FIELDS:
    raise ImportError("SubmitSm/DeliverSm field order changed: update codec fast paths")
if SubmitSmResp.__struct_fields__ != ("message_id", "tlvs"):
    raise ImportError("SubmitSmResp field order changed: update codec fast paths")


def _enc_short_message(p: SubmitSm | DeliverSm, seq: int, status: int) -> bytes:
    try:
        st = p.service_type
        sa = p.source_addr
        da = p.destination_addr
        sdt = p.schedule_delivery_time
        vp = p.validity_period
        sm = p.short_message
        tlvs = p.tlvs
        if (
            len(st) > 5
            or len(sa) > 20
            or len(da) > 20
            or (sdt and len(sdt) != 16)
            or (vp and len(vp) != 16)
            or len(sm) > MAX_SHORT_MESSAGE
            or _NUL_STR in (st + sa + da + sdt + vp)  # also TypeError unless all are str
            or type(sm) is not bytes
        ):
            raise ValueError
        # One str format, one latin-1 encode for the whole mandatory part. The encode also
        # validates: a non-latin-1 character, or a "%c" of an int > 255, cannot be encoded,
        # and "%c" of a negative int raises OverflowError; the generic encoder then names
        # the field. (len() of a str equals its encoded length once latin-1 succeeded.)
        body = (
            _SM_FMT % (
                st, p.source_addr_ton, p.source_addr_npi, sa, p.dest_addr_ton, p.dest_addr_npi,
                da, p.esm_class, p.protocol_id, p.priority_flag, sdt, vp,
                p.registered_delivery, p.replace_if_present_flag, p.data_coding,
                p.sm_default_msg_id, len(sm),
            )
        ).encode("latin-1")  # fmt: skip
        if tlvs:
            if sm and _has_payload(tlvs):
                raise ValueError
            tl = bytearray()
            _enc_tlvs(tl, tlvs)
        else:
            tl = b""  # type: ignore[assignment]
        return _FRAME_FMT % (
            _HDR.pack(16 + len(body) + len(sm) + len(tl), p.command_id, status, seq),
            body, sm, tl,
        )  # fmt: skip
    except Exception:  # the generic encoder names the culprit
        return _encode_generic(p, seq, status)


def _enc_message_id_resp(p: SubmitSmResp | DeliverSmResp, seq: int, status: int) -> bytes:
    try:
        mid = p.message_id
        if p.tlvs or (status and not mid):
            raise ValueError
        if not mid:
            return _HDR_NUL.pack(17, p.command_id, status, seq)
        raw = mid.encode("latin-1")
        if len(raw) > 64 or b"\0" in raw:
            raise ValueError
        return _join((_HDR.pack(17 + len(raw), p.command_id, status, seq), raw, b"\0"))
    except Exception:  # the generic encoder names the culprit
        return _encode_generic(p, seq, status)


def _enc_header_only(p: Pdu, seq: int, status: int) -> bytes:
    try:
        return _HDR.pack(16, p.command_id, status, seq)
    except struct.error:
        return _encode_generic(p, seq, status)


def _fast_tlvs(frame: bytes, pos: int, n: int) -> tuple[Tlv, ...]:
    # Same as _dec_tlvs without the diagnostics. An overrunning length yields a short
    # slice and leaves pos past n, which the final check catches.
    out: list[Tlv] = []
    append = out.append
    unpack = _TL.unpack_from
    while pos < n:
        tag, ln = unpack(frame, pos)
        pos += 4
        end = pos + ln
        append(Tlv(tag, frame[pos:end]))
        pos = end
    if pos != n:
        raise ValueError
    return tuple(out)


def _dec_short_message(frame: bytes, cls: type[SubmitSm | DeliverSm]) -> SubmitSm | DeliverSm:
    # SMPP 3.4 §4.4.1 / §4.6.1. bytes.find(0, start, start + size) both finds the NUL and
    # enforces the size limit; a miss raises and the generic decoder says which field.
    find = frame.find
    e = find(0, 16, 22)
    if e < 0:
        raise ValueError
    st = frame[16:e].decode("latin-1") if e != 16 else ""
    s_ton = frame[e + 1]
    s_npi = frame[e + 2]
    p = e + 3
    e = find(0, p, p + 21)
    if e < 0:
        raise ValueError
    sa = frame[p:e].decode("latin-1")
    d_ton = frame[e + 1]
    d_npi = frame[e + 2]
    p = e + 3
    e = find(0, p, p + 21)
    if e < 0:
        raise ValueError
    da = frame[p:e].decode("latin-1")
    esm = frame[e + 1]
    pid = frame[e + 2]
    prio = frame[e + 3]
    p = e + 4
    if frame[p] == 0:  # NULL schedule_delivery_time: always so in deliver_sm
        sdt = ""
        p += 1
    else:
        e = find(0, p, p + 17)
        if e < 0:
            raise ValueError
        sdt = frame[p:e].decode("latin-1")
        p = e + 1
    if frame[p] == 0:
        vp = ""
        p += 1
    else:
        e = find(0, p, p + 17)
        if e < 0:
            raise ValueError
        vp = frame[p:e].decode("latin-1")
        p = e + 1
    ln = frame[p + 4]
    start = p + 5
    end = start + ln
    n = len(frame)
    if ln > MAX_SHORT_MESSAGE or end > n:
        raise ValueError
    return _convert(
        (
            st, s_ton, s_npi, sa, d_ton, d_npi, da, esm, pid, prio, sdt, vp,
            frame[p], frame[p + 1], frame[p + 2], frame[p + 3], frame[start:end],
            _fast_tlvs(frame, end, n) if end != n else (),
        ),
        cls,
    )  # fmt: skip


def _dec_submit_sm(frame: bytes) -> Pdu:
    return _dec_short_message(frame, SubmitSm)


def fast_deliver_sm(frame: bytes) -> DeliverSm:
    """The body of a deliver_sm frame, by the fast path alone.

    For a caller that has read the header itself (the Session's receive loop): no Frame,
    no dispatch table. It never diagnoses: on anything the fast path does not take it
    raises some exception, and the caller hands the frame to ``decode()``, which names
    the fault or takes the generic path. Tests hold it to ``decode()``'s answer.
    """
    return _dec_short_message(frame, DeliverSm)  # type: ignore[return-value]


_EMPTY_SUBMIT_SM_RESP: Final = SubmitSmResp()
_EMPTY_DELIVER_SM_RESP: Final = DeliverSmResp()


def fast_submit_sm_resp(frame: bytes) -> SubmitSmResp:
    """The body of a submit_sm_resp frame, by the fast path alone (see fast_deliver_sm)."""
    n = len(frame)
    if n == 16:
        return _EMPTY_SUBMIT_SM_RESP
    e = frame.find(0, 16, 81)
    if e < 0:
        raise ValueError
    if e + 1 == n:
        return SubmitSmResp(message_id=frame[16:e].decode("latin-1"))
    return SubmitSmResp(message_id=frame[16:e].decode("latin-1"), tlvs=_fast_tlvs(frame, e + 1, n))


def _dec_deliver_sm_resp(frame: bytes) -> Pdu:
    n = len(frame)
    if n == 16 or (n == 17 and frame[16] == 0):
        return _EMPTY_DELIVER_SM_RESP
    raise ValueError  # non-NULL message_id or TLVs: rare, let the generic decoder do it


def _constant(pdu: Pdu) -> Callable[[bytes], Pdu]:
    def dec(frame: bytes) -> Pdu:
        if len(frame) != 16:
            raise ValueError
        return pdu

    return dec


# --------------------------------------------------------------------------------------
# Dispatch tables and the public API
# --------------------------------------------------------------------------------------

_Decoder = Callable[[bytes], Pdu]
_Encoder = Callable[[Pdu], bytes]


_FAST_DECODERS: Final[dict[type[Pdu], _Decoder]] = {
    SubmitSm: _dec_submit_sm,
    DeliverSm: fast_deliver_sm,
    SubmitSmResp: fast_submit_sm_resp,
    DeliverSmResp: _dec_deliver_sm_resp,
    EnquireLink: _constant(EnquireLink()),
    EnquireLinkResp: _constant(EnquireLinkResp()),
    Unbind: _constant(Unbind()),
    UnbindResp: _constant(UnbindResp()),
    GenericNack: _constant(GenericNack()),
}

# command_id -> (CommandId member, class, fast decoder or None)
_DECODERS: Final[dict[int, tuple[CommandId, type[Pdu], _Decoder | None]]] = {
    cid: (CommandId(cid), cls, _FAST_DECODERS.get(cls)) for cid, cls in PDU_TYPES.items()
}

_ENCODERS: Final[dict[type, Callable[[Pdu, int, int], bytes]]] = {
    cls: _encode_generic for cls in PDU_TYPES.values()
}
_ENCODERS.update(
    {
        SubmitSm: _enc_short_message,  # type: ignore[dict-item]
        DeliverSm: _enc_short_message,  # type: ignore[dict-item]
        SubmitSmResp: _enc_message_id_resp,  # type: ignore[dict-item]
        DeliverSmResp: _enc_message_id_resp,  # type: ignore[dict-item]
        EnquireLink: _enc_header_only,
        EnquireLinkResp: _enc_header_only,
        Unbind: _enc_header_only,
        UnbindResp: _enc_header_only,
        GenericNack: _enc_header_only,
        CancelSmResp: _enc_header_only,
        ReplaceSmResp: _enc_header_only,
    }
)


def encode(pdu: Pdu, *, seq: int, status: int = 0) -> bytes:
    """Encode ``pdu`` as one frame with sequence_number ``seq`` and command_status ``status``.

    Raises ``EncodeError`` (a ``LocalProtocolError`` and ``ValueError``) naming the field
    when a value breaks an SMPP 3.4 limit: C-string too long (sizes include the NUL) or
    containing NUL or non-latin-1 text, integer out of range, short_message over 254
    octets or next to a message_payload TLV, time fields not empty or 16 characters.
    """
    try:
        enc = _ENCODERS[type(pdu)]
    except KeyError:
        raise EncodeError("pdu", f"not a PDU body: {type(pdu).__name__}") from None
    return enc(pdu, seq, status)


def decode_header(frame: bytes) -> tuple[int, int, int, int]:
    """(command_length, command_id, command_status, sequence_number) of a frame's header."""
    if len(frame) < 16:
        raise DecodeError("command_length", CommandStatus.RINVCMDLEN, "shorter than 16")
    hdr: tuple[int, int, int, int] = _HDR.unpack_from(frame)
    return hdr


def decode(frame: bytes) -> Frame:
    """Decode one complete frame (command_length must equal ``len(frame)``).

    Raises only ``DecodeError`` (a ``RemoteProtocolError``), whatever the bytes. When the
    header was readable the error carries ``command_id`` and ``sequence_number``.
    """
    if type(frame) is not bytes:
        frame = bytes(frame)  # bytearray/memoryview: slices must come out as bytes
    n = len(frame)
    if n < 16:
        raise DecodeError("command_length", CommandStatus.RINVCMDLEN, f"{n} octets < 16")
    length, cid, status, seq = _HDR.unpack_from(frame)
    if length != n:
        raise DecodeError(
            "command_length", CommandStatus.RINVCMDLEN, f"{length} but frame has {n}",
            command_id=cid, sequence_number=seq,
        )  # fmt: skip
    entry = _DECODERS.get(cid)
    if entry is None:
        raise DecodeError(
            "command_id", CommandStatus.RINVCMDID, f"unknown 0x{cid:08x}",
            command_id=cid, sequence_number=seq,
        )  # fmt: skip
    member, cls, fast = entry
    try:
        if fast is not None:
            try:
                return Frame(member, status, seq, fast(frame))
            except Exception:  # diagnosed below by the generic decoder
                pass
        return Frame(member, status, seq, _decode_generic(cls, frame))
    except DecodeError as e:
        e.command_id = cid
        e.sequence_number = seq
        raise
    except Exception as e:  # pragma: no cover - a bug; the peer still gets an answer
        raise DecodeError(
            "body", CommandStatus.RSYSERR, f"{type(e).__name__}: {e}",
            command_id=cid, sequence_number=seq,
        ) from e
