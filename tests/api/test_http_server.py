"""gateway.http: the generic h11-on-trio server, over real sockets on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio
import trio.testing

from gateway.http import Limits, Request, Response, Server
from tests.api.client import parse_responses, read_until_eof, request, start_server
from tests.api.conftest import Net


async def echo(request: Request) -> Response:
    """Answers with method, path and body, so tests can see what the server parsed."""
    if request.path == "/boom":
        raise RuntimeError("handler bug")
    body = b"%s %s %s" % (request.method.encode(), request.target.encode(), request.body)
    return Response(200, body, [(b"content-type", b"text/plain")])


# --- keep-alive, pipelining, bodies ----------------------------------------------------

async def test_keep_alive_serves_several_requests_on_one_connection(net: Net,
        nursery: trio.Nursery) -> None:
    with trio.fail_after(5):
        server = await start_server(nursery, echo)
        client = await net.client(server.port)
        for i in range(3):
            reply = await client.request("GET", f"/r{i}")
            assert (reply.status, reply.body) == (200, b"GET /r%d " % i)
            assert reply.headers["content-length"] == str(len(reply.body))
            assert "date" in reply.headers
        await client.aclose()
        stats = server.statistics()
        assert (stats.connections_total, stats.requests_total) == (1, 3)


async def test_pipelined_requests_are_answered_in_order(net: Net, nursery: trio.Nursery) -> None:
    with trio.fail_after(5):
        server = await start_server(nursery, echo)
        stream = await net.raw(server.port)
        await stream.send_all(
            b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n"
            b"POST /2 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
            b"GET /3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        replies = parse_responses(await read_until_eof(stream))
        assert [r.body for r in replies] == [b"GET /1 ", b"POST /2 hello", b"GET /3 "]
        assert replies[-1].headers["connection"] == "close"


async def test_chunked_request_body_is_reassembled(net: Net, nursery: trio.Nursery) -> None:
    with trio.fail_after(5):
        server = await start_server(nursery, echo)
        stream = await net.raw(server.port)
        await stream.send_all(
            b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            b"Connection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        [reply] = parse_responses(await read_until_eof(stream))
        assert reply.body == b"POST /c hello world"


async def test_expect_100_continue_then_final_response(net: Net, nursery: trio.Nursery) -> None:
    with trio.fail_after(5):
        server = await start_server(nursery, echo)
        stream = await net.raw(server.port)
        await stream.send_all(b"POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
                              b"Expect: 100-continue\r\nConnection: close\r\n\r\n")
        interim = await stream.receive_some(65536)
        assert interim.startswith(b"HTTP/1.1 100 ")
        await stream.send_all(b"abc")
        [reply] = parse_responses(await read_until_eof(stream))
        assert (reply.status, reply.body) == (200, b"POST /e abc")


async def test_head_gets_headers_without_body(net: Net, nursery: trio.Nursery) -> None:
    with trio.fail_after(5):
        server = await start_server(nursery, echo)
        stream = await net.raw(server.port)
        await stream.send_all(b"HEAD /h HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = await read_until_eof(stream)
        assert data.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"content-length: 8\r\n" in data
        assert data.endswith(b"\r\n\r\n")


async def test_http_1_0_is_answered_and_closed(net: Net, nursery: trio.Nursery) -> None:
    with trio.fail_after(5):
        server = await start_server(nursery, echo)
        stream = await net.raw(server.port)
        await stream.send_all(b"GET /old HTTP/1.0\r\n\r\n")
        [reply] = parse_responses(await read_until_eof(stream))
        assert reply.body == b"GET /old "


# --- limits ----------------------------------------------------------------------------

async def test_declared_body_over_limit_is_413_without_100_continue(net: Net,
        nursery: trio.Nursery) -> None:
    with trio.fail_after(5):
        server = await start_server(nursery, echo, Limits(max_body_bytes=100, linger=0.5))
        stream = await net.raw(server.port)
        await stream.send_all(b"POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: 101\r\n"
                              b"Expect: 100-continue\r\n\r\n")
        [reply] = parse_responses(await read_until_eof(stream))
        assert reply.status == 413
        assert reply.json()["error"]["code"] == "body_too_large"
        assert reply.headers["connection"] == "close"
        assert server.statistics().bodies_too_large == 1


async def test_chunked_body_over_limit_is_413(net: Net, nursery: trio.Nursery) -> None:
    with trio.fail_after(5):
        server = await start_server(nursery, echo, Limits(max_body_bytes=100, linger=0.5))
        stream = await net.raw(server.port)
        await stream.send_all(b"POST /big HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked"
                              b"\r\n\r\n" + b"40\r\n" + b"x" * 64 + b"\r\n" + b"40\r\n"
                              + b"x" * 64 + b"\r\n")
        [reply] = parse_responses(await read_until_eof(stream))
        assert reply.status == 413


async def test_413_reaches_a_client_still_sending_its_body(net: Net, nursery: trio.Nursery) -> None:
    # Without the lingering close the server's RST can destroy the 413 in flight.
    with trio.fail_after(5):
        server = await start_server(nursery, echo, Limits(max_body_bytes=1000, linger=1))
        stream = await net.raw(server.port)
        await stream.send_all(b"POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: 300000\r\n"
                              b"\r\n" + b"x" * 200_000)
        [reply] = parse_responses(await read_until_eof(stream))
        assert reply.status == 413


@pytest.mark.parametrize("end", [b"\r\n\r\n", b""], ids=["whole", "incomplete"])
async def test_head_over_header_limit_is_431(net: Net, nursery: trio.Nursery,
                                             end: bytes) -> None:
    with trio.fail_after(5):
        server = await start_server(nursery, echo, Limits(max_header_bytes=1024, linger=0.5))
        stream = await net.raw(server.port)
        await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 2000 + end)
        [reply] = parse_responses(await read_until_eof(stream))
        assert reply.status == 431
        assert reply.json()["error"]["code"] == "headers_too_large"


async def test_malformed_request_is_400_and_server_lives_on(
        net: Net, nursery: trio.Nursery) -> None:
    with trio.fail_after(5):
        server = await start_server(nursery, echo, Limits(linger=0.5))
        stream = await net.raw(server.port)
        await stream.send_all(b"GET / HTTP/1.1\r\nno colon here\r\n\r\n")
        [reply] = parse_responses(await read_until_eof(stream))
        assert reply.status == 400
        assert (await request(server.port, "GET", "/ok")).status == 200
        assert server.statistics().protocol_errors == 1


async def test_max_connections_queues_the_next_client(
        net: Net, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(100):
        server = await start_server(nursery, echo, Limits(max_connections=1))
        first = await net.client(server.port)
        assert (await first.request("GET", "/a")).status == 200
        second = await net.client(server.port)  # the kernel completes the handshake
        await second.send_request("GET", "/b")
        await trio.testing.wait_all_tasks_blocked()
        assert server.statistics().connections_open == 1
        with trio.move_on_after(30):  # virtual time
            await second.read_reply()
            pytest.fail("a second connection was served past max_connections")
        await first.aclose()
        assert (await second.read_reply()).body == b"GET /b "
        await second.aclose()


# --- timeouts (virtual time) -----------------------------------------------------------

async def test_slow_header_is_cut_with_408(net: Net,
        nursery: trio.Nursery, autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(100):
        server = await start_server(nursery, echo, Limits(header_timeout=5, linger=1))
        stream = await net.raw(server.port)
        start = trio.current_time()
        await stream.send_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n")  # never finished
        [reply] = parse_responses(await read_until_eof(stream))
        assert reply.status == 408
        assert 5 <= trio.current_time() - start < 10
        assert server.statistics().header_timeouts == 1


async def test_silent_connection_is_closed_after_header_timeout(net: Net,
        nursery: trio.Nursery, autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(100):
        server = await start_server(nursery, echo, Limits(header_timeout=5, idle_timeout=50))
        stream = await net.raw(server.port)
        start = trio.current_time()
        assert await read_until_eof(stream) == b""
        assert 5 <= trio.current_time() - start < 10


async def test_idle_keep_alive_connection_is_closed(net: Net,
        nursery: trio.Nursery, autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(100):
        server = await start_server(nursery, echo, Limits(header_timeout=5, idle_timeout=20))
        client = await net.client(server.port)
        assert (await client.request("GET", "/")).status == 200
        start = trio.current_time()
        assert await client.closed_by_server()
        assert 20 <= trio.current_time() - start < 25
        assert server.statistics().idle_closes == 1


async def test_slow_body_is_cut_with_408(net: Net,
        nursery: trio.Nursery, autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(100):
        server = await start_server(nursery, echo, Limits(body_timeout=7, linger=1))
        stream = await net.raw(server.port)
        await stream.send_all(b"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
        [reply] = parse_responses(await read_until_eof(stream))
        assert reply.status == 408
        assert server.statistics().body_timeouts == 1


async def test_each_phase_gets_its_own_timeout_not_the_connections_age(net: Net,
        nursery: trio.Nursery, autojump_clock: trio.testing.MockClock) -> None:
    # Five requests 15 s apart: 75 s on one connection, but never 20 s idle at a time.
    with trio.fail_after(200):
        server = await start_server(nursery, echo, Limits(header_timeout=5, idle_timeout=20))
        client = await net.client(server.port)
        for _ in range(5):
            assert (await client.request("GET", "/")).status == 200
            await trio.sleep(15)
        assert (await client.request("GET", "/")).status == 200
        assert server.statistics().idle_closes == 0


async def test_a_slow_handler_is_not_cut_by_any_timeout(net: Net,
        nursery: trio.Nursery, autojump_clock: trio.testing.MockClock) -> None:
    async def slow(request: Request) -> Response:
        await trio.sleep(100)
        return Response(200, b"late")

    with trio.fail_after(200):
        limits = Limits(header_timeout=5, body_timeout=5, idle_timeout=5, write_timeout=5)
        server = await start_server(nursery, slow, limits)
        client = await net.client(server.port)
        assert (await client.request("POST", "/", body=b"x")).body == b"late"
        stats = server.statistics()
        assert (stats.header_timeouts, stats.body_timeouts, stats.write_timeouts,
                stats.idle_closes) == (0, 0, 0, 0)


async def test_client_that_does_not_read_is_cut_by_write_timeout(net: Net,
        nursery: trio.Nursery, autojump_clock: trio.testing.MockClock) -> None:
    closed = trio.Event()

    async def firehose() -> AsyncIterator[bytes]:
        try:
            while True:
                yield b"x" * 1_000_000
        finally:
            closed.set()

    async def handler(request: Request) -> Response:
        return Response(200, firehose())

    with trio.fail_after(100):
        server = await start_server(nursery, handler, Limits(write_timeout=3))
        client = await net.client(server.port)
        await client.send_request("GET", "/")
        await closed.wait()  # the stream was abandoned and closed, not left running
        assert server.statistics().write_timeouts == 1
        await client.aclose()


# --- failures and streaming ------------------------------------------------------------

async def test_handler_exception_is_500_and_connection_stays_usable(net: Net,
        nursery: trio.Nursery, caplog: pytest.LogCaptureFixture) -> None:
    with trio.fail_after(5):
        server = await start_server(nursery, echo)
        client = await net.client(server.port)
        reply = await client.request("GET", "/boom")
        assert reply.status == 500
        assert reply.json()["error"]["code"] == "internal_error"
        assert (await client.request("GET", "/after")).status == 200
        assert server.statistics().handler_errors == 1
        assert "handler failed" in caplog.text
        await client.aclose()


async def test_streamed_chunks_arrive_before_the_body_is_finished(net: Net,
        nursery: trio.Nursery) -> None:
    more = trio.Event()

    async def lines() -> AsyncIterator[bytes]:
        yield b"first\n"
        await more.wait()
        yield b"second\n"

    async def handler(request: Request) -> Response:
        return Response(200, lines(), [(b"content-type", b"application/x-ndjson")])

    with trio.fail_after(5):
        server = await start_server(nursery, handler)
        client = await net.client(server.port)
        await client.send_request("GET", "/stream")
        status, headers = await client.read_head()
        assert (status, headers["transfer-encoding"]) == (200, "chunked")
        assert await client.read_piece() == b"first\n"  # while the producer still waits
        more.set()
        assert await client.read_piece() == b"second\n"
        assert await client.read_piece() is None
        assert (await client.request("GET", "/again")).status == 200  # still keep-alive
        await client.aclose()


async def test_stream_failing_midway_truncates_the_response(net: Net,
        nursery: trio.Nursery, caplog: pytest.LogCaptureFixture) -> None:
    async def lines() -> AsyncIterator[bytes]:
        yield b"ok\n"
        raise RuntimeError("store went away")

    async def handler(request: Request) -> Response:
        return Response(200, lines())

    with trio.fail_after(5):
        server = await start_server(nursery, handler)
        stream = await net.raw(server.port)
        await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        data = await read_until_eof(stream)
        assert b"ok\n" in data
        assert not data.endswith(b"0\r\n\r\n")  # no last chunk: the client sees truncation
        assert "streamed body failed" in caplog.text


# --- shutdown --------------------------------------------------------------------------

async def test_graceful_shutdown_finishes_in_flight_and_closes_idle(net: Net,
        nursery: trio.Nursery) -> None:
    release = trio.Event()
    entered = trio.Event()

    async def slow(request: Request) -> Response:
        if request.path == "/slow":
            entered.set()
            await release.wait()
        return Response(200, b"done")

    with trio.fail_after(5):
        server = Server(slow, limits=Limits(shutdown_grace=5))
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        done = trio.Event()

        async def run(task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED) -> None:
            await server.serve(listeners, task_status=task_status)
            done.set()

        await nursery.start(run)
        idle = await net.client(server.port)
        assert (await idle.request("GET", "/")).status == 200
        busy = await net.client(server.port)
        await busy.send_request("GET", "/slow")
        await entered.wait()

        server.shutdown()
        assert await idle.closed_by_server()
        with pytest.raises(OSError):
            await net.raw(server.port)
        release.set()
        reply = await busy.read_reply()
        assert (reply.status, reply.body, reply.headers["connection"]) == (200, b"done", "close")
        await done.wait()
        assert server.statistics().connections_open == 0


# --- response writing ------------------------------------------------------------------

async def test_unsendable_header_from_handler_is_500(
        net: Net, nursery: trio.Nursery, caplog: pytest.LogCaptureFixture) -> None:
    async def handler(request: Request) -> Response:
        if request.path == "/bad":
            return Response(200, b"x", [(b"x-evil", b"a\r\nset-cookie: b")])
        return Response(200, b"fine")

    with trio.fail_after(5):
        server = await start_server(nursery, handler)
        client = await net.client(server.port)
        reply = await client.request("GET", "/bad")
        assert reply.status == 500
        assert "set-cookie" not in reply.headers
        assert (await client.request("GET", "/good")).body == b"fine"
        assert "unsendable header" in caplog.text


async def test_constant_header_tuples_are_remembered_each_as_itself(
        net: Net, nursery: trio.Nursery, caplog: pytest.LogCaptureFixture) -> None:
    # The server remembers the header lines of a tuple it has checked: each tuple must
    # still get its own lines, a bad one must be refused every time, and a tuple of
    # lists (not hashable) must still be sent.
    json_ = ((b"content-type", b"application/json"),)
    text = ((b"content-type", b"text/plain"), (b"x-a", b"1"))
    bad = ((b"x-evil", b"a\r\nset-cookie: b"),)
    lists = ([b"x-list", b"yes"],)

    async def handler(request: Request) -> Response:
        headers = {"/j": json_, "/t": text, "/bad": bad, "/l": lists}[request.path]
        return Response(200, b"x", headers)  # type: ignore[arg-type]

    with trio.fail_after(5):
        server = await start_server(nursery, handler)
        client = await net.client(server.port)
        for _ in range(2):
            reply = await client.request("GET", "/j")
            assert (reply.headers["content-type"], "x-a" in reply.headers) == (
                "application/json", False)
            reply = await client.request("GET", "/t")
            assert (reply.headers["content-type"], reply.headers["x-a"]) == ("text/plain", "1")
            reply = await client.request("GET", "/bad")
            assert reply.status == 500 and "set-cookie" not in reply.headers
            assert (await client.request("GET", "/l")).headers["x-list"] == "yes"
        assert caplog.text.count("unsendable header") == 2


async def test_204_has_no_body_and_keeps_the_connection(
        net: Net, nursery: trio.Nursery) -> None:
    async def handler(request: Request) -> Response:
        return Response(204 if request.path == "/none" else 200, b"")

    with trio.fail_after(5):
        server = await start_server(nursery, handler)
        client = await net.client(server.port)
        reply = await client.request("GET", "/none")
        assert (reply.status, reply.body) == (204, b"")
        assert "content-length" not in reply.headers
        assert (await client.request("GET", "/")).status == 200


async def test_request_fields_seen_by_the_handler(net: Net, nursery: trio.Nursery) -> None:
    seen: list[Request] = []

    async def handler(request: Request) -> Response:
        seen.append(request)
        return Response(200)

    with trio.fail_after(5):
        server = await start_server(nursery, handler)
        assert server.addresses == [("127.0.0.1", server.port)]
        client = await net.client(server.port)
        await client.request("POST", "/p%2Fq?days=30&a=1&a=2&e=&sp=a+b", body=b"xyz",
                             headers=[("X-Thing", "v")])
        [request] = seen
        assert (request.method, request.path, request.body) == ("POST", "/p%2Fq", b"xyz")
        assert request.query == {"days": "30", "a": "2", "e": "", "sp": "a b"}
        assert request.header(b"x-thing") == b"v"
        assert request.header(b"missing") is None
        assert request.client is not None and request.client[0] == "127.0.0.1"
        assert request.http_version == "1.1"
