"""An HTTP/1.1 server: h11 (sans-IO) driven directly by trio, one task per connection.

Why not hypercorn: its ASGI layers cost ~400 us a request on this machine, h11 over trio
80-110 us (DESIGN.md, performance table), and the API is the gateway's front door.

Shape (trio ``serve_listeners`` idiom): ``Server.serve`` runs accept loops and one task per
connection in its own nurseries and calls ``task_status.started(server)`` once listening.
Each connection is a loop of request/response cycles on one ``h11.Connection``; h11 keeps
pipelined requests buffered until ``start_next_cycle``, so pipelining is handled by simply
answering in order. Every read has a deadline (idle, head, body) and every write a
timeout, so a slow or silent client costs a task and a socket for a bounded time only.
"""

from __future__ import annotations

import errno
import logging
import time
from collections.abc import Callable, Sequence
from email.utils import formatdate
from http import HTTPStatus

import h11
import msgspec
import trio

from gateway.http._message import Handler, Limits, Request, Response

__all__ = ["ErrorResponder", "Server", "ServerStats", "json_error", "serve"]

log = logging.getLogger("gateway.http")

_REASONS = {s.value: s.phrase.encode("ascii") for s in HTTPStatus}
# accept() failures that mean "out of descriptors/memory right now": back off, don't die
# (the same list as trio.serve_listeners).
_ACCEPT_CAPACITY_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
_JSON = (b"content-type", b"application/json")


