"""Smart encoding: replace Unicode look-alikes with GSM characters (domain.md §2.4).

One curly quote or em dash otherwise switches a whole message to UCS-2 and can triple its
segment count. The table follows Twilio's list and calculator; decomposed accents are
composed first (NFC). The segment planner applies the result only when it fits GSM (and, if
configured, only when it saves segments), and reports what it replaced. The original text
is the caller's to keep.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

import msgspec
import regex

__all__ = ["LOOKALIKES", "Replacement", "replace_lookalikes"]


class Replacement(msgspec.Struct, frozen=True, gc=False):
    """One substituted character: `from` (JSON name) -> `to`, `count` occurrences."""

    from_: str = msgspec.field(name="from")
    to: str = ""
    count: int = 0


def _table() -> dict[str, str]:
    t: dict[str, str] = {}
    for ch in "“”„‟«»″＂":
        t[ch] = '"'
    for ch in "‘’‛′´ʼʻ＇`｀":
        t[ch] = "'"
    t["‚"] = ","
    for ch in "\u2013\u2014\u2015\u2010\ufe63\uff0d\u2022":
        t[ch] = "-"
    t["…"] = "..."
    for cp in (0x00A0, *range(0x2000, 0x200B), 0x202F, 0x205F, 0x3000):
        t[chr(cp)] = " "
    for cp in (0x200B, 0x2060, 0xFEFF):
        t[chr(cp)] = ""
    t.update({"‹": "<", "›": ">", "½": "1/2", "¼": "1/4", "¾": "3/4", "÷": "/", "‼": "!!"})
    # Fullwidth ASCII U+FF01-FF5E -> ASCII; the entries above (quotes, hyphen, backtick,
    # which has no GSM form) take precedence.
    for cp in range(0xFF01, 0xFF5F):
        t.setdefault(chr(cp), chr(cp - 0xFEE0))
    return t


LOOKALIKES: Final[Mapping[str, str]] = MappingProxyType(_table())
"""Look-alike character -> GSM replacement ("" = removed)."""

_GRAPHEME: Final = regex.compile(r"\X")
_FIND: Final = re.compile("[" + re.escape("".join(LOOKALIKES)) + "]")


def _lookup(m: re.Match[str]) -> str:
    return LOOKALIKES[m.group()]


def _compose(text: str) -> tuple[str, tuple[Replacement, ...]]:
    # Decomposed accents ("e" + U+0301, as some keyboards and macOS produce) become the
    # precomposed letter, which GSM often has (é, ñ, Å ...). Done per grapheme cluster so
    # the report names what changed.
    if unicodedata.is_normalized("NFC", text):
        return text, ()
    counts: Counter[tuple[str, str]] = Counter()
    out = []
    for cluster in _GRAPHEME.findall(text):
        composed = unicodedata.normalize("NFC", cluster)
        if composed != cluster:
            counts[cluster, composed] += 1
        out.append(composed)
    return "".join(out), tuple(Replacement(a, b, n) for (a, b), n in counts.items())


def replace_lookalikes(text: str) -> tuple[str, tuple[Replacement, ...]]:
    """`text` with decomposed characters composed (NFC) and every look-alike replaced, and
    the replacements in order of first appearance (each once, with its count). Unchanged
    text gives ()."""
    text, composed = _compose(text)
    found = _FIND.findall(text)
    if not found:
        return text, composed
    counts = Counter(found)  # C-level counting; keeps first-appearance order
    report = tuple(Replacement(ch, LOOKALIKES[ch], n) for ch, n in counts.items())
    # re.sub with a lookup per match: far cheaper than str.translate's per-character dict
    # lookups on non-ASCII text, and look-alikes are few.
    return _FIND.sub(_lookup, text), composed + report
