"""The values a handler sees and returns: `Request`, `Response`, and the server's `Limits`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from urllib.parse import parse_qsl

import msgspec

__all__ = ["BodyStream", "Handler", "Limits", "Request", "Response", "ndjson_response"]


class Limits(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Bounds that keep one client from holding the server; times are seconds.

    The defaults follow common servers: 16 KiB of request head (h11 itself defaults to
    16 KiB; nginx uses 8 KiB buffers, node 16 KiB), 1 MiB of body (a 1,000-message batch
    of long texts stays well under it), and short read timeouts because our clients are
    upstream systems on a local network, not browsers on mobile links.
    """

    #: Request line plus headers (h11 ``max_incomplete_event_size``); more -> 431.
    max_header_bytes: int = 16 * 1024
    #: Declared or received body bytes; more -> 413 and the connection is closed.
    max_body_bytes: int = 1024 * 1024
    #: From the first byte of a request (or the accept) until its head is complete -> 408.
    header_timeout: float = 10.0
    #: From the end of the head until the whole body has arrived -> 408.
    body_timeout: float = 30.0
    #: A keep-alive connection with no request in progress is closed after this long.
    idle_timeout: float = 60.0
    #: One ``send_all`` (a response, or one streamed chunk) must finish within this.
    write_timeout: float = 30.0
    #: Open connections; past this the server stops accepting (the kernel backlog queues).
    max_connections: int = 1024
    #: On shutdown, in-flight requests get this long before they are cancelled.
    shutdown_grace: float = 10.0
    #: After an error response on a connection whose request was not read to the end,
    #: keep reading (and discarding) this long so the peer sees the response, not a RST.
    linger: float = 2.0
    #: Bytes asked of the socket per receive.
    receive_size: int = 64 * 1024


class Request:
    """One HTTP request, read completely (head and body) before the handler runs.

    ``headers`` are h11's: names lower-cased bytes, values bytes, in wire order.
    """

    __slots__ = ("_query", "body", "client", "headers", "http_version", "method", "path",
                 "raw_query", "target")

    def __init__(
        self,
        method: str,
        target: str,
        headers: Sequence[tuple[bytes, bytes]],
        body: bytes = b"",
        *,
        client: tuple[str, int] | None = None,
        http_version: str = "1.1",
    ) -> None:
        self.method = method
        self.target = target
        path, _, query = target.partition("?")
        #: The path, still percent-encoded (routers decode parameters they extract).
        self.path = path
        self.raw_query = query
        self.headers = headers
        self.body = body
        self.client = client
        self.http_version = http_version
        self._query: dict[str, str] | None = None

    @property
    def query(self) -> dict[str, str]:
        """Query parameters, percent-decoded; a repeated name keeps its last value."""
        if self._query is None:
            self._query = dict(parse_qsl(self.raw_query, keep_blank_values=True))
        return self._query

    def header(self, name: bytes) -> bytes | None:
        """The first value of header ``name`` (lower-case bytes), or None."""
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.target} {len(self.body)}B from {self.client}>"


#: What a handler returns as a streamed body: chunks are written as they are produced,
#: with chunked transfer encoding (HTTP/1.1) or close-delimited (HTTP/1.0).
BodyStream = AsyncIterator[bytes]


class Response:
    """A status, extra headers (lower-case bytes pairs) and a body.

    A ``bytes`` body is sent with Content-Length in one write together with the head;
    an async iterator of ``bytes`` is streamed. The server adds ``date``,
    ``content-length`` and ``connection`` itself.
    """

    __slots__ = ("body", "headers", "status")

    def __init__(
        self,
        status: int = 200,
        body: bytes | BodyStream = b"",
        headers: Sequence[tuple[bytes, bytes]] = (),
    ) -> None:
        self.status = status
        self.body = body
        self.headers = headers

    def __repr__(self) -> str:
        kind = f"{len(self.body)}B" if isinstance(self.body, bytes) else "stream"
        return f"<Response {self.status} {kind}>"


#: The one entry point of an application.
Handler = Callable[[Request], Awaitable[Response]]


_NDJSON_HEADERS = ((b"content-type", b"application/x-ndjson"), (b"cache-control", b"no-store"))


async def ndjson_response(lines: AsyncIterator[object],
                          encode: Callable[[object], bytes]) -> Response:
    """A streamed NDJSON 200: one chunk per line, written as soon as ``lines`` yields it.

    The first line is pulled before answering, so a fault of the source (a store that is
    unavailable) still becomes a proper status code rather than a truncated 200; ``lines``
    is closed however the response ends.
    """
    try:
        first = await anext(lines)
    except StopAsyncIteration:
        return Response(200, b"", _NDJSON_HEADERS)
    except BaseException:
        await _aclose(lines)
        raise
    return Response(200, _ndjson_chunks(first, lines, encode), _NDJSON_HEADERS)


async def _ndjson_chunks(first: object, lines: AsyncIterator[object],
                         encode: Callable[[object], bytes]) -> AsyncIterator[bytes]:
    try:
        yield encode(first) + b"\n"
        async for line in lines:
            yield encode(line) + b"\n"
    finally:
        await _aclose(lines)


async def _aclose(iterator: object) -> None:
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        await aclose()