class ServerStats(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot of the server's counters (trio's ``statistics()`` convention)."""

    connections_open: int
    connections_total: int
    requests_total: int
    handler_errors: int
    protocol_errors: int
    header_timeouts: int
    body_timeouts: int
    write_timeouts: int
    bodies_too_large: int
    idle_closes: int
    closing: bool


class _Counters:
    __slots__ = (
        "bodies_too_large",
        "body_timeouts",
        "connections_open",
        "connections_total",
        "handler_errors",
        "header_timeouts",
        "idle_closes",
        "protocol_errors",
        "requests_total",
        "write_timeouts",
    )

    def __init__(self) -> None:
        self.bodies_too_large = 0
        self.body_timeouts = 0
        self.connections_open = 0
        self.connections_total = 0
        self.handler_errors = 0
        self.header_timeouts = 0
        self.idle_closes = 0
        self.protocol_errors = 0
        self.requests_total = 0
        self.write_timeouts = 0


#: Builds the responses the server makes itself (400, 408, 413, 431, 500): called with
#: (status, code, message); must return a ``bytes`` body.
ErrorResponder = Callable[[int, str, str], Response]


class _ErrorBody(msgspec.Struct):
    code: str
    message: str
    field: str | None = None


class _Error(msgspec.Struct):
    error: _ErrorBody


_encode = msgspec.json.Encoder().encode


def json_error(status: int, code: str, message: str) -> Response:
    """The default server-made error: ``{"error": {"code", "message", "field": null}}``."""
    return Response(status, _encode(_Error(_ErrorBody(code, message))), (_JSON,))


class _HttpDate:
    """The Date header (RFC 9110 5.6.7), formatted at most once a second."""

    __slots__ = ("_second", "_value")

    def __init__(self) -> None:
        self._second = -1
        self._value = b""

    def __call__(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._value = formatdate(now, usegmt=True).encode("ascii")
        return self._value


_http_date = _HttpDate()


class Server:
    """Serves ``handler`` on listeners until cancelled or, gracefully, until ``shutdown()``."""

    def __init__(
        self,
        handler: Handler,
        *,
        limits: Limits | None = None,
        error_response: ErrorResponder | None = None,
    ) -> None:
        self._handler = handler
        self._limits = limits if limits is not None else Limits()
        self._error_response = error_response if error_response is not None else json_error
        self._counters = _Counters()
        self._slots = trio.Semaphore(self._limits.max_connections)
        self._closing = False
        self._accept_scope: trio.CancelScope | None = None
        self._idle_scopes: set[trio.CancelScope] = set()
        self.listeners: list[trio.SocketListener] = []

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """(host, port) of each listener; useful after binding port 0."""
        out = []
        for listener in self.listeners:
            host, port = listener.socket.getsockname()[:2]
            out.append((str(host), int(port)))
        return out

    @property
    def port(self) -> int:
        """The port of the first listener."""
        return self.addresses[0][1]

    def statistics(self) -> ServerStats:
        """Counters since start, read by the metrics collector at scrape time."""
        c = self._counters
        return ServerStats(
            connections_open=c.connections_open, connections_total=c.connections_total,
            requests_total=c.requests_total, handler_errors=c.handler_errors,
            protocol_errors=c.protocol_errors, header_timeouts=c.header_timeouts,
            body_timeouts=c.body_timeouts, write_timeouts=c.write_timeouts,
            bodies_too_large=c.bodies_too_large, idle_closes=c.idle_closes,
            closing=self._closing,
        )

    def shutdown(self) -> None:
        """Stop accepting, close idle connections, let requests in progress finish.

        In-progress requests get ``Connection: close`` and ``limits.shutdown_grace`` seconds;
        then whatever is left is cancelled and ``serve`` returns.
        """
        self._closing = True
        if self._accept_scope is not None:
            self._accept_scope.cancel()
        for scope in list(self._idle_scopes):
            scope.cancel()

    async def serve(
        self,
        listeners: Sequence[trio.SocketListener],
        *,
        task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Accept and serve connections; ``task_status.started(self)`` once listening."""
        self.listeners = list(listeners)
        try:
            async with trio.open_nursery() as connections:
                async with trio.open_nursery() as accepting:
                    self._accept_scope = accepting.cancel_scope
                    if self._closing:
                        accepting.cancel_scope.cancel()
                    for listener in self.listeners:
                        accepting.start_soon(self._accept_loop, listener, connections)
                    task_status.started(self)
                # shutdown() was called: stop listening now, give connections a deadline
                for listener in self.listeners:
                    await trio.aclose_forcefully(listener)
                connections.cancel_scope.deadline = (
                    trio.current_time() + self._limits.shutdown_grace)
        finally:
            for listener in self.listeners:
                await trio.aclose_forcefully(listener)

    async def _accept_loop(self, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        while True:
            # Taking the slot before accept() means a full server stops accepting and new
            # clients wait in the kernel backlog instead of being accepted and starved.
            await self._slots.acquire()
            try:
                stream = await listener.accept()
            except OSError as exc:
                self._slots.release()
                if exc.errno not in _ACCEPT_CAPACITY_ERRNOS:
                    raise
                log.error("accept failed (%s); retrying in 100 ms", errno.errorcode[exc.errno])
                await trio.sleep(0.1)
                continue
            except BaseException:
                self._slots.release()
                raise
            nursery.start_soon(self._connection, stream)

    async def _connection(self, stream: trio.SocketStream) -> None:
        counters = self._counters
        counters.connections_open += 1
        counters.connections_total += 1
        try:
            try:
                peer = stream.socket.getpeername()
                client: tuple[str, int] | None = (str(peer[0]), int(peer[1]))
            except (OSError, IndexError, TypeError):
                client = None
            conn = h11.Connection(
                h11.SERVER, max_incomplete_event_size=self._limits.max_header_bytes)
            first = True
            while await self._exchange(stream, conn, client, first=first):
                first = False
                conn.start_next_cycle()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the peer went away (reset, or closed while we wrote): nothing to answer
        except Exception:
            log.exception("connection from %s failed", stream)
        finally:
            counters.connections_open -= 1
            self._slots.release()
            await trio.aclose_forcefully(stream)

    async def _exchange(
        self, stream: trio.SocketStream, conn: h11.Connection,
        client: tuple[str, int] | None, *, first: bool,
    ) -> bool:
        """One request/response cycle; True when the connection may carry another."""
        try:
            event: h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED] | None
            event = conn.next_event()
            if event is h11.NEED_DATA:
                event = await self._read_head(stream, conn, first=first)
            if not isinstance(event, h11.Request):
                return False  # closed by the peer, idle timeout, shutdown, or 408 sent
            # h11 bounds only an *incomplete* head (max_incomplete_event_size); a head that
            # arrived whole in one read is measured here (its size, less line syntax).
            size = len(event.target) + sum(len(k) + len(v) for k, v in event.headers)
            if size > self._limits.max_header_bytes:
                raise h11.RemoteProtocolError("request head too large", 431)
            body = await self._read_body(stream, conn, event)
            if body is None:
                return False
        except h11.RemoteProtocolError as exc:
            self._counters.protocol_errors += 1
            status = exc.error_status_hint
            code = "headers_too_large" if status == 431 else "bad_request"
            await self._send_error(stream, conn, status, code, str(exc) or "bad request")
            return False

        request = Request(
            event.method.decode("ascii"),
            event.target.decode("latin-1"),
            event.headers,
            body,
            client=client,
            http_version=event.http_version.decode("ascii"),
        )
        self._counters.requests_total += 1
        try:
            response = await self._handler(request)
        except Exception:
            self._counters.handler_errors += 1
            log.exception("handler failed on %s %s", request.method, request.target)
            response = self._error_response(500, "internal_error", "internal server error")
        if not await self._send_response(stream, conn, request.method == "HEAD", response):
            return False
        return (not self._closing and conn.our_state is h11.DONE
                and conn.their_state is h11.DONE)

    async def _read_head(
        self, stream: trio.SocketStream, conn: h11.Connection, *, first: bool,
    ) -> h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED] | None:
        limits = self._limits
        if first or not conn.trailing_data[0]:
            # Nothing of the next request yet: an idle keep-alive connection, or a fresh one
            # (which gets only the head timeout: connecting and saying nothing is slowloris).
            if self._closing:
                return None
            timeout = limits.header_timeout if first else limits.idle_timeout
            with trio.CancelScope(deadline=trio.current_time() + timeout) as scope:
                self._idle_scopes.add(scope)
                try:
                    data = await stream.receive_some(limits.receive_size)
                finally:
                    self._idle_scopes.discard(scope)
            if scope.cancelled_caught:
                self._counters.idle_closes += 1
                return None
            conn.receive_data(data)
        deadline = trio.current_time() + limits.header_timeout
        while True:
            event = conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            with trio.move_on_at(deadline):
                conn.receive_data(await stream.receive_some(limits.receive_size))
                continue
            self._counters.header_timeouts += 1
            await self._send_error(stream, conn, 408, "request_timeout",
                                   "request head not received in time")
            return None

    async def _read_body(
        self, stream: trio.SocketStream, conn: h11.Connection, request: h11.Request,
    ) -> bytes | None:
        limits = self._limits
        for name, value in request.headers:
            if name == b"content-length" and int(value) > limits.max_body_bytes:
                # Refuse before reading it (and without "100 Continue", RFC 9110 10.1.1).
                await self._too_large(stream, conn)
                return None
        if conn.they_are_waiting_for_100_continue:
            continue_ = h11.InformationalResponse(status_code=100, headers=[], reason=b"Continue")
            await self._write(stream, conn.send(continue_))
        parts: list[bytes | bytearray] = []
        size = 0
        deadline: float | None = None
        while True:
            event = conn.next_event()
            if type(event) is h11.Data:
                size += len(event.data)
                if size > limits.max_body_bytes:  # chunked bodies declare no length
                    await self._too_large(stream, conn)
                    return None
                parts.append(event.data)
            elif type(event) is h11.EndOfMessage:
                return b"".join(parts)
            elif event is h11.NEED_DATA:
                if deadline is None:
                    deadline = trio.current_time() + limits.body_timeout
                with trio.move_on_at(deadline):
                    conn.receive_data(await stream.receive_some(limits.receive_size))
                    continue
                self._counters.body_timeouts += 1
                await self._send_error(stream, conn, 408, "request_timeout",
                                       "request body not received in time")
                return None
            else:  # pragma: no cover - h11 raises RemoteProtocolError on EOF mid-body
                return None

    async def _too_large(self, stream: trio.SocketStream, conn: h11.Connection) -> None:
        self._counters.bodies_too_large += 1
        await self._send_error(
            stream, conn, 413, "body_too_large",
            f"request body larger than {self._limits.max_body_bytes} bytes")

    def _head(self, conn: h11.Connection, response: Response, length: int | None) -> bytes:
        headers = [(b"date", _http_date()), *response.headers]
        if length is not None:
            headers.append((b"content-length", b"%d" % length))
        if self._closing:
            headers.append((b"connection", b"close"))
        status = response.status
        return conn.send(h11.Response(
            status_code=status, headers=headers, reason=_REASONS.get(status, b"")))

    async def _send_response(
        self, stream: trio.SocketStream, conn: h11.Connection, head_only: bool,
        response: Response,
    ) -> bool:
        body = response.body
        if isinstance(body, bytes):
            try:
                data = self._head(conn, response, len(body))
            except h11.LocalProtocolError:
                log.exception("handler returned an unsendable response %r", response)
                response = self._error_response(500, "internal_error", "internal server error")
                body = response.body
                assert isinstance(body, bytes)
                data = self._head(conn, response, len(body))
            # The fast path: head, body and end in one send_all (one syscall, one segment).
            if body and not head_only:
                data += conn.send(h11.Data(data=body))
            return await self._write(stream, data + conn.send(h11.EndOfMessage()))
        return await self._stream_response(stream, conn, head_only, response)

    async def _stream_response(
        self, stream: trio.SocketStream, conn: h11.Connection, head_only: bool,
        response: Response,
    ) -> bool:
        # No content-length: h11 picks chunked for HTTP/1.1 and close-delimited for 1.0.
        chunks = response.body
        assert not isinstance(chunks, bytes)
        try:
            if not await self._write(stream, self._head(conn, response, None)):
                return False
            while not head_only:
                try:
                    chunk = await anext(chunks)
                except StopAsyncIteration:
                    break
                except Exception:
                    # Too late for a 500: the status line is gone. Ending the connection
                    # without the last chunk tells the client the body is incomplete.
                    self._counters.handler_errors += 1
                    log.exception("streamed body failed")
                    return False
                if chunk and not await self._write(stream, conn.send(h11.Data(data=chunk))):
                    return False
            return await self._write(stream, conn.send(h11.EndOfMessage()))
        finally:
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                with trio.CancelScope(shield=True):
                    await aclose()

    async def _write(self, stream: trio.SocketStream, data: bytes) -> bool:
        with trio.move_on_after(self._limits.write_timeout):
            await stream.send_all(data)
            return True
        self._counters.write_timeouts += 1
        return False

    async def _send_error(
        self, stream: trio.SocketStream, conn: h11.Connection, status: int, code: str,
        message: str,
    ) -> None:
        """Answer with an error and close; only if a response can still be sent."""
        if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        response = self._error_response(status, code, message)
        body = response.body
        assert isinstance(body, bytes)
        headers = [(b"date", _http_date()), *response.headers,
                   (b"content-length", b"%d" % len(body)), (b"connection", b"close")]
        try:
            data = conn.send(h11.Response(
                status_code=status, headers=headers, reason=_REASONS.get(status, b"")))
            data += conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage())
        except h11.LocalProtocolError:  # pragma: no cover - states checked above
            return
        if await self._write(stream, data) and conn.their_state is not h11.DONE:
            await self._linger(stream)

    async def _linger(self, stream: trio.SocketStream) -> None:
        # Closing a socket with unread input makes the kernel send RST, and a RST can
        # destroy our error response in the peer's receive buffer before it reads it
        # (the "lingering close" of Apache and nginx). So: half-close, drain, then close.
        with trio.move_on_after(self._limits.linger):
            await stream.send_eof()
            while await stream.receive_some(self._limits.receive_size):
                pass


async def serve(
    handler: Handler,
    listeners: Sequence[trio.SocketListener] | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    limits: Limits | None = None,
    error_response: ErrorResponder | None = None,
    task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``handler`` on ``listeners`` (or on ``host:port``) until cancelled.

    Use as ``server = await nursery.start(serve, handler)``; ``server.port`` is the bound
    port and ``server.shutdown()`` starts a graceful stop.
    """
    if listeners is None:
        listeners = await trio.open_tcp_listeners(port, host=host)
    server = Server(handler, limits=limits, error_response=error_response)
    await server.serve(listeners, task_status=task_status)
