"""gateway.marketing.links: URL detection in SMS text, shortening, locations, shorteners."""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.marketing.links import (
    TOKEN_ALPHABET,
    TOKEN_LENGTH,
    LinkRecord,
    find_public_shorteners,
    find_urls,
    host_of,
    is_public_shortener,
    is_token,
    short_url,
    shorten,
    to_location,
    valid_domain,
)

DETECT = [
    # (text, urls found)
    ("Shop now: https://example.com/sale", ["https://example.com/sale"]),
    ("Shop at https://example.com/sale.", ["https://example.com/sale"]),
    ("Sale! https://example.com/sale!!! Ends today", ["https://example.com/sale"]),
    ("See https://x.com/a, https://y.com/b; ok", ["https://x.com/a", "https://y.com/b"]),
    ("Done? https://x.com/?", ["https://x.com/"]),
    ("(see https://x.com/a)", ["https://x.com/a"]),
    ("(https://en.wikipedia.org/wiki/Foo_(bar))", ["https://en.wikipedia.org/wiki/Foo_(bar)"]),
    ("[https://x.com/a]", ["https://x.com/a"]),
    ("{https://x.com/a}", ["https://x.com/a"]),
    ("<https://x.com/a>", ["https://x.com/a"]),
    ('"https://x.com/a"', ["https://x.com/a"]),
    ("'https://x.com/a'", ["https://x.com/a"]),
    ("“https://x.com/a”", ["https://x.com/a"]),
    ("«https://x.com/a»", ["https://x.com/a"]),
    ("HTTPS://EXAMPLE.COM/Sale", ["HTTPS://EXAMPLE.COM/Sale"]),
    ("http://x.com", ["http://x.com"]),
    ("https://x.com/a?utm=1&b=2#frag", ["https://x.com/a?utm=1&b=2#frag"]),
    ("https://x.com:8443/p", ["https://x.com:8443/p"]),
    ("line1\nhttps://x.com/a\nline3", ["https://x.com/a"]),
    ("https://x.com/a…", ["https://x.com/a"]),
    ("访问https://x.com/a。谢谢", ["https://x.com/a"]),
    ("访问 https://x.com/a，谢谢", ["https://x.com/a"]),
    # IDN and percent-encoding are kept as written
    ("Buy https://bücher.de/straße now", ["https://bücher.de/straße"]),
    ("https://x.com/a%20b%2Fc", ["https://x.com/a%20b%2Fc"]),
    ("https://пример.рф/путь", ["https://пример.рф/путь"]),
    # same URL twice
    ("https://x.com/a and https://x.com/a", ["https://x.com/a", "https://x.com/a"]),
    # not links
    ("ftp://x.com/file mailto:a@b.c tel:+14155550100", []),
    ("example.com/sale www.example.com", []),
    ("https:// nothing", []),
    ("https://. and https://", []),
    ("xhttps://x.com/a", []),
    ("no links at all", []),
]


@pytest.mark.parametrize(("text", "urls"), DETECT)
def test_find_urls(text: str, urls: list[str]) -> None:
    found = find_urls(text)
    assert [m.url for m in found] == urls
    for m in found:
        assert text[m.start:m.end] == m.url


def seq_tokens(prefix: str = "t") -> Callable[[], str]:
    counter: Iterator[int] = iter(range(1000))
    return lambda: f"{prefix}{next(counter):07d}"


def test_shorten_replaces_every_url_and_reuses_the_token_of_a_repeated_url() -> None:
    text = "Acme: https://x.com/a then https://y.com/b and again https://x.com/a."
    out, links = shorten(text, "sms.acme.com", seq_tokens())
    assert out == ("Acme: https://sms.acme.com/t0000000 then https://sms.acme.com/t0000001"
                   " and again https://sms.acme.com/t0000000.")
    assert links == [LinkRecord("t0000000", "https://x.com/a", 6),
                     LinkRecord("t0000001", "https://y.com/b", 27)]


def test_shorten_without_urls_returns_the_same_text() -> None:
    text = "No link here. Reply STOP to opt out"
    out, links = shorten(text, "sms.acme.com", seq_tokens())
    assert out is text and links == []


def test_shorten_skips_links_already_on_the_domain_and_unredirectable_ones() -> None:
    text = "https://SMS.acme.com/abc12345 https://x.com/a https://[bad/x"
    out, links = shorten(text, "sms.acme.com", seq_tokens())
    assert out == "https://SMS.acme.com/abc12345 https://sms.acme.com/t0000000 https://[bad/x"
    assert [r.url for r in links] == ["https://x.com/a"]
    only_own = "https://sms.acme.com/abc12345"
    assert shorten(only_own, "sms.acme.com", seq_tokens()) == (only_own, [])


