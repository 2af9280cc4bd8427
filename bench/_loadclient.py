"""The keep-alive load client shared by bench/http.py and bench/links.py.

A selectors client over raw sockets: N keep-alive connections to 127.0.0.1:PORT, one
request in flight per connection, the next one sent as soon as the previous response is
complete (responses are framed by their ``content-length`` header). The requests are sent
in turn, cycling through the list. Only what completes after the warm-up counts. The
callers run it in a process of its own and format the result themselves.

Named with a leading underscore so ``smsgw bench`` does not list it as a benchmark. It
imports nothing that imports the standard library's ``http`` package, so it can be imported
by the scripts after they have dropped bench/ from ``sys.path``.
"""

from __future__ import annotations

import itertools
import selectors
import socket
import time
from dataclasses import dataclass


@dataclass
class LoadResult:
    done: int                 # responses completed after the warm-up
    seconds: float            # measured time (from the end of the warm-up), not rounded
    statuses: dict[int, int]  # HTTP status -> count, after the warm-up
    latencies: list[float]    # send-to-complete-response, in seconds, sorted

    def percentile(self, p: float) -> float:
        """The ``p`` (0..1) latency in seconds; 0.0 when nothing completed."""
        if not self.latencies:
            return 0.0
        return self.latencies[int(p * (len(self.latencies) - 1))]


def run_load(port: int, requests: list[bytes], connections: int, duration: float,
             warmup: float) -> LoadResult:
    next_request = itertools.cycle(requests).__next__
    sel = selectors.DefaultSelector()
    for _ in range(connections):
        conn = socket.create_connection(("127.0.0.1", port))
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.setblocking(False)
        sel.register(conn, selectors.EVENT_READ, [bytearray(), 0.0])
    begin = time.perf_counter()
    measure_from = begin + warmup
    end = measure_from + duration
    for key in sel.get_map().values():
        key.data[1] = time.perf_counter()
        key.fileobj.send(next_request())  # type: ignore[union-attr]
    done = 0
    statuses: dict[int, int] = {}
    latencies: list[float] = []
    now = begin
    while now < end:
        for key, _ in sel.select(timeout=1.0):
            sock: socket.socket = key.fileobj  # type: ignore[assignment]
            state = key.data
            chunk = sock.recv(65536)
            if not chunk:
                raise SystemExit("server closed a connection")
            buf = state[0]
            buf += chunk
            while True:
                head_end = buf.find(b"\r\n\r\n")
                if head_end < 0:
                    break
                at = buf.find(b"content-length: ", 0, head_end)
                length = int(buf[at + 16:buf.find(b"\r\n", at)])
                total = head_end + 4 + length
                if len(buf) < total:
                    break
                now = time.perf_counter()
                if now >= measure_from:
                    status = int(buf[9:12])
                    statuses[status] = statuses.get(status, 0) + 1
                    latencies.append(now - state[1])
                    done += 1
                del buf[:total]
                state[1] = now
                sock.send(next_request())
        now = time.perf_counter()
    latencies.sort()
    return LoadResult(done=done, seconds=now - measure_from, statuses=statuses,
                      latencies=latencies)
