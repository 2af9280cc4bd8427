"""Helpers for the app tests: a test config on ephemeral ports, bounded polling."""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import trio

from gateway.config import GatewayConfig, load_config_bytes

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A port nobody listens on right now (for the sandbox SMSC, which a carrier section
    must name: carriers cannot say "port 0"). The tiny reuse race is acceptable in tests."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def config_text(store: Path, sandbox_port: int, *, dlr_delay_ms: int = 20,
                api_port: int = 0, metrics_port: int = 0) -> str:
    return f"""
[api]
listen = "127.0.0.1:{api_port}"
[metrics]
listen = "127.0.0.1:{metrics_port}"
[store]
path = "{store}"
durability = "os"
[sandbox]
enabled = true
listen = "127.0.0.1:{sandbox_port}"
dlr_delay_ms = {dlr_delay_ms}
[[carriers]]
name = "sandbox"
host = "127.0.0.1"
port = {sandbox_port}
system_id = "sandbox"
password = "sandbox"
default_sender = "SMSGW"
reconnect_min_s = 0.05
reconnect_max_s = 0.5
[[routes]]
prefix = "+"
carriers = ["sandbox"]
"""


def make_config(store: Path, **kw: int) -> tuple[GatewayConfig, int]:
    port = free_port()
    return load_config_bytes(config_text(store, port, **kw), env={}), port


async def poll(check: Callable[[], Awaitable[T | None]], interval: float = 0.02) -> T:
    """Call ``check`` until it returns something (the caller bounds it with fail_after)."""
    while True:
        got = await check()
        if got is not None:
            return got
        await trio.sleep(interval)
