"""HTTP API throughput: requests/s over N keep-alive connections, and server CPU per request.

The server (gateway.http + gateway.api over an in-memory backend that answers "queued")
runs in this process under trio; the load comes from a separate process (a selectors
client over raw sockets, one request in flight per connection), so the two share no
interpreter. Server CPU per request = this process's CPU time / requests served.

    .venv/bin/python bench/http.py [--connections 64] [--duration 3] [--batch 100]
    .venv/bin/python bench/http.py --backend commit --only submit_single

``--backend commit`` puts the gateway's per-request path behind the handler too: submits go
through the ``AcceptCoalescer`` (as in ``GatewayBackend``) into an accept that waits for a
group commit of the store's ``GroupCommitWriter``, whose thread "commits" each group by
sleeping ``--commit-ms`` (an fsync). So every request blocks on its commit as in the
gateway, and requests share accepts; only rules, encoding and LMDB are left out.

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

def _backend(commit_s: float | None = None) -> Any:
    """The null backend; with ``commit_s``, its submits wait for a group commit."""
    import trio

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

    if commit_s is None:
        return NullBackend()

    from gateway.backend import AcceptCoalescer
    from gateway.store.batch import WriteBatch
    from gateway.store.records import CommitResult
    from gateway.store.writer import GroupCommitWriter

    def run_group(batches: Any) -> list[CommitResult | Exception]:
        time.sleep(commit_s)  # the transaction and its fdatasync
        return [CommitResult() for _ in batches]

    class CommitBackend(NullBackend):
        """Submits share accepts (AcceptCoalescer), each waiting for a group commit."""

        def __init__(self) -> None:
            super().__init__()
            self.writer = GroupCommitWriter(run_group)
            self.coalescer = AcceptCoalescer(self._accept)

        async def _accept(self, messages: list[MessageIn], now: float) -> list[MessageResult]:
            out = await NullBackend.submit(self, messages)
            await self.writer.commit(WriteBatch())
            return out

        async def submit(self, messages: list[MessageIn]) -> list[MessageResult]:
            return await self.coalescer.submit(messages)

        async def run_writer(self) -> None:
            await trio.to_thread.run_sync(self.writer.run)

    return CommitBackend()


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
    parser.add_argument("--backend", choices=["null", "commit"], default="null",
                        help="null: answers at once; commit: coalesced accepts that wait "
                             "for a group commit (see the module docstring)")
    parser.add_argument("--commit-ms", type=float, default=0.3,
                        help="the commit backend's time per group commit")
    parser.add_argument("--only", help="run only this scenario (e.g. submit_single)")
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
    if args.only:
        scenarios = {args.only: scenarios[args.only]}
    backend = _backend(args.commit_ms / 1000 if args.backend == "commit" else None)

    async def bench() -> dict[str, Any]:
        results: dict[str, Any] = {}
        async with trio.open_nursery() as nursery:
            if args.backend == "commit":
                nursery.start_soon(backend.run_writer)
            server: Server = await nursery.start(serve, Api(backend))
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
            if args.backend == "commit":
                backend.writer.stop()  # the writer thread returns, then the nursery can
                results["accepts"] = backend.coalescer.statistics()
            nursery.cancel_scope.cancel()
        return results

    out = {
        "bench": "http",
        "connections": args.connections,
        "backend": args.backend,
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
