"""A strict parser for plainly well-formed HTTP/1.1 request heads, the server's fast path.

h11 costs ~20 us of CPU per request on this machine (its state machine, event objects,
header normalisation), about 40 % of serving a small request. Nearly every request the
gateway gets is the plain kind: one request line, a few ``name: value`` lines, maybe a
Content-Length body. This module parses exactly that and *declines* (returns None) on
anything else, so that h11 stays the judge of every error and of everything unusual.

The contract, checked by a differential hypothesis test against h11
(tests/api/test_http_fastparse.py): on any bytes, ``parse_head`` either declines or
returns what h11 parses from the same bytes (method, target, headers with lower-cased
names and OWS-stripped values in order, http_version ``1.1``, the body's length). It
accepts a strict subset of what h11 accepts:

- request line ``TOKEN SP TARGET SP HTTP/1.1`` (target: visible ASCII 0x21-0x7E);
- header lines ``name:OWS value OWS`` with name an RFC 9110 token and value of VCHAR,
  obs-text, SP and HTAB only (h11 also admits other CTLs; we leave those to it);
- no bare CR or LF anywhere (h11 accepts a bare LF as a line end), no obs-fold;
- exactly one Host; no Transfer-Encoding, no Expect (100-continue is h11's business);
- at most one Content-Length, digits only (h11 merges equal duplicates and ``5, 5``);
- the head ends with CRLF CRLF within ``limit`` bytes.

``HeadParser`` is ``parse_head`` with a memory of the request lines and header lines it
has parsed (a client sends the same few lines again and again: the regular expressions
are most of the cost), and of whole heads (a client sends the very same head again and
again, or a few: only Content-Length varies); the same differential test holds it to
``parse_head``.

Pure: bytes in, values out (no trio, no socket).
"""
from __future__ import annotations

import re

__all__ = ["Head", "HeadParser", "parse_head"]

#: (method, target, headers, body_start, content_length): the head ends at body_start
#: (an index into the ``data`` given to ``parse_head``).
Head = tuple[bytes, bytes, list[tuple[bytes, bytes]], int, int]

# RFC 9110 5.6.2 tchar; request-target 0x21-0x7E as h11's ``vchar+``. Only HTTP/1.1.
_REQUEST_LINE = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+) ([\x21-\x7e]+) HTTP/1\.1")
# name ":" OWS value OWS, value without CTLs (HTAB aside) or DEL; the value is stripped
# of surrounding SP/HTAB exactly as h11's ``OWS field_value OWS`` regex does.
_HEADER_LINE = re.compile(
    rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*"
    rb"((?:[\x21-\x7e\x80-\xff]+(?:[ \t]+[\x21-\x7e\x80-\xff]+)*)?)[ \t]*")
_DIGITS = re.compile(rb"[0-9]{1,18}")  # 18 digits: an int without a bignum, > any limit


def parse_head(data: bytes, limit: int, pos: int = 0) -> Head | None:
    """The request head at ``data[pos:]``, or None to let h11 decide.

    None also when the head is not complete yet or is longer than ``limit`` bytes: h11
    then buffers it and applies its own limit (431). ``pos`` spares the caller slicing
    a buffer of pipelined requests once per request.
    """
    end = data.find(b"\r\n\r\n", pos, pos + limit)
    if end < 0:
        return None
    lines = data[pos:end].split(b"\r\n")
    match = _REQUEST_LINE.fullmatch(lines[0])
    if match is None:
        return None
    method, target = match.groups()
    headers = []
    hosts = 0
    length = -1
    header_line = _HEADER_LINE.fullmatch
    for i in range(1, len(lines)):
        m = header_line(lines[i])
        if m is None:  # obs-fold, CTL, bare CR/LF, bad name: h11's call
            return None
        name = m[1].lower()
        value = m[2]
        if name == b"host":
            hosts += 1
        elif name == b"content-length":
            if length >= 0 or _DIGITS.fullmatch(value) is None:
                return None
            length = int(value)
        elif name in {b"transfer-encoding", b"expect"}:
            return None
        headers.append((name, value))
    if hosts != 1:
        return None
    return method, target, headers, end + 4, length if length > 0 else 0


class HeadParser:
    """``parse_head``, remembering the lines it parsed (see the module docstring).

    At most ``size`` request lines and ``size`` header lines are remembered, each at most
    ``max_line`` bytes long; past that, lines are parsed every time (so a client sending
    ever new lines costs memory once and speed never below ``parse_head``'s).
    """

    __slots__ = ("_fields", "_heads", "_max_head", "_max_line", "_size", "_starts")

    def __init__(self, size: int = 256, max_line: int = 256, max_head: int = 1024) -> None:
        self._starts: dict[bytes, tuple[bytes, bytes]] = {}
        self._fields: dict[bytes, tuple[bytes, bytes]] = {}
        #: Whole heads (without the final CRLF CRLF) -> (method, target, headers, length):
        #: a head parses to the same values every time, so this is exact. At most
        #: ``size`` heads of at most ``max_head`` bytes.
        self._heads: dict[bytes, tuple[bytes, bytes, tuple[tuple[bytes, bytes], ...], int]] = {}
        self._size = size
        self._max_line = max_line
        self._max_head = max_head

    def __call__(self, data: bytes, limit: int, pos: int = 0) -> Head | None:
        """As ``parse_head(data, limit, pos)``."""
        end = data.find(b"\r\n\r\n", pos, pos + limit)
        if end < 0:
            return None
        raw = data[pos:end]
        hit = self._heads.get(raw)
        if hit is not None:
            # A fresh list: the caller owns the headers it gets.
            return hit[0], hit[1], list(hit[2]), end + 4, hit[3]
        lines = raw.split(b"\r\n")
        first = lines[0]
        start = self._starts.get(first)
        if start is None:
            match = _REQUEST_LINE.fullmatch(first)
            if match is None:
                return None
            start = (match[1], match[2])
            if len(self._starts) < self._size and len(first) <= self._max_line:
                self._starts[first] = start
        headers = []
        hosts = 0
        length = -1
        known = self._fields
        header_line = _HEADER_LINE.fullmatch
        for i in range(1, len(lines)):
            line = lines[i]
            field = known.get(line)
            if field is None:
                m = header_line(line)
                if m is None:  # obs-fold, CTL, bare CR/LF, bad name: h11's call
                    return None
                field = (m[1].lower(), m[2])
                if len(known) < self._size and len(line) <= self._max_line:
                    known[line] = field
            name = field[0]
            if name == b"host":
                hosts += 1
            elif name == b"content-length":
                if length >= 0 or _DIGITS.fullmatch(field[1]) is None:
                    return None
                length = int(field[1])
            elif name in {b"transfer-encoding", b"expect"}:
                return None
            headers.append(field)
        if hosts != 1:
            return None
        length = length if length > 0 else 0
        if len(self._heads) < self._size and len(raw) <= self._max_head:
            self._heads[raw] = (start[0], start[1], tuple(headers), length)
        return start[0], start[1], headers, end + 4, length
