"""HTTP API throughput: requests/s over N keep-alive connections, and server CPU per request.

The server (gateway.http + gateway.api over an in-memory backend that answers "queued")
runs in this process under trio; the load comes from a separate process (a selectors
client over raw sockets, one request in flight per connection), so the two share no
interpreter. Server CPU per request = this process's CPU time / requests served.

    .venv/bin/python bench/http.py [--connections 64] [--duration 3] [--batch 100]

Prints ONE JSON object. Target: 8,000 single-message requests/s with 64 connections.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec

# Run as a script, this file's directory is sys.path[0], and this file's name would then
# shadow the standard library's `http` package (which gateway.http imports): drop it.
# (Nothing imported above imports `http`.)
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
ROOT = _HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench._loadclient import run_load  # noqa: E402

# --- the load generator (runs in its own process) ----------------------------------------

def run_client(port: int, request: bytes, connections: int, duration: float,
               warmup: float) -> dict[str, Any]:
    load = run_load(port, [request], connections, duration, warmup)

    def pct(p: float) -> float:
        return round(load.percentile(p) * 1e6, 1)

    return {"requests": load.done, "seconds": round(load.seconds, 3), "statuses": load.statuses,
            "latency_us": {"p50": pct(0.5), "p99": pct(0.99), "max": pct(1.0)}}


# --- the server side -------------------------------------------------------------------

def _backend() -> Any:
    from gateway.api_types import (
        ConsentIn,
        ConsentOut,
        ErrorSegmentLine,
        EventsOut,
        MessageIn,
        MessageResult,
        MessageStatusOut,
        PreviewIn,
        PreviewOut,
        RecipientOut,
    )

    class NullBackend:
        """Accepts everything at once: measures the HTTP/API layers, not a pipeline."""

        def __init__(self) -> None:
            self.n = 0

        async def submit(self, messages: list[MessageIn]) -> list[MessageResult]:
            out = []
            for _ in messages:
                self.n += 1
                out.append(MessageResult(id=f"m{self.n}", status="queued", segments=1,
                                         encoding="gsm7"))
            return out

        async def get_message(self, message_id: str) -> MessageStatusOut | None:
            return None

        async def preview(self, request: PreviewIn) -> PreviewOut:
            return PreviewOut(encoding="gsm7", segments=1, characters=len(request.text),
                              per_segment=160)

        async def consent(self, request: ConsentIn) -> ConsentOut:
            return ConsentOut(phone=request.phone, state="subscribed", changed=True)

        async def get_recipient(self, phone: str) -> RecipientOut | None:
            return None

        async def error_segment(self, days: int) -> AsyncIterator[ErrorSegmentLine]:
            return
            yield

        async def events(self, after: str | None, limit: int, wait: float) -> EventsOut:
            return EventsOut(events=[], next=after or "0")

        async def health(self) -> bool:
            return True

        async def ready(self) -> tuple[bool, str]:
            return True, "bench"

    return NullBackend()


def http_request(method: str, path: str, body: bytes = b"") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    if body:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


MESSAGE = {"to": "+14155550100", "text": "Your cart is waiting: 10% off until midnight. "
           "Reply STOP to opt out.", "kind": "flow", "flow_type": "abandoned_cart",
           "campaign_id": "c-2026-01", "metadata": {"cart": "8842"}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--batch", type=int, default=100,
                        help="messages per request in the batch scenario (0 = skip)")
    parser.add_argument("--client", nargs=2, metavar=("PORT", "REQUEST_HEX"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        port, request_hex = args.client
        result = run_client(int(port), bytes.fromhex(request_hex), args.connections,
                            args.duration, args.warmup)
        sys.stdout.write(msgspec.json.encode(result).decode() + "\n")
        return

    import trio

    from gateway.api import Api
    from gateway.http import Server, serve

    scenarios = {
        "healthz": http_request("GET", "/healthz"),
        "submit_single": http_request("POST", "/v1/messages", msgspec.json.encode(MESSAGE)),
    }
    if args.batch:
        scenarios[f"submit_batch_{args.batch}"] = http_request(
            "POST", "/v1/messages", msgspec.json.encode({"messages": [MESSAGE] * args.batch}))

    async def bench() -> dict[str, Any]:
        results: dict[str, Any] = {}
        async with trio.open_nursery() as nursery:
            server: Server = await nursery.start(serve, Api(_backend()))
            for name, request in scenarios.items():
                before = server.statistics().requests_total
                cpu = time.process_time()
                proc = await trio.run_process(
                    [sys.executable, __file__, "--client", str(server.port), request.hex(),
                     "--connections", str(args.connections), "--duration",
                     str(args.duration), "--warmup", str(args.warmup)],
                    capture_stdout=True)
                cpu = time.process_time() - cpu
                served = server.statistics().requests_total - before
                client = msgspec.json.decode(proc.stdout)
                rps = client["requests"] / client["seconds"]
                results[name] = {
                    "requests_per_s": round(rps),
                    # includes warm-up and connection set-up, so slightly pessimistic
                    "server_cpu_us_per_request": round(cpu / served * 1e6, 1),
                    # what one core would serve if the server had it to itself
                    "server_capacity_rps_per_core": round(served / cpu),
                    "latency_us": client["latency_us"],
                    "statuses": client["statuses"],
                }
                if name.startswith("submit_batch_"):
                    results[name]["messages_per_s"] = round(rps * args.batch)
                    results[name]["server_cpu_us_per_message"] = round(
                        cpu / served / args.batch * 1e6, 2)
            nursery.cancel_scope.cancel()
        return results

    out = {
        "bench": "http",
        "connections": args.connections,
        "duration_s": args.duration,
        "python": platform.python_version(),
        "cpus": len(os.sched_getaffinity(0)),
        # requests/s depend on what else runs on these cores; CPU per request does not
        "loadavg_before": [round(x, 2) for x in os.getloadavg()],
        "target_submit_single_rps": 8000,
        "results": trio.run(bench),
    }
    sys.stdout.write(msgspec.json.encode(out).decode() + "\n")


if __name__ == "__main__":
    main()
