"""GSM 03.38 tables, septet counting, packing and decoding."""

from __future__ import annotations

import gsm0338  # noqa: F401
import pytest

from gateway.encoding import gsm7
from gateway.encoding.shift_tables import LANGUAGE_IDS, SINGLE_SHIFT

ALL_GSM = "".join(ch for i, ch in enumerate(gsm7.BASIC) if i != gsm7.ESC) + "".join(
    gsm7.EXTENSION.values())


def test_every_character_agrees_with_gsm0338() -> None:
    for ch in ALL_GSM:
        assert gsm7.encode(ch) == ch.encode("gsm03.38"), ch


@pytest.mark.parametrize(("text", "septets"), [
    ("", 0), ("a", 1), ("@", 1), ("€", 2), ("{}", 4), ("Hello [world]", 15), ("\f", 2),
])
def test_septet_count(text: str, septets: int) -> None:
    assert gsm7.septet_count(text) == septets


@pytest.mark.parametrize("text", ["á", "`", "\x1b", "😀", "ç", "\t"])
def test_not_gsm(text: str) -> None:
    assert not gsm7.is_gsm(text)
    with pytest.raises(ValueError, match="not GSM"):
        gsm7.encode(text)


def test_decode_round_trip_all() -> None:
    assert gsm7.decode(gsm7.encode(ALL_GSM)) == ALL_GSM


@pytest.mark.parametrize(("data", "text"), [
    (b"\x1b\x28", "{"),
    (b"a\x1b", "a"),  # ESC at the end: dropped
    (b"\x1b\x41", "A"),  # unknown extension code: the basic character
    (b"\x80", "\ufffd"),
    (b"\x1b\x1b\x28", "{"),  # reserved ESC ESC
])
def test_decode_edge_cases(data: bytes, text: str) -> None:
    assert gsm7.decode(data) == text


def test_pack_known_vector() -> None:
    # "hellohello" packed: the classic 3GPP example.
    assert gsm7.pack(gsm7.encode("hellohello")).hex() == "e8329bfd4697d9ec37"
    assert gsm7.decode_packed(bytes.fromhex("e8329bfd4697d9ec37")) == "hellohello"


def test_pack_160_septets_is_140_octets() -> None:
    assert len(gsm7.pack(b"a" * 160)) == 140


def test_seven_spare_bits_are_cr_and_dropped() -> None:
    packed = gsm7.pack(gsm7.encode("1234567"))
    assert len(packed) == 7
    assert packed[-1] >> 1 == 0x0D
    assert gsm7.decode_packed(packed) == "1234567"
    assert gsm7.unpack(packed, count=8)[-1] == 0x0D


@pytest.mark.parametrize("fill", range(7))
@pytest.mark.parametrize("n", [0, 1, 6, 7, 8, 9, 15, 16, 152, 153])
def test_pack_unpack_with_fill(n: int, fill: int) -> None:
    septets = bytes((i * 37 + 1) % 128 for i in range(n)).replace(b"\r", b"a")
    assert gsm7.unpack(gsm7.pack(septets, fill), fill) == septets


@pytest.mark.parametrize(("udh", "fill"), [(0, 0), (6, 1), (7, 0), (4, 3), (9, 5), (10, 4)])
def test_fill_bits(udh: int, fill: int) -> None:
    assert gsm7.fill_bits(udh) == fill


@pytest.mark.parametrize(("language", "chars"), [
    ("turkish", "ĞİŞçğış€{"), ("spanish", "çÁÍÓÚáíóú€"), ("portuguese", "êçÔôÁáÊÀÍÓÚÃÕÂíóúãõâ"),
])
def test_national_single_shift(language: str, chars: str) -> None:
    lang = LANGUAGE_IDS[language]
    alpha = gsm7.alphabet(lang)
    assert alpha.fits(chars)
    septets = gsm7.encode(chars, lang)
    assert len(septets) == 2 * len(chars)
    assert gsm7.decode(septets, lang) == chars
    # Every table entry decodes to itself; Greek capitals keep their 1-septet basic code.
    for code, ch in SINGLE_SHIFT[lang].items():
        assert gsm7.decode(bytes((gsm7.ESC, code)), lang) == ch
    assert gsm7.encode("Φ", lang) == b"\x12"


def test_dcs0_charset_alphabets() -> None:
    assert not gsm7.alphabet(None, "latin1").fits("Δ")
    assert not gsm7.alphabet(None, "latin1").fits("€")
    assert gsm7.alphabet(None, "latin1").fits("é£{")
    assert not gsm7.alphabet(None, "ascii").fits("é")
    assert gsm7.alphabet(None, "ascii").fits("a{}[]~|^\\@$_")
