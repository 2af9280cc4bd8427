"""gateway.http._fastparse: the strict request-head parser, checked against h11.

The property: on any bytes, ``parse_head`` declines (None) or returns exactly what h11
parses from the same bytes, and never accepts what h11 rejects.
"""

from __future__ import annotations

import h11
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gateway.http._fastparse import HeadParser, parse_head

LIMIT = 1024
TCHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
VCHAR = bytes(range(0x21, 0x7F))
VALUE_BYTES = VCHAR + bytes(range(0x80, 0x100))

tokens = st.text(TCHARS, min_size=1, max_size=12).map(str.encode)
targets = st.binary(min_size=1, max_size=40).map(
    lambda b: bytes(VCHAR[x % len(VCHAR)] for x in b))
ows = st.sampled_from([b"", b" ", b"\t", b"  ", b" \t "])
values = st.lists(st.binary(min_size=1, max_size=8).map(
    lambda b: bytes(VALUE_BYTES[x % len(VALUE_BYTES)] for x in b)),
    max_size=3).flatmap(lambda words: ows.filter(bool).map(
        lambda sep: sep.join(words)))
header_names = st.one_of(tokens, st.sampled_from(
    [b"Content-Type", b"Connection", b"X-Request-Id", b"authorization", b"HOST"]))


def h11_parse(data: bytes) -> tuple[h11.Request, bytes, bytes] | None:
    """What h11 (as the server drives it) makes of ``data``: request, body, rest."""
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=LIMIT)
    conn.receive_data(data)
    try:
        event = conn.next_event()
        if not isinstance(event, h11.Request):
            return None
        body = b""
        while True:
            more = conn.next_event()
            if isinstance(more, h11.Data):
                body += more.data
            elif isinstance(more, h11.EndOfMessage):
                return event, body, conn.trailing_data[0]
            else:
                return event, body, b""  # body incomplete
    except h11.RemoteProtocolError:
        return None


# Small, so that the examples also run it full (lines parsed every time again).
MEMO = HeadParser(size=64)


def check(data: bytes) -> bool:
    """The differential property; True when the fast path accepted ``data``."""
    fast = parse_head(data, LIMIT)
    # HeadParser's memory of lines changes nothing: a first and a second time.
    assert MEMO(data, LIMIT) == fast
    assert MEMO(data, LIMIT) == fast
    slow = h11_parse(data)
    if fast is None:
        return False
    assert slow is not None, f"fast path accepted what h11 rejects: {data!r}"
    method, target, headers, start, length = fast
    request, body, rest = slow
    assert (method, target, headers) == (request.method, request.target,
                                         list(request.headers))
    assert request.http_version == b"1.1"
    assert start <= LIMIT
    # The same head behind other bytes (pipelined), given by its position.
    assert parse_head(b"xy\r\n\r\n" + data, LIMIT, 6) == (
        method, target, headers, start + 6, length)
    if start + length <= len(data):  # the body is all there: h11 read the same one
        assert body == data[start:start + length]
        assert rest == data[start + length:]
    return True


@st.composite
def requests(draw: st.DrawFn) -> tuple[bytes, bool]:
    """A request, and whether it is plain (the fast path must take it)."""
    method = draw(st.one_of(st.sampled_from([b"GET", b"POST", b"HEAD", b"DELETE"]), tokens))
    headers = [(draw(header_names), draw(ows), draw(values), draw(ows))
               for _ in range(draw(st.integers(0, 5)))]
    headers = [h for h in headers if h[0].lower() not in (
        b"host", b"content-length", b"transfer-encoding", b"expect")]
    body = draw(st.binary(max_size=30))
    headers.insert(draw(st.integers(0, len(headers))), (b"Host", b" ", b"example.org", b""))
    if body or draw(st.booleans()):
        headers.insert(draw(st.integers(0, len(headers))),
                       (b"Content-Length", b" ", b"%d" % len(body), b""))
    version = b"HTTP/1.1"
    plain = True
    twist = draw(st.sampled_from(["none"] * 6 + [
        "http10", "two_hosts", "no_host", "te", "expect", "two_lengths", "length_list",
        "fold", "bare_lf", "ctl", "bad_name", "space_before_colon", "leading_crlf"]))
    if twist != "none":
        plain = False
    if twist == "http10":
        version = b"HTTP/1.0"
    elif twist == "two_hosts":
        headers.append((b"host", b"", b"other", b""))
    elif twist == "no_host":
        headers = [h for h in headers if h[0] != b"Host"]
    elif twist == "te":
        headers.append((b"Transfer-Encoding", b" ", b"chunked", b""))
    elif twist == "expect":
        headers.append((b"Expect", b" ", b"100-continue", b""))
    elif twist == "two_lengths":
        headers.append((b"content-length", b" ", b"%d" % len(body), b""))
    elif twist == "length_list":
        headers.append((b"Content-Length", b" ", b"%d, %d" % (len(body), len(body)), b""))
        headers = [h for h in headers if h[0] != b"Content-Length" or b"," in h[2]]
    elif twist == "ctl":
        headers.append((b"X-Ctl", b"", b"a\x01b", b""))
    elif twist == "bad_name":
        headers.append((b"X(y)", b"", b"v", b""))
    elif twist == "space_before_colon":
        headers.append((b"X-Y ", b"", b"v", b""))
    lines = [b"%s %s %s" % (method, draw(targets), version)]
    lines += [b"%s:%s%s%s" % h for h in headers]
    if twist == "fold":
        lines.insert(draw(st.integers(1, len(lines))), b" folded")
    head = b"\r\n".join(lines) + b"\r\n\r\n"
    if twist == "bare_lf":
        cut = draw(st.sampled_from([i for i, b in enumerate(head) if b == 0x0D]))
        head = head[:cut] + head[cut + 1:]
    if twist == "leading_crlf":
        head = b"\r\n" + head
    return head + body + draw(st.sampled_from([b"", b"GET / HTTP/1.1\r\n", b"\r\n"])), plain


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow])
@given(requests())
@example((b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", True))
@example((b"POST /m HTTP/1.1\r\nhost:x\r\ncontent-length: 007\r\n\r\n1234567", True))
def test_well_formed_and_twisted_requests_agree_with_h11(case: tuple[bytes, bool]) -> None:
    data, plain = case
    accepted = check(data)
    if plain and len(data.partition(b"\r\n\r\n")[0]) + 4 <= LIMIT:
        assert accepted, data


MUTATIONS = b"\r\n\t \x00\x01\x7f\x80\xff:,/aZ0-"


@settings(max_examples=1500)
@given(requests(), st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 2),
                                      st.sampled_from(list(MUTATIONS))), max_size=4))
