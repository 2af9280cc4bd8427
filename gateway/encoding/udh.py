"""User Data Header: build and parse (3GPP TS 23.040 §9.2.3.24; domain.md §2.2).

A UDH is UDHL (1 octet, length of what follows) then information elements, each
IEI (1) + length (1) + data. The ones we use:
- 0x00 concatenation, 8-bit reference: `00 03 RR TT SS` (with UDHL: 6 octets)
- 0x08 concatenation, 16-bit reference: `08 04 RRRR TT SS` (7 octets)
- 0x24 national language single shift: `24 01 LL`; 0x25 locking shift: `25 01 LL`
"""

from __future__ import annotations

from typing import Final

import msgspec

from gateway.encoding.shift_tables import IEI_LOCKING_SHIFT, IEI_SINGLE_SHIFT

__all__ = [
    "IEI_CONCAT_8",
    "IEI_CONCAT_16",
    "Concat",
    "Udh",
    "UdhError",
    "concat_ie",
    "join_udh",
    "split_udh",
]

IEI_CONCAT_8: Final = 0x00
IEI_CONCAT_16: Final = 0x08


class UdhError(ValueError):
    """A peer's short_message claims a UDH (esm_class UDHI) that is malformed."""


class Concat(msgspec.Struct, frozen=True):
    """Concatenation info: reference, total parts, 1-based sequence, reference width."""

    ref: int
    total: int
    seq: int
    ref_bits: int


class Udh(msgspec.Struct, frozen=True):
    """A parsed UDH. `length` counts every octet including UDHL (the fill-bit input)."""

    length: int
    concat: Concat | None = None
    single_shift: int | None = None
    locking_shift: int | None = None
    elements: tuple[tuple[int, bytes], ...] = ()


def concat_ie(ref: int, total: int, seq: int, ref_bits: int) -> bytes:
    """The concatenation IE (without UDHL) for an 8- or 16-bit reference."""
    if ref_bits == 8:
        return bytes((IEI_CONCAT_8, 3, ref & 0xFF, total, seq))
    return bytes((IEI_CONCAT_16, 4, (ref >> 8) & 0xFF, ref & 0xFF, total, seq))


def join_udh(*ies: bytes) -> bytes:
    """UDHL + the given IEs; b"" when there are none."""
    body = b"".join(ies)
    return bytes((len(body),)) + body if body else b""


def split_udh(short_message: bytes) -> tuple[Udh, bytes]:
    """Parse the UDH at the start of `short_message` (the caller saw esm_class UDHI) and
    return it with the remaining user data. Raises UdhError when lengths overrun.

    A concatenation IE whose total is 0, or whose sequence is 0 or above the total, is
    ignored as 23.040 §9.2.3.24.1 requires; the last of repeated IEs wins.
    """
    if not short_message:
        raise UdhError("UDHI set but short_message is empty")
    udhl = short_message[0]
    end = 1 + udhl
    if end > len(short_message):
        raise UdhError(f"UDHL {udhl} overruns short_message of {len(short_message)} octets")
    pos = 1
    elements: list[tuple[int, bytes]] = []
    concat: Concat | None = None
    single: int | None = None
    locking: int | None = None
    while pos < end:
        if pos + 2 > end:
            raise UdhError(f"truncated information element at octet {pos}")
        iei, ln = short_message[pos], short_message[pos + 1]
        data = short_message[pos + 2 : pos + 2 + ln]
        if pos + 2 + ln > end:
            raise UdhError(f"IE 0x{iei:02X} length {ln} overruns the UDH")
        elements.append((iei, data))
        pos += 2 + ln
        if iei == IEI_CONCAT_8 and ln == 3:
            c = Concat(data[0], data[1], data[2], 8)
        elif iei == IEI_CONCAT_16 and ln == 4:
            c = Concat((data[0] << 8) | data[1], data[2], data[3], 16)
        elif iei == IEI_SINGLE_SHIFT and ln == 1:
            single = data[0]
            continue
        elif iei == IEI_LOCKING_SHIFT and ln == 1:
            locking = data[0]
            continue
        else:
            continue
        if 1 <= c.seq <= c.total:
            concat = c
    return Udh(end, concat, single, locking, tuple(elements)), short_message[end:]
