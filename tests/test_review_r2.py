"""Review R2 (session 4): probes of the HTTP server's direct I/O, timeout sweeper and
head-parser memory, beyond the area tests (tests/api/test_http_*.py)."""

from __future__ import annotations

import logging
import random
import socket
import struct
from collections.abc import AsyncIterator

import pytest
import trio
import trio.testing

from gateway.http import Limits, Request, Response
from gateway.http._fastparse import HeadParser, parse_head
from tests.api.client import parse_responses, read_until_eof, start_server
from tests.api.conftest import Net


@pytest.fixture
async def net() -> AsyncIterator[Net]:
    n = Net()
    try:
        yield n
    finally:
        await n.aclose()


async def echo(request: Request) -> Response:
    return Response(200, b"%s %s" % (request.method.encode(), request.target.encode()),
                    [(b"content-type", b"text/plain")])


async def test_keep_alive_partial_next_head_is_cut_by_header_timeout_not_idle(
        net: Net, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock) -> None:
    # The next head starts right away (a direct read finds it), then stalls: the head
    # timeout applies, not the (longer) idle timeout left from the wait for it.
    with trio.fail_after(200):
        server = await start_server(nursery, echo,
                                    Limits(header_timeout=5, idle_timeout=60, linger=1))
        stream = await net.raw(server.port)
        await stream.send_all(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\n")
        start = trio.current_time()
        replies = parse_responses(await read_until_eof(stream))
        assert [r.status for r in replies] == [200, 408]
        assert 5 <= trio.current_time() - start < 10
        assert server.statistics().header_timeouts == 1


async def test_partial_head_after_an_idle_wait_gets_the_header_timeout(
        net: Net, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(200):
        server = await start_server(nursery, echo,
                                    Limits(header_timeout=5, idle_timeout=60, linger=1))
        stream = await net.raw(server.port)
        await stream.send_all(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
        await stream.receive_some(65536)
        await trio.sleep(30)  # idle, within the idle timeout
        await stream.send_all(b"GET /b HTTP/1.1\r\nHo")
        start = trio.current_time()
        [reply] = parse_responses(await read_until_eof(stream))
        assert reply.status == 408
        assert 5 <= trio.current_time() - start < 10


async def test_peer_reset_during_a_direct_write_is_quiet(
        net: Net, nursery: trio.Nursery, caplog: pytest.LogCaptureFixture) -> None:
    # ECONNRESET / EPIPE on os.write or os.read: the connection ends, nothing is logged
    # as a failure, the server keeps serving.
    body = b"y" * 4_000_000
    gate = trio.Event()

    async def big(request: Request) -> Response:
        if request.path == "/big":
            await gate.wait()
        return Response(200, body if request.path == "/big" else b"ok")

    caplog.set_level(logging.ERROR, logger="gateway.http")
    with trio.fail_after(10):
        server = await start_server(nursery, big)
        for _ in range(5):
            s = socket.socket()
            s.connect(("127.0.0.1", server.port))
            s.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n" * 3)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            await trio.sleep(0.05)
            s.close()  # RST
            gate.set()
            gate = trio.Event()
        await trio.sleep(0.2)
        stream = await net.raw(server.port)
        await stream.send_all(b"GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        [reply] = parse_responses(await read_until_eof(stream))
        assert reply.body == b"ok"
        assert server.statistics().connections_open == 0
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_head_parser_memory_never_changes_a_verdict() -> None:
    # One parser, warm across many inputs that share lines in different roles and
    # orders (duplicates, case variants, TE, obs-fold, bare LF): same as parse_head.
    rng = random.Random(7)
    starts = [b"GET / HTTP/1.1", b"POST /v1/messages HTTP/1.1", b"get / HTTP/1.1",
              b"GET / HTTP/1.0", b"GET  / HTTP/1.1", b"GET /\x7f HTTP/1.1"]
    fields = [b"Host: x", b"host: x", b"Host:", b"HOST: y", b"Content-Length: 5",
              b"content-length: 5", b"Content-Length: 05", b"Content-Length: 5, 5",
              b"Content-Length: +5", b"Content-Length:5 ", b"Transfer-Encoding: chunked",
              b"transfer-encoding: identity", b"Expect: 100-continue", b" folded",
              b"\tfolded", b"X-A: a\nb", b"X-A: a\rb", b"X-A: \x01", b"X A: b",
              b"X-A: b ", b"X-A:\tb\t", b"Content-Type: application/json",
              b"Connection: close", b"", b"X-\xff: a", b"X-A: \xff"]
    memo = HeadParser(size=32, max_line=64)
    for _ in range(20_000):
        lines = [rng.choice(starts)] + [rng.choice(fields)
                                        for _ in range(rng.randrange(0, 6))]
        data = b"\r\n".join(lines) + b"\r\n\r\n" + b"hello" * rng.randrange(0, 2)
        pos = rng.randrange(0, 3)
        data = b"xy"[:pos] + data
        assert memo(data, 8192, pos) == parse_head(data, 8192, pos), data


async def test_writer_stop_commits_every_lane_queued_before_it() -> None:
    # A stop behind queued ack, urgent and normal batches: each is committed (none left
    # waiting), in the lane order, and later commits are refused.
    from gateway.store import StoreClosedError, WriteBatch
    from gateway.store.writer import AckBatch, GroupCommitWriter
    from tests.store.test_writer import Recorder, _tagged

    def ack(n: int) -> WriteBatch:
        b = AckBatch()
        b.ops.extend(_tagged(n, urgent=True).ops)
        return b

    runner = Recorder()
    writer = GroupCommitWriter(runner, max_group_ops=5)
    results: list[object] = []

    async def commit(b: WriteBatch) -> None:
        try:
            results.append(await writer.commit(b))
        except StoreClosedError as exc:
            results.append(exc)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.to_thread.run_sync, writer.run)
            runner.gate.clear()
            nursery.start_soon(commit, _tagged(1, urgent=False))
            await trio.to_thread.run_sync(runner.entered.wait, 10)
            for b in (_tagged(5, urgent=False), ack(5), _tagged(5, urgent=True), ack(5),
                      _tagged(5, urgent=False)):
                nursery.start_soon(commit, b)
                await trio.testing.wait_all_tasks_blocked()
            writer.stop()
            runner.gate.set()
        await commit(_tagged(1, urgent=False))
    assert len(results) == 7
    assert all(not isinstance(r, Exception) for r in results[:6]), results
    assert isinstance(results[6], StoreClosedError)
    assert sum(len(g) for g in runner.seen) == 6
    assert runner.seen[1] == [("ack", 5)]
