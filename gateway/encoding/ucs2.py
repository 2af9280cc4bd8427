"""UCS-2 as sent in practice: UTF-16BE with DCS 0x08 (domain.md §2.3).

Strict UCS-2 has no room for characters outside the BMP; handsets and SMSCs accept UTF-16,
where such a character (most emoji) is a surrogate pair costing 2 of the 70/67/66 units.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["decode", "encode", "replace_lone_surrogates", "units"]

_LONE_SURROGATE: Final = re.compile("[\ud800-\udfff]")


def replace_lone_surrogates(text: str) -> str:
    """`text` with unpaired surrogates (which UTF-16 cannot carry) replaced by U+FFFD."""
    return _LONE_SURROGATE.sub("\ufffd", text)


def encode(text: str) -> bytes:
    """UTF-16BE; an unpaired surrogate becomes U+FFFD."""
    try:
        return text.encode("utf-16-be")
    except UnicodeEncodeError:
        return replace_lone_surrogates(text).encode("utf-16-be")


def units(text: str) -> int:
    """UTF-16 code units of `text` (characters outside the BMP count 2)."""
    return len(encode(text)) >> 1


def decode(data: bytes) -> str:
    """Lenient UTF-16BE: a lone surrogate or an odd final octet becomes U+FFFD."""
    return data.decode("utf-16-be", errors="replace")
