"""MO decoding: data codings, UDH parsing, reassembly in any order, TTL expiry."""

from __future__ import annotations

import itertools

import pytest

from gateway.encoding import (
    Concat,
    EncodingOptions,
    Expired,
    MoFragment,
    Reassembler,
    SegmentPlan,
    UdhError,
    UnsupportedDataCoding,
    decode_text,
    fragment_text,
    gsm7,
    parse_mo,
    plan,
    split_udh,
)


@pytest.mark.parametrize(("body", "dcs", "dcs0", "text"), [
    (b"\x00Hello \x1b\x65", 0x00, "gsm", "@Hello €"),
    (b"caf\xe9", 0x00, "latin1", "café"),
    (b"abc", 0x00, "ascii", "abc"),
    (b"abc", 0x01, "gsm", "abc"),
    (b"caf\xe9", 0x03, "gsm", "café"),
    ("ж😀".encode("utf-16-be"), 0x08, "gsm", "ж😀"),
    (b"\xd8\x3d", 0x08, "gsm", "\ufffd"),  # lone high surrogate
    (b"\x00a\x00", 0x08, "gsm", "a\ufffd"),  # odd trailing octet
    (b"Hi", 0xF0, "gsm", "Hi"),  # 23.038 data coding/message class, GSM 7-bit
    ("ж".encode("utf-16-be"), 0x18, "gsm", "ж"),  # general coding group, UCS-2
    ("Привет".encode("iso8859_5"), 0x06, "gsm", "Привет"),
])
def test_decode_text(body: bytes, dcs: int, dcs0: str, text: str) -> None:
    assert decode_text(body, dcs, dcs0=dcs0) == text  # type: ignore[arg-type]


@pytest.mark.parametrize("dcs", [0x02, 0x04, 0xF4, 0x14, 0x24])
def test_binary_is_not_text(dcs: int) -> None:
    with pytest.raises(UnsupportedDataCoding):
        decode_text(b"\x01\x02", dcs)


def test_parse_packed_gsm_after_udh() -> None:
    udh = bytes((5, 0, 3, 7, 2, 1))
    body = gsm7.pack(gsm7.encode("hello world"), gsm7.fill_bits(6))
    frag = parse_mo(udh + body, 0x40, 0, packed=True)
    assert frag.concat == Concat(7, 2, 1, 8)
    assert fragment_text(frag) == "hello world"
    assert fragment_text(parse_mo(gsm7.pack(gsm7.encode("hi")), 0, 0, packed=True)) == "hi"


@pytest.mark.parametrize(("data", "concat", "rest"), [
    (bytes((5, 0, 3, 0xAB, 3, 2)) + b"x", Concat(0xAB, 3, 2, 8), b"x"),
    (bytes((6, 8, 4, 0x12, 0x34, 5, 5)), Concat(0x1234, 5, 5, 16), b""),
    (bytes((8, 0x24, 1, 1, 0, 3, 9, 2, 1)) + b"yz", Concat(9, 2, 1, 8), b"yz"),
    (bytes((5, 0, 3, 1, 2, 0)) + b"x", None, b"x"),  # seq 0: ignored (23.040)
    (bytes((5, 0, 3, 1, 2, 3)) + b"x", None, b"x"),  # seq > total: ignored
    (bytes((3, 0x70, 1, 0)) + b"x", None, b"x"),  # unknown IE skipped
])
def test_split_udh(data: bytes, concat: Concat | None, rest: bytes) -> None:
    udh, body = split_udh(data)
    assert (udh.concat, body) == (concat, rest)
    assert udh.length == data[0] + 1


def test_split_udh_reads_shift_ies() -> None:
    udh, _ = split_udh(bytes((6, 0x24, 1, 1, 0x25, 1, 2)))
    assert (udh.single_shift, udh.locking_shift) == (1, 2)


@pytest.mark.parametrize("data", [b"", b"\x05\x00\x03\x01", b"\x03\x00\x05\x01", b"\x01\x00"])
def test_split_udh_malformed(data: bytes) -> None:
    with pytest.raises(UdhError):
        split_udh(data)


def test_split_udh_byte_by_byte_prefixes_fail_cleanly() -> None:
    data = bytes((6, 8, 4, 0x12, 0x34, 5, 5)) + b"tail"
    for i in range(len(data)):
        try:
            _, rest = split_udh(data[:i])
        except UdhError:
            continue
        assert rest == data[7:i]


