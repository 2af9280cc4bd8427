"""Benchmark: our trio binds submitting to an SMSC, against smpplib as the baseline.

One client process (this one) drives ``--n`` submit_sm of a 1-part GSM message through a
``gateway.carriers.Carrier`` (window 64 / 256, 1 / 2 transceiver binds) against:

- ``node``: the node-smpp simulator ../shared/peers/smsc_sim.js (a separate process);
- ``ours``: our own sandbox SMSC (gateway.sim) in a separate Python process, because the
  node simulator itself may be the bottleneck.

and the same with smpplib driven the usual way (``send_message`` in a loop, ``listen()`` in
a thread reading the responses) as the baseline. Prints one JSON object: submit_sm/s and
p50/p99 submit->resp latency per run (latency = part handed to the Session -> its
submit_sm_resp, so time waiting in our queue is excluded; smpplib: send_message -> resp).

    .venv/bin/python bench/smpp_bind.py [--n 200000] [--peer node,ours] [--profile FILE]

``--profile FILE`` runs one extra ours-vs-``--profile-peer`` run (window 256, 1 bind) under
cProfile and prints the top functions to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import json
import os
import pstats
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, bench/ is sys.path[0] and its modules (bench/http.py) would shadow the
# standard library: import from the project root instead.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

import trio  # noqa: E402

from gateway.bind import BindSettings, SubmitBatch, SubmitOutcome  # noqa: E402
from gateway.carriers import Carrier  # noqa: E402
from gateway.smpp import pdu as P  # noqa: E402

PEERS = Path(os.environ.get("SMSGW_PEERS", ROOT.parent / "shared" / "peers")).resolve()
SYSTEM_ID, PASSWORD = "bench", "bench"
TEXT = b"Your order 12345 has shipped. Track it at example.com/t/abc"  # 1 part, GSM


def parts(n: int) -> list[P.SubmitSm]:
    return [
        P.SubmitSm(source_addr="ACME", source_addr_ton=5, dest_addr_ton=1, dest_addr_npi=1,
                   destination_addr=f"4477{i % 100_000_000:08d}", short_message=TEXT)
        for i in range(n)
    ]


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


# --- peers ---------------------------------------------------------------------------


@contextmanager
def node_peer() -> Iterator[int]:
    if shutil.which("node") is None or not (PEERS / "smsc_sim.js").exists():
        raise RuntimeError(f"node or {PEERS}/smsc_sim.js missing")
    with tempfile.TemporaryDirectory() as tmp:
        ready = Path(tmp) / "ready.json"
        proc = subprocess.Popen(
            ["node", str(PEERS / "smsc_sim.js"), "--port", "0", "--ready-file", str(ready),
             "--system-id", SYSTEM_ID, "--password", PASSWORD, "--deliver-window", "1"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        try:
            yield _wait_ready(proc, ready)["smpp_port"]
        finally:
            _stop(proc)


@contextmanager
def our_peer() -> Iterator[int]:
    with tempfile.TemporaryDirectory() as tmp:
        ready = Path(tmp) / "ready.json"
        proc = subprocess.Popen(
            [sys.executable, __file__, "--serve-sim", str(ready)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        try:
            yield _wait_ready(proc, ready)["smpp_port"]
        finally:
            _stop(proc)


def _wait_ready(proc: subprocess.Popen[bytes], ready: Path) -> dict[str, Any]:
    deadline = time.monotonic() + 15
    while not ready.exists() or not ready.read_text().strip():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("peer did not start")
        time.sleep(0.02)
    info: dict[str, Any] = json.loads(ready.read_text())
    return info


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()


def serve_sim(ready: str) -> None:
    """Child process: our sandbox SMSC, no receipts (registered_delivery 0 anyway)."""
    from gateway.sim import SimServer, SimSettings

    async def main() -> None:
        settings = SimSettings(port=0, accounts={SYSTEM_ID: PASSWORD}, msgid_start=1)
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with trio.open_nursery() as nursery:
                server = await nursery.start(SimServer(settings).run)
                tmp = trio.Path(ready + ".tmp")
                await tmp.write_text(json.dumps({"smpp_port": server.port}))
                await tmp.replace(ready)
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    break

    trio.run(main)


# --- our binds -----------------------------------------------------------------------


async def run_ours(port: int, n: int, window: int, binds: int) -> dict[str, Any]:
    settings = BindSettings(name="bench", port=port, system_id=SYSTEM_ID, password=PASSWORD,
                            window=window, binds=binds, response_timeout=30.0,
                            max_batch=1024)
    carrier = Carrier(settings)
    all_parts = parts(n)
    latencies: list[float] = []
    done = trio.Event()
    count = 0
    failed = 0

    def on_outcome(_index: int, outcome: SubmitOutcome) -> None:
        nonlocal count, failed
        count += 1
        if outcome.kind == "accepted":
            latencies.append(outcome.latency)
        else:
            failed += 1
        if count == n:
            done.set()

    async with trio.open_nursery() as nursery:
        await nursery.start(carrier.run)
        with trio.fail_after(30):
            await carrier.wait_bound(binds)
        t0 = time.perf_counter()
        step = 1000
        for i in range(0, n, step):
            await carrier.enqueue(SubmitBatch(all_parts[i:i + step], on_outcome))
        await done.wait()
        elapsed = time.perf_counter() - t0
        writes = sum(b.writes for b in carrier.live_binds)
        await carrier.shutdown()
    latencies.sort()
    return {
        "client": "smsgw", "window": window, "binds": binds, "n": n, "failed": failed,
        "seconds": round(elapsed, 3), "submit_sm_per_s": round(n / elapsed),
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 2),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
        "pdus_per_send_all": round(n / max(1, writes), 1),
    }


# --- smpplib baseline ------------------------------------------------------------------


def run_smpplib(port: int, n: int) -> dict[str, Any]:
    """smpplib the usual way: send_message() in a loop, listen() in a thread for resps."""
    import logging

    import smpplib.client
    import smpplib.consts

    logging.getLogger("smpp.Client").setLevel(logging.WARNING)
    client = smpplib.client.Client("127.0.0.1", port, timeout=30, allow_unknown_opt_params=True)
    sent_at: dict[int, float] = {}
    latencies: list[float] = []
    finished = threading.Event()

    def on_resp(pdu: Any) -> None:
        latencies.append(time.perf_counter() - sent_at.pop(pdu.sequence, time.perf_counter()))
        if len(latencies) == n:
            finished.set()

    client.set_message_sent_handler(lambda pdu: on_resp(pdu))  # noqa: PLW0108 - kw call
    client.connect()
    client.bind_transceiver(system_id=SYSTEM_ID, password=PASSWORD)
    listener = threading.Thread(target=_listen, args=(client, finished), daemon=True)
    listener.start()
    t0 = time.perf_counter()
    for i in range(n):
        seq = client.sequence + 1  # smpplib numbers the PDU inside send_message
        sent_at[seq] = time.perf_counter()
        client.send_message(
            source_addr_ton=smpplib.consts.SMPP_TON_ALNUM, source_addr="ACME",
            dest_addr_ton=smpplib.consts.SMPP_TON_INTL, dest_addr_npi=1,
            destination_addr=f"4477{i:08d}", short_message=TEXT)
    finished.wait(300)
    elapsed = time.perf_counter() - t0
    latencies.sort()
    with contextlib.suppress(Exception):  # best effort at the end of a benchmark
        client.disconnect()
    return {
        "client": "smpplib", "n": n, "answered": len(latencies), "seconds": round(elapsed, 3),
        "submit_sm_per_s": round(len(latencies) / elapsed),
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 2),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
    }


def _listen(client: Any, finished: threading.Event) -> None:
    while not finished.is_set():
        try:
            client.read_once()
        except Exception:  # the socket closes at the end
            return


# --- main ----------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=200_000, help="submit_sm per run")
    ap.add_argument("--smpplib-n", type=int, default=None,
                    help="submit_sm for the smpplib baseline (default: min(n, 20000))")
    ap.add_argument("--peer", default="node,ours", help="node, ours or both (comma list)")
    ap.add_argument("--configs", default="64x1,256x1,64x2,256x2", help="WINDOWxBINDS list")
    ap.add_argument("--profile", metavar="FILE", help="also profile one run (cProfile)")
    ap.add_argument("--profile-peer", default="ours")
    ap.add_argument("--serve-sim", metavar="READY_FILE", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_sim:
        serve_sim(args.serve_sim)
        return
    smpplib_n = args.smpplib_n or min(args.n, 20_000)
    configs = [tuple(int(x) for x in c.split("x")) for c in args.configs.split(",")]
    peers = {"node": node_peer, "ours": our_peer}
    report: dict[str, Any] = {"n": args.n, "cpus": os.cpu_count(), "runs": []}
    for peer in args.peer.split(","):
        try:
            with peers[peer]() as port:
                for window, binds in configs:
                    r = trio.run(run_ours, port, args.n, window, binds)
                    report["runs"].append({"peer": peer, **r})
                    print(json.dumps(report["runs"][-1]), file=sys.stderr)
            with peers[peer]() as port:
                r = run_smpplib(port, smpplib_n)
                report["runs"].append({"peer": peer, **r})
                print(json.dumps(report["runs"][-1]), file=sys.stderr)
        except RuntimeError as e:
            report["runs"].append({"peer": peer, "error": str(e)})
    if args.profile:
        with peers[args.profile_peer]() as port:
            prof = cProfile.Profile()
            prof.enable()
            trio.run(run_ours, port, args.n, 256, 1)
            prof.disable()
            prof.dump_stats(args.profile)
            pstats.Stats(prof, stream=sys.stderr).sort_stats("tottime").print_stats(25)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
