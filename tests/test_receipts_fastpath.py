"""gateway.receipts fast paths give exactly what the general code gives (issue 7).

``parse_receipt_text`` reads the standard Appendix B layout with one anchored regex
(``_parse_standard``) and falls back to the lenient parser (``_parse_general``) otherwise;
dates are cached per token; message ids are classified without regexes. Every property
here compares against a reference: ``_parse_general`` for the text, and for the rest
(``parse_receipt``, TLV handling, id variants and lookup keys) a verbatim copy of the
module as it was before the fast paths (commit 4c092f4), kept below as ``ref_*``.
"""

from __future__ import annotations

import collections
import enum
import re
import string
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway import receipts as R
from gateway.receipts import (
    TAG_MESSAGE_PAYLOAD,
    TAG_MESSAGE_STATE,
    TAG_NETWORK_ERROR_CODE,
    TAG_RECEIPTED_MESSAGE_ID,
    DeliveryReceipt,
    MessageIdFormat,
    ReceiptState,
    ReceiptText,
    message_id_variants,
    normalise_message_id,
    parse_receipt,
    parse_receipt_text,
    receipt_lookup_keys,
)
from gateway.smpp import Tlv
from tests.receipt_samples import SAMPLES

FORMATS: list[MessageIdFormat] = ["auto", "hex", "dec", "raw"]


def outcome(fn: Callable[..., Any], *args: Any, **kw: Any) -> tuple[Any, ...]:
    """("ok", result) or ("raise", exception type, message): compares failures too."""
    try:
        return ("ok", fn(*args, **kw))
    except Exception as e:
        return ("raise", type(e), str(e))


# ---------------------------------------------------------------- the reference (4c092f4)

def ref_parse_receipt_text(text: str | bytes) -> ReceiptText | None:
    """The general parser alone, as parse_receipt_text was before the fast path."""
    return R._parse_general(R._decode_text(text).replace("\x00", " "))


def ref_tlv_map(tlvs: Any) -> dict[int, bytes]:
    if isinstance(tlvs, Mapping):
        return {int(k): bytes(v) for k, v in tlvs.items()}
    out: dict[int, bytes] = {}
    for item in tlvs:
        if isinstance(item, tuple):
            tag, value = item
        else:
            tag, value = item.tag, item.value
        out.setdefault(int(tag), bytes(value))  # first occurrence wins
    return out


def ref_c_string(value: bytes) -> str | None:
    s = value.split(b"\x00", 1)[0].decode("latin-1").strip()
    return s if s and len(s) <= 64 else None


def ref_parse_receipt(esm_class: int, short_message: bytes, tlvs: Any = (), *,
                      data_coding: int = 0, sniff: bool = False) -> DeliveryReceipt | None:
    tlv = ref_tlv_map(tlvs)
    body = short_message or tlv.get(TAG_MESSAGE_PAYLOAD, b"")
    parsed = ref_parse_receipt_text(R._body_text(body, esm_class, data_coding))
    tlv_id = (ref_c_string(tlv[TAG_RECEIPTED_MESSAGE_ID]) if TAG_RECEIPTED_MESSAGE_ID in tlv
              else None)
    if not R.is_receipt_esm_class(esm_class):
        looks_like_one = tlv_id is not None or (
            parsed is not None and parsed.id is not None and parsed.stat is not None)
        if not (sniff and looks_like_one):
            return None
    pt = parsed if parsed is not None else ReceiptText()

    state = pt.state
    stat = pt.stat
    ms = tlv.get(TAG_MESSAGE_STATE, b"")
    if len(ms) >= 1 and ms[-1] in R._BY_MESSAGE_STATE:
        state = R._BY_MESSAGE_STATE[ms[-1]]
        if stat is None:
            stat = state.value

    error_code = R._int_or_none(pt.err)
    network_type: int | None = None
    nec = tlv.get(TAG_NETWORK_ERROR_CODE, b"")
    if len(nec) >= 3:
        network_type = nec[0]
        error_code = int.from_bytes(nec[1:3], "big")

    return DeliveryReceipt(
        message_id=tlv_id or pt.id or "", state=state, stat=stat, error_code=error_code,
        network_type=network_type, err=pt.err, tlv_message_id=tlv_id, text_message_id=pt.id,
        submit_date=pt.submit_date, done_date=pt.done_date, sub=pt.sub, dlvrd=pt.dlvrd,
        text=pt.text, intermediate=(esm_class & 0x3C) == 0x20,
    )


