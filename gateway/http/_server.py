"""An HTTP/1.1 server: h11 (sans-IO) driven directly by trio, one task per connection.

Why not hypercorn: its ASGI layers cost ~400 us a request on this machine, h11 over trio
80-110 us (DESIGN.md, performance table), and the API is the gateway's front door.

Shape (trio ``serve_listeners`` idiom): ``Server.serve`` runs accept loops and one task per
connection in its own nurseries and calls ``task_status.started(server)`` once listening.
Each connection is a loop of request/response cycles. Pipelined bytes stay buffered (in
``_Conn.buf`` or in h11), so pipelining is handled by answering in order.

Three things keep the per-request cost down (bench/http.py measures it):
- A request that is whole in the bytes received and plainly well-formed is parsed by
  ``_fastparse.parse_head`` (about half the server's cost per request when h11 did it);
  anything else goes to h11 exactly as before, so h11 judges every error and every
  unusual request. A differential test holds the fast parser to h11's results.
- Responses with a ``bytes`` body (nearly all: small JSON) are written by hand, head and
  body in one ``send``; the next cycle runs on a fresh ``h11.Connection`` (or the same,
  untouched one after a fast-parsed request). Streamed bodies and 1xx/204/304 go
  through h11.
- One cancel scope per connection, without a deadline: the connection notes when its
  phase (idle, head, body, write) expires, a plain float, and one sweeper task per
  server cancels the scopes whose phase has expired (``Server._sweep``). Setting a trio
  deadline costs ~1.3 us (a context manager and the run loop's deadline heap, both ways)
  and a request changed it three times. Every read still has a deadline and every write
  a timeout, so a slow or silent client holds a task and a socket for a bounded time
  only; a timeout fires up to ``_sweep_slack`` late, never early.
- Reads and writes try the socket directly first (``os.read``/``os.write`` on its
  non-blocking descriptor) and wait through trio only when it is not ready. trio's own
  socket calls, when they succeed at once, still pass through the scheduler (a
  schedule point) - twice a request. A cycle keeps one, after its response is written:
  it keeps one busy connection from starving the others (a handler need not wait), and
  by the time the task reads again the client has usually sent its next request (read
  at once, no wait for readability). ``_DIRECT_IO`` turns it off (the tests compare).
"""
from __future__ import annotations

import errno
import logging
import math
import os
import re
import time
from collections.abc import Callable, Sequence
from email.utils import formatdate
from http import HTTPStatus

import h11
import msgspec
import trio

from gateway.http._fastparse import HeadParser
from gateway.http._message import Handler, Limits, Request, Response

__all__ = ["ErrorResponder", "Server", "ServerStats", "json_error", "serve"]

log = logging.getLogger("gateway.http")

_REASONS = {s.value: s.phrase.encode("ascii") for s in HTTPStatus}
_STATUS_LINES = {s.value: b"HTTP/1.1 %d %s\r\n" % (s.value, _REASONS[s.value])
                 for s in HTTPStatus}
# accept() failures that mean "out of descriptors/memory right now": back off, don't die
# (the same list as trio.serve_listeners).
_ACCEPT_CAPACITY_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
_JSON = (b"content-type", b"application/json")
#: The fast path's parser (its memory of lines is shared by the servers of a process).
parse_head = HeadParser()
# A header name must be an RFC 9110 token.
_BAD_NAME = re.compile(rb"[^!#$%&'*+\-.^_`|~0-9A-Za-z]")

# What a connection is doing decides what its timer firing means.
_IDLE = "idle"  # between requests: the idle (or, on a new connection, the head) timeout
_HEAD = "head"  # reading a request head
_BODY = "body"  # reading a request body
_HANDLER = "handler"  # the handler, or a streamed body's producer: no timeout
_WRITE = "write"  # writing a response
_ERROR = "error"  # writing an error and lingering: with their own timeouts

#: Read and write the socket directly when it is ready (see the module docstring).
_DIRECT_IO = True