def test_mutated_requests_agree_with_h11(case: tuple[bytes, bool],
                                         edits: list[tuple[int, int, int]]) -> None:
    data = bytearray(case[0])
    for position, kind, byte in edits:
        i = position % (len(data) + 1)
        if kind == 0:
            data[i:i + 1] = bytes([byte])
        elif kind == 1:
            data[i:i] = bytes([byte])
        else:
            del data[i:i + 1]
    check(bytes(data))


@settings(max_examples=500)
@given(st.binary(max_size=200))
def test_garbage_agrees_with_h11(data: bytes) -> None:
    check(data)
    check(b"GET / HTTP/1.1\r\n" + data)


@pytest.mark.parametrize("data", [
    b"GET / HTTP/1.1\r\nHost: x\r\n",  # incomplete
    b"GET / HTTP/1.1\r\nHost: x\r\n\r",
    b"GET / HTTP/1.0\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.1\nHost: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
    b"GET / HTTP/1.1\r\nX: y\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nab",
    b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: +1\r\n\r\nab",
    b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1,1\r\n\r\nab",
    b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nX: a\rb\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nX : b\r\n\r\n",
    b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /\x7f HTTP/1.1\r\nHost: x\r\n\r\n",
    b"G(T / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * LIMIT + b"\r\n\r\n",  # over the limit
])
def test_declines(data: bytes) -> None:
    assert parse_head(data, LIMIT) is None
    check(data)


def test_head_parser_remembers_lines_within_its_bounds() -> None:
    parser = HeadParser(size=2, max_line=20)
    first = b"GET /a HTTP/1.1\r\nHost: x\r\nX-Long: " + b"v" * 30 + b"\r\n\r\n"
    second = b"GET /b HTTP/1.1\r\nHost: y\r\nX-A: 1\r\nX-B: 2\r\n\r\n"
    for data in (first, second, first, second):
        assert parser(data, LIMIT) == parse_head(data, LIMIT)
    # The long line was not remembered, and the third short header line found no room.
    assert sorted(parser._fields) == [b"Host: x", b"Host: y"]
    assert sorted(parser._starts) == [b"GET /a HTTP/1.1", b"GET /b HTTP/1.1"]


def test_head_parser_remembers_whole_heads_within_its_bounds() -> None:
    parser = HeadParser(size=2, max_head=50)
    a = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
    b = b"POST /b HTTP/1.1\r\nHost: y\r\nContent-Length: 2\r\n\r\nhi"
    long = b"GET /c HTTP/1.1\r\nHost: z\r\nX-Long: " + b"v" * 40 + b"\r\n\r\n"
    third = b"GET /d HTTP/1.1\r\nHost: w\r\n\r\n"
    bad = b"GET /e HTTP/1.1\r\nHost: v\r\nHost: v\r\n\r\n"  # two Hosts: h11's call
    for data in (a, b, long, bad, third) * 2:
        assert parser(data, LIMIT) == parse_head(data, LIMIT)
    # The long head and the third (no room left) were not remembered, nor a declined one.
    assert sorted(parser._heads) == [a[:-4], b[:b.index(b"\r\n\r\n")]]
    # The same head behind other bytes (pipelined) is found at its position.
    assert parser(b"xy\r\n\r\n" + b, LIMIT, 6) == parse_head(b"xy\r\n\r\n" + b, LIMIT, 6)
    # The caller owns the header list it gets: changing it changes no later answer.
    got = parser(a, LIMIT)
    assert got is not None
    got[2].append((b"x-injected", b"1"))
    assert parser(a, LIMIT) == parse_head(a, LIMIT)


def test_fields_and_boundaries() -> None:
    data = (b"POST /v1/messages?x=1 HTTP/1.1\r\nHost: gw\r\nX-Empty:\r\n"
            b"X-Ws: \t a \t b\t \r\nContent-Length: 3\r\n\r\nabcGET")
    assert parse_head(data, LIMIT) == (
        b"POST", b"/v1/messages?x=1",
        [(b"host", b"gw"), (b"x-empty", b""), (b"x-ws", b"a \t b"), (b"content-length", b"3")],
        data.index(b"abc"), 3)
    assert check(data)
    head = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    assert parse_head(head, len(head)) is not None
    assert parse_head(head, len(head) - 1) is None