_HEX = re.compile(r"^[0-9A-Fa-f]+$")
_DEC = re.compile(r"^[0-9]+$")
_UUID = re.compile(r"^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-"
                   r"[0-9A-Fa-f]{12}$")


def _ref_clean(raw: str) -> str:
    return raw.split("\x00", 1)[0].strip()


def ref_normalise_message_id(raw: str, fmt: MessageIdFormat = "auto") -> str:
    s = _ref_clean(raw)
    if fmt == "raw" or len(s) > 64:
        return s
    if _HEX.match(s):
        return s.upper().lstrip("0") or "0"
    if _UUID.match(s):
        return s.upper()
    return s


def ref_message_id_variants(raw: str, fmt: MessageIdFormat = "auto") -> tuple[str, ...]:
    s = _ref_clean(raw)
    if fmt == "raw" or not s or len(s) > 64:
        return (s,) if s else ()
    out = [ref_normalise_message_id(s, fmt)]
    if fmt in ("hex", "auto") and _DEC.match(s):
        out.append(ref_normalise_message_id(format(int(s, 10), "X"), fmt))
    if fmt in ("dec", "auto") and _HEX.match(s):
        out.append(ref_normalise_message_id(str(int(s, 16)), fmt))
    return tuple(dict.fromkeys(out))


def ref_receipt_lookup_keys(receipt: DeliveryReceipt,
                            fmt: MessageIdFormat = "auto") -> tuple[str, ...]:
    keys: list[str] = []
    for mid in (receipt.tlv_message_id, receipt.text_message_id):
        if mid:
            keys.extend(ref_message_id_variants(mid, fmt))
    return tuple(dict.fromkeys(keys))


def assert_text_agrees(text: str | bytes) -> None:
    assert outcome(parse_receipt_text, text) == outcome(ref_parse_receipt_text, text)


# ------------------------------------------------------------------------- strategies

KEYS = ["id", "sub", "dlvrd", "submit date", "done date", "stat", "err", "text"]
ID_CHARS = string.ascii_letters + string.digits + "_.-"


def _key_spelling(key: str) -> st.SearchStrategy[str]:
    """A key as carriers write it: any case; the date keys with " ", "_", "-" or nothing."""
    seps = st.sampled_from([" ", "_", "-", ""]) if "date" in key else st.just(" ")
    case = st.sampled_from([str.lower, str.upper, str.title, str.swapcase])
    return st.tuples(seps, case).map(lambda sc: sc[1](key.replace(" ", sc[0])))


_dates = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31))
_date_formats = st.sampled_from(["%y%m%d%H%M", "%y%m%d%H%M%S", "%Y%m%d%H%M%S"])
_date_tokens = st.one_of(
    st.tuples(_dates, _date_formats).map(lambda df: df[0].strftime(df[1])),
    st.text("0123456789", min_size=1, max_size=16),          # bad lengths, bad months
)
_ids = st.one_of(
    st.integers(0, 10**20).map(str),
    st.integers(0, 2**80).map(lambda n: format(n, "x")),
    st.integers(0, 2**80).map(lambda n: format(n, "X").zfill(16)),
    st.uuids().map(str),
    st.text(ID_CHARS, min_size=1, max_size=66),
)
_stats = st.one_of(st.sampled_from(["DELIVRD", "delivrd", "UNDELIV", "EXPIRED", "REJECTD",
                                    "FAILED", "ENROUTE", "DELIVERED", "NULL", "Acceptd"]),
                   st.text(string.ascii_letters, min_size=1, max_size=9))
_errs = st.one_of(st.sampled_from(["000", "001", "069", "0x1A", "1234567890"]),
                  st.text(string.ascii_letters + string.digits, min_size=1, max_size=10))
_digits = st.text("0123456789", min_size=1, max_size=11)


