"""bench/e2e.py's load generator against a fake HTTP server (no gateway, no simulator)."""

from __future__ import annotations

import socket
import threading
from types import ModuleType

from tests.bench.helpers import load_bench

ANSWER = b'{"results":[{"id":"x","status":"queued"}]}'


def _e2e() -> ModuleType:
    return load_bench("e2e")


class FakeServer:
    """Answers every request with a 202; closes a connection that sends nothing for
    ``idle_s`` (the gateway's header/idle timeouts do the same)."""

    def __init__(self, idle_s: float) -> None:
        self.idle_s = idle_s
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.requests = 0
        self.closed_idle = 0
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(self.idle_s)
        buf = b""
        with conn:
            while True:
                try:
                    chunk = conn.recv(65536)
                except TimeoutError:
                    with self._lock:
                        self.closed_idle += 1
                    return
                if not chunk:
                    return
                buf += chunk
                while b"\r\n\r\n" in buf:
                    head, _, rest = buf.partition(b"\r\n\r\n")
                    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                    if len(rest) < length:
                        break
                    buf = rest[length:]
                    with self._lock:
                        self.requests += 1
                    conn.sendall(b"HTTP/1.1 202 Accepted\r\ncontent-length: %d\r\n\r\n%s"
                                 % (len(ANSWER), ANSWER))

    def close(self) -> None:
        self.sock.close()


def test_paced_run_replaces_connections_the_server_timed_out() -> None:
    """Paced at 100/s over 4 connections, the generator reuses the connection it freed
    last, so the others sit idle past the server's 0.2 s timeout and are closed: it opens
    new ones and still sends every message once (it used to stop: "the gateway closed a
    connection")."""
    e2e = _e2e()
    server = FakeServer(idle_s=0.2)
    try:
        out = e2e.run_loadgen(server.port, 60, "gsm1", 1, 4, 100.0, True)
    finally:
        server.close()
    assert out["queued"] == 60
    assert out["statuses"] == {202: 60}
    assert server.requests == 60
    assert server.closed_idle >= 1
