"""plan(): encoding choice, limits at every boundary, UDH/SAR/payload, rejects."""

from __future__ import annotations

import pytest

from gateway.encoding import EncodingOptions, Part, PlanRejected, SegmentPlan, gsm7, plan
from gateway.encoding.udh import split_udh

from .helpers import decode_plan

UDH8 = EncodingOptions(max_parts=255)
UDH16 = EncodingOptions(segmentation="udh16", max_parts=255)
SAR = EncodingOptions(segmentation="sar", max_parts=255)
PAYLOAD = EncodingOptions(segmentation="payload", max_parts=255)

FAMILY = "👨\u200d👩\u200d👧\u200d👦"  # 11 UTF-16 units
FLAG = "🇫🇷"  # 4 units, two regional indicators
THUMB = "👍🏽"  # 4 units, emoji + skin tone modifier
COMBINING = "е\u0301"  # Cyrillic e + combining acute: 2 units, one cluster


def ok(text: str, options: EncodingOptions = UDH8, **kw: object) -> SegmentPlan:
    p = plan(text, options, ref=0x1234, **kw)  # type: ignore[arg-type]
    assert isinstance(p, SegmentPlan), p
    assert decode_plan(p, options) == p.text_sent
    return p


def bodies(p: SegmentPlan) -> list[bytes]:
    return [split_udh(x.short_message)[1] if x.esm_class & 0x40 else x.short_message
            for x in p.parts]


@pytest.mark.parametrize(("text", "options", "encoding", "segments"), [
    ("a" * 160, UDH8, "gsm7", 1),
    ("a" * 161, UDH8, "gsm7", 2),
    ("a" * 306, UDH8, "gsm7", 2),
    ("a" * 307, UDH8, "gsm7", 3),
    ("a" * 304, UDH16, "gsm7", 2),
    ("a" * 305, UDH16, "gsm7", 3),
    ("a" * 304, SAR, "gsm7", 2),
    ("a" * 305, SAR, "gsm7", 3),
    ("{" * 80, UDH8, "gsm7", 1),
    ("a" * 159 + "{", UDH8, "gsm7", 2),
    ("€" * 153, UDH8, "gsm7", 3),  # 306 septets, but 153 is odd: 76 pairs per part
    ("ж" * 70, UDH8, "ucs2", 1),
    ("ж" * 71, UDH8, "ucs2", 2),
    ("ж" * 134, UDH8, "ucs2", 2),
    ("ж" * 135, UDH8, "ucs2", 3),
    ("ж" * 132, UDH16, "ucs2", 2),
    ("ж" * 133, UDH16, "ucs2", 3),
    ("😀" * 35, UDH8, "ucs2", 1),
    ("😀" * 36, UDH8, "ucs2", 2),
    ("😀" * 67, UDH8, "ucs2", 3),  # 33 per part (66 units), never 33.5
    ("a" * 1530, UDH8, "gsm7", 10),
    ("a" * 300, PAYLOAD, "gsm7", 2),  # payload counts with the SMSC's 16-bit UDH: 152
])
def test_limits(text: str, options: EncodingOptions, encoding: str, segments: int) -> None:
    p = ok(text, options)
    assert (p.encoding, p.segments, len(p.parts) if options.segmentation != "payload" else 1) \
        == (encoding, segments, 1 if options.segmentation == "payload" else segments)


def test_udh8_bytes_and_sizes() -> None:
    p = ok("a" * 307)
    assert p.ref == 0x34
    for i, part in enumerate(p.parts, 1):
        assert part.short_message[:6] == bytes((5, 0, 3, 0x34, 3, i))
        assert part.esm_class == 0x40 and part.sar is None and part.payload is None
    assert [len(b) for b in bodies(p)] == [153, 153, 1]


def test_udh16_bytes() -> None:
    p = ok("a" * 305, UDH16)
    assert p.ref == 0x1234
    assert p.parts[0].short_message[:7] == bytes((6, 8, 4, 0x12, 0x34, 3, 1))
    assert [len(b) for b in bodies(p)] == [152, 152, 1]


def test_sar_parts() -> None:
    p = ok("a" * 305, SAR)
    assert [x.sar for x in p.parts] == [(0x1234, 3, 1), (0x1234, 3, 2), (0x1234, 3, 3)]
    assert all(x.esm_class == 0 for x in p.parts)
    assert [len(x.short_message) for x in p.parts] == [152, 152, 1]


def test_single_part_has_no_udh_or_sar() -> None:
    for options in (UDH8, UDH16, SAR):
        p = ok("hello", options)
        assert p.parts == (Part(b"hello", 0),) and p.ref is None


def test_payload_is_one_pdu() -> None:
    p = ok("a" * 400, PAYLOAD)
    assert p.segments == 3
    assert p.parts == (Part(b"", 0, None, b"a" * 400),)


def test_gsm_encoding_agrees_with_gsm0338() -> None:
    text = "Price: 5€ {today} [only] @ home_$ ~ ΔΦ " * 10
    p = ok(text)
    assert b"".join(bodies(p)) == text.encode("gsm03.38")