@st.composite
def standard_receipts(draw: st.DrawFn) -> str:
    """The standard layout with random values and key spellings (the fast path's domain)."""
    values = [draw(_ids), draw(_digits), draw(_digits), draw(_date_tokens),
              draw(_date_tokens), draw(_stats), draw(_errs)]
    if len(values[0]) > 64:
        values[0] = values[0][:64]
    parts = [f"{draw(_key_spelling(k))}:{v}" for k, v in zip(KEYS, values, strict=False)]
    text = draw(st.one_of(st.none(), st.text(max_size=40),
                          st.sampled_from(["", "Hello world", "Your id: 12 stat: ok",
                                           " id:9 stat:UNDELIV err:1 ", "caf\xe9 \xa0"])))
    if text is not None:
        parts.append(f"{draw(_key_spelling('text'))}:{text}")
    return " ".join(parts)


_any_value = st.one_of(_ids, _digits, _date_tokens, _stats, _errs,
                       st.text(max_size=12), st.sampled_from(["", " ", "a:b", "x-stat:1"]))


@st.composite
def bent_receipts(draw: st.DrawFn) -> str | bytes:
    """Receipts as carriers bend them: fields missing, reordered, respaced, odd values."""
    keys = list(KEYS)
    if draw(st.integers(0, 4)) == 0:
        keys = draw(st.permutations(keys))
    parts = []
    for key in keys:
        if draw(st.integers(0, 6)) == 0:
            continue
        colon = draw(st.sampled_from([":", ":", ":", ": ", " :", ":\t", ":  "]))
        value = draw(st.one_of(_any_value, standard_receipts())) if key == "text" \
            else draw(_any_value)
        parts.append(f"{draw(_key_spelling(key))}{colon}{value}")
    joiner = draw(st.sampled_from([" ", " ", " ", " ", "  ", "\t", "", "\x00", "\n", "\xa0"]))
    s = draw(st.sampled_from(["", "", "", " ", "\x00"])) + joiner.join(parts) \
        + draw(st.sampled_from(["", "", "", "\x00", " ", "\n", "\r\n"]))
    if draw(st.booleans()):
        try:
            return s.encode("latin-1")
        except UnicodeEncodeError:
            pass
    return s


# ------------------------------------------------------------------- receipt text

@pytest.mark.slow
@given(standard_receipts())
def test_standard_layout_takes_the_fast_path_and_agrees(text: str) -> None:
    fast = R._parse_standard(text.replace("\x00", " "))  # as parse_receipt_text calls it
    assert fast is not None
    assert fast == ref_parse_receipt_text(text)
    assert parse_receipt_text(text) == fast
    assert parse_receipt_text(text.encode("latin-1", "replace")) == \
        ref_parse_receipt_text(text.encode("latin-1", "replace"))


@pytest.mark.slow
@given(bent_receipts())
def test_bent_receipts_agree_with_the_general_parser(text: str | bytes) -> None:
    assert_text_agrees(text)


@given(st.one_of(st.text(), st.binary()))
def test_fuzz_text_agrees_with_the_general_parser(data: str | bytes) -> None:
    assert_text_agrees(data)


_tokens = st.sampled_from(["id:", "ID:", "sub:", "dlvrd:", "submit date:", "done_date:",
                           "stat:", "err:", "text:", "Text:", " ", "  ", "\x00", ":", "DELIVRD",
                           "0", "001", "2611221539", "660df48587c60", "-", "\n"])


@given(st.lists(st.one_of(_tokens, st.text(max_size=4)), max_size=40).map("".join))
def test_fuzz_receipt_like_text_agrees(text: str) -> None:
    assert_text_agrees(text)


_STD = ("id:{id} sub:001 dlvrd:001 submit date:2611221539 done date:2611221540 "
        "stat:DELIVRD err:000")

