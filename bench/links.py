"""Short links: redirects/s and latency over keep-alive connections, shorten()/s, render()/s.

The link listener (gateway.marketing.redirect over gateway.http, with the in-memory store
holding ``--links`` tokens and the batched click sink running) serves in this process
under trio; the load comes from a separate process (a selectors client over raw sockets,
one request in flight per connection, each request a different token so most are new
clicks), so the two share no interpreter. Latency is measured by the client from send to
the complete response.

    .venv/bin/python bench/links.py [--connections 1,4,32] [--duration 3] [--links 100000]

Prints ONE JSON object. Targets (issue): redirect p99 under 5 ms; thousands of clicks/s.
One run per connection count: few connections show the latency of a redirect, many show
the throughput limit (where latency is queueing: connections / throughput, Little's law).
Client and server share this machine's cores.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import time
from pathlib import Path
from typing import Any

import msgspec

# Run as a script, this directory is sys.path[0], and bench/http.py would shadow the
# standard library's `http` package (which gateway.http imports): drop it.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
ROOT = _HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench._loadclient import run_load  # noqa: E402

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def tokens(n: int, seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(ALPHABET) for _ in range(8)) for _ in range(n)]


# --- the load generator (its own process) -------------------------------------------------

def run_client(port: int, n_links: int, connections: int, duration: float,
               warmup: float) -> dict[str, Any]:
    requests = [b"GET /%s HTTP/1.1\r\nHost: sms.example.com\r\nUser-Agent: bench\r\n\r\n"
                % t.encode() for t in tokens(n_links)]
    load = run_load(port, requests, connections, duration, warmup)
    done, elapsed = load.done, load.seconds

    def pct(p: float) -> float:
        return round(load.percentile(p) * 1e3, 3)

    return {"redirects": done, "seconds": round(elapsed, 3),
            "redirects_per_s": round(done / elapsed) if elapsed else 0,
            "statuses": load.statuses,
            "latency_ms": {"p50": pct(0.5), "p99": pct(0.99), "max": pct(1.0)}}


# --- pure cores ------------------------------------------------------------------------------

def per_second(fn: Any, seconds: float = 0.5) -> float:
    n = 0
    t0 = time.perf_counter()
    deadline = t0 + seconds
    while True:
        for _ in range(200):
            fn()
        n += 200
        now = time.perf_counter()
        if now >= deadline:
            return n / (now - t0)


def bench_cores() -> dict[str, Any]:
    from gateway.marketing import templates
    from gateway.marketing.links import shorten
    from gateway.marketing.tokens import new_token

    one = ("Acme: your cart is waiting, 10% off until midnight: "
           "https://shop.example.com/cart?id=8842&utm_source=sms. Reply STOP to opt out")
    three = one + " More: https://shop.example.com/new and https://shop.example.com/sale"
    none = "Acme: 10% off everything until midnight. Reply STOP to opt out"
    tpl = "Acme: Hi {{ first_name | default: \"there\" | capitalize }}, {{ offer }} ends soon."
    tvars = {"first_name": "ADA", "offer": "10% off"}
    counter = iter(range(1 << 40))

    def seq() -> str:
        return f"t{next(counter):07d}"

    out = {
        "shorten_per_s": {
            "1_url": round(per_second(lambda: shorten(one, "sms.example.com", seq))),
            "3_urls": round(per_second(lambda: shorten(three, "sms.example.com", seq))),
            "no_url": round(per_second(lambda: shorten(none, "sms.example.com", seq))),
            "1_url_secrets_tokens": round(per_second(
                lambda: shorten(one, "sms.example.com", new_token))),
        },
        "render_per_s": {
            "cached_template": round(per_second(lambda: templates.render(tpl, tvars))),
            "no_placeholder": round(per_second(lambda: templates.render(none, tvars))),
            "uncached_parse": round(per_second(
                lambda: templates._compile(tpl).render(tvars))),
        },
    }
    return out


# --- the server side -----------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", default="1,4,32",
                        help="comma-separated keep-alive connection counts, one run each")
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--links", type=int, default=100_000)
    parser.add_argument("--client", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        result = run_client(args.client, args.links, int(args.connections), args.duration,
                            args.warmup)
        sys.stdout.write(msgspec.json.encode(result).decode() + "\n")
        return

    import trio

    from gateway.marketing.redirect import LinkServer, serve_links
    from gateway.marketing.store import LinkTarget, MemoryMarketingStore

    store = MemoryMarketingStore()
    now = time.time()
    for i, tok in enumerate(tokens(args.links)):
        store.links[tok] = LinkTarget(
            token=tok, url=f"https://shop.example.com/p/{i}?utm_source=sms",
            message_id=f"m{i}", phone="+14155550100", created_at=now, campaign_id="c1")

    async def scenario(connections: int) -> dict[str, Any]:
        async with trio.open_nursery() as nursery:
            links: LinkServer = await nursery.start(serve_links, store)
            cpu0 = time.process_time()
            proc = await trio.run_process(
                [sys.executable, __file__, "--client", str(links.port),
                 "--connections", str(connections), "--duration", str(args.duration),
                 "--warmup", str(args.warmup), "--links", str(args.links)],
                capture_stdout=True)
            cpu = time.process_time() - cpu0
            await links.sink.flush()
            result: dict[str, Any] = msgspec.json.decode(proc.stdout)
            served = links.server.statistics().requests_total
            result["server_cpu_us_per_request"] = round(cpu / served * 1e6, 1)
            handler = links.handler.statistics()
            sink = links.sink.statistics()
            result["clicks"] = {"recorded": sink.recorded, "deduplicated":
                                handler.clicks_deduplicated, "flushes": sink.flushes,
                                "dropped": sink.dropped, "pending_after": sink.pending}
            nursery.cancel_scope.cancel()
        return result

    async def bench() -> dict[str, Any]:
        out = {}
        for connections in [int(c) for c in args.connections.split(",")]:
            store.clicks.clear()
            out[f"connections_{connections}"] = await scenario(connections)
        return out

    redirect = trio.run(bench)
    out = {
        "bench": "links",
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "links": args.links,
        "redirect": redirect,
        **bench_cores(),
        "targets": {"redirect_p99_ms": 5.0, "redirects_per_s": 1000},
    }
    sys.stdout.write(msgspec.json.encode(out).decode() + "\n")


if __name__ == "__main__":
    main()