def test_shorten_is_deterministic_with_a_seeded_generator() -> None:
    def seeded(seed: int) -> Callable[[], str]:
        rng = random.Random(seed)
        return lambda: "".join(rng.choice(TOKEN_ALPHABET) for _ in range(TOKEN_LENGTH))

    text = " ".join(f"https://x.com/p{i}" for i in range(50))
    first = shorten(text, "s.acme.com", seeded(7))
    assert first == shorten(text, "s.acme.com", seeded(7))
    tokens = [r.token for r in first[1]]
    assert len(set(tokens)) == 50
    assert all(is_token(t) and len(t) == TOKEN_LENGTH for t in tokens)
    assert re.fullmatch(r"(https://s\.acme\.com/[0-9A-Za-z]{8} ?){50}", first[0])


def test_shorten_draws_again_when_the_generator_repeats_a_token() -> None:
    tokens = iter(["aaaaaaaa", "aaaaaaaa", "bbbbbbbb"])
    _, links = shorten("https://x.com/1 https://x.com/2", "s.io", lambda: next(tokens))
    assert [r.token for r in links] == ["aaaaaaaa", "bbbbbbbb"]


def test_shorten_refuses_a_generator_stuck_on_one_token() -> None:
    with pytest.raises(RuntimeError):
        shorten("https://x.com/1 https://x.com/2", "s.io", lambda: "aaaaaaaa")


LOCATIONS = [
    ("https://example.com/sale", "https://example.com/sale"),
    ("HTTPS://Example.COM/Sale", "https://example.com/Sale"),
    ("https://x.com/a?b=1&c=%20#f", "https://x.com/a?b=1&c=%20#f"),
    ("https://x.com/?", "https://x.com/?"),
    ("https://bücher.de/straße", "https://xn--bcher-kva.de/stra%C3%9Fe"),
    ("https://x.com/a b", "https://x.com/a%20b"),
    ("https://x.com:8443/p", "https://x.com:8443/p"),
    ("https://user:pw@x.com/", "https://user:pw@x.com/"),
    ("http://[::1]:8080/x", "http://[::1]:8080/x"),
    ("javascript:alert(1)", None),
    ("ftp://x.com/f", None),
    ("https:///nohost", None),
    ("https://x.com/\r\nSet-Cookie: a=b", None),
    ("https://x.com:99999/", None),
    ("https://[bad/x", None),
    ("https://" + "a" * 3000 + ".com", None),
    ("https://ex ample.com/", None),
    ("https://a..b.com/", None),
]


@pytest.mark.parametrize(("url", "location"), LOCATIONS)
def test_to_location(url: str, location: str | None) -> None:
    loc = to_location(url)
    assert loc == location
    if loc is not None:
        assert loc.isascii()


SHORTENERS = [
    ("https://bit.ly/abc", True),
    ("http://BIT.LY/abc", True),
    ("https://www.bit.ly/abc", True),
    ("https://tinyurl.com/x", True),
    ("https://t.co/x", True),
    ("bit.ly/abc", True),
    ("https://bit.ly./abc", True),
    ("https://sms.acme.com/abc", False),
    ("https://notbit.ly/abc", False),
    ("https://example.com/bit.ly", False),
    ("https://[bad", False),
    ("", False),
]


@pytest.mark.parametrize(("url", "expected"), SHORTENERS)
def test_is_public_shortener(url: str, expected: bool) -> None:
    assert is_public_shortener(url) is expected


def test_find_public_shorteners_in_text() -> None:
    text = "Go https://bit.ly/x or https://acme.com/y or https://tinyurl.com/z."
    assert find_public_shorteners(text) == ["https://bit.ly/x", "https://tinyurl.com/z"]


def test_helpers() -> None:
    assert host_of("https://A.Example.COM./p") == "a.example.com"
    assert host_of("https://") is None
    assert short_url("sms.acme.com", "abc12345") == "https://sms.acme.com/abc12345"
    assert [valid_domain(d) for d in ("sms.acme.com", "a-b.io", "Acme.com", "acme",
                                      "-a.com", "a..com", "", "bücher.de")] == [
        True, True, False, False, False, False, False, False]
    assert [is_token(t) for t in ("abc12345", "ABCdef", "abc", "a" * 17, "abc-1234",
                                  "abc1234é", "١٢٣٤٥٦٧٨")] == [
        True, True, False, False, False, False, False]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["https://x.com/a", "http://y.org/b?c=1", " ", ".", "(", ")",
                                 "text", "\n", "https://", "é", ",", "https://x.com/a"]),
                max_size=20).map("".join))
def test_shortened_text_has_only_short_links_and_one_token_per_url(text: str) -> None:
    out, links = shorten(text, "s.acme.com", seq_tokens())
    assert len({r.url for r in links}) == len(links) == len({r.token for r in links})
    for m in find_urls(out):
        assert m.url.startswith("https://s.acme.com/") or to_location(m.url) is None