def test_national_shift_mo() -> None:
    frag = parse_mo(bytes((3, 0x24, 1, 1)) + gsm7.encode("ğış", 1), 0x40, 0)
    assert fragment_text(frag) == "ğış"


def _fragments(text: str, options: EncodingOptions) -> list[MoFragment]:
    p = plan(text, options, ref=0x4242)
    assert isinstance(p, SegmentPlan)
    return [parse_mo(x.short_message, x.esm_class, p.data_coding,
                     packed=options.gsm_packing == "packed", sar=x.sar) for x in p.parts]


@pytest.mark.parametrize("options", [
    EncodingOptions(), EncodingOptions(segmentation="udh16"),
    EncodingOptions(segmentation="sar"), EncodingOptions(gsm_packing="packed"),
])
@pytest.mark.parametrize("text", ["a{b}" * 60, "ж😀👨\u200d👩\u200d👧" * 15])
def test_reassembly_any_order(options: EncodingOptions, text: str) -> None:
    frags = _fragments(text, options)
    assert len(frags) == 3
    for order in itertools.permutations(frags):
        r = Reassembler(ttl=30)
        results = [r.add("+4470000", f, now=1.0) for f in order]
        assert results[:-1] == [None, None] and results[-1] == text
        assert r.statistics().pending == 0


def test_reassembly_duplicates_and_sources() -> None:
    frags = _fragments("a" * 400, EncodingOptions())
    r = Reassembler(ttl=30)
    assert r.add("A", frags[0], now=0) is None
    assert r.add("A", frags[0], now=0) is None  # resent deliver_sm
    assert r.add("B", frags[1], now=0) is None  # same ref from another handset
    assert r.add("A", frags[1], now=0) is None
    assert r.add("A", frags[2], now=0) == "a" * 400
    stats = r.statistics()
    assert (stats.pending, stats.completed, stats.duplicates) == (1, 1, 1)


def test_reassembly_joins_split_escape_and_surrogates() -> None:
    # A naive sender (python-smpplib) may split ESC from its character: bodies are joined
    # before decoding, so the text still comes out right.
    r = Reassembler(ttl=30)
    a = MoFragment(b"x\x1b", 0, Concat(1, 2, 1, 8))
    b = MoFragment(b"\x65y", 0, Concat(1, 2, 2, 8))
    assert r.add("S", b, now=0) is None
    assert r.add("S", a, now=0) == "x€y"
    pair = "😀".encode("utf-16-be")
    r.add("S", MoFragment(pair[:2], 8, Concat(2, 2, 1, 8)), now=0)
    assert r.add("S", MoFragment(pair[2:], 8, Concat(2, 2, 2, 8)), now=0) == "😀"


def test_reassembly_ttl_expiry() -> None:
    frags = _fragments("a" * 400, EncodingOptions())
    r = Reassembler(ttl=10)
    assert r.next_deadline() is None
    r.add("S", frags[0], now=100)
    r.add("S", frags[2], now=105)
    assert r.next_deadline() == 110
    assert r.expire(109.9) == ()
    (gone,) = r.expire(110)
    assert gone == Expired("S", 0x42, 3, (1, 3), "a" * 153 + "a" * 94)
    # A late part starts a fresh message instead of completing with stale parts.
    assert r.add("S", frags[1], now=111) is None
    assert r.statistics().expired == 1


def test_reassembly_stale_entry_replaced_on_add() -> None:
    frags = _fragments("a" * 400, EncodingOptions())
    r = Reassembler(ttl=10)
    r.add("S", frags[0], now=0)
    r.add("S", frags[1], now=20)  # the first is stale: dropped, reported on expire
    (gone,) = r.expire(21)
    assert gone.received == (1,)
    assert r.statistics().pending == 1


def test_reassembly_pending_cap() -> None:
    r = Reassembler(ttl=10, max_pending=2)
    for ref in range(3):
        r.add("S", MoFragment(b"x", 0, Concat(ref, 2, 1, 8)), now=0)
    assert r.statistics().pending == 2
    (gone,) = r.expire(0)
    assert gone.ref == 0


def test_single_fragment_is_complete() -> None:
    r = Reassembler(ttl=10)
    assert r.add("S", parse_mo(b"STOP", 0, 0), now=0) == "STOP"
    assert r.add("S", MoFragment(b"hi", 0, Concat(1, 1, 1, 8)), now=0) == "hi"


def test_message_payload_replaces_short_message() -> None:
    frag = parse_mo(b"", 0, 0x08, message_payload="ж".encode("utf-16-be"))
    assert fragment_text(frag) == "ж"