#: (case, text, fast path taken). Each must equal the general parser's reading.
TRICKY_TEXTS: list[tuple[str, str | bytes, bool]] = [
    ("simulator", _STD.format(id="660df48587c60") + " text:Spring sale: 20% off", True),
    ("no text field", _STD.format(id="1"), True),
    ("empty text", _STD.format(id="1") + " text:", True),
    ("text repeats every key", _STD.format(id="1") + " text:" + _STD.format(id="2"), True),
    ("text with NUL (bytes)", (_STD.format(id="1") + " text:x\x00").encode(), True),
    ("text with unicode spaces", _STD.format(id="1") + " text:\xa0 caf\xe9\x85", True),
    ("upper-case keys", _STD.format(id="AB").upper() + " TEXT:Promo", True),
    ("underscored and joined date keys",
     _STD.format(id="1").replace("submit date", "submit_date").replace("done date", "donedate"),
     True),
    ("64-char id", _STD.format(id="a" * 64), True),
    ("65-char id: general drops it", _STD.format(id="a" * 65), False),
    ("10-digit sub: general gives None", _STD.format(id="1").replace("sub:001", "sub:0123456789"),
     True),
    ("12- and 14-digit dates", _STD.format(id="1").replace("2611221539", "261122153912")
     .replace("2611221540", "20261122154005"), True),
    ("invalid date", _STD.format(id="1").replace("2611221539", "2613451299"), True),
    ("short date", _STD.format(id="1").replace("2611221539", "26"), True),
    ("hex err", _STD.format(id="1").replace("err:000", "err:0x1A"), True),
    ("unknown stat", _STD.format(id="1").replace("DELIVRD", "DELIVRDX"), True),
    ("lower-case stat", _STD.format(id="1").replace("DELIVRD", "delivrd"), True),
    ("trailing newline: $ would match, \\Z does not", _STD.format(id="1") + "\n", False),
    ("trailing space", _STD.format(id="1") + " ", False),
    ("trailing NUL (bytes)", (_STD.format(id="1") + "\x00").encode(), False),
    ("leading space", " " + _STD.format(id="1"), False),
    ("double space", _STD.format(id="1").replace(" sub", "  sub"), False),
    ("tab", _STD.format(id="1").replace(" sub", "\tsub"), False),
    ("space after colon", _STD.format(id="1").replace("id:", "id: "), False),
    ("space before colon", _STD.format(id="1").replace("stat:", "stat :"), False),
    ("id with a colon", _STD.format(id="ab:cd"), False),
    ("key hidden in the id", _STD.format(id="x-stat:UNDELIV"), False),
    ("long s in a key (matches 'sub' case-insensitively)",
     _STD.format(id="1").replace("sub:", "\u017fub:"), False),
    ("non-ASCII digit in sub", _STD.format(id="1").replace("sub:001", "sub:00\u0663"), False),
    ("other order", "stat:DELIVRD " + _STD.format(id="1").replace(" stat:DELIVRD", ""), False),
    ("missing dlvrd", _STD.format(id="1").replace(" dlvrd:001", ""), False),
    ("textual after err", _STD.format(id="1") + " textual", False),
    ("mo text", "Hello, see you at 10:30", False),
    ("empty", "", False),
]


@pytest.mark.parametrize(("text", "fast"), [t[1:] for t in TRICKY_TEXTS],
                         ids=[t[0] for t in TRICKY_TEXTS])
def test_tricky_texts(text: str | bytes, fast: bool) -> None:
    assert_text_agrees(text)
    s = R._decode_text(text).replace("\x00", " ")
    assert (R._parse_standard(s) is not None) is fast


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: s.name)
def test_carrier_samples_agree(sample: Any) -> None:
    assert_text_agrees(sample.text)


def test_the_common_receipts_take_the_fast_path() -> None:
    for text in [_STD.format(id="660df48587c60") + " text:Hello world",
                 _STD.format(id="1795361967996000") + " text:",
                 _STD.format(id="a2f0d3c6-6a1f-4b4e-9e0c-3f2d8c1b7a55") + " Text:x"]:
        r = R._parse_standard(text)
        assert r is not None and r.state is ReceiptState.DELIVRD
        assert r.done_date == datetime(2026, 11, 22, 15, 40)


# -------------------------------------------------------------------------- dates

@given(st.one_of(_date_tokens, st.text(max_size=16)))
def test_cached_dates_equal_uncached(token: str) -> None:
    expect = R._parse_date_uncached(token)
    assert R._parse_date(token) == expect
    assert R._parse_date(token) == expect  # the second call may come from the cache


