"""Delivery receipts: parse the text and TLVs of a deliver_sm, and match message ids.

Pure: no I/O, no clock, and no dependency on ``gateway.smpp`` types (plain ints, bytes and
``(tag, value)`` pairs), so the bind can call it with whatever its codec produced.

Receipt text (SMPP 3.4 Appendix B, domain.md §1.7)::

    id:IIIIIIIIII sub:SSS dlvrd:DDD submit date:YYMMDDhhmm done date:YYMMDDhhmm
    stat:DDDDDDD err:E text:...

Carriers bend it in every way: keys in any case (``Text:``, ``ID:``), missing fields,
seconds (or a four-digit year) in the dates, ``submit_date``/``done_date``, long or UUID
ids, extra spaces, other field orders. :func:`parse_receipt_text` accepts all of them;
an unknown ``stat`` maps to :attr:`ReceiptState.UNKNOWN`, never to a success. The standard
layout above (what the node-smpp simulator and most SMSCs send) is read by one anchored
regex; anything else goes through the lenient parser, with the same result either way.

:func:`parse_receipt` takes the deliver_sm fields and prefers the TLVs
(``receipted_message_id`` 0x001E, ``message_state`` 0x0427, ``network_error_code``
0x0423) over the text when they are present (domain.md §1.7, [S41c]).

Message ids (domain.md §1.8): the store keeps ONE canonical key per submit,
:func:`normalise_message_id` of the submit_sm_resp id; a receipt is looked up under each
of :func:`message_id_variants` (or :func:`receipt_lookup_keys`) in order. See
:func:`message_id_variants` for the algorithm and the carrier cases it covers.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Literal, Protocol

import msgspec

__all__ = [
    "TAG_MESSAGE_PAYLOAD",
    "TAG_MESSAGE_STATE",
    "TAG_NETWORK_ERROR_CODE",
    "TAG_RECEIPTED_MESSAGE_ID",
    "DeliveryReceipt",
    "MessageIdFormat",
    "ReceiptState",
    "ReceiptText",
    "TlvLike",
    "is_receipt_esm_class",
    "message_id_variants",
    "normalise_message_id",
    "parse_receipt",
    "parse_receipt_text",
    "receipt_first_key",
    "receipt_lookup_keys",
    "state_from_stat",
]

#: SMPP 3.4 §5.3.2 TLV tags used in receipts (kept here so this module needs no smpp import).
TAG_RECEIPTED_MESSAGE_ID = 0x001E
TAG_NETWORK_ERROR_CODE = 0x0423
TAG_MESSAGE_PAYLOAD = 0x0424
TAG_MESSAGE_STATE = 0x0427

#: esm_class "message type" bits 5-2 of a deliver_sm (domain.md §1.3).
_ESM_TYPE_MASK = 0x3C
_ESM_RECEIPT = 0x04
_ESM_INTERMEDIATE = 0x20
_ESM_UDHI = 0x40
_RECEIPT_TYPES = (_ESM_RECEIPT, _ESM_INTERMEDIATE)

#: How a carrier writes its submit_sm_resp message ids (the config's ``message_id_format``).
MessageIdFormat = Literal["auto", "hex", "dec", "raw"]

# A message id is a C-string of at most 65 octets (SMPP 3.4 §5.2.23); longer values are
# garbage. The cap also keeps int() away from its 4300-digit limit.
_MAX_ID_LEN = 64


class ReceiptState(enum.StrEnum):
    """The receipt outcome, named by the Appendix B ``stat`` strings (domain.md §1.7)."""

    SCHEDULED = "SCHEDULED"  #: SMPP 5.0 state 0; 3.4 SMSCs say ENROUTE
    ENROUTE = "ENROUTE"      #: in retry / dispatched
    DELIVRD = "DELIVRD"      #: final success
    EXPIRED = "EXPIRED"      #: validity ran out (a temporary failure for error classes)
    DELETED = "DELETED"      #: cancelled at the MC
    UNDELIV = "UNDELIV"      #: final failure: classify by err
    ACCEPTD = "ACCEPTD"      #: accepted / buffered on the subscriber's behalf
    UNKNOWN = "UNKNOWN"      #: invalid or unrecognised state; never a success
    REJECTD = "REJECTD"      #: rejected (filtered, blocked)
    SKIPPED = "SKIPPED"      #: SMPP 5.0: accepted but not sent

    @property
    def final(self) -> bool:
        """True when no further receipt is expected for this part."""
        return self in _FINAL

    @property
    def success(self) -> bool:
        """True only for DELIVRD."""
        return self is ReceiptState.DELIVRD


_FINAL = frozenset({ReceiptState.DELIVRD, ReceiptState.EXPIRED, ReceiptState.DELETED,
                    ReceiptState.UNDELIV, ReceiptState.REJECTD, ReceiptState.SKIPPED})

#: message_state TLV value -> state (SMPP 3.4 §5.3.2.35; 0 and 9 from SMPP 5.0).
_BY_MESSAGE_STATE: dict[int, ReceiptState] = {
    0: ReceiptState.SCHEDULED, 1: ReceiptState.ENROUTE, 2: ReceiptState.DELIVRD,
    3: ReceiptState.EXPIRED, 4: ReceiptState.DELETED, 5: ReceiptState.UNDELIV,
    6: ReceiptState.ACCEPTD, 7: ReceiptState.UNKNOWN, 8: ReceiptState.REJECTD,
    9: ReceiptState.SKIPPED,
}

#: stat text -> state. The 7-letter Appendix B names, their long spellings, and the
#: non-standard stats seen in the field ([S41c]: FAILED, NOROUTE, BARRED, NULL). Failures
#: map to failures; anything not listed is UNKNOWN, never DELIVRD.
_BY_STAT: dict[str, ReceiptState] = {
    **{s.value: s for s in ReceiptState},
    "DELIVERED": ReceiptState.DELIVRD,
    "UNDELIVERABLE": ReceiptState.UNDELIV, "UNDELIVERED": ReceiptState.UNDELIV,
    "FAILED": ReceiptState.UNDELIV, "FAILD": ReceiptState.UNDELIV,
    "NOROUTE": ReceiptState.UNDELIV,
    "REJECTED": ReceiptState.REJECTD, "BARRED": ReceiptState.REJECTD,
    "ACCEPTED": ReceiptState.ACCEPTD, "BUFFERED": ReceiptState.ACCEPTD,
    "DELETD": ReceiptState.DELETED, "EXPIRD": ReceiptState.EXPIRED,
}


def state_from_stat(stat: str | None) -> ReceiptState:
    """Map a receipt ``stat`` string (any case) to a state; unknown -> UNKNOWN."""
    if not stat:
        return ReceiptState.UNKNOWN
    return _BY_STAT.get(stat.strip().upper(), ReceiptState.UNKNOWN)


class ReceiptText(msgspec.Struct, frozen=True, kw_only=True):
    """The fields of an Appendix B receipt text, as far as they were present.

    Dates are naive: the receipt carries no zone (usually the SMSC's local time or UTC;
    the caller decides).
    """

    id: str | None = None
    sub: int | None = None
    dlvrd: int | None = None
    submit_date: datetime | None = None
    done_date: datetime | None = None
    stat: str | None = None          #: as written, upper-cased (``DELIVRD``, ``FAILED`` ...)
    err: str | None = None           #: as written (``000``, ``0x1A`` ...)
    text: str | None = None
    state: ReceiptState = ReceiptState.UNKNOWN


class DeliveryReceipt(msgspec.Struct, frozen=True, kw_only=True):
    """One delivery receipt (or intermediate notification) from a deliver_sm/data_sm."""

    #: The id to match: the receipted_message_id TLV when present, else the text ``id``;
    #: "" when the receipt carried neither (it cannot be matched).
    message_id: str
    state: ReceiptState
    #: The receipt's ``stat`` (or the name of the message_state TLV when there is no text).
    stat: str | None = None
    #: Error code: the network_error_code TLV's code when present, else ``err`` if numeric.
    error_code: int | None = None
    #: network_error_code network type (3 = GSM MAP, 7 = SMPP, 8 = MC-specific ...).
    network_type: int | None = None
    #: The text's ``err`` as written (per-carrier ``error_codes`` maps are keyed by it).
    err: str | None = None
    tlv_message_id: str | None = None
    text_message_id: str | None = None
    submit_date: datetime | None = None
    done_date: datetime | None = None
    sub: int | None = None
    dlvrd: int | None = None
    text: str | None = None
    #: esm_class type 0x20: an intermediate notification, not a final receipt.
    intermediate: bool = False

    @property
    def final(self) -> bool:
        """True when this is a final outcome (not intermediate, not a pending state)."""
        return not self.intermediate and self.state.final


class TlvLike(Protocol):
    """Anything with ``tag`` and ``value`` (e.g. ``gateway.smpp.pdu.Tlv``)."""

    @property
    def tag(self) -> int: ...

    @property
    def value(self) -> bytes: ...


Tlvs = Mapping[int, bytes] | Iterable[tuple[int, bytes] | TlvLike]


# ------------------------------------------------------------------------- receipt text

# Keys at a word start, followed by ':' (spaces allowed around it). "submit date" must be
# tried before "sub". Accepts "submit date", "submit_date", "submitdate", "submit-date".
_KEY = re.compile(
    r"(?<![A-Za-z0-9_])(?P<key>submit[ _-]?date|done[ _-]?date|id|sub|dlvrd|stat|err|text)"
    r"[ \t]*:",
    re.IGNORECASE,
)
_KEY_NAMES = {"id": "id", "sub": "sub", "dlvrd": "dlvrd", "stat": "stat", "err": "err",
              "text": "text"}


def _key_name(raw: str) -> str:
    k = raw.lower()
    if k.startswith("submit"):
        return "submit_date"
    if k.startswith("done"):
        return "done_date"
    return _KEY_NAMES[k]


def _decode_text(data: str | bytes) -> str:
    if isinstance(data, str):
        return data
    # Receipt text is ASCII by the spec; latin-1 decodes any octet, so this never raises.
    return data.decode("latin-1")


def _first_token(value: str) -> str | None:
    parts = value.split(None, 1)
    return parts[0] if parts else None


def _int_or_none(token: str | None) -> int | None:
    if token is None or not token.isascii() or not token.isdigit() or len(token) > 9:
        return None
    return int(token)


def _parse_date_uncached(token: str) -> datetime | None:
    """``YYMMDDhhmm``, ``YYMMDDhhmmss`` or ``YYYYMMDDhhmmss`` -> naive datetime."""
    if not token.isascii() or not token.isdigit():
        return None
    try:
        if len(token) in (10, 12):
            year = 2000 + int(token[0:2])
            rest = token[2:]
        elif len(token) == 14:
            year = int(token[0:4])
            rest = token[4:]
        else:
            return None
        second = int(rest[8:10]) if len(rest) == 10 else 0
        return datetime(year, int(rest[0:2]), int(rest[2:4]), int(rest[4:6]), int(rest[6:8]),
                        second)
    except ValueError:
        return None


# Receipt dates have minute resolution and a carrier stamps thousands of receipts with the
# same minute, so the parsed value is cached by token (datetimes are immutable, sharing one
# is safe). Only date-length tokens are kept and the dict is emptied when full: bounded
# memory whatever a peer sends, and no clock (the cache never expires, it only forgets).
_DATE_CACHE: dict[str, datetime | None] = {}
_DATE_CACHE_MAX = 4096
_DATE_LENGTHS = frozenset({10, 12, 14})


def _parse_date(token: str | None) -> datetime | None:
    """:func:`_parse_date_uncached`, memoised per token (see ``_DATE_CACHE``)."""
    if token is None:
        return None
    try:
        return _DATE_CACHE[token]
    except KeyError:
        pass
    value = _parse_date_uncached(token)
    if len(token) in _DATE_LENGTHS:
        if len(_DATE_CACHE) >= _DATE_CACHE_MAX:
            _DATE_CACHE.clear()
        _DATE_CACHE[token] = value
    return value


# The fast path: the exact Appendix B layout as the node-smpp simulator, Kannel and most
# SMSCs write it (single spaces, keys in this order, ``text:`` last or absent). For a string
# this matches, the general parser below finds exactly these eight keys at these places:
# every key match ends at a ':', and the only ':' before ``text:`` are the keys' own (no
# value class below contains ':' or a space, and all keys are ASCII letters after a space or
# the start, so the look-behind holds); every key inside the text is a repeat and stays in
# the text. So the fields below are what the general parser would read, and anything else
# (other orders, spacing, missing fields, non-ASCII before the text, an id longer than
# _MAX_ID_LEN, a trailing newline: ``\Z``, not ``$``) falls back to it.
_STANDARD = re.compile(
    r"id:([0-9A-Za-z_.-]{1,64}) sub:([0-9]+) dlvrd:([0-9]+) submit[ _-]?date:([0-9]+) "
    r"done[ _-]?date:([0-9]+) stat:([A-Za-z]+) err:([0-9A-Za-z]+)(?:( text:)|\Z)",
    re.ASCII | re.IGNORECASE,
)


def _parse_standard(s: str) -> ReceiptText | None:
    """The fields of ``s`` if it has the standard layout (see ``_STANDARD``), else None."""
    m = _STANDARD.match(s)
    if m is None:
        return None
    msg_id, sub, dlvrd, submit_date, done_date, stat, err, text = m.groups()
    stat = stat.upper()
    return ReceiptText(
        id=msg_id,
        sub=int(sub) if len(sub) <= 9 else None,       # as _int_or_none
        dlvrd=int(dlvrd) if len(dlvrd) <= 9 else None,
        submit_date=_parse_date(submit_date),
        done_date=_parse_date(done_date),
        stat=stat,
        err=err,
        text=s[m.end():].strip() if text is not None else None,
        state=_BY_STAT.get(stat, ReceiptState.UNKNOWN),
    )


def parse_receipt_text(text: str | bytes) -> ReceiptText | None:
    """Parse an Appendix B receipt text leniently; None when it has neither ``id`` nor ``stat``.

    The first occurrence of each key wins; a repeated key (``text:Your id: 42``) stays in
    the value it appears in. ``text`` keeps everything up to the next key that was not
    seen yet (it is normally the last field).
    """
    s = _decode_text(text).replace("\x00", " ")
    parsed = _parse_standard(s)
    return parsed if parsed is not None else _parse_general(s)


def _parse_general(s: str) -> ReceiptText | None:
    """The lenient parser behind :func:`parse_receipt_text` (``s`` decoded, NULs spaced)."""
    fields: dict[str, tuple[int, int]] = {}   # name -> (value start, value end)
    current: str | None = None
    for m in _KEY.finditer(s):
        name = _key_name(m.group("key"))
        if name in fields:
            continue  # a repeated key is part of the previous value
        if current is not None:
            fields[current] = (fields[current][0], m.start())
        fields[name] = (m.end(), len(s))
        current = name
    if "id" not in fields and "stat" not in fields:
        return None

    def value(name: str) -> str | None:
        span = fields.get(name)
        return s[span[0]:span[1]] if span is not None else None

    msg_id = _first_token(value("id") or "")
    if msg_id is not None and len(msg_id) > _MAX_ID_LEN:
        msg_id = None
    stat_tok = _first_token(value("stat") or "")
    stat = stat_tok.upper() if stat_tok else None
    err = _first_token(value("err") or "")
    raw_text = value("text")
    return ReceiptText(
        id=msg_id,
        sub=_int_or_none(_first_token(value("sub") or "")),
        dlvrd=_int_or_none(_first_token(value("dlvrd") or "")),
        submit_date=_parse_date(_first_token(value("submit_date") or "")),
        done_date=_parse_date(_first_token(value("done_date") or "")),
        stat=stat,
        err=err,
        text=raw_text.strip() if raw_text is not None else None,
        state=state_from_stat(stat),
    )


# ------------------------------------------------------------------------- deliver_sm

def is_receipt_esm_class(esm_class: int) -> bool:
    """True for a delivery receipt (0x04) or intermediate notification (0x20).

    Masks the message-type bits so UDHI (0x40) or reply-path (0x80) don't hide it
    (domain.md §1.3).
    """
    return (esm_class & _ESM_TYPE_MASK) in (_ESM_RECEIPT, _ESM_INTERMEDIATE)


def _tlv_map(tlvs: Tlvs) -> dict[int, bytes]:
    # The codec hands over a tuple of Tlv (int tag, bytes value): skip the Mapping ABC
    # check and the int()/bytes() calls for it, which return their argument unchanged for
    # exact ints and bytes anyway (this runs once per receipt on the trio thread).
    if type(tlvs) is not tuple and isinstance(tlvs, Mapping):
        return {int(k): bytes(v) for k, v in tlvs.items()}
    out: dict[int, bytes] = {}
    for item in tlvs:
        if isinstance(item, tuple):
            tag, value = item
        else:
            tag, value = item.tag, item.value
        if type(tag) is not int:
            tag = int(tag)
        if type(value) is not bytes:
            value = bytes(value)
        if tag not in out:  # first occurrence wins
            out[tag] = value
    return out


def _c_string(value: bytes) -> str | None:
    s = value.split(b"\x00", 1)[0].decode("latin-1").strip()
    return s if s and len(s) <= _MAX_ID_LEN else None


def _strip_udh(data: bytes) -> bytes:
    if not data:
        return data
    udhl = data[0]
    return data[udhl + 1:] if udhl + 1 <= len(data) else b""


def _body_text(short_message: bytes, esm_class: int, data_coding: int) -> str:
    data = _strip_udh(short_message) if esm_class & _ESM_UDHI else short_message
    if data_coding == 0x08:  # UCS-2: a few SMSCs send receipts that way
        return data.decode("utf-16-be", errors="replace")
    return data.decode("latin-1")


def parse_receipt(esm_class: int, short_message: bytes, tlvs: Tlvs = (), *,
                  data_coding: int = 0, sniff: bool = False) -> DeliveryReceipt | None:
    """A :class:`DeliveryReceipt` from a deliver_sm's fields, or None if it is not one.

    - ``esm_class``: 0x04 (receipt) or 0x20 (intermediate notification) in bits 5-2;
      anything else is an MO message and gives None, unless ``sniff`` is set: then a
      message whose text parses with both ``id`` and ``stat``, or that has a
      receipted_message_id TLV, counts as a receipt (for carriers that send receipts with
      esm_class 0).
    - The text comes from ``short_message`` (its UDH skipped when UDHI is set) or, when
      that is empty, from the message_payload TLV.
    - TLVs win over the text: receipted_message_id for the id, message_state for the state,
      network_error_code for the error code.

    A receipt with no usable id still returns a receipt with ``message_id == ""``, so the
    caller counts it as unmatched instead of treating it as an MO.
    """
    if type(short_message) is bytes and short_message and not esm_class & _ESM_UDHI \
            and data_coding != 0x08:
        fast = _parse_standard_receipt(esm_class, short_message, tlvs, sniff)
        if fast is not _NOT_STANDARD:
            return fast
    tlv = _tlv_map(tlvs)
    body = short_message or tlv.get(TAG_MESSAGE_PAYLOAD, b"")
    parsed = parse_receipt_text(_body_text(body, esm_class, data_coding))
    tlv_id = _c_string(tlv[TAG_RECEIPTED_MESSAGE_ID]) if TAG_RECEIPTED_MESSAGE_ID in tlv else None
    if not is_receipt_esm_class(esm_class):
        looks_like_one = tlv_id is not None or (
            parsed is not None and parsed.id is not None and parsed.stat is not None)
        if not (sniff and looks_like_one):
            return None
    pt = parsed if parsed is not None else ReceiptText()

    state = pt.state
    stat = pt.stat
    ms = tlv.get(TAG_MESSAGE_STATE, b"")
    if len(ms) >= 1 and ms[-1] in _BY_MESSAGE_STATE:
        state = _BY_MESSAGE_STATE[ms[-1]]
        if stat is None:
            stat = state.value

    network_type, error_code = _network_error(tlv, _int_or_none(pt.err))

    return DeliveryReceipt(
        message_id=tlv_id or pt.id or "",
        state=state,
        stat=stat,
        error_code=error_code,
        network_type=network_type,
        err=pt.err,
        tlv_message_id=tlv_id,
        text_message_id=pt.id,
        submit_date=pt.submit_date,
        done_date=pt.done_date,
        sub=pt.sub,
        dlvrd=pt.dlvrd,
        text=pt.text,
        intermediate=(esm_class & _ESM_TYPE_MASK) == _ESM_INTERMEDIATE,
    )


def _network_error(tlv: dict[int, bytes], error_code: int | None,
                   ) -> tuple[int | None, int | None]:
    """(network type, error code): the ``network_error_code`` TLV's when present (it wins
    over the text's ``err``), else (None, ``error_code``)."""
    nec = tlv.get(TAG_NETWORK_ERROR_CODE, b"")
    if len(nec) >= 3:
        # SMPP 3.4 §5.3.2.31: network type (1 octet) + error code (2 octets, big-endian)
        return nec[0], int.from_bytes(nec[1:3], "big")
    return None, error_code


