"""Session 5b review probe (no bug found): ``HeadParser``'s whole-head memory (aba474b)
answers exactly what ``parse_head`` answers for every call of an interleaved stream of
heads that differ in Content-Length, header order or case, at pipelined positions, with
varying limits, also once the memory is full, and never hands one caller's list to another.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.http._fastparse import HeadParser, parse_head

BASES = [
    b"POST /v1/messages HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json",
    b"POST /v1/messages HTTP/1.1\r\nhost: gw\r\nAuthorization: Bearer a",
    b"POST /v1/messages HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer b",
    b"GET /v1/messages/x HTTP/1.1\r\nHost: gw",
    b"POST /v1/consent HTTP/1.1\r\nHost: other",
]

calls = st.lists(st.tuples(
    st.integers(0, len(BASES) - 1),
    st.one_of(st.none(), st.integers(0, 10**6).map(lambda n: b"%d" % n),
              st.sampled_from([b"007", b"-1", b"1 2", b""])),
    st.booleans(),                      # Content-Length before or after the other lines
    st.binary(max_size=6),              # bytes before ``pos``
    st.sampled_from([40, 80, 120, 4096]),  # limit
), min_size=1, max_size=40)


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(calls, st.sampled_from([1, 2, 256]))
def test_probe_memory_answers_as_parse_head(seq: list[tuple[int, bytes | None, bool, bytes,
                                                                int]], size: int) -> None:
    hp = HeadParser(size=size, max_head=100)
    for k, length, first, prefix, limit in seq:
        lines = BASES[k].split(b"\r\n")
        if length is not None:
            cl = b"Content-Length: " + length
            lines = [lines[0], cl, *lines[1:]] if first else [*lines, cl]
        data = prefix + b"\r\n".join(lines) + b"\r\n\r\n{}" + b"GET"
        want = parse_head(data, limit, len(prefix))
        got = hp(data, limit, len(prefix))
        assert got == want
        if got is not None:
            got[2].append((b"x", b"y"))  # the caller's list: no later answer changes
    assert len(hp._heads) <= size
