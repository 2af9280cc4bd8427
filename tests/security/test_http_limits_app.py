"""Slow and oversized clients against the real app and its ``[api]`` config.

tests/api/test_http_server.py proves each limit of ``gateway.http.Server`` with ``Limits``
built by hand. What it cannot show is that ``smsgw run``'s config reaches the server:
``[api] max_body_bytes``, ``header_timeout_s`` and ``body_timeout_s`` are enforced on the
running gateway, the fixed head limit (16 KiB) too, and the API keeps serving afterwards.
Real (short) timeouts: the gateway owns threads and sockets, so no autojump clock.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from gateway.app import Gateway, Ready
from gateway.config import load_config_bytes
from tests.api.client import parse_responses, read_until_eof, request
from tests.api.conftest import Net
from tests.app.helpers import ROOT, config_text, free_port

pytestmark = pytest.mark.slow


async def test_configured_limits_hold_on_the_running_gateway(tmp_path: Path, net: Net) -> None:
    text = config_text(tmp_path / "data", free_port()).replace(
        "[api]\n", "[api]\nmax_body_bytes = 2048\nheader_timeout_s = 0.3\nbody_timeout_s = 0.3\n",
        1)
    gw = Gateway(load_config_bytes(text, env={}), config_dir=ROOT / "config",
                 handle_signals=False)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            ready: Ready = await nursery.start(gw.run)
            port = ready.api_port

            # Body over [api] max_body_bytes: 413 (declared, so refused before reading).
            big = await request(port, "POST", "/v1/messages", body=b"x" * 4096,
                                headers=[("content-type", "application/json")])
            assert big.status == 413 and big.json()["error"]["code"] == "body_too_large"

            # A declared 2 GiB body is refused at once, nothing waits for it.
            stream = await net.raw(port)
            await stream.send_all(b"POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                  b"Content-Type: application/json\r\n"
                                  b"Content-Length: 2147483648\r\n\r\n{")
            [reply] = parse_responses(await read_until_eof(stream))
            assert reply.status == 413

            # A head over 16 KiB: 431.
            stream = await net.raw(port)
            await stream.send_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: "
                                  + b"a" * 20_000 + b"\r\n\r\n")
            [reply] = parse_responses(await read_until_eof(stream))
            assert reply.status == 431

            # Slowloris: half a head, then nothing -> 408 after header_timeout_s.
            stream = await net.raw(port)
            start = trio.current_time()
            await stream.send_all(b"GET /healthz HTTP/1.1\r\nHost: 127")
            [reply] = parse_responses(await read_until_eof(stream))
            assert reply.status == 408 and trio.current_time() - start < 5

            # Slow body: the head, then part of the body -> 408 after body_timeout_s.
            stream = await net.raw(port)
            await stream.send_all(b"POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                  b"Content-Type: application/json\r\n"
                                  b"Content-Length: 100\r\n\r\n{\"to\":")
            [reply] = parse_responses(await read_until_eof(stream))
            assert reply.status == 408

            # A client that connects and says nothing is closed after header_timeout_s.
            stream = await net.raw(port)
            assert await read_until_eof(stream) == b""
            # And through all of it the API still answers.
            assert (await request(port, "GET", "/healthz")).status == 200
            stats = gw.components["api_server"].statistics()
            assert stats.bodies_too_large >= 2 and stats.header_timeouts >= 1
            assert stats.body_timeouts >= 1 and stats.protocol_errors >= 1
            gw.stop()
