"""GSM 03.38 default alphabet: tables, septet counting, encoding, packing, decoding.

Facts (domain.md §2.1, 3GPP TS 23.038 §6.2.1): 128 basic characters, one septet each; the
extension table is reached with ESC (0x1B) and each of its characters costs 2 septets. In
SMPP the norm for DCS 0 is *unpacked* (one septet per octet, the SMSC packs); packing 8
septets into 7 octets is a per-carrier option.

Everything here is table-driven and precomputed at import: the hot path is
`str.translate` / `bytes.translate` and one precompiled regex, never a Python loop per
character.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final, Literal

from gateway.encoding.shift_tables import SINGLE_SHIFT

__all__ = [
    "BASIC",
    "ESC",
    "EXTENSION",
    "Alphabet",
    "alphabet",
    "decode",
    "decode_packed",
    "encode",
    "fill_bits",
    "is_gsm",
    "pack",
    "septet_count",
    "unpack",
]

ESC: Final = 0x1B

BASIC: Final = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
"""The basic table, indexed by septet code. Index 0x1B is ESC, not a character."""
assert len(BASIC) == 128

EXTENSION: Final[Mapping[int, str]] = MappingProxyType({
    0x0A: "\f", 0x14: "^", 0x28: "{", 0x29: "}", 0x2F: "\\",
    0x3C: "[", 0x3D: "~", 0x3E: "]", 0x40: "|", 0x65: "€",
})
"""Default extension table: code after ESC -> character (2 septets each)."""

_CR: Final = 0x0D

Charset = Literal["gsm", "latin1", "ascii"]


class Alphabet:
    """One GSM 7-bit alphabet: the basic table plus one extension table (the default one or
    a national single shift table), optionally restricted to the characters a carrier's DCS 0
    charset (Latin-1, ASCII) can carry.

    Built once per combination and cached by `alphabet()`; immutable after construction.
    """

    __slots__ = ("charset", "language", "non_fit", "out_codec", "to_septets")

    def __init__(self, language: int | None = None, charset: Charset = "gsm") -> None:
        ext = EXTENSION if language is None else SINGLE_SHIFT[language]
        table: dict[int, str] = {}
        # Extension first so that the basic table wins where both have a character
        # (the Portuguese shift table repeats the Greek capitals): 1 septet beats 2.
        for code, ch in ext.items():
            table[ord(ch)] = chr(ESC) + chr(code)
        for code, ch in enumerate(BASIC):
            if code != ESC:
                table[ord(ch)] = chr(code)
        if charset != "gsm":
            codec = "latin-1" if charset == "latin1" else "ascii"
            table = {k: v for k, v in table.items() if _encodable(chr(k), codec)}
        self.language: Final = language
        self.charset: Final = charset
        self.out_codec: Final = None if charset == "gsm" else (
            "latin-1" if charset == "latin1" else "ascii")
        self.to_septets: Final[Mapping[int, str]] = MappingProxyType(table)
        chars = "".join(sorted(chr(k) for k in table))
        self.non_fit: Final = re.compile("[^" + re.escape(chars) + "]")

    def fits(self, text: str) -> bool:
        """True when every character of `text` is in this alphabet."""
        return self.non_fit.search(text) is None

    def septets(self, text: str) -> bytes:
        """Unpacked septets (ESC pairs for extension characters); `text` must fit."""
        return text.translate(self.to_septets).encode("latin-1")


def _encodable(ch: str, codec: str) -> bool:
    try:
        ch.encode(codec)
    except UnicodeEncodeError:
        return False
    return True


_ALPHABETS: dict[tuple[int | None, Charset], Alphabet] = {}


def alphabet(language: int | None = None, charset: Charset = "gsm") -> Alphabet:
    """The cached `Alphabet` for a national language id (None = default) and DCS 0 charset."""
    key = (language, charset)
    found = _ALPHABETS.get(key)
    if found is None:
        found = _ALPHABETS[key] = Alphabet(language, charset)
    return found


DEFAULT: Final = alphabet()

# ASCII fast path: a bytes.translate table from ASCII to septet codes, and the ASCII bytes
# that are basic-table characters (one septet each). Backtick, controls other than LF/CR
# and the extension characters [\]^{|}~ are not in it.
BASIC_ASCII: Final = bytes(
    sorted(ord(ch) for code, ch in enumerate(BASIC) if code != ESC and ch.isascii())
)
ASCII_TO_SEPTET: Final = bytes(
    BASIC.index(chr(i)) if i in BASIC_ASCII else i for i in range(256)
)


def is_gsm(text: str) -> bool:
    """True when `text` fits the default alphabet (basic + extension table)."""
    return DEFAULT.non_fit.search(text) is None


def septet_count(text: str) -> int:
    """Septets `text` needs in the default alphabet (extension characters count 2).

    Raises ValueError if a character is not in the alphabet.
    """
    return len(encode(text))


def encode(text: str, language: int | None = None) -> bytes:
    """Unpacked septets of `text`: one octet per septet, ESC + code for extension (or national
    single shift) characters. Raises ValueError naming the first character that does not fit.
    """
    alpha = alphabet(language)
    bad = alpha.non_fit.search(text)
    if bad is not None:
        raise ValueError(f"character {bad.group()!r} at {bad.start()} is not GSM 03.38")
    return alpha.septets(text)


_DECODE_BASIC: Final = {i: BASIC[i] if i < 128 else "\ufffd" for i in range(256)}
_DECODE_BASIC[ESC] = " "  # a lone ESC: 23.038 says display a space


def _decode_ext(language: int | None) -> dict[int, str]:
    # An unknown extension code is shown as the basic-table character (23.038 §6.2.1.1).
    ext = EXTENSION if language is None else SINGLE_SHIFT[language]
    return {i: ext.get(i, _DECODE_BASIC[i]) for i in range(256)}


_DECODE_EXT: Final = {lang: _decode_ext(lang) for lang in (None, *SINGLE_SHIFT)}


def decode(data: bytes, language: int | None = None) -> str:
    """Decode unpacked septets (one per octet). Octets >= 0x80 become U+FFFD; an ESC at the
    very end is dropped; ESC + unknown code gives the basic character.
    """
    if ESC not in data:
        return data.decode("latin-1").translate(_DECODE_BASIC)
    ext = _DECODE_EXT.get(language, _DECODE_EXT[None])
    first, *rest = data.split(b"\x1b")
    out = [first.decode("latin-1").translate(_DECODE_BASIC)]
    for chunk in rest:
        if chunk:
            out.append(ext[chunk[0]])
            out.append(chunk[1:].decode("latin-1").translate(_DECODE_BASIC))
        # ESC ESC (empty chunk between them) is the reserved "further extension": skip it.
    return "".join(out)


def fill_bits(udh_octets: int) -> int:
    """Fill bits after a UDH of `udh_octets` octets so that the first septet starts on a
    septet boundary (3GPP TS 23.040 §9.2.3.24)."""
    return (7 - (udh_octets * 8) % 7) % 7


def pack(septets: bytes, fill: int = 0) -> bytes:
    """Pack septets 8 into 7 octets, least significant bit first, after `fill` zero bits.

    When the last octet would end with 7 spare bits they are set to CR, not 0, so a receiver
    does not read a spurious '@' (3GPP TS 23.038 §6.1.2.3.1).
    """
    n = len(septets)
    value = 0
    for i in range(n - 1, -1, -1):
        value = (value << 7) | (septets[i] & 0x7F)
    bits = fill + 7 * n
    if bits % 8 == 1:
        value |= _CR << (7 * n)
        bits += 7
    return (value << fill).to_bytes((bits + 7) // 8, "little")


def unpack(data: bytes, fill: int = 0, count: int | None = None) -> bytes:
    """Unpack septets from packed octets after `fill` bits. Without `count`, a final CR that
    exactly fills the last 7 bits is taken for padding and dropped (23.038 §6.1.2.3.1).
    """
    total = (len(data) * 8 - fill) // 7 if len(data) * 8 >= fill else 0
    n = total if count is None else min(count, total)
    value = int.from_bytes(data, "little") >> fill
    out = bytes((value >> (7 * i)) & 0x7F for i in range(n))
    if count is None and n and out[-1] == _CR and (len(data) * 8 - fill) % 7 == 0:
        out = out[:-1]
    return out


def decode_packed(data: bytes, fill: int = 0, language: int | None = None) -> str:
    """Decode packed GSM 03.38 (after `fill` bits, e.g. following a UDH)."""
    return decode(unpack(data, fill), language)
