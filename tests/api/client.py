"""A tiny HTTP/1.1 test client: h11 over a real trio TCP stream, plus raw-bytes helpers.

Rules for the tests that use it (trio-websocket's): 127.0.0.1, port 0, ``fail_after`` on
every test, ``autojump_clock`` whenever a timeout is what is being tested.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, NamedTuple

import h11
import msgspec
import trio

from gateway.http import Handler, Limits, Server, serve


class Reply(NamedTuple):
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return msgspec.json.decode(self.body)


async def start_server(nursery: trio.Nursery, handler: Handler,
                       limits: Limits | None = None) -> Server:
    server: Server = await nursery.start(functools.partial(serve, handler, limits=limits))
    return server


class Client:
    """One keep-alive connection; one request at a time (use raw bytes to pipeline)."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.conn = h11.Connection(h11.CLIENT)

    @classmethod
    async def connect(cls, port: int) -> Client:
        return cls(await trio.open_tcp_stream("127.0.0.1", port))

    async def aclose(self) -> None:
        await self.stream.aclose()

    async def send_request(
        self, method: str, target: str, *, json: Any = None, body: bytes | None = None,
        headers: Sequence[tuple[str, str]] = (), token: str | None = None,
    ) -> None:
        if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
            self.conn.start_next_cycle()
        hdrs = list(headers)
        if not any(name.lower() == "host" for name, _ in hdrs):
            hdrs.insert(0, ("host", "127.0.0.1"))
        if token is not None:
            hdrs.append(("authorization", f"Bearer {token}"))
        if json is not None:
            body = msgspec.json.encode(json)
            hdrs.append(("content-type", "application/json"))
        if body is not None:
            hdrs.append(("content-length", str(len(body))))
        data = self.conn.send(h11.Request(method=method, target=target, headers=hdrs))
        if body:
            data += self.conn.send(h11.Data(data=body))
        data += self.conn.send(h11.EndOfMessage())
        await self.stream.send_all(data)

    async def _event(self) -> h11.Event:
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                self.conn.receive_data(await self.stream.receive_some(65536))
                continue
            assert not isinstance(event, type)
            return event

    async def read_head(self) -> tuple[int, dict[str, str]]:
        event = await self._event()
        while isinstance(event, h11.InformationalResponse):
            event = await self._event()
        assert isinstance(event, h11.Response), event
        return event.status_code, {k.decode(): v.decode() for k, v in event.headers}

    async def read_piece(self) -> bytes | None:
        """The next body piece as it arrives; None at the end of the body."""
        event = await self._event()
        if isinstance(event, h11.Data):
            return bytes(event.data)
        assert isinstance(event, h11.EndOfMessage), event
        return None

    async def read_reply(self) -> Reply:
        status, headers = await self.read_head()
        body = bytearray()
        while (piece := await self.read_piece()) is not None:
            body += piece
        return Reply(status, headers, bytes(body))

    async def request(self, method: str, target: str, **kwargs: Any) -> Reply:
        await self.send_request(method, target, **kwargs)
        return await self.read_reply()

    async def closed_by_server(self) -> bool:
        """True when the server closed the connection (EOF with nothing more to read)."""
        try:
            return await self.stream.receive_some(65536) == b""
        except trio.BrokenResourceError:
            return True


async def request(port: int, method: str, target: str, **kwargs: Any) -> Reply:
    """One request on a fresh connection."""
    client = await Client.connect(port)
    try:
        return await client.request(method, target, **kwargs)
    finally:
        await client.aclose()


async def read_until_eof(stream: trio.SocketStream) -> bytes:
    data = bytearray()
    try:
        while chunk := await stream.receive_some(65536):
            data += chunk
    except trio.BrokenResourceError:
        pass
    return bytes(data)


def parse_responses(data: bytes) -> list[Reply]:
    """Split a byte stream of Content-Length framed responses (for pipelining tests)."""
    out = []
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        assert sep, data
        lines = head.decode().split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
        length = int(headers.get("content-length", "0"))
        out.append(Reply(status, headers, rest[:length]))
        data = rest[length:]
    return out
