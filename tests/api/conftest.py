"""Fixtures for the API tests: connections that are closed at teardown."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio

from tests.api.client import Client


class Net:
    """Opens client connections to 127.0.0.1 and closes them all when the test ends."""

    def __init__(self) -> None:
        self._streams: list[trio.SocketStream] = []

    async def raw(self, port: int) -> trio.SocketStream:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        self._streams.append(stream)
        return stream

    async def client(self, port: int) -> Client:
        return Client(await self.raw(port))

    async def aclose(self) -> None:
        for stream in self._streams:
            await trio.aclose_forcefully(stream)


@pytest.fixture
async def net() -> AsyncIterator[Net]:
    net = Net()
    try:
        yield net
    finally:
        await net.aclose()