#: ``_parse_standard_receipt``: "not the standard layout, take the general path".
_NOT_STANDARD = DeliveryReceipt(message_id="", state=ReceiptState.UNKNOWN)


def _parse_standard_receipt(esm_class: int, short_message: bytes, tlvs: Tlvs,
                            sniff: bool) -> DeliveryReceipt | None:
    """:func:`parse_receipt` of a text in the standard layout (``_STANDARD``), in one step.

    The receipt the general path builds, without its intermediate ``ReceiptText`` and
    calls (this runs once per receipt on the gateway's trio thread). Only for what that
    path would read as ``short_message.decode("latin-1")`` (bytes, no UDHI, not UCS-2);
    anything else returns ``_NOT_STANDARD``. The general path replaces NULs by spaces
    before matching; the layout up to the ``text:`` value has no NUL, so a text that
    matches as it is matches the same way after that replacement (and one that only
    matches after it takes the general path): only the ``text`` value needs the
    replacement here. ``tests/test_receipts_fastpath.py`` compares both paths.
    """
    s = short_message.decode("latin-1")
    m = _STANDARD.match(s)
    if m is None:
        return _NOT_STANDARD
    tlv = _tlv_map(tlvs)
    msg_id, sub, dlvrd, submit_date, done_date, stat, err, text = m.groups()
    tlv_id = _c_string(tlv[TAG_RECEIPTED_MESSAGE_ID]) if TAG_RECEIPTED_MESSAGE_ID in tlv else None
    etype = esm_class & _ESM_TYPE_MASK
    if etype not in _RECEIPT_TYPES and not sniff:
        return None  # an MO (with sniff, the text's id and stat make it a receipt)
    stat = stat.upper()
    state = _BY_STAT.get(stat, ReceiptState.UNKNOWN)
    ms = tlv.get(TAG_MESSAGE_STATE, b"")
    if len(ms) >= 1 and ms[-1] in _BY_MESSAGE_STATE:
        state = _BY_MESSAGE_STATE[ms[-1]]
    # ``err`` is ASCII letters and digits (``_STANDARD``): as _int_or_none
    network_type, error_code = _network_error(
        tlv, int(err) if len(err) <= 9 and err.isdigit() else None)
    return DeliveryReceipt(
        message_id=tlv_id or msg_id,
        state=state,
        stat=stat,
        error_code=error_code,
        network_type=network_type,
        err=err,
        tlv_message_id=tlv_id,
        text_message_id=msg_id,
        submit_date=_parse_date(submit_date),
        done_date=_parse_date(done_date),
        sub=int(sub) if len(sub) <= 9 else None,       # as _int_or_none
        dlvrd=int(dlvrd) if len(dlvrd) <= 9 else None,
        text=s[m.end():].replace("\x00", " ").strip() if text is not None else None,
        intermediate=etype == _ESM_INTERMEDIATE,
    )


