"""A small HTTP/1.1 client: h11 on trio, one keep-alive connection to one origin.

Written for the webhooks (``gateway.webhooks``): POST a JSON body, read a short answer.
It is deliberately narrow:

- one origin (scheme, host, port) per client, one request at a time (a lock), one
  connection kept alive between requests and reopened when the server closed it;
- ``http`` or ``https``; https verifies the certificate and host name
  (``ssl.create_default_context``, optionally with a CA file), through ``trio.SSLStream``;
- every request is bounded by one deadline (connect + TLS + write + read), and a response
  body is read up to ``max_response_bytes`` (the rest closes the connection: we never need
  a receiver's long answer);
- no redirects, no cookies, no proxies, no compression.

Errors say what failed (httpcore's idea: map h11's errors at the boundary into one flat
hierarchy grouped by meaning): :class:`HttpConnectError` (DNS, refused, TLS handshake),
:class:`HttpTimeout`, :class:`HttpProtocolError` (the peer broke HTTP or closed early).
All are :class:`HttpClientError`.

A keep-alive connection the server closed while idle is only noticed when the next
request is written or its answer read. That request is retried once on a fresh
connection, but only when nothing of an answer had arrived (RFC 9110 §9.2.2: a client
may retry automatically when the connection closed before any response; webhook POSTs
are idempotent for us: receivers de-duplicate by event id).
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Sequence
from urllib.parse import urlsplit

import h11
import msgspec
import trio

__all__ = [
    "ClientResponse",
    "HttpClient",
    "HttpClientError",
    "HttpConnectError",
    "HttpProtocolError",
    "HttpTimeout",
]


class HttpClientError(Exception):
    """A request did not produce a response."""


class HttpConnectError(HttpClientError):
    """Could not open the connection (DNS, refused, unreachable, TLS handshake)."""


class HttpTimeout(HttpClientError):
    """The request (connect, write or read) took longer than its timeout."""


class HttpProtocolError(HttpClientError):
    """The peer broke HTTP/1.1 or closed the connection before the whole response."""


class ClientResponse(msgspec.Struct, frozen=True):
    """A response: status, headers (lower-case names, h11's bytes) and the body read."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def header(self, name: bytes) -> bytes | None:
        """The first value of header ``name`` (lower-case bytes), or None."""
        for key, value in self.headers:
            if key == name:
                return value
        return None


def _b(value: str | bytes) -> bytes:
    return value.encode("latin-1") if isinstance(value, str) else value


class _Stale(Exception):
    """The kept-alive connection was closed by the server before any answer (retry)."""


class HttpClient:
    """POSTs to one origin over one keep-alive connection (see the module docstring).

    ``url`` is the base URL (``https://hooks.example.com/smsgw``); :meth:`request` takes
    the target path or uses the URL's own. Use ``async with`` or call :meth:`aclose`.
    """

    def __init__(self, url: str, *, timeout: float = 10.0,
                 ssl_context: ssl.SSLContext | None = None, ca_file: str | None = None,
                 max_response_bytes: int = 64 * 1024, user_agent: str = "smsgw") -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        default_port = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        self._host_header = (host if self.port == default_port
                             else f"{host}:{self.port}").encode("ascii")
        self.timeout = timeout
        if self.scheme == "https" and ssl_context is None:
            ssl_context = ssl.create_default_context(cafile=ca_file)
        self._ssl = ssl_context
        self._max_body = max_response_bytes
        self._user_agent = user_agent.encode("ascii")
        self._stream: trio.abc.Stream | None = None
        self._conn: h11.Connection | None = None
        self._lock = trio.Lock()
        #: Connections opened so far (tests check keep-alive with it).
        self.connections_opened = 0

    async def __aenter__(self) -> HttpClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the kept connection, if any."""
        stream, self._stream, self._conn = self._stream, None, None
        if stream is not None:
            with trio.CancelScope(shield=True), trio.move_on_after(1.0), contextlib.suppress(
                    trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                await stream.aclose()

    async def request(self, method: str, body: bytes = b"", *,
                      headers: Sequence[tuple[str | bytes, str | bytes]] = (),
                      target: str | None = None) -> ClientResponse:
        """Send one request and read its response, within ``timeout`` seconds in all."""
        async with self._lock:
            try:
                with trio.fail_after(self.timeout):
                    try:
                        return await self._exchange(method, target or self.target, headers,
                                                    body)
                    except _Stale:
                        await self.aclose()
                        return await self._exchange(method, target or self.target, headers,
                                                    body)
            except trio.TooSlowError:
                await self.aclose()
                raise HttpTimeout(f"no complete response within {self.timeout:g} s") from None
            except _Stale as e:
                await self.aclose()
                raise HttpProtocolError(str(e) or "connection closed before a response"
                                        ) from None
            except BaseException:
                await self.aclose()
                raise

    async def post(self, body: bytes, headers: Sequence[tuple[str | bytes, str | bytes]] = (),
                   ) -> ClientResponse:
        """``request("POST", body, headers=headers)`` to the URL's path."""
        return await self.request("POST", body, headers=headers)

    # -- internals ---------------------------------------------------------------------

    async def _connect(self) -> None:
        try:
            tcp = await trio.open_tcp_stream(self.host, self.port)
        except OSError as e:
            raise HttpConnectError(f"cannot connect to {self.host}:{self.port}: "
                                   f"{e.strerror or e}") from None
        stream: trio.abc.Stream = tcp
        if self.scheme == "https":
            assert self._ssl is not None
            tls = trio.SSLStream(tcp, self._ssl, server_hostname=self.host,
                                 https_compatible=True)
            try:
                await tls.do_handshake()
            except (trio.BrokenResourceError, ssl.SSLError) as e:
                await tcp.aclose()
                cause = e.__cause__ if isinstance(e, trio.BrokenResourceError) else e
                raise HttpConnectError(f"TLS handshake with {self.host}:{self.port} "
                                       f"failed: {cause or e}") from None
            stream = tls
        self._stream = stream
        self._conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=16 * 1024)
        self.connections_opened += 1

    async def _exchange(self, method: str, target: str,
                        headers: Sequence[tuple[str | bytes, str | bytes]],
                        body: bytes) -> ClientResponse:
        reused = self._stream is not None
        if not reused:
            await self._connect()
        stream, conn = self._stream, self._conn
        assert stream is not None and conn is not None
        all_headers: list[tuple[bytes, bytes]] = [
            (b"host", self._host_header), (b"user-agent", self._user_agent),
            (b"content-length", str(len(body)).encode("ascii")),
            *((_b(k), _b(v)) for k, v in headers)]
        try:
            out = [conn.send(h11.Request(method=method, target=target, headers=all_headers))]
            if body:
                out.append(conn.send(h11.Data(data=body)))
            out.append(conn.send(h11.EndOfMessage()))
            data = b"".join(x for x in out if x)
        except h11.LocalProtocolError as e:
            raise HttpProtocolError(f"cannot send the request: {e}") from None
        try:
            await stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as e:
            if reused:
                raise _Stale(f"connection lost while sending: {e}") from None
            raise HttpProtocolError(f"connection lost while sending: {e}") from None
        return await self._read_response(stream, conn, reused)

    async def _read_response(self, stream: trio.abc.Stream, conn: h11.Connection,
                             reused: bool) -> ClientResponse:
        status = 0
        resp_headers: list[tuple[bytes, bytes]] = []
        body = bytearray()
        got_any = False
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as e:
                raise HttpProtocolError(f"invalid response: {e}") from None
            if event is h11.NEED_DATA:
                try:
                    chunk = bytes(await stream.receive_some(64 * 1024))
                except (trio.BrokenResourceError, trio.ClosedResourceError) as e:
                    chunk = b""
                    if reused and not got_any:
                        raise _Stale(f"connection lost: {e}") from None
                if not chunk and reused and not got_any:
                    raise _Stale("the kept-alive connection was closed by the server")
                got_any = got_any or bool(chunk)
                try:
                    conn.receive_data(chunk)
                except h11.RemoteProtocolError as e:
                    raise HttpProtocolError(f"invalid response: {e}") from None
                continue
            if isinstance(event, h11.InformationalResponse):
                continue  # 100 Continue and friends: the real answer follows
            if isinstance(event, h11.Response):
                status = event.status_code
                resp_headers = list(event.headers)
            elif isinstance(event, h11.Data):
                if len(body) < self._max_body:
                    body += event.data[: self._max_body - len(body)]
                else:
                    # Enough of an answer we only log: stop reading, drop the connection.
                    await self.aclose()
                    return ClientResponse(status, resp_headers, bytes(body))
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                raise HttpProtocolError("connection closed before the whole response")
            else:  # PAUSED cannot happen before our side is DONE with a response read
                raise HttpProtocolError(f"unexpected {event!r}")
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()  # keep-alive: the next request reuses the connection
        else:
            await self.aclose()
        return ClientResponse(status, resp_headers, bytes(body))
