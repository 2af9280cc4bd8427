"""Decoding MO (deliver_sm) text: data_coding -> text, UDH/SAR -> concatenation info.

Pure: the caller passes what it read from the PDU. GSM is always reduced to unpacked
septets first (`MoFragment.body`) so that a reassembler can join parts before decoding:
senders that split an ESC pair or a surrogate pair across parts still decode correctly.
"""

from __future__ import annotations

from typing import Final

import msgspec

from gateway.encoding import gsm7, ucs2
from gateway.encoding.options import Dcs0
from gateway.encoding.udh import Concat, split_udh

__all__ = ["MoFragment", "UnsupportedDataCoding", "decode_text", "fragment_text", "parse_mo"]

_ESM_UDHI: Final = 0x40

# SMPP 3.4 §5.2.19 data_coding values with a text codec (0x00 depends on the carrier).
_CODECS: Final = {
    0x01: "ascii", 0x03: "latin-1", 0x05: "shift_jis", 0x06: "iso8859_5",
    0x07: "iso8859_8", 0x0E: "euc_kr",
}


class UnsupportedDataCoding(ValueError):
    """The data_coding is binary (0x02, 0x04, 8-bit data classes) or unknown: not text."""

    def __init__(self, data_coding: int) -> None:
        super().__init__(f"data_coding 0x{data_coding:02X} does not carry text")
        self.data_coding = data_coding


def _alphabet_of(data_coding: int) -> str:
    """'gsm', 'ucs2', or a Python codec name, for a data_coding (23.038 §4 coding groups)."""
    if data_coding == 0x00:
        return "gsm"
    if data_coding == 0x08:
        return "ucs2"
    if data_coding in _CODECS:
        return _CODECS[data_coding]
    group = data_coding >> 4
    # 0x1X-0x3X and 0x4X-0x7X: general data coding; bits 3-2 give the alphabet (compressed
    # text, bit 5, is not supported).
    if 0x1 <= group <= 0x7 and not data_coding & 0x20:
        alphabet = (data_coding >> 2) & 0x3
        if alphabet == 0:
            return "gsm"
        if alphabet == 2:
            return "ucs2"
    elif group in (0xC, 0xD):  # message waiting, store/discard: GSM 7-bit
        return "gsm"
    elif group == 0xE:  # message waiting, UCS-2
        return "ucs2"
    elif group == 0xF and not data_coding & 0x04:  # data coding/message class, GSM 7-bit
        return "gsm"
    raise UnsupportedDataCoding(data_coding)


class MoFragment(msgspec.Struct, frozen=True):
    """One received short message, ready to decode or to reassemble.

    body: user data without UDH; GSM is unpacked (one septet per octet) whatever the wire
    form. concat: from the UDH or the SAR TLVs, None for a single message.
    """

    body: bytes
    data_coding: int
    concat: Concat | None = None
    single_shift: int | None = None


def parse_mo(short_message: bytes, esm_class: int, data_coding: int, *,
             packed: bool = False, dcs0: Dcs0 = "gsm",
             sar: tuple[int, int, int] | None = None,
             message_payload: bytes | None = None) -> MoFragment:
    """Split a deliver_sm's text into UDH information and body.

    - packed: the carrier sends GSM packed (fill bits after a UDH are honoured);
    - dcs0: what DCS 0 means to this carrier (only "gsm" is unpacked/shifted);
    - sar: (sar_msg_ref_num, sar_total_segments, sar_segment_seqnum) TLV values;
    - message_payload: when present it replaces short_message (SMPP 3.4 §5.3.2.32).
    Raises UdhError for a malformed UDH and UnsupportedDataCoding for binary data.
    """
    data = short_message if message_payload is None else message_payload
    kind = _alphabet_of(data_coding)
    concat: Concat | None = None
    shift: int | None = None
    udh_len = 0
    if esm_class & _ESM_UDHI:
        udh, data = split_udh(data)
        concat, shift, udh_len = udh.concat, udh.single_shift, udh.length
    if concat is None and sar is not None:
        ref, total, seq = sar
        if 1 <= seq <= total:
            concat = Concat(ref, total, seq, 16)
    if kind == "gsm" and (data_coding != 0 or dcs0 == "gsm") and packed:
        data = gsm7.unpack(data, gsm7.fill_bits(udh_len))
    return MoFragment(data, data_coding, concat, shift)


def decode_text(body: bytes, data_coding: int, *, dcs0: Dcs0 = "gsm",
                single_shift: int | None = None) -> str:
    """Text of an (unpacked, UDH-less) body. DCS 0 follows the carrier's `dcs0`; UCS-2 is
    decoded as UTF-16BE (surrogate pairs allowed; lone ones become U+FFFD)."""
    kind = _alphabet_of(data_coding)
    if kind == "gsm":
        if data_coding == 0 and dcs0 != "gsm":
            return body.decode("latin-1" if dcs0 == "latin1" else "ascii", errors="replace")
        return gsm7.decode(body, single_shift)
    if kind == "ucs2":
        return ucs2.decode(body)
    return body.decode(kind, errors="replace")


def fragment_text(fragment: MoFragment, *, dcs0: Dcs0 = "gsm") -> str:
    """Text of one fragment on its own."""
    return decode_text(fragment.body, fragment.data_coding, dcs0=dcs0,
                       single_shift=fragment.single_shift)