# ------------------------------------------------------------------------ message ids

# Id shapes are tested with str methods, not regexes: this runs for every receipt on the
# gateway's one trio thread. An id here is always _clean()ed, so it has no NUL and no
# surrounding whitespace.
_HEX_DIGITS = "0123456789abcdefABCDEF"


def _is_hex(s: str) -> bool:
    """``s`` is one or more ASCII hex digits."""
    return bool(s) and not s.strip(_HEX_DIGITS)


def _is_dec(s: str) -> bool:
    """``s`` is one or more ASCII decimal digits (``isdigit`` alone also takes ``²``, ``٣``)."""
    return s.isascii() and s.isdigit()


def _is_uuid(s: str) -> bool:
    """``s`` is 8-4-4-4-12 hex digits (any case)."""
    return (len(s) == 36 and s[8] == s[13] == s[18] == s[23] == "-" and s.count("-") == 4
            and _is_hex(s.replace("-", "")))


def _clean(raw: str) -> str:
    return raw.split("\x00", 1)[0].strip()


def _normalise_clean(s: str) -> str:
    """:func:`normalise_message_id` of an already _clean()ed id, for ``fmt`` other than raw."""
    if len(s) > _MAX_ID_LEN:
        return s
    if _is_hex(s):
        return s.upper().lstrip("0") or "0"
    if _is_uuid(s):
        return s.upper()
    return s


