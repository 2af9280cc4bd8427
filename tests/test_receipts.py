"""gateway.receipts: receipt text and TLV parsing, message-id matching across carrier quirks."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.receipts import (
    TAG_MESSAGE_PAYLOAD,
    TAG_MESSAGE_STATE,
    TAG_NETWORK_ERROR_CODE,
    TAG_RECEIPTED_MESSAGE_ID,
    MessageIdFormat,
    ReceiptState,
    is_receipt_esm_class,
    message_id_variants,
    normalise_message_id,
    parse_receipt,
    parse_receipt_text,
    receipt_lookup_keys,
    state_from_stat,
)
from tests.receipt_samples import SAMPLES, Sample

SIM_TEXT = (b"id:660df48587c60 sub:001 dlvrd:001 submit date:2611221539 done date:2611221539 "
            b"stat:DELIVRD err:000 text:Hello world")
FORMATS: list[MessageIdFormat] = ["auto", "hex", "dec", "raw"]


# --------------------------------------------------------------------------- text

@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: s.name)
def test_receipt_text_samples(sample: Sample) -> None:
    got = parse_receipt_text(sample.text)
    if sample.expect is None:
        assert got is None
        return
    assert got is not None
    for key, value in sample.expect.items():
        assert getattr(got, key) == value, key


@pytest.mark.parametrize("sample", [s for s in SAMPLES if s.expect], ids=lambda s: s.name)
def test_str_and_bytes_agree(sample: Sample) -> None:
    text = sample.text
    other = text.encode("latin-1") if isinstance(text, str) else text.decode("latin-1")
    assert parse_receipt_text(other) == parse_receipt_text(text)


def test_unknown_stat_is_never_success() -> None:
    for stat in ["DELIVR", "DELIVRED", "OK", "SUCCESS", "0", "", "NULL", "delivrd!"]:
        assert not state_from_stat(stat).success, stat
    assert state_from_stat(None) is ReceiptState.UNKNOWN


def test_state_properties() -> None:
    assert ReceiptState.DELIVRD.final and ReceiptState.DELIVRD.success
    assert ReceiptState.UNDELIV.final and not ReceiptState.UNDELIV.success
    assert not ReceiptState.ENROUTE.final and not ReceiptState.ACCEPTD.final
    assert not ReceiptState.UNKNOWN.final


# ---------------------------------------------------------------------- deliver_sm

@dataclass(frozen=True)
class FakeTlv:
    tag: int
    value: bytes


def test_simulator_receipt_with_tlvs() -> None:
    r = parse_receipt(0x04, SIM_TEXT, {TAG_RECEIPTED_MESSAGE_ID: b"660df48587c60\x00",
                                       TAG_MESSAGE_STATE: bytes([2])})
    assert r is not None
    assert r.message_id == "660df48587c60"
    assert r.state is ReceiptState.DELIVRD and r.final and not r.intermediate
    assert r.text == "Hello world" and r.err == "000" and r.error_code == 0
    assert r.sub == 1 and r.dlvrd == 1


def test_tlvs_win_over_text() -> None:
    text = b"id:111 sub:001 dlvrd:001 stat:DELIVRD err:000 text:x"
    tlvs = [(TAG_RECEIPTED_MESSAGE_ID, b"6F\x00"), (TAG_MESSAGE_STATE, b"\x05"),
            (TAG_NETWORK_ERROR_CODE, b"\x03\x00\x1b")]
    r = parse_receipt(0x04, text, tlvs)
    assert r is not None
    assert r.message_id == "6F" and r.tlv_message_id == "6F" and r.text_message_id == "111"
    assert r.state is ReceiptState.UNDELIV
    assert r.stat == "DELIVRD"  # the text as written is kept for the record
    assert (r.network_type, r.error_code, r.err) == (3, 27, "000")


@pytest.mark.parametrize("tlvs", [
    {TAG_RECEIPTED_MESSAGE_ID: b"abc\x00", TAG_MESSAGE_STATE: b"\x08"},
    [(TAG_RECEIPTED_MESSAGE_ID, b"abc\x00"), (TAG_MESSAGE_STATE, b"\x08")],
    [FakeTlv(TAG_RECEIPTED_MESSAGE_ID, b"abc\x00"), FakeTlv(TAG_MESSAGE_STATE, b"\x08")],
    (x for x in [(TAG_RECEIPTED_MESSAGE_ID, b"abc"), (TAG_MESSAGE_STATE, b"\x08")]),
], ids=["mapping", "pairs", "tlv objects", "generator"])
def test_tlv_only_receipt(tlvs: object) -> None:
    r = parse_receipt(0x04, b"", tlvs)  # type: ignore[arg-type]
    assert r is not None
    assert (r.message_id, r.state, r.stat) == ("abc", ReceiptState.REJECTD, "REJECTD")
    assert r.text_message_id is None and r.text is None


def test_first_tlv_of_a_tag_wins() -> None:
    r = parse_receipt(0x04, b"", [(TAG_RECEIPTED_MESSAGE_ID, b"a"),
                                  (TAG_RECEIPTED_MESSAGE_ID, b"b")])
    assert r is not None and r.message_id == "a"


@pytest.mark.parametrize(("esm_class", "receipt", "intermediate"), [
    (0x00, False, False), (0x04, True, False), (0x44, True, False), (0x84, True, False),
    (0x20, True, True), (0x08, False, False), (0x10, False, False), (0x40, False, False),
    (0x03, False, False), (0x07, True, False),
])
def test_esm_class(esm_class: int, receipt: bool, intermediate: bool) -> None:
    assert is_receipt_esm_class(esm_class) is receipt
    r = parse_receipt(esm_class, b"id:1 stat:ENROUTE")
    assert (r is not None) is receipt
    if r is not None:
        assert r.intermediate is intermediate
        assert not r.final


def test_udhi_receipt_skips_udh() -> None:
    udh = bytes([5, 0x00, 0x03, 0x2A, 0x01, 0x01])
    r = parse_receipt(0x44, udh + b"id:9 stat:DELIVRD")
    assert r is not None and r.message_id == "9" and r.state is ReceiptState.DELIVRD
    assert parse_receipt(0x44, b"\xff") is not None  # UDHL beyond the data: empty text


def test_payload_and_ucs2() -> None:
    r = parse_receipt(0x04, b"", {TAG_MESSAGE_PAYLOAD: b"id:77 stat:EXPIRED err:000"})
    assert r is not None and (r.message_id, r.state) == ("77", ReceiptState.EXPIRED)
    ucs2 = "id:78 stat:DELIVRD".encode("utf-16-be")
    r = parse_receipt(0x04, ucs2, data_coding=0x08)
    assert r is not None and r.message_id == "78" and r.state is ReceiptState.DELIVRD


def test_receipt_without_any_id_is_still_a_receipt() -> None:
    r = parse_receipt(0x04, b"garbage")
    assert r is not None and r.message_id == "" and r.state is ReceiptState.UNKNOWN


def test_sniff_receipts_sent_as_plain_messages() -> None:
    text = b"id:5 sub:001 dlvrd:001 stat:DELIVRD err:000"
    assert parse_receipt(0x00, text) is None
    r = parse_receipt(0x00, text, sniff=True)
    assert r is not None and r.state is ReceiptState.DELIVRD
    assert parse_receipt(0x00, b"id:5 is my order", sniff=True) is None
    assert parse_receipt(0x00, b"STOP", sniff=True) is None
    assert parse_receipt(0x00, b"hi", {TAG_RECEIPTED_MESSAGE_ID: b"9"}, sniff=True) is not None


def test_bad_tlv_values_are_ignored() -> None:
    r = parse_receipt(0x04, b"id:1 stat:DELIVRD err:005",
                      {TAG_MESSAGE_STATE: b"\x63", TAG_NETWORK_ERROR_CODE: b"\x03\x00",
                       TAG_RECEIPTED_MESSAGE_ID: b"\x00"})
    assert r is not None
    assert (r.message_id, r.state, r.error_code, r.network_type) == (
        "1", ReceiptState.DELIVRD, 5, None)
    r = parse_receipt(0x04, b"", {TAG_RECEIPTED_MESSAGE_ID: b"x" * 100})
    assert r is not None and r.message_id == ""


# ----------------------------------------------------------------------- message ids

# (carrier case, resp id, carrier format, receipt id as the receipt carries it)
MATCHES: list[tuple[str, str, MessageIdFormat, str]] = [
    ("same id", "660df48587c60", "auto", "660df48587c60"),
    ("vonage: hex resp, dec receipt", "660df48587c60", "auto", "1795361967996000"),
    ("vonage with hex format", "660df48587c60", "hex", "1795361967996000"),
    ("vonage 16-digit ids", "0B00000012345678", "hex", "792633534722627192"),
    ("jasmin#1129 padded hex", "00B8BE19", "auto", "B8BE19"),
    ("padded hex, dec receipt", "00B8BE19", "hex", "12107289"),
    ("case differs", "b8be19", "hex", "B8BE19"),
    ("hex without letters, dec receipt", "12345678", "auto", "305419896"),
    ("hex without letters, hex fmt", "12345678", "hex", "305419896"),
    ("dec resp, hex receipt", "305419896", "dec", "12345678"),
    ("dec resp, hex receipt with letters", "12107289", "auto", "b8be19"),
    ("dec resp, padded dec receipt", "123", "dec", "0000000123"),
    ("uuid, case differs", "a2f0d3c6-6a1f-4b4e-9e0c-3f2d8c1b7a55", "auto",
     "A2F0D3C6-6A1F-4B4E-9E0C-3F2D8C1B7A55"),
    ("twilio SM id", "SM7f0c0e4b1e6a4f21b3c3b2a7c8d9e0f1", "auto",
     "SM7f0c0e4b1e6a4f21b3c3b2a7c8d9e0f1"),
    ("raw exact", "Ab3x", "raw", "Ab3x"),
    ("raw with NUL and spaces", " Ab3x\x00", "raw", "Ab3x"),
    ("zero", "000", "auto", "0"),
]


@pytest.mark.parametrize(("resp", "fmt", "receipt"), [m[1:] for m in MATCHES],
                         ids=[m[0] for m in MATCHES])
def test_receipt_id_finds_resp_id(resp: str, fmt: MessageIdFormat, receipt: str) -> None:
    assert normalise_message_id(resp, fmt) in message_id_variants(receipt, fmt)


NO_MATCHES: list[tuple[str, str, MessageIdFormat, str]] = [
    ("raw is case-sensitive", "Ab3x", "raw", "AB3X"),
    ("raw keeps padding", "00B8", "raw", "B8"),
    ("opaque ids keep case", "aB3x", "auto", "AB3X"),
    ("hex fmt does not read hex receipts as dec", "305419896", "hex", "12345678"),
    ("dec fmt does not read dec receipts as hex", "12345678", "dec", "305419896"),
    ("different ids", "660df48587c60", "auto", "660df48587c61"),
]


@pytest.mark.parametrize(("resp", "fmt", "receipt"), [m[1:] for m in NO_MATCHES],
                         ids=[m[0] for m in NO_MATCHES])
def test_receipt_id_does_not_match(resp: str, fmt: MessageIdFormat, receipt: str) -> None:
    assert normalise_message_id(resp, fmt) not in message_id_variants(receipt, fmt)


def test_variants_order_and_shape() -> None:
    assert message_id_variants("1795361967996000", "auto") == (
        "1795361967996000", "660DF48587C60", str(int("1795361967996000", 16)))
    assert message_id_variants("660df48587c60", "hex") == ("660DF48587C60",)
    assert message_id_variants("xyz-1", "auto") == ("xyz-1",)
    assert message_id_variants("", "auto") == ()
    assert message_id_variants("\x00", "raw") == ()
    assert message_id_variants("0", "auto") == ("0",)
    long_id = "1" * 65
    assert message_id_variants(long_id, "auto") == (long_id,)
    assert normalise_message_id(long_id) == long_id


def test_receipt_lookup_keys_tlv_first() -> None:
    r = parse_receipt(0x04, b"id:1795361967996000 stat:DELIVRD",
                      {TAG_RECEIPTED_MESSAGE_ID: b"660df48587c60"})
    assert r is not None
    keys = receipt_lookup_keys(r, "auto")
    assert keys[0] == "660DF48587C60"
    assert len(keys) == len(set(keys))
    assert normalise_message_id("660df48587c60") in keys
    r2 = parse_receipt(0x04, b"stat:DELIVRD")
    assert r2 is not None and receipt_lookup_keys(r2) == ()


# ------------------------------------------------------------------------ properties

@given(st.one_of(st.text(), st.binary()))
def test_parse_text_never_raises(data: str | bytes) -> None:
    r = parse_receipt_text(data)
    if r is not None:
        assert r.id is not None or r.stat is not None
        assert not (r.state.success and r.stat not in ("DELIVRD", "DELIVERED"))


_keys = st.sampled_from(["id:", "ID:", "sub:", "dlvrd:", "submit date:", "done_date:",
                         "stat:", "err:", "text:", "Text:", " ", "DELIVRD", "0", "123456789012"])


@given(st.lists(st.one_of(_keys, st.text(max_size=5)), max_size=30).map("".join))
def test_parse_receipt_like_text_never_raises(text: str) -> None:
    parse_receipt_text(text)


@given(esm=st.integers(0, 255), sm=st.binary(max_size=300), dc=st.integers(0, 255),
       tlvs=st.dictionaries(st.sampled_from([TAG_RECEIPTED_MESSAGE_ID, TAG_MESSAGE_STATE,
                                             TAG_NETWORK_ERROR_CODE, TAG_MESSAGE_PAYLOAD, 0x1]),
                            st.binary(max_size=80)),
       sniff=st.booleans())
def test_parse_receipt_never_raises(esm: int, sm: bytes, dc: int, tlvs: dict[int, bytes],
                                    sniff: bool) -> None:
    r = parse_receipt(esm, sm, tlvs, data_coding=dc, sniff=sniff)
    if r is not None and not sniff:
        assert is_receipt_esm_class(esm)


def _pad_and_case(s: str, pad: int, upper: bool) -> str:
    s = "0" * pad + s
    return s.upper() if upper else s.lower()


@given(n=st.integers(0, 2**64), pad=st.integers(0, 3), upper=st.booleans(),
       fmt=st.sampled_from(["auto", "hex"]))
def test_hex_resp_matches_dec_or_hex_receipt(n: int, pad: int, upper: bool,
                                             fmt: MessageIdFormat) -> None:
    resp = _pad_and_case(format(n, "x"), pad, upper)
    key = normalise_message_id(resp, fmt)
    assert key in message_id_variants(str(n), fmt)                      # decimal receipt
    assert key in message_id_variants(format(n, "X"), fmt)              # hex receipt
    assert key in message_id_variants(_pad_and_case(format(n, "x"), 2, not upper), fmt)


@given(n=st.integers(0, 2**64), pad=st.integers(0, 3), fmt=st.sampled_from(["auto", "dec"]))
def test_dec_resp_matches_dec_or_hex_receipt(n: int, pad: int, fmt: MessageIdFormat) -> None:
    key = normalise_message_id("0" * pad + str(n), fmt)
    assert key in message_id_variants(str(n), fmt)
    assert key in message_id_variants(format(n, "x"), fmt)
    assert key in message_id_variants("00" + format(n, "X"), fmt)


@given(raw=st.text(max_size=70), fmt=st.sampled_from(FORMATS))
def test_id_itself_always_matches(raw: str, fmt: MessageIdFormat) -> None:
    variants = message_id_variants(raw, fmt)
    key = normalise_message_id(raw, fmt)
    if key:
        assert variants[0] == key
    assert normalise_message_id(key, fmt) == key  # idempotent
    assert len(variants) == len(set(variants))