def test_date_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    cache: dict[str, datetime | None] = {}
    monkeypatch.setattr(R, "_DATE_CACHE", cache)
    monkeypatch.setattr(R, "_DATE_CACHE_MAX", 8)
    for minute in range(60):
        token = f"26112215{minute:02d}"
        assert R._parse_date(token) == datetime(2026, 11, 22, 15, minute)
        assert len(cache) <= 8
    R._parse_date("1" * 1000)  # not a date length: never cached
    assert "1" * 1000 not in cache
    assert R._parse_date(None) is None


# --------------------------------------------------------------------- deliver_sm

@dataclass(frozen=True)
class FakeTlv:
    tag: int
    value: bytes


class Tag(enum.IntEnum):
    RECEIPTED_MESSAGE_ID = TAG_RECEIPTED_MESSAGE_ID


_tlv_pairs = st.lists(st.tuples(
    st.sampled_from([TAG_RECEIPTED_MESSAGE_ID, TAG_MESSAGE_STATE, TAG_NETWORK_ERROR_CODE,
                     TAG_MESSAGE_PAYLOAD, 0x1]),
    st.one_of(st.binary(max_size=40), _ids.map(lambda i: i.encode() + b"\x00"),
              st.integers(0, 9).map(lambda n: bytes([n])))), max_size=4)
_tlv_containers: st.SearchStrategy[Any] = st.one_of(
    _tlv_pairs,
    _tlv_pairs.map(tuple),
    _tlv_pairs.map(dict),
    _tlv_pairs.map(lambda ps: tuple(Tlv(t, v) for t, v in ps)),
    _tlv_pairs.map(lambda ps: [FakeTlv(t, v) for t, v in ps]),
)


@pytest.mark.slow
@given(esm=st.sampled_from([0x04, 0x04, 0x20, 0x44, 0x00, 0x08]),
       sm=st.one_of(bent_receipts(), standard_receipts(), st.binary(max_size=200)),
       tlvs=_tlv_containers, dc=st.sampled_from([0, 0, 0x08, 0x03]), sniff=st.booleans())
def test_parse_receipt_agrees_with_the_reference(esm: int, sm: str | bytes, tlvs: Any, dc: int,
                                                 sniff: bool) -> None:
    body = sm.encode("utf-8") if isinstance(sm, str) else sm
    got = outcome(parse_receipt, esm, body, tlvs, data_coding=dc, sniff=sniff)
    assert got == outcome(ref_parse_receipt, esm, body, tlvs, data_coding=dc, sniff=sniff)
    if got[0] == "ok" and got[1] is not None:
        for fmt in FORMATS:
            assert receipt_lookup_keys(got[1], fmt) == ref_receipt_lookup_keys(got[1], fmt)


# ``parse_receipt`` reads a standard-layout text in one step (``_parse_standard_receipt``);
# these cases pin which inputs take that step, and that each agrees with the reference.
SIM_TLVS = (Tlv(TAG_RECEIPTED_MESSAGE_ID, b"660df48587c60\x00"), Tlv(TAG_MESSAGE_STATE, b"\x02"))
STANDARD_RECEIPT_CASES: list[tuple[str, int, bytes, Any, int, bool, bool]] = [
    # (name, esm_class, short_message, tlvs, data_coding, sniff, takes the one-step path)
    ("simulator", 0x04, _STD.format(id="660df48587c60").encode() + b" text:Hello", SIM_TLVS,
     0, False, True),
    ("text only", 0x04, _STD.format(id="1603202138").encode(), (), 0, False, True),
    ("intermediate", 0x20, _STD.format(id="1").encode(), (), 0, False, True),
    ("NULs in the text", 0x04, _STD.format(id="1").encode() + b" text:a\x00b\x00", (), 0,
     False, True),
    ("network error code", 0x04, _STD.format(id="1").replace("err:000", "err:0x1A").encode(),
     ((TAG_NETWORK_ERROR_CODE, b"\x03\x00\x45"),), 0, False, True),
    ("state TLV overrides the stat", 0x04, _STD.format(id="1").encode(),
     {TAG_MESSAGE_STATE: b"\x05"}, 0, False, True),
    ("long sub", 0x04, _STD.format(id="1").replace("sub:001", "sub:1234567890").encode(), (),
     0, False, True),
    ("MO shaped like a receipt", 0x00, _STD.format(id="1").encode(), (), 0, False, True),
    ("MO shaped like a receipt, sniffed", 0x00, _STD.format(id="1").encode(), (), 0, True,
     True),
    ("UDHI", 0x44, b"\x00" + _STD.format(id="1").encode(), (), 0, False, False),
    ("UCS-2", 0x04, _STD.format(id="1").encode("utf-16-be"), (), 0x08, False, False),
    ("NUL before the text", 0x04, _STD.format(id="1").replace(" stat", "\x00stat").encode(),
     (), 0, False, False),
    ("payload TLV", 0x04, b"", ((TAG_MESSAGE_PAYLOAD, _STD.format(id="1").encode()),), 0,
     False, False),
    ("bytearray", 0x04, bytearray(_STD.format(id="1").encode()), (), 0, False, False),
    ("bent", 0x04, b"ID:1 STAT:DELIVRD", (), 0, False, False),
]