def normalise_message_id(raw: str, fmt: MessageIdFormat = "auto") -> str:
    """The canonical store key of a carrier message id (a submit_sm_resp id).

    - ``raw``: the id with NULs and surrounding spaces removed, nothing else.
    - otherwise, by the id's shape (the format does not change the key, only which
      receipt forms :func:`message_id_variants` tries):

      * all hex digits (this includes all-decimal ids): upper-cased, leading zeros
        stripped (``00b8be19`` -> ``B8BE19``, ``000123`` -> ``123``, ``000`` -> ``0``);
      * a UUID: upper-cased;
      * anything else: as is (opaque, possibly case-sensitive ids such as base62).

    The key is the id's own string, never a reinterpretation: a resp id ``123`` is stored
    as ``123`` whatever its base, so one submit has exactly one key, and the base question
    is answered on the receipt side, where both readings can be tried.
    """
    s = _clean(raw)
    return s if fmt == "raw" else _normalise_clean(s)


def message_id_variants(raw: str, fmt: MessageIdFormat = "auto") -> tuple[str, ...]:
    """Canonical keys a receipt id may be stored under, most likely first.

    ``fmt`` is the carrier's ``message_id_format``: how it writes submit_sm_resp ids.
    The receipt may write the same id differently (domain.md §1.8); each form below is
    passed through :func:`normalise_message_id`, so case and zero padding never matter:

    1. the id itself (most carriers; and the receipted_message_id TLV, which normally
       repeats the resp id);
    2. ``hex`` or ``auto``, receipt id all decimal: its value written in hex. Vonage
       (and smscsim#4, CardBoardFish 3.3 binds) answer submit_sm_resp in hex and put the
       decimal value in the receipt: resp ``660df48587c60`` <-> receipt
       ``1795361967996000``; resp ``00B8BE19`` (padded) <-> ``12107289``;
    3. ``dec`` or ``auto``, receipt id hex: its value written in decimal, for carriers
       with decimal resp ids and hex receipts (Kannel ``msg-id-type`` mismatches, mokai#8).

    ``raw`` tries only the cleaned id. UUIDs and other non-numeric ids only match
    themselves (case-insensitively for UUIDs). The candidates are distinct ids, so a
    lookup may in theory hit another submit's id (a decimal-looking hex id); with
    ``hex``/``dec`` set, fewer forms are tried. The store tries them in order, within one
    carrier, and the first hit wins.
    """
    s = _clean(raw)
    if fmt == "raw" or not s or len(s) > _MAX_ID_LEN:
        return (s,) if s else ()
    # The other readings come out of format()/str() already canonical (upper-case hex or
    # decimal digits, no leading zeros), so normalising them again would change nothing.
    if not _is_hex(s):  # no numeric reading: UUIDs, opaque ids
        return (s.upper() if _is_uuid(s) else s,)
    key = s.upper().lstrip("0") or "0"
    as_hex = format(int(s, 10), "X") if fmt != "dec" and _is_dec(s) else key
    as_dec = str(int(s, 16)) if fmt != "hex" else key
    if as_hex == key:
        return (key,) if as_dec == key else (key, as_dec)
    return (key, as_hex) if as_dec in (key, as_hex) else (key, as_hex, as_dec)


