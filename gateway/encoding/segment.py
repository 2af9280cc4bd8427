"""Choose the encoding and split a text into SMPP parts: `plan()`.

Encoding choice, per message (domain.md §2.3): GSM 03.38 (basic + extension table) when
every character fits, else (if the destination country has one enabled) GSM with a national
single shift table, else Latin-1 when the carrier wants it, else UCS-2 (UTF-16BE). With
smart encoding the look-alike substitution is tried after the plain GSM attempt, and used
only when its result fits GSM.

Limits (domain.md §2.2). Capacity of one part, for a UDH of `u` octets including UDHL:
GSM floor((1120 - 8u) / 7) septets, UCS-2 floor((140 - u) / 2) units, 8-bit 140 - u
octets: 160/70/140 without UDH, 153/67/134 with the 8-bit-reference UDH, 152/66/133 with
the 16-bit one; a national shift IE adds 3 octets (155 single, 149 with udh8).
- SAR TLVs and message_payload leave the concatenation UDH to the SMSC, whose reference may
  be 16-bit (sar_msg_ref_num is 2 octets), so we count with the 16-bit capacities: the
  count never falls short of what the carrier bills.
- Octets in short_message: unpacked GSM is one septet per octet, so a single part carries
  up to 160 octets and a multipart part UDH + 153 (carriers accept this: the SMSC packs).
  Packed GSM always fits 140 octets including the UDH and its fill bits.

Splitting: greedy over the smallest units that may not be divided, which gives the minimal
part count. GSM: an ESC pair and a CR LF pair stay together. UCS-2: grapheme clusters
(regex `\\X`: ZWJ sequences, flags, skin tones, combining marks) stay together; a single
cluster longer than a whole part (pathological stacks of combining marks) starts a new part
and is cut at code-point boundaries, never inside a surrogate pair. Latin-1: CR LF stays
together. `\\X` runs only when a text needs more than one part.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from itertools import accumulate
from typing import Final, Literal, NamedTuple

import msgspec
import regex

from gateway.encoding import gsm7, ucs2
from gateway.encoding.options import EncodingOptions
from gateway.encoding.shift_tables import IEI_SINGLE_SHIFT, LANGUAGE_IDS
from gateway.encoding.smart import Replacement, replace_lookalikes
from gateway.encoding.udh import concat_ie, join_udh

__all__ = [
    "DCS_GSM",
    "DCS_LATIN1",
    "DCS_UCS2",
    "ESM_UDHI",
    "Encoding",
    "Part",
    "PlanRejected",
    "RejectReason",
    "SegmentPlan",
    "capacity",
    "plan",
]

Encoding = Literal["gsm7", "ucs2", "latin1"]
RejectReason = Literal["too_many_segments", "empty_text"]

DCS_GSM: Final = 0x00
DCS_LATIN1: Final = 0x03
DCS_UCS2: Final = 0x08
ESM_UDHI: Final = 0x40
"""esm_class bit: short_message starts with a UDH (SMPP 3.4 §5.2.12)."""

_CR: Final = 0x0D
_LF: Final = 0x0A
_ESC: Final = gsm7.ESC
_GRAPHEME: Final = regex.compile(r"\X")
_ASTRAL: Final = re.compile("[\U00010000-\U0010ffff]")
_NATIONAL_IE_LEN: Final = 3
_CONCAT_IE_LEN: Final = {"udh8": 5, "udh16": 6, "sar": 6, "payload": 6}


class Part(msgspec.Struct, frozen=True, gc=False):
    """One submit_sm's worth of message.

    short_message includes the UDH when esm_class has UDHI (0x40). `sar` is
    (sar_msg_ref_num, sar_total_segments, sar_segment_seqnum) for the SAR TLVs. In
    message_payload mode short_message is empty and `payload` holds the whole message.
    """

    short_message: bytes
    esm_class: int = 0
    sar: tuple[int, int, int] | None = None
    payload: bytes | None = None


class SegmentPlan(msgspec.Struct, frozen=True, gc=False):
    """The parts of one message, all with the same data_coding.

    `text_sent` is the text after smart replacements (what the handset shows); `replaced`
    reports them; `language` names the national single shift table used, if any; `ref` is
    the concatenation reference actually used (masked), None for one part.
    """

    encoding: Encoding
    data_coding: int
    segments: int
    parts: tuple[Part, ...]
    replaced: tuple[Replacement, ...] = ()
    text_sent: str = ""
    language: str | None = None
    ref: int | None = None


class PlanRejected(msgspec.Struct, frozen=True, gc=False):
    """Why a text cannot be sent as is (nothing is ever truncated)."""

    reason: RejectReason
    segments_needed: int
    message: str


def capacity(encoding: Encoding, udh_octets: int) -> int:
    """Units (septets / UTF-16 units / octets) one part holds after a UDH of `udh_octets`
    octets including UDHL (0 = no UDH)."""
    if encoding == "gsm7":
        return (1120 - 8 * udh_octets) // 7
    if encoding == "ucs2":
        return (140 - udh_octets) // 2
    return 140 - udh_octets


def _udh_octets(concat_ie_len: int, national: bool) -> int:
    ies = concat_ie_len + (_NATIONAL_IE_LEN if national else 0)
    return 1 + ies if ies else 0


class Layout(NamedTuple):
    """Internal result of choosing the encoding and the split (shared with preview).

    chunks: each part's user data without UDH, unpacked; units: each part's cost in the
    encoding's units; cap: capacity of each part; whole: the whole user data.
    """

    encoding: Encoding
    data_coding: int
    text: str
    replaced: tuple[Replacement, ...]
    language: int | None
    chunks: list[bytes]
    units: list[int]
    cap: int
    whole: bytes


def _split_stream(data: bytes, cap: int, esc: bool) -> list[int]:
    """End offsets of greedy parts of at most `cap` units; ESC pairs (when `esc`) and CR LF
    never straddle a boundary."""
    ends: list[int] = []
    n = len(data)
    pos = 0
    while n - pos > cap:
        end = pos + cap
        last = data[end - 1]
        # An ESC septet never ends a part: its character would open the next one (the
        # python-smpplib FIXME). Extension codes are never 0x1B, so any ESC starts a pair.
        if (esc and last == _ESC) or (last == _CR and data[end] == _LF):
            end -= 1
        ends.append(end)
        pos = end
    ends.append(n)
    return ends


def _split_clusters(text: str, cap: int) -> list[int]:
    """End offsets (in UTF-16 units) of greedy parts of at most `cap` units over grapheme
    clusters. A cluster longer than a whole part starts a new part and is cut between code
    points (never inside a surrogate pair)."""
    # Cluster ends in code points (C-level accumulate), and the code-point indexes of the
    # few characters outside the BMP, which cost 2 units: units(e) = e + astral before e.
    ends = list(accumulate(map(len, _GRAPHEME.findall(text))))
    astral = [m.start() for m in _ASTRAL.finditer(text)]

    def units(e: int) -> int:
        return e + bisect_left(astral, e)

    total = len(text) + len(astral)
    out: list[int] = []
    start = 0  # code points
    start_u = 0  # units
    while total - start_u > cap:
        target = start_u + cap
        i = bisect_right(ends, target, key=units) - 1
        end = ends[i] if i >= 0 else 0
        if end <= start:
            # The cluster holding `start` is longer than a part: fill it code point by code
            # point (its end lies beyond `target`, so this never leaves the cluster).
            end, used = start, start_u
            while used + (k := 2 if text[end] > "\uffff" else 1) <= target:
                used += k
                end += 1
        start, start_u = end, units(end)
        out.append(start_u)
    out.append(total)
    return out


def _gsm_layout(text: str, alpha: gsm7.Alphabet, septets: bytes, out: bytes | None, *,
                seg: str, replaced: tuple[Replacement, ...]) -> Layout:
    # `out` is the octets the carrier's DCS 0 charset carries (None: the septets themselves).
    national = alpha.language is not None
    n = len(septets)
    whole = septets if out is None else out
    cap = capacity("gsm7", _udh_octets(0, national))
    if n <= cap:
        return Layout("gsm7", DCS_GSM, text, replaced, alpha.language, [whole], [n], cap,
                      whole)
    cap = capacity("gsm7", _udh_octets(_CONCAT_IE_LEN[seg], national))
    ends = _split_stream(septets, cap, esc=True)
    chunks: list[bytes] = []
    units: list[int] = []
    pos = 0
    cpos = 0
    for end in ends:
        units.append(end - pos)
        if out is None:
            chunks.append(septets[pos:end])
        else:
            # One output octet per character: septets minus the ESCs.
            cend = cpos + (end - pos) - septets.count(_ESC, pos, end)
            chunks.append(out[cpos:cend])
            cpos = cend
        pos = end
    return Layout("gsm7", DCS_GSM, text, replaced, alpha.language, chunks, units, cap, whole)


def _latin1_layout(text: str, seg: str) -> Layout:
    data = text.encode("latin-1")
    cap = capacity("latin1", 0)
    if len(data) <= cap:
        return Layout("latin1", DCS_LATIN1, text, (), None, [data], [len(data)], cap, data)
    cap = capacity("latin1", _udh_octets(_CONCAT_IE_LEN[seg], False))
    ends = _split_stream(data, cap, esc=False)
    starts = [0, *ends[:-1]]
    return Layout("latin1", DCS_LATIN1, text, (), None,
                  [data[s:e] for s, e in zip(starts, ends, strict=True)],
                  [e - s for s, e in zip(starts, ends, strict=True)], cap, data)


def _ucs2_layout(text: str, seg: str) -> Layout:
    try:
        data = text.encode("utf-16-be")
    except UnicodeEncodeError:
        text = ucs2.replace_lone_surrogates(text)
        data = text.encode("utf-16-be")
    n = len(data) >> 1
    cap = capacity("ucs2", 0)
    if n <= cap:
        return Layout("ucs2", DCS_UCS2, text, (), None, [data], [n], cap, data)
    cap = capacity("ucs2", _udh_octets(_CONCAT_IE_LEN[seg], False))
    ends = _split_clusters(text, cap)
    starts = [0, *ends[:-1]]
    return Layout("ucs2", DCS_UCS2, text, (), None,
                  [data[2 * s : 2 * e] for s, e in zip(starts, ends, strict=True)],
                  [e - s for s, e in zip(starts, ends, strict=True)], cap, data)


def _try_gsm(text: str, alpha: gsm7.Alphabet, seg: str,
             replaced: tuple[Replacement, ...]) -> Layout | None:
    if alpha.non_fit.search(text) is not None:
        return None
    septets = alpha.septets(text)
    out = None if alpha.out_codec is None else text.encode(alpha.out_codec)
    return _gsm_layout(text, alpha, septets, out, seg=seg, replaced=replaced)


def _fallback(text: str, options: EncodingOptions, national: gsm7.Alphabet | None) -> Layout:
    seg = options.segmentation
    if national is not None:
        lay = _try_gsm(text, national, seg, ())
        if lay is not None:
            return lay
    if options.latin1:
        try:
            return _latin1_layout(text, seg)
        except UnicodeEncodeError:
            pass
    return _ucs2_layout(text, seg)


def layout(text: str, options: EncodingOptions, *, country: str | None = None,
           smart: bool | None = None) -> Layout:
    """Choose the encoding and split `text` (non-empty) without building PDUs."""
    seg = options.segmentation
    charset = options.dcs0
    # Fast path: ASCII made only of basic-table characters (the common marketing text):
    # bytes.translate in C, no regex, no per-character Python.
    if text.isascii():
        b = text.encode("ascii")
        if not b.translate(None, gsm7.BASIC_ASCII):
            if charset == "gsm":
                return _gsm_layout(text, gsm7.DEFAULT, b.translate(gsm7.ASCII_TO_SEPTET),
                                   None, seg=seg, replaced=())
            return _gsm_layout(text, gsm7.alphabet(None, charset), b, b, seg=seg, replaced=())
    default = gsm7.alphabet(None, charset)
    lay = _try_gsm(text, default, seg, ())
    if lay is not None:
        return lay
    national: gsm7.Alphabet | None = None
    if country is not None and options.national_languages and charset == "gsm":
        lang = options.national_languages.get(country.upper())
        if lang is not None:
            national = gsm7.alphabet(LANGUAGE_IDS[lang])
    if options.smart_encoding if smart is None else smart:
        sent, replaced = replace_lookalikes(text)
        if replaced and sent:
            cand = _try_gsm(sent, default, seg, replaced)
            if cand is None and national is not None:
                cand = _try_gsm(sent, national, seg, replaced)
            if cand is not None:
                if not options.smart_only_if_fewer_segments:
                    return cand
                plain = _fallback(text, options, national)
                return cand if len(cand.chunks) < len(plain.chunks) else plain
    return _fallback(text, options, national)


def _language_name(lang: int | None) -> str | None:
    if lang is None:
        return None
    return next(name for name, i in LANGUAGE_IDS.items() if i == lang)


def plan(text: str, options: EncodingOptions, *, ref: int, country: str | None = None,
         smart: bool | None = None) -> SegmentPlan | PlanRejected:
    """Encode and segment `text` for one carrier.

    - ref: the concatenation reference from the caller's per-carrier counter (used masked:
      8 bits for udh8, 16 bits for udh16 and SAR), so concurrent long messages to one
      handset do not collide.
    - country: ISO 3166 alpha-2 destination country, for `options.national_languages`.
    - smart: per-message smart-encoding flag; None = `options.smart_encoding`.

    Rejects (never truncates) empty text (`empty_text`) and texts needing more than
    `options.max_parts` parts (`too_many_segments`, with the count needed).
    """
    if not text:
        return PlanRejected("empty_text", 0, "text is empty")
    lay = layout(text, options, country=country, smart=smart)
    n = len(lay.chunks)
    if n > options.max_parts:
        return PlanRejected(
            "too_many_segments", n,
            f"text needs {n} {lay.encoding} segments; this carrier allows {options.max_parts}")
    seg = options.segmentation
    packed = lay.encoding == "gsm7" and options.gsm_packing == "packed"
    lang_ie = b"" if lay.language is None else bytes((IEI_SINGLE_SHIFT, 1, lay.language))
    used_ref: int | None = None
    parts: tuple[Part, ...]
    if seg == "payload" or n == 1:
        udh = join_udh(lang_ie)
        body = lay.whole if seg == "payload" else lay.chunks[0]
        if packed:
            body = gsm7.pack(body, gsm7.fill_bits(len(udh)))
        esm = ESM_UDHI if udh else 0
        parts = ((Part(b"", esm, None, udh + body),) if seg == "payload"
                 else (Part(udh + body, esm),))
    elif seg == "sar":
        used_ref = ref & 0xFFFF
        udh = join_udh(lang_ie)
        fill = gsm7.fill_bits(len(udh))
        esm = ESM_UDHI if udh else 0
        parts = tuple(
            Part(udh + (gsm7.pack(c, fill) if packed else c), esm, (used_ref, n, i))
            for i, c in enumerate(lay.chunks, 1))
    else:
        bits = 8 if seg == "udh8" else 16
        used_ref = ref & (0xFF if bits == 8 else 0xFFFF)
        out: list[Part] = []
        for i, c in enumerate(lay.chunks, 1):
            udh = join_udh(concat_ie(used_ref, n, i, bits), lang_ie)
            body = gsm7.pack(c, gsm7.fill_bits(len(udh))) if packed else c
            out.append(Part(udh + body, ESM_UDHI))
        parts = tuple(out)
    return SegmentPlan(lay.encoding, lay.data_coding, n, parts, lay.replaced, lay.text,
                       _language_name(lay.language), used_ref)
