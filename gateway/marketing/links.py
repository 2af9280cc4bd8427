"""Branded short links: find the http(s) URLs in an SMS text and replace each one by
``https://{domain}/{token}`` (pure: the token generator is passed in).

Why shorten at all: a click on ``https://sms.example.com/aZ3k9QpX`` identifies the message
and so the recipient, and a branded https domain is what carriers want to see instead of
public shorteners, which AT&T and T-Mobile block (domain.md §3.5).

URL detection is tuned for SMS text, not for HTML:

- only ``http://`` and ``https://`` (any case); other schemes (``ftp:``, ``mailto:``,
  ``tel:``) and bare domains (``example.com/sale``) are left alone: without a scheme the
  text may not be a link at all, and a phone would not linkify a shortened one any
  differently;
- a URL ends at whitespace, ``<>"`` or typographic quotes/brackets, fullwidth punctuation;
- trailing sentence punctuation (``.,;:!?'*…``) is not part of it ("Shop at
  https://x.com/sale." -> ``https://x.com/sale``);
- a closing ``)`` ``]`` ``}`` is part of it only if balanced inside the URL
  ("(see https://en.wikipedia.org/wiki/Foo_(bar))" keeps one ``)``);
- IDN hosts and non-ASCII or percent-encoded paths are kept as written; `to_location`
  turns them into an ASCII ``Location`` (punycode host, UTF-8 percent-encoding).

Tokens: 8 characters of base62 (``[0-9A-Za-z]``), 62**8 = 2.18e14 values, about 47.6 bits,
drawn by the caller with ``secrets`` (``gateway.marketing.tokens``). With N live tokens a
random guess hits one with probability N / 62**8: 4.6e-7 at N = 1e8, so finding *any* link
takes ~2 million requests, and a *chosen* recipient's link is out of reach. The redirect
server answers unknown tokens with 404 and rate-limits misses per client address
(``redirect.py``): at the default 120 misses a minute, 2 million requests take one
address about 12 days. Tokens are not secrets in the cryptographic sense (they travel
in SMS); they are unguessable handles. Raise ``TOKEN_LENGTH`` (each character adds
~6 bits) for larger link tables.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable
from typing import Final
from urllib.parse import quote, urlsplit

import msgspec

__all__ = [
    "PUBLIC_SHORTENERS",
    "TOKEN_ALPHABET",
    "TOKEN_LENGTH",
    "LinkRecord",
    "UrlMatch",
    "find_public_shorteners",
    "find_urls",
    "host_of",
    "is_public_shortener",
    "is_token",
    "short_url",
    "shorten",
    "to_location",
    "valid_domain",
]

#: base62: URL-safe without escaping, case-sensitive (phones keep case in links).
TOKEN_ALPHABET: Final = string.digits + string.ascii_letters
#: Characters per token: ~47.6 bits (see the module docstring for the guessing math).
TOKEN_LENGTH: Final = 8
#: Longest URL we shorten or redirect to (the de-facto browser-safe limit).
MAX_URL: Final = 2048

#: Public shortener hosts (and their subdomains). Carriers block them (domain.md §3.5);
#: the content rule rejects texts using them. ``rules.policy.ContentPolicy.blocked_link_domains``
#: carries the configurable list the rules engine applies; this is the reference list.
PUBLIC_SHORTENERS: Final = frozenset({
    "bit.ly", "bitly.com", "bitly.is", "j.mp", "tinyurl.com", "tiny.cc", "tiny.one",
    "goo.gl", "ow.ly", "t.co", "is.gd", "v.gd", "buff.ly", "rebrand.ly", "cutt.ly",
    "shorturl.at", "rb.gy", "t.ly", "s.id", "shorte.st", "adf.ly", "bl.ink", "soo.gd",
    "lnkd.in", "qr.ae", "trib.al", "tr.im", "x.co", "po.st", "short.gy", "clck.ru",
    "u.to", "2.gy", "t2m.io", "urlz.fr", "shorturl.com", "snip.ly", "kutt.it",
})

# A URL: scheme not glued to a preceding word, then everything up to a stop character.
# Stop characters: whitespace, <>", typographic quotes and guillemets, fullwidth/CJK
# brackets and punctuation (CJK text often has no space after a link).
_STOP = "\\s<>\"“”‘’«»‹›「」『』（）【】《》〈〉，。、！？；：\u3000"
# Not glued to an ASCII word ("xhttps://"); CJK text may run straight into a link.
_URL: Final = re.compile(rf"(?<![A-Za-z0-9+.\-])https?://[^{_STOP}]+", re.IGNORECASE)
_TRAILING: Final = frozenset(".,;:!?'*…")
_CLOSERS: Final = {")": "(", "]": "[", "}": "{"}
_TOKEN_RE: Final = re.compile(r"[0-9A-Za-z]{6,16}")
_LABEL: Final = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
# Characters kept as they are when making a Location: RFC 3986 reserved + unreserved,
# and "%" so existing escapes are not escaped twice.
_SAFE: Final = "/%:@!$&'()*+,;=-._~?#[]"


class UrlMatch(msgspec.Struct, frozen=True):
    """A URL found in a text: ``text[start:end] == url``."""

    start: int
    end: int
    url: str


class LinkRecord(msgspec.Struct, frozen=True):
    """One shortened URL of a message: ``token`` stands for ``url``.

    One record per *distinct* URL; ``position`` is the offset of its first occurrence in
    the original text. The I/O layer stores ``token -> (message, recipient, url)``.
    """

    token: str
    url: str
    position: int


def _trim(url: str) -> str:
    while url:
        last = url[-1]
        if last in _TRAILING:
            url = url[:-1]
            continue
        opener = _CLOSERS.get(last)
        if opener is not None and url.count(last) > url.count(opener):
            url = url[:-1]
            continue
        break
    return url


def _has_host(url: str) -> bool:
    rest = url[url.index("://") + 3:]
    for i, char in enumerate(rest):
        if char in "/?#":
            rest = rest[:i]
            break
    host = rest.rpartition("@")[2]
    return any(c.isalnum() for c in host) and not host.startswith(".")


def find_urls(text: str) -> list[UrlMatch]:
    """The http(s) URLs of ``text``, in order (see the module docstring for the rules)."""
    if "://" not in text:  # fast path: most texts have no link or one
        return []
    out = []
    for m in _URL.finditer(text):
        url = _trim(m.group())
        if len(url) > 8 and _has_host(url):
            out.append(UrlMatch(m.start(), m.start() + len(url), url))
    return out


def host_of(url: str) -> str | None:
    """The lower-case host of ``url`` (a scheme-less ``host/path`` is accepted), without a
    trailing dot; None if there is none."""
    if "://" not in url:
        url = "http://" + url
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return None
    return host.rstrip(".") if host else None


def is_public_shortener(url: str) -> bool:
    """Whether ``url`` (or a bare host) points at a public shortener (``bit.ly`` ...),
    including its subdomains and ``www.``."""
    host = host_of(url)
    if not host:
        return False
    if host in PUBLIC_SHORTENERS:
        return True
    dot = host.find(".")
    while dot >= 0:
        if host[dot + 1:] in PUBLIC_SHORTENERS:
            return True
        dot = host.find(".", dot + 1)
    return False


def find_public_shorteners(text: str) -> list[str]:
    """The URLs of ``text`` that use a public shortener."""
    return [m.url for m in find_urls(text) if is_public_shortener(m.url)]


def valid_domain(domain: str) -> bool:
    """Whether ``domain`` is a lower-case ASCII host name fit for short links
    (``sms.example.com``): config validation uses it."""
    if not domain or len(domain) > 253 or "." not in domain:
        return False
    return all(_LABEL.fullmatch(label) for label in domain.split("."))


def is_token(token: str) -> bool:
    """Whether ``token`` has the shape of a link token (6-16 base62 characters); anything
    else is answered 404 without a store lookup."""
    return token.isascii() and _TOKEN_RE.fullmatch(token) is not None


def short_url(domain: str, token: str) -> str:
    """The link a recipient sees."""
    return f"https://{domain}/{token}"


def to_location(url: str) -> str | None:
    """``url`` as an ASCII ``Location`` header value, or None if it is not an http(s) URL
    we are willing to redirect to (other schemes, no host, control characters, too long,
    an invalid IDN host)."""
    if len(url) > MAX_URL or any(ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        return None
    try:
        parts = urlsplit(url)
        port = parts.port  # ValueError on a bad port
        host = parts.hostname
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not host:
        return None
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    if ":" in host:  # IPv6 literal: urlsplit strips the brackets
        if not all(c in "0123456789abcdef:." for c in host):
            return None
        host = f"[{host}]"
    elif not all(c.isalnum() or c in "-." for c in host) or "" in host.rstrip(".").split("."):
        return None
    netloc = host
    if parts.username is not None:
        userinfo = quote(parts.username, safe="%!$&'()*+,;=-._~")
        if parts.password is not None:
            userinfo += ":" + quote(parts.password, safe="%!$&'()*+,;=-._~")
        netloc = f"{userinfo}@{host}"
    if port is not None:
        netloc += f":{port}"
    location = f"{scheme}://{netloc}{quote(parts.path, safe=_SAFE)}"
    if parts.query or url.endswith("?"):
        location += "?" + quote(parts.query, safe=_SAFE)
    if parts.fragment:
        location += "#" + quote(parts.fragment, safe=_SAFE)
    return location


def shorten(text: str, domain: str,
            make_token: Callable[[], str]) -> tuple[str, list[LinkRecord]]:
    """Replace every http(s) URL of ``text`` with ``https://{domain}/{token}``.

    One token per distinct URL (the same URL twice shares a token, so a click identifies
    (message, URL)); ``make_token()`` is called once per distinct URL, again if it repeats
    a token of this message. Left as they are: URLs already on ``domain`` (a text shortened
    before), and URLs `to_location` refuses (they would not be redirected anyway).
    Returns the new text and one `LinkRecord` per distinct URL, in order of appearance.
    """
    matches = find_urls(text)
    if not matches:
        return text, []
    domain = domain.lower()
    tokens: dict[str, str] = {}
    records: list[LinkRecord] = []
    out: list[str] = []
    pos = 0
    for m in matches:
        url = m.url
        token = tokens.get(url)
        if token is None:
            if host_of(url) == domain or to_location(url) is None:
                continue
            token = make_token()
            used = {r.token for r in records}
            for _ in range(16):
                if token not in used:
                    break
                token = make_token()
            else:
                raise RuntimeError("make_token keeps returning tokens already used")
            tokens[url] = token
            records.append(LinkRecord(token, url, m.start))
        out.append(text[pos:m.start])
        out.append(short_url(domain, token))
        pos = m.end
    if not records:
        return text, []
    out.append(text[pos:])
    return "".join(out), records