@pytest.mark.parametrize(("esm", "sm", "tlvs", "dc", "sniff", "one_step"),
                         [c[1:] for c in STANDARD_RECEIPT_CASES],
                         ids=[c[0] for c in STANDARD_RECEIPT_CASES])
def test_standard_receipts_in_one_step_agree(esm: int, sm: bytes, tlvs: Any, dc: int,
                                             sniff: bool, one_step: bool) -> None:
    got = parse_receipt(esm, sm, tlvs, data_coding=dc, sniff=sniff)
    assert got == ref_parse_receipt(esm, sm, tlvs, data_coding=dc, sniff=sniff)
    eligible = type(sm) is bytes and bool(sm) and not esm & 0x40 and dc != 0x08
    taken = eligible and R._parse_standard_receipt(esm, sm, tlvs, sniff) \
        is not R._NOT_STANDARD
    assert taken is one_step


NT = collections.namedtuple("NT", "tag value")

#: TLV containers and values of every odd kind: same receipt or same exception.
ODD_TLVS: list[tuple[str, Any]] = [
    ("IntEnum tag", [(Tag.RECEIPTED_MESSAGE_ID, b"ab")]),
    ("bool tag", [(True, b"\x02")]),
    ("str tag", [("30", b"x")]),
    ("bad str tag", [("x", b"a")]),
    ("float tag", [(30.5, b"a")]),
    ("bytearray value", [(30, bytearray(b"x\x00"))]),
    ("memoryview value", [(30, memoryview(b"abc"))]),
    ("str value", [(30, "str")]),
    ("int value", [(30, 5)]),
    ("None value", [(30, None)]),
    ("list item", [[30, b"a"]]),
    ("namedtuple item", [NT(30, b"nt")]),
    ("triple item", [(30, b"a", b"b")]),
    ("None item", [None]),
    ("bad value after a good one", [(30, b"a"), (30, "bad")]),
    ("mapping with str value", {30: "bad"}),
    ("mapping with str key", {"30": b"a"}),
    ("mapping with IntEnum key", {Tag.RECEIPTED_MESSAGE_ID: bytearray(b"z")}),
    ("ordered dict", collections.OrderedDict({30: b"o"})),
    ("short state and nec", ((0x427, b""), (0x423, b"\x01\x02"))),
    ("empty tuple", ()),
]


@pytest.mark.parametrize("tlvs", [t[1] for t in ODD_TLVS], ids=[t[0] for t in ODD_TLVS])
def test_odd_tlvs_agree(tlvs: Any) -> None:
    assert outcome(parse_receipt, 0x04, b"id:1 stat:DELIVRD", tlvs) == \
        outcome(ref_parse_receipt, 0x04, b"id:1 stat:DELIVRD", tlvs)


def test_generator_tlvs_agree() -> None:
    def gen() -> Iterable[tuple[int, bytes]]:
        yield (TAG_RECEIPTED_MESSAGE_ID, b"g\x00")
        yield (TAG_MESSAGE_STATE, b"\x05")

    assert parse_receipt(0x04, b"", gen()) == ref_parse_receipt(0x04, b"", gen())


# ---------------------------------------------------------------------- message ids