class _Conn:
    """One connection's state."""

    __slots__ = ("buf", "client", "conn", "expires", "fd", "first", "fresh", "phase", "pos",
                 "sock", "stream", "timer")

    def __init__(self, stream: trio.SocketStream, conn: h11.Connection,
                 client: tuple[str, int] | None) -> None:
        self.stream = stream
        self.sock = stream.socket
        self.fd = self.sock.fileno()
        self.conn = conn
        self.client = client
        self.first = True
        self.phase = _IDLE
        #: When the phase's timeout is up (trio clock), math.inf for none: the sweeper
        #: cancels ``timer`` once it has passed.
        self.expires = math.inf
        self.timer = trio.CancelScope()
        #: ``conn`` is IDLE and has been fed nothing: it would only answer NEED_DATA.
        self.fresh = True
        # Bytes received behind the last request that ``conn`` has not been fed (the next
        # request's, pipelined): ``buf[pos:]``. The fast path gets the first look at them.
        self.buf = b""
        self.pos = 0


#: A request taken by the fast path: (method, target, headers, body, the request's bytes).
_Fast = tuple[bytes, bytes, list[tuple[bytes, bytes]], bytes, bytes]


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
        self._conns: set[_Conn] = set()
        self._blocks: dict[Sequence[tuple[bytes, bytes]], bytes] = {}
        limits = self._limits
        # How late a timeout may fire: a tenth of the shortest, at most half a second
        # (10 s of header timeout -> 0.5 s), at least 10 ms (no busy sweeping).
        self._sweep_slack = max(0.01, min(0.5, min(
            limits.header_timeout, limits.body_timeout, limits.idle_timeout,
            limits.write_timeout) / 10))
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
        for cx in self._conns:
            if cx.phase is _IDLE:
                cx.timer.cancel()

    async def serve(
        self,
        listeners: Sequence[trio.SocketListener],
        *,
        task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Accept and serve connections; ``task_status.started(self)`` once listening."""
        self.listeners = list(listeners)
        try:
            async with trio.open_nursery() as sweeping:
                sweeping.start_soon(self._sweep)
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
                sweeping.cancel_scope.cancel()  # every connection has ended
        finally:
            for listener in self.listeners:
                await trio.aclose_forcefully(listener)

    async def _sweep(self) -> None:
        """Cancel the connections whose phase has expired (see the module docstring).

        Wakes at the earliest expiry it knows of, or after ``_sweep_slack`` to notice the
        phases that began since (each of those expires at least a whole timeout later).
        """
        slack = self._sweep_slack
        while True:
            now = trio.current_time()
            wake = now + slack
            for cx in self._conns:
                expires = cx.expires
                if expires <= now:
                    cx.expires = math.inf
                    cx.timer.cancel()
                elif expires < wake:
                    wake = expires
            await trio.sleep_until(wake)

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

    def _new_conn(self) -> h11.Connection:
        return h11.Connection(h11.SERVER,
                              max_incomplete_event_size=self._limits.max_header_bytes)

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
            cx = _Conn(stream, self._new_conn(), client)
            self._conns.add(cx)
            try:
                with cx.timer:  # the sweeper cancels it when cx.phase expires
                    while (conn := await self._exchange(cx)) is not None:
                        cx.conn = conn
                        cx.first = False
            finally:
                self._conns.discard(cx)
            if cx.timer.cancelled_caught:
                await self._timed_out(cx)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass  # the peer went away (reset, or closed while we wrote): nothing to answer
        except Exception:
            log.exception("connection from %s failed", stream)
        finally:
            counters.connections_open -= 1
            self._slots.release()
            await trio.aclose_forcefully(stream)

    async def _timed_out(self, cx: _Conn) -> None:
        counters = self._counters
        phase = cx.phase
        if phase is _IDLE:
            counters.idle_closes += 1
        elif phase is _WRITE:
            counters.write_timeouts += 1
        elif phase is _HEAD:
            counters.header_timeouts += 1
            await self._send_error(cx, 408, "request_timeout",
                                   "request head not received in time")
        elif phase is _BODY:
            counters.body_timeouts += 1
            await self._send_error(cx, 408, "request_timeout",
                                   "request body not received in time")

    async def _exchange(self, cx: _Conn) -> h11.Connection | None:
        """One request/response cycle; the connection for the next one, or None to close."""
        conn = cx.conn
        try:
            event: h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED] | _Fast | None = None
            if buf := cx.buf:
                pos = cx.pos
                cx.buf = b""
                event = self._parse_fast(cx, buf, pos)
                if event is None:
                    cx.fresh = False
                    conn.receive_data(buf[pos:] if pos else buf)
            if event is None:
                if cx.fresh:  # nothing for h11 to look at (the usual case)
                    event = await self._read_head(cx)
                else:
                    event = conn.next_event()
                    if event is h11.NEED_DATA:
                        event = await self._read_head(cx)
            if type(event) is tuple:
                method, target, headers, body, raw = event
                version = b"1.1"
            else:
                if not isinstance(event, h11.Request):
                    return None  # closed by the peer, or shutdown while idle
                raw = b""
                method, target, version = event.method, event.target, event.http_version
                # h11 bounds only an *incomplete* head (max_incomplete_event_size); a head
                # that arrived whole in one read is measured here (its size, less line
                # syntax). h11's Headers iterates slowly (a Sequence via __getitem__): copy
                # it once.
                headers = list(event.headers)
                size = len(target) + sum(len(k) + len(v) for k, v in headers)
                if size > self._limits.max_header_bytes:
                    raise h11.RemoteProtocolError("request head too large", 431)
                read = await self._read_body(cx, headers)
                if read is None:
                    return None
                body = read
        except h11.RemoteProtocolError as exc:
            self._counters.protocol_errors += 1
            status = exc.error_status_hint
            code = "headers_too_large" if status == 431 else "bad_request"
            await self._send_error(cx, status, code, str(exc) or "bad request")
            return None

        request = Request(
            method.decode("ascii"),
            target.decode("latin-1"),
            headers,
            body,
            client=cx.client,
            http_version=version.decode("ascii"),
        )
        self._counters.requests_total += 1
        cx.phase = _HANDLER
        cx.expires = math.inf
        try:
            response = await self._handler(request)
        except Exception:
            self._counters.handler_errors += 1
            log.exception("handler failed on %s %s", request.method, request.target)
            response = self._error_response(500, "internal_error", "internal server error")
        head_only = request.method == "HEAD"
        body_out = response.body
        if type(body_out) is bytes and response.status >= 200 and response.status not in (
                204, 304):
            keep_alive = not self._closing and version == b"1.1"
            return await self._send_fast(cx, keep_alive=keep_alive, headers=headers,
                                         head_only=head_only, response=response, body=body_out)
        if raw:
            # The fast path parsed this request, but h11 writes this response, so h11 must
            # see the request first (it accepts everything the fast path does).
            cx.fresh = False
            conn.receive_data(raw)
            for _ in range(3):  # Request, Data (if any body), EndOfMessage
                if type(conn.next_event()) is h11.EndOfMessage:
                    break
        if not await self._send_h11(cx, head_only, response):
            return None
        if self._closing or conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
            return None
        conn.start_next_cycle()
        return conn

    async def _read_head(
        self, cx: _Conn,
    ) -> h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED] | _Fast | None:
        limits = self._limits
        conn = cx.conn
        if cx.fresh or not conn.trailing_data[0]:
            # Nothing of the next request yet: an idle keep-alive connection, or a fresh one
            # (which gets only the head timeout: connecting and saying nothing is slowloris).
            if self._closing:
                return None
            if not _DIRECT_IO:
                cx.phase = _IDLE  # shutdown() cancels idle connections
                cx.expires = trio.current_time() + (
                    limits.header_timeout if cx.first else limits.idle_timeout)
                data = await cx.sock.recv(limits.receive_size)
                cx.phase = _HEAD  # until the head is parsed: shutdown leaves it be
            else:
                data = await self._read_direct(cx)
            if data and (fast := self._parse_fast(cx, data, 0)) is not None:
                return fast  # the usual case: a whole plain request came in one read
            cx.fresh = False
            conn.receive_data(data)
            event = conn.next_event()
            if event is not h11.NEED_DATA:
                return event  # the whole head came in one read
        cx.phase = _HEAD
        cx.expires = trio.current_time() + limits.header_timeout
        while True:
            conn.receive_data(await cx.sock.recv(limits.receive_size))
            event = conn.next_event()
            if event is not h11.NEED_DATA:
                return event

    async def _read_direct(self, cx: _Conn) -> bytes:
        """The next bytes of an idle connection: read directly, or once readable.

        Under load the request is often there already (the client sent it while the
        handler waited for its commit). The cycle's checkpoint is in ``_send_fast``.
        """
        limits = self._limits
        fd = cx.fd
        try:
            return os.read(fd, limits.receive_size)
        except BlockingIOError:
            pass
        cx.phase = _IDLE  # shutdown() cancels idle connections
        cx.expires = trio.current_time() + (
            limits.header_timeout if cx.first else limits.idle_timeout)
        while True:
            await trio.lowlevel.wait_readable(fd)
            try:
                data = os.read(fd, limits.receive_size)
            except BlockingIOError:  # pragma: no cover - a spurious wake-up
                continue
            cx.phase = _HEAD  # until the head is parsed: shutdown leaves it be
            return data

    def _parse_fast(self, cx: _Conn, data: bytes, pos: int) -> _Fast | None:
        """A plain request whose head and body are all in ``data[pos:]``, or None for h11.

        Only with nothing buffered in ``cx.conn``: what follows the request is left in
        ``cx.buf``. Anything the fast path declines (unusual syntax, errors, a body over the
        limit or not all received yet) is h11's, as before: the caller feeds it to h11.
        """
        limits = self._limits
        head = parse_head(data, limits.max_header_bytes, pos)
        if head is None:
            return None
        method, target, headers, start, length = head
        end = start + length
        if length > limits.max_body_bytes or end > len(data):
            return None
        if end < len(data):
            cx.buf = data
            cx.pos = end
        return method, target, headers, data[start:end], data[pos:end]

    async def _read_body(self, cx: _Conn, headers: list[tuple[bytes, bytes]]) -> bytes | None:
        limits = self._limits
        conn = cx.conn
        for name, value in headers:
            if name == b"content-length" and int(value) > limits.max_body_bytes:
                # Refuse before reading it (and without "100 Continue", RFC 9110 10.1.1).
                await self._too_large(cx)
                return None
        if conn.they_are_waiting_for_100_continue:
            continue_ = h11.InformationalResponse(status_code=100, headers=[], reason=b"Continue")
            await self._write(cx, conn.send(continue_))
        parts: list[bytes | bytearray] = []
        size = 0
        reading = False
        while True:
            event = conn.next_event()
            if type(event) is h11.Data:
                size += len(event.data)
                if size > limits.max_body_bytes:  # chunked bodies declare no length
                    await self._too_large(cx)
                    return None
                parts.append(event.data)
            elif type(event) is h11.EndOfMessage:
                return b"".join(parts)
            elif event is h11.NEED_DATA:
                if not reading:
                    reading = True
                    cx.phase = _BODY
                    cx.expires = trio.current_time() + limits.body_timeout
                conn.receive_data(await cx.sock.recv(limits.receive_size))
            else:  # pragma: no cover - h11 raises RemoteProtocolError on EOF mid-body
                return None

    async def _too_large(self, cx: _Conn) -> None:
        self._counters.bodies_too_large += 1
        await self._send_error(
            cx, 413, "body_too_large",
            f"request body larger than {self._limits.max_body_bytes} bytes")

    async def _send_fast(
        self, cx: _Conn, *, keep_alive: bool, headers: list[tuple[bytes, bytes]],
        head_only: bool, response: Response, body: bytes,
    ) -> h11.Connection | None:
        """A bytes body: head and body written by hand in one send_all.

        h11's writer validates and re-derives everything per response, a large share of a
        small request's cost. A Content-Length response is simple to write, so this path
        writes it directly and runs the next cycle on a fresh h11.Connection (whatever the
        client pipelined behind this request waits in ``cx.buf``), or on the untouched
        one if the fast path parsed the request. Streamed bodies still go through h11.
        """
        for name, value in headers:
            if name == b"connection" and b"close" in value.lower():
                keep_alive = False
        status = response.status
        extra = response.headers
        # The handler's headers as lines; a handler's constant tuple is checked only once.
        block = None
        if type(extra) is tuple:
            try:
                block = self._blocks.get(extra)
            except TypeError:  # a tuple of lists: fine to send, cannot be a key
                block = None
        if block is None:
            block = self._header_block(extra)
            if block is None:
                error = self._error_response(500, "internal_error", "internal server error")
                if error.headers == extra:  # pragma: no cover - a broken responder
                    return None
                assert isinstance(error.body, bytes)
                return await self._send_fast(
                    cx, keep_alive=keep_alive, headers=headers, head_only=head_only,
                    response=error, body=error.body)
        status_line = _STATUS_LINES.get(status)
        if status_line is None:
            status_line = b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b""))
        data = b"%sdate: %s\r\n%scontent-length: %d\r\n%s%s" % (
            status_line, _http_date(), block, len(body),
            b"\r\n" if keep_alive else b"connection: close\r\n\r\n",
            b"" if head_only else body)
        if _DIRECT_IO:
            try:
                sent = os.write(cx.fd, data)
            except BlockingIOError:
                sent = 0
            if sent < len(data):
                await self._write(cx, data, sent)
            else:
                # The cycle's schedule point: the other connections get their turn, and
                # the client time to send its next request (read directly then).
                await trio.lowlevel.cancel_shielded_checkpoint()
        else:
            await self._write(cx, data)
        if not keep_alive:
            return None
        if cx.fresh or cx.conn.their_state is h11.IDLE:
            return cx.conn  # the fast path parsed the request: h11 has seen nothing
        conn = self._new_conn()
        pending, closed = cx.conn.trailing_data
        cx.fresh = not closed
        if closed:
            if pending:
                conn.receive_data(pending)
            conn.receive_data(b"")
        else:
            cx.buf = pending  # the fast path gets the first look at the next request
            cx.pos = 0
        return conn

    def _header_block(self, headers: Sequence[tuple[bytes, bytes]]) -> bytes | None:
        """``headers`` as header lines, or None (logged) if one cannot be sent as is.

        Remembers the block of a tuple of byte pairs (a handler's constant, such as the
        API's content-type), up to 64 of them.
        """
        lines = []
        for name, value in headers:
            if _BAD_NAME.search(name) or b"\r" in value or b"\n" in value or not name:
                log.error("handler returned an unsendable header %r: %r", name, value)
                return None
            lines.append(b"%s: %s\r\n" % (name, value))
        block = b"".join(lines)
        if (type(headers) is tuple and len(self._blocks) < 64
                and all(type(h) is tuple and type(h[0]) is bytes and type(h[1]) is bytes
                        for h in headers)):
            self._blocks[headers] = block
        return block

    def _head(self, conn: h11.Connection, response: Response, length: int | None) -> bytes:
        headers = [(b"date", _http_date()), *response.headers]
        if length is not None:
            headers.append((b"content-length", b"%d" % length))
        if self._closing:
            headers.append((b"connection", b"close"))
        status = response.status
        return conn.send(h11.Response(
            status_code=status, headers=headers, reason=_REASONS.get(status, b"")))

    async def _send_h11(self, cx: _Conn, head_only: bool, response: Response) -> bool:
        """Responses h11 writes: streamed bodies (chunked), and 1xx/204/304."""
        conn = cx.conn
        chunks = response.body
        try:
            try:
                head = self._head(conn, response, None if not isinstance(chunks, bytes)
                                  or response.status in (204, 304) else len(chunks))
            except h11.LocalProtocolError:
                log.exception("handler returned an unsendable response %r", response)
                return False
            await self._write(cx, head)
            if isinstance(chunks, bytes):
                if chunks and not head_only and response.status not in (204, 304):
                    await self._write(cx, conn.send(h11.Data(data=chunks)))
            else:
                # No content-length: h11 uses chunked for HTTP/1.1, close-delimited for 1.0.
                while not head_only:
                    cx.phase = _HANDLER  # the producer may take as long as it needs
                    cx.expires = math.inf
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
                    if chunk:
                        await self._write(cx, conn.send(h11.Data(data=chunk)))
            await self._write(cx, conn.send(h11.EndOfMessage()))
            return True
        finally:
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                with trio.CancelScope(shield=True):
                    await aclose()

    async def _write(self, cx: _Conn, data: bytes, sent: int = 0) -> None:
        """Write ``data[sent:]`` (all of it: a checkpoint even when the socket takes it)."""
        cx.phase = _WRITE
        cx.expires = trio.current_time() + self._limits.write_timeout
        # The trio socket directly: SocketStream.send_all adds a conflict detector and an
        # error-translating context manager per call (OSError is handled per connection).
        sock = cx.sock
        if not sent:
            sent = await sock.send(data)
        if sent < len(data):
            with memoryview(data) as view:
                while sent < len(data):
                    sent += await sock.send(view[sent:])

    async def _send_error(self, cx: _Conn, status: int, code: str, message: str) -> None:
        """Answer with an error and close; only if a response can still be sent.

        Has its own timeouts: it also runs after the connection's timer fired.
        """
        conn = cx.conn
        if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        cx.phase = _ERROR
        cx.expires = math.inf
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
        with trio.move_on_after(self._limits.write_timeout) as scope:
            await cx.stream.send_all(data)
        if scope.cancelled_caught:
            self._counters.write_timeouts += 1
        elif conn.their_state is not h11.DONE:
            await self._linger(cx.stream)

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