def test_extension_char_never_split_at_boundary() -> None:
    p = ok("a" * 152 + "{" + "b" * 10)
    b = bodies(p)
    assert b[0] == b"a" * 152  # the ESC pair moved whole to part 2
    assert b[1].startswith(b"\x1b\x28")


def test_crlf_kept_together() -> None:
    p = ok("a" * 152 + "\r\n" + "b" * 10)
    assert bodies(p)[0] == b"a" * 152


@pytest.mark.parametrize(("cluster", "units"), [
    ("😀", 2), (FAMILY, 11), (FLAG, 4), (THUMB, 4), (COMBINING, 2),
])
def test_cluster_moves_whole_to_next_part(cluster: str, units: int) -> None:
    lead = "ж" * (67 - units + 1)  # the cluster would straddle the 67-unit boundary
    p = ok(lead + cluster + "ж" * 10)
    b = bodies(p)
    assert b[0].decode("utf-16-be") == lead
    assert b[1].decode("utf-16-be").startswith(cluster)


def test_cluster_that_fits_exactly_stays() -> None:
    p = ok("ж" * 56 + FAMILY + "ж" * 10)
    assert bodies(p)[0].decode("utf-16-be") == "ж" * 56 + FAMILY


def test_oversized_cluster_cut_between_code_points() -> None:
    text = "ж" * 10 + "a" + "\u0301" * 200 + "ж"
    p = ok(text)
    b = bodies(p)
    assert b[0].decode("utf-16-be") == "ж" * 10  # the long cluster starts a new part
    assert [len(x) // 2 for x in b] == [10, 67, 67, 67, 1]


def test_oversized_cluster_never_splits_surrogates() -> None:
    text = "😀" + "\u0301" * 65 + "😀" + "\u0301" * 100  # astral inside long clusters
    p = ok("x" + text)
    for body in bodies(p):
        assert not 0xDC00 <= int.from_bytes(body[:2], "big") <= 0xDFFF


def test_empty_rejected() -> None:
    assert plan("", UDH8, ref=1) == PlanRejected("empty_text", 0, "text is empty")


def test_too_many_segments_rejected_with_count() -> None:
    r = plan("a" * 1531, EncodingOptions(), ref=1)
    assert isinstance(r, PlanRejected)
    assert (r.reason, r.segments_needed) == ("too_many_segments", 11)
    assert "11" in r.message
    r = plan("ж" * 71, EncodingOptions(max_parts=1), ref=1)
    assert isinstance(r, PlanRejected) and r.segments_needed == 2


def test_ucs2_surrogate_pairs_and_dcs() -> None:
    p = ok("héllo ж 😀")
    assert (p.encoding, p.data_coding) == ("ucs2", 8)
    assert p.parts[0].short_message == "héllo ж 😀".encode("utf-16-be")


def test_lone_surrogate_replaced() -> None:
    p = ok("ж\ud800")
    assert p.text_sent == "ж\ufffd"


def test_latin1_when_wanted() -> None:
    options = EncodingOptions(latin1=True, max_parts=255)
    p = ok("¿Qué tal? á" * 20, options)
    assert (p.encoding, p.data_coding) == ("latin1", 3)
    assert [len(b) for b in bodies(p)] == [134, 86]
    assert ok("ж", options).encoding == "ucs2"
    assert ok("hello", options).encoding == "gsm7"


@pytest.mark.parametrize(("dcs0", "text", "encoding", "short_message"), [
    ("latin1", "café @ £5 {x}", "gsm7", "café @ £5 {x}".encode("latin-1")),
    ("latin1", "Δ", "ucs2", "Δ".encode("utf-16-be")),
    ("latin1", "5€", "ucs2", "5€".encode("utf-16-be")),
    ("ascii", "a@b_{x}", "gsm7", b"a@b_{x}"),
    ("ascii", "café", "ucs2", "café".encode("utf-16-be")),
])
def test_dcs0_meaning(dcs0: str, text: str, encoding: str, short_message: bytes) -> None:
    options = EncodingOptions(dcs0=dcs0)  # type: ignore[arg-type]
    p = ok(text, options)
    assert (p.encoding, p.parts[0].short_message) == (encoding, short_message)


def test_dcs0_latin1_counts_septets_and_splits_by_chars() -> None:
    options = EncodingOptions(dcs0="latin1")
    assert ok("é" * 152 + "{" + "é" * 6, options).segments == 1  # 160 septets
    p = ok("é" * 152 + "{" + "é" * 7, options)  # 160 chars, 161 septets: 2 parts
    assert [len(b) for b in bodies(p)] == [152, 8]  # the ESC pair moved whole


def test_packed_fits_140_octets() -> None:
    options = EncodingOptions(gsm_packing="packed", max_parts=255)
    p = ok("a" * 160, options)
    assert len(p.parts[0].short_message) == 140
    p = ok("a" * 400, options)
    assert [len(x.short_message) for x in p.parts] == [140, 140, 6 + 83]


def test_national_shift_only_where_needed_and_enabled() -> None:
    tr = EncodingOptions(national_languages={"TR": "turkish"})
    assert ok("ğış", tr).encoding == "ucs2"  # no country given
    assert ok("ğış", tr, country="DE").encoding == "ucs2"
    p = ok("ğış", tr, country="TR")
    assert (p.encoding, p.language) == ("gsm7", "turkish")
    assert p.parts[0].short_message == b"\x03\x24\x01\x01\x1bg\x1bi\x1bs"
    assert p.parts[0].esm_class == 0x40
    assert ok("plain", tr, country="TR").language is None  # default tables suffice


@pytest.mark.parametrize(("options", "single", "multi"), [
    (EncodingOptions(national_languages={"ES": "spanish"}, max_parts=255), 155, 149),
    (EncodingOptions(segmentation="udh16", national_languages={"ES": "spanish"},
                     max_parts=255), 155, 148),
])
def test_national_shift_capacity(options: EncodingOptions, single: int, multi: int) -> None:
    assert ok("á" + "a" * (single - 2), options, country="ES").segments == 1
    p = ok("á" + "a" * (single - 1), options, country="ES")
    assert p.segments == 2
    assert len(bodies(p)[0]) == multi
    assert p.parts[0].short_message[1:].count(b"\x24\x01\x02") == 1


def test_national_shift_with_sar_and_packed() -> None:
    options = EncodingOptions(segmentation="sar", gsm_packing="packed",
                              national_languages={"PT": "portuguese"}, max_parts=255)
    p = ok("ã" * 100, options, country="PT")
    assert p.segments == 2 and p.language == "portuguese"
    assert all(x.short_message.startswith(b"\x03\x24\x01\x03") for x in p.parts)
    assert all(len(x.short_message) <= 140 for x in p.parts)


def test_smart_replacements() -> None:
    text = "“Sale” — 50% off… ends today’s"
    plain = ok(text)
    assert plain.encoding == "ucs2" and plain.replaced == ()
    p = ok(text, smart=True)
    assert p.encoding == "gsm7"
    assert p.text_sent == "\"Sale\" - 50% off... ends today's"
    assert [(r.from_, r.to, r.count) for r in p.replaced] == [
        ("“", '"', 1), ("”", '"', 1), ("—", "-", 1), ("…", "...", 1), ("’", "'", 1)]
    assert ok(text, EncodingOptions(smart_encoding=True)).encoding == "gsm7"
    assert ok(text, EncodingOptions(smart_encoding=True), smart=False).encoding == "ucs2"


def test_smart_not_applied_when_result_is_not_gsm() -> None:
    p = ok("“hi” ж", smart=True)
    assert (p.encoding, p.text_sent, p.replaced) == ("ucs2", "“hi” ж", ())


def test_smart_only_if_fewer_segments() -> None:
    options = EncodingOptions(smart_encoding=True, smart_only_if_fewer_segments=True)
    assert ok("“hi”", options).encoding == "ucs2"  # 1 segment either way
    assert ok("“hi”" + "a" * 100, options).encoding == "gsm7"  # 2 UCS-2 vs 1 GSM


def test_smart_extension_result_counts_two() -> None:
    p = ok("～" * 80, smart=True)  # fullwidth tilde -> '~' (2 septets each)
    assert (p.encoding, p.segments) == ("gsm7", 1)
    p = ok("～" * 81, smart=True)
    assert (p.encoding, p.segments) == ("gsm7", 2)


def test_smart_with_national_shift() -> None:
    tr = EncodingOptions(national_languages={"TR": "turkish"})
    p = ok("“ğ”", tr, country="TR", smart=True)
    assert (p.encoding, p.language, p.text_sent) == ("gsm7", "turkish", '"ğ"')


def test_ref_is_masked() -> None:
    assert ok("a" * 200, UDH8).ref == 0x34
    assert ok("a" * 200, EncodingOptions(segmentation="udh16")).ref == 0x1234
    p = plan("a" * 200, UDH8, ref=0x1FF)
    assert isinstance(p, SegmentPlan) and p.ref == 0xFF


def test_plan_is_deterministic() -> None:
    text = "x" * 500 + FAMILY
    assert plan(text, UDH8, ref=9) == plan(text, UDH8, ref=9)


def test_gsm_is_basic_plus_extension_only() -> None:
    assert ok("`").encoding == "ucs2"  # backtick has no GSM form
    assert ok("\t").encoding == "ucs2"
    assert gsm7.is_gsm("\f")


def test_smart_composes_decomposed_accents() -> None:
    p = ok("cafe\u0301 “ok”", smart=True)
    assert (p.encoding, p.text_sent) == ("gsm7", 'café "ok"')
    assert [(r.from_, r.to, r.count) for r in p.replaced] == [
        ("e\u0301", "é", 1), ("“", '"', 1), ("”", '"', 1)]
    assert ok("e\u0301").encoding == "ucs2"  # only with smart encoding


def test_smart_report_counts_repeats() -> None:
    p = ok("a—b—c…", smart=True)
    assert [(r.from_, r.count) for r in p.replaced] == [("—", 2), ("…", 1)]