def receipt_lookup_keys(receipt: DeliveryReceipt,
                        fmt: MessageIdFormat = "auto") -> tuple[str, ...]:
    """All keys to try for a receipt: variants of the TLV id, then of the text id.

    Both ids are tried because some carriers fill the TLV with an internal id and the text
    with the resp id, or the other way round.
    """
    tlv_id, text_id = receipt.tlv_message_id, receipt.text_message_id
    if not text_id or text_id == tlv_id:  # the usual case: the TLV repeats the text id
        return message_id_variants(tlv_id, fmt) if tlv_id else ()
    if not tlv_id:
        return message_id_variants(text_id, fmt)
    return tuple(dict.fromkeys(message_id_variants(tlv_id, fmt)
                               + message_id_variants(text_id, fmt)))


def receipt_first_key(receipt: DeliveryReceipt, fmt: MessageIdFormat = "auto") -> str | None:
    """``receipt_lookup_keys(receipt, fmt)[0]`` (None when there is none), without the
    other keys: the first one is the id itself, which is where nearly every receipt is
    found, so the other readings are only worth computing after it missed.

    The first of :func:`message_id_variants` is :func:`normalise_message_id` of the
    same id, for an id that is not empty once cleaned (an empty one has no variants).
    """
    tlv_id, text_id = receipt.tlv_message_id, receipt.text_message_id
    if tlv_id:
        key = _clean(tlv_id)
        if key:
            return key if fmt == "raw" else _normalise_clean(key)
        if not text_id or text_id == tlv_id:
            return None
    elif not text_id:
        return None
    key = _clean(text_id)
    if not key:
        return None
    return key if fmt == "raw" else _normalise_clean(key)
