"""Hypothesis properties of plan(): round trip, sizes, boundaries, minimal segment count."""

from __future__ import annotations

import gsm0338  # noqa: F401
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.encoding import EncodingOptions, PlanRejected, SegmentPlan, gsm7, plan
from gateway.encoding.segment import capacity
from gateway.encoding.smart import LOOKALIKES, replace_lookalikes
from gateway.encoding.udh import split_udh

from .helpers import GRAPHEME, decode_plan, reference_segments

GSM_CHARS = "".join(ch for i, ch in enumerate(gsm7.BASIC) if i != gsm7.ESC) + "".join(
    gsm7.EXTENSION.values())
CLUSTERS = ["👨\u200d👩\u200d👧\u200d👦", "🇫🇷", "🇩🇪", "👍🏽", "е\u0301", "a\u0301\u0302",
            "\r\n", "😀", "€", "{", "ж", "é", "á", "ğ", " ", "\u200d", "\U0001F1E6"]

gsm_text = st.text(alphabet=GSM_CHARS, min_size=1, max_size=700)
mixed_text = st.lists(
    st.one_of(st.sampled_from(CLUSTERS), st.sampled_from(GSM_CHARS),
              st.characters(exclude_categories=("Cs",)), st.sampled_from(list(LOOKALIKES))),
    min_size=1, max_size=400).map("".join)
options_st = st.builds(
    EncodingOptions,
    segmentation=st.sampled_from(["udh8", "udh16", "sar", "payload"]),
    latin1=st.booleans(),
    dcs0=st.sampled_from(["gsm", "latin1", "ascii"]),
    max_parts=st.just(255),
    smart_encoding=st.booleans(),
    smart_only_if_fewer_segments=st.booleans(),
    national_languages=st.sampled_from([{}, {"TR": "turkish", "ES": "spanish",
                                             "PT": "portuguese"}]),
)
packed_st = st.builds(
    EncodingOptions, segmentation=st.sampled_from(["udh8", "udh16", "sar", "payload"]),
    gsm_packing=st.just("packed"), max_parts=st.just(255),
    national_languages=st.just({"TR": "turkish"}))
country_st = st.sampled_from([None, "TR", "ES", "PT", "US"])


def _bodies(p: SegmentPlan) -> list[tuple[bytes, bytes]]:
    out = []
    for part in p.parts:
        data = part.payload if part.payload is not None else part.short_message
        out.append(split_udh(data) if part.esm_class & 0x40 else (b"", data))
    return [(data[: len(data) - len(body)], body) for data, (_, body) in
            zip([x.payload or x.short_message for x in p.parts], out, strict=True)]


def _check(text: str, options: EncodingOptions, country: str | None) -> SegmentPlan:
    p = plan(text, options, ref=0xBEEF, country=country)
    assert isinstance(p, SegmentPlan), p
    # Round trip through the MO path gives the text sent, which is the text itself unless
    # smart replacements were applied (then exactly those), or lone surrogates replaced.
    assert decode_plan(p, options) == p.text_sent
    if p.replaced:
        assert p.text_sent == replace_lookalikes(text)[0]
    else:
        assert p.text_sent == text
    assert p.segments == len(p.parts) or options.segmentation == "payload"
    assert 1 <= p.segments <= 255
    packed = options.gsm_packing == "packed" and p.encoding == "gsm7"
    for udh, body in _bodies(p):
        if options.segmentation == "payload":
            break
        if p.encoding == "gsm7" and not packed:
            # Unpacked: one septet per octet, the SMSC packs: 160 single, UDH + cap multi.
            limit = 160 if p.segments == 1 and p.language is None else (
                capacity("gsm7", len(udh)) + len(udh))
            assert len(udh) + len(body) <= max(limit, 160)
        else:
            assert len(udh) + len(body) <= 140
        if p.encoding == "ucs2":
            assert not 0xDC00 <= int.from_bytes(body[:2], "big") <= 0xDFFF
        if p.encoding == "gsm7" and options.dcs0 == "gsm":
            septets = gsm7.unpack(body, gsm7.fill_bits(len(udh))) if packed else body
            assert not septets.endswith(b"\x1b")  # no orphan extension char next part
    return p


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(gsm_text, options_st, country_st)
def test_gsm_text(text: str, options: EncodingOptions, country: str | None) -> None:
    p = _check(text, options, country)
    if options.dcs0 == "gsm":
        assert p.encoding == "gsm7" and p.language is None
        if options.segmentation != "payload":
            assert b"".join(b for _, b in _bodies(p)) == text.encode("gsm03.38")


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(mixed_text, options_st, country_st)
def test_any_text(text: str, options: EncodingOptions, country: str | None) -> None:
    _check(text, options, country)


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=GSM_CHARS.replace("\r", "") + "ğş", min_size=1, max_size=700),
       packed_st, country_st)
def test_packed(text: str, options: EncodingOptions, country: str | None) -> None:
    # CR is left out: a CR exactly filling the last 7 bits is read as padding (23.038).
    _check(text, options, country)


def _expected_caps(p: SegmentPlan, options: EncodingOptions) -> tuple[int, int]:
    national = 3 if p.language else 0
    concat = 5 if options.segmentation == "udh8" else 6
    single = capacity(p.encoding, 1 + national if national else 0)
    return single, capacity(p.encoding, 1 + concat + national)


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(st.one_of(gsm_text, mixed_text), options_st, country_st)
def test_segment_count_is_minimal(text: str, options: EncodingOptions,
                                  country: str | None) -> None:
    p = plan(text, options, ref=1, country=country)
    assert isinstance(p, SegmentPlan)
    single, multi = _expected_caps(p, options)
    sent = p.text_sent
    if p.language is not None:
        # National single shift: same greedy; shift characters cost 2 like extension ones.
        lang_chars = set(sent) - set(GSM_CHARS)
        costs = sent.translate({ord(c): "{" for c in lang_chars})
        assert p.segments == reference_segments(costs, "gsm7", single, multi)
    elif p.encoding == "gsm7":
        # dcs0 latin1/ascii send the same characters, counted as GSM septets.
        assert p.segments == reference_segments(sent, "gsm7", single, multi)
    else:
        assert p.segments == reference_segments(sent, p.encoding, single, multi)


@settings(max_examples=200, deadline=None)
@given(mixed_text)
def test_ucs2_boundaries_fall_on_grapheme_boundaries(text: str) -> None:
    p = plan(text, EncodingOptions(max_parts=255), ref=1)
    assert isinstance(p, SegmentPlan)
    if p.encoding != "ucs2" or p.segments == 1:
        return
    clusters = GRAPHEME.findall(p.text_sent)
    long_ones = any(len(c.encode("utf-16-be")) // 2 > 67 for c in clusters)
    bounds = set()
    pos = 0
    for c in clusters:
        pos += len(c)
        bounds.add(pos)
    pos = 0
    for _, body in _bodies(p)[:-1]:
        pos += len(body.decode("utf-16-be"))
        assert pos in bounds or long_ones


@given(st.text(min_size=1, max_size=3000))
@settings(max_examples=100, deadline=None)
def test_never_truncates(text: str) -> None:
    options = EncodingOptions(max_parts=3)
    p = plan(text, options, ref=1)
    if isinstance(p, PlanRejected):
        assert p.reason == "too_many_segments" and p.segments_needed > 3
        big = plan(text, EncodingOptions(max_parts=255), ref=1)
        assert isinstance(big, PlanRejected) or big.segments == p.segments_needed
    else:
        assert decode_plan(p, options) == p.text_sent