_id_texts = st.one_of(
    st.text(max_size=70),
    st.text("0123456789abcdefABCDEF-xX_ \x00\n", max_size=70),
    st.uuids().map(str),
    st.uuids().map(lambda u: str(u).upper()),
    st.integers(0, 2**260).map(lambda n: format(n, "x")),
    st.integers(0, 2**260).map(str),
)


@given(raw=_id_texts, fmt=st.sampled_from(FORMATS))
def test_ids_agree_with_the_reference(raw: str, fmt: MessageIdFormat) -> None:
    assert outcome(normalise_message_id, raw, fmt) == \
        outcome(ref_normalise_message_id, raw, fmt)
    assert outcome(message_id_variants, raw, fmt) == outcome(ref_message_id_variants, raw, fmt)


@pytest.mark.slow
@given(tlv_id=st.one_of(st.none(), st.just(""), _id_texts),
       text_id=st.one_of(st.none(), st.just(""), st.just("same"), _id_texts),
       fmt=st.sampled_from(FORMATS))
def test_lookup_keys_agree_with_the_reference(tlv_id: str | None, text_id: str | None,
                                              fmt: MessageIdFormat) -> None:
    if text_id == "same":
        text_id = tlv_id
    r = DeliveryReceipt(message_id="", state=ReceiptState.DELIVRD, tlv_message_id=tlv_id,
                        text_message_id=text_id)
    assert receipt_lookup_keys(r, fmt) == ref_receipt_lookup_keys(r, fmt)


@given(tlv_id=st.one_of(st.none(), st.just(""), st.sampled_from(["\x00", " ", "\x00x"]),
                       _id_texts),
       text_id=st.one_of(st.none(), st.just(""), st.just("same"), st.just(" "), _id_texts),
       fmt=st.sampled_from(FORMATS))
def test_first_key_is_the_first_lookup_key(tlv_id: str | None, text_id: str | None,
                                           fmt: MessageIdFormat) -> None:
    """The inbound processor tries ``receipt_first_key`` alone before the other keys."""
    if text_id == "same":
        text_id = tlv_id
    r = DeliveryReceipt(message_id="", state=ReceiptState.DELIVRD, tlv_message_id=tlv_id,
                        text_message_id=text_id)
    keys = ref_receipt_lookup_keys(r, fmt)
    assert R.receipt_first_key(r, fmt) == (keys[0] if keys else None)
    assert receipt_lookup_keys(r, fmt) == keys


#: Ids whose shape a str-method test could get wrong where the regexes were right.
TRICKY_IDS = [
    "-2f0d3c6-6a1f-4b4e-9e0c-3f2d8c1b7a55",      # a dash where a UUID has a hex digit
    "a2f0d3c6-6a1f-4b4e-9e0c-3f2d8c1b7a5-",
    "a2f0d3c6-6a1f-4b4e-9e0c-3f2d8c1b7a55",
    "A2F0D3C6-6A1F-4B4E-9E0C-3F2D8C1B7A55 \x00x",
    "a2f0d3c66a1f-4b4e-9e0c-3f2d8c1b7a55-",      # four dashes, wrong places
    "\u0661\u0662\u0663",                        # Arabic-Indic digits: isdigit, not ASCII
    "12\u00b2",                                   # superscript two: isdigit, not a digit
    "0x1A", "1_000", "+12", "-12", " 12 ", "12\n", "\n12", "1 2", "ABC\n", "abc\x00def",
    "0", "00", "000", "0000000123", "00B8BE19", "b8be19", "FFFFFFFFFFFFFFFF",
    "f" * 64, "f" * 65, "9" * 64, "9" * 65, "", " ", "\x00", "\x00123",
    "SM7f0c0e4b1e6a4f21b3c3b2a7c8d9e0f1", "Ab3x", "\u0130d", "\uff11\uff12",
]


@pytest.mark.parametrize("raw", TRICKY_IDS)
@pytest.mark.parametrize("fmt", FORMATS)
def test_tricky_ids(raw: str, fmt: MessageIdFormat) -> None:
    assert normalise_message_id(raw, fmt) == ref_normalise_message_id(raw, fmt)
    assert message_id_variants(raw, fmt) == ref_message_id_variants(raw, fmt)
