"""End-to-end benchmark: HTTP API -> rules -> LMDB -> SMPP -> receipts -> LMDB, one JSON line.

What runs (issue 7):

* the node-smpp SMSC simulator (``../shared/peers/smsc_sim.js``): a receipt for every
  message, ``--dlr-delay 0``;
* the gateway as a subprocess (``python -m gateway.cli run -c CONFIG``), the config made
  from ``bench/configs/<config>.toml`` with free ports on 127.0.0.1; readiness via
  ``SMSGW_READY_FILE`` and then ``GET /readyz`` (a bind per carrier is up);
* consent: loaded **directly into the store before the gateway starts** (one
  ``RecipientRecord`` per recipient: subscribed, with its number facts, the steady state
  after ``POST /v1/consent``); the seeded store is cached per N under
  ``$XDG_CACHE_HOME/smsgw-bench`` and copied for each run;
* the load generator in a separate process (raw sockets, HTTP/1.1 keep-alive): batch mode
  (``POST /v1/messages {"messages": [...]}``, ``--batch`` per request over
  ``--connections``), or single mode (one message per request, 64 connections). 429
  answers are retried after their Retry-After. ``--rate`` paces the offered load;
* completion and latencies are read from the gateway's durable event feed: this process
  opens the LMDB environment **read-only** and follows the ``events`` database (no CPU
  spent by the gateway on it). ``queued`` = accepted, ``submitted`` = every part accepted by
  the carrier, ``receipt`` = a receipt recorded, ``delivered`` (or another final status) =
  the message is done. accept->submit and submit->receipt latencies are differences of the
  events' ``at`` times (when the gateway built the change; the commit follows within ms);
* gateway CPU seconds from ``/proc/PID/stat`` (all threads) over the load window, peak
  RSS from ``VmHWM``;
* the VM's speed just before and just after the load (``calibration_us``, a fixed Python
  workload: bench/_calibrate.py), and the CPU per message scaled to the reference speed
  (``gateway_cpu_us_per_message_at_reference``), because this VM drifts by +-30 % within
  minutes and raw figures compare only inside one stretch.

Every message is a ``campaign`` to its own recipient with the full default rule set on
(consent, quiet hours, smart sending, state caps, content). Quiet hours are evaluated when
every recipient's zone is inside the sending window (16:00-24:00 UTC for the US number
plan used), else bypassed per message (``--quiet-hours auto``, the default).

Scenarios (``--scenario``): ``gsm1`` (1-part GSM-7), ``mixed`` (60% 1-part, 30% 2-part
GSM-7, 10% UCS-2 with emoji), ``two-carriers`` (mixed, 2 carriers x 2 binds),
``tps500`` (a carrier with ``tps = 500``; the simulator throttles above 500/s),
``queued`` (N messages accepted while the carrier is down, then the carrier comes up).

    .venv/bin/python bench/e2e.py --scenario gsm1 -n 200000 --plot e2e.png
    .venv/bin/smsgw bench e2e --scenario mixed -n 20000 --mode single

Prints ONE JSON object (rates per second, latencies in ms, CPU, RSS, counts, config).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import selectors
import shutil
import signal
import socket
import string
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# Run as a script, this file's directory is sys.path[0], and bench/http.py would shadow
# the standard library's `http` package (urllib, http.client): drop it.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
ROOT = _HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import msgspec  # noqa: E402


def _load_sibling(name: str) -> Any:
    # bench/ is not on sys.path (above): load a helper module of this directory by path.
    import importlib.util
    spec = importlib.util.spec_from_file_location(f"_smsgw_bench{name}", _HERE / f"{name}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


_calib = _load_sibling("_calibrate")
calibrate = _calib.calibrate
REFERENCE_US: float = _calib.REFERENCE_US

CONFIGS = _HERE / "configs"
PEERS = Path(os.environ.get("SMSGW_PEERS", ROOT.parent / "shared" / "peers")).resolve()
SIM_JS = PEERS / "smsc_sim.js"

NPAS = (212, 213, 305, 312, 404, 415, 503, 617, 702, 713, 718, 801, 206, 303, 602, 919)
GSM1 = "Acme: 20% off everything this weekend at https://acme.example/sale Reply STOP to opt out"
GSM2 = ("Acme: our winter sale starts today! 20% off coats, boots and knitwear, free "
        "delivery on orders over $50 and free returns for 60 days. Shop now at "
        "https://acme.example/sale Reply STOP to opt out")
UCS2 = "Acme 🎉 20% off today https://acme.example/s Reply STOP to opt out"  # 1 part
FINAL = frozenset({"delivered", "partially_delivered", "undelivered", "expired", "failed",
                   "rejected", "unknown"})

SCENARIOS: dict[str, dict[str, Any]] = {
    "gsm1": {"config": "single", "mix": "gsm1"},
    "mixed": {"config": "single", "mix": "mixed"},
    "two-carriers": {"config": "two_carriers", "mix": "mixed"},
    "tps500": {"config": "single", "mix": "gsm1", "tps": 500},
    "queued": {"config": "single", "mix": "gsm1", "carrier_down": True},
}


def phone(i: int) -> str:
    """The i-th recipient: distinct valid US numbers over 16 area codes (4 zones)."""
    npa = NPAS[i % len(NPAS)]
    sub = 2_000_000 + (i // len(NPAS)) * 7 % 7_000_000
    return f"+1{npa}{sub:07d}"


def text_for(i: int, mix: str) -> str:
    if mix == "gsm1":
        return GSM1
    r = (i * 7) % 10  # deterministic 60/30/10 spread
    return UCS2 if r == 0 else GSM2 if r <= 3 else GSM1


def message(i: int, mix: str, bypass_qh: bool) -> dict[str, Any]:
    m: dict[str, Any] = {"to": phone(i), "text": text_for(i, mix), "kind": "campaign",
                         "campaign_id": "bench"}
    if bypass_qh:
        m["bypass"] = ["quiet_hours"]
    return m


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    values.sort()
    return round(values[min(len(values) - 1, int(p * len(values)))] * 1000, 2)


# --------------------------------------------------------------------- load generator

def http_post(path: str, body: bytes) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def run_loadgen(port: int, n: int, mix: str, batch: int, connections: int, rate: float,
                bypass_qh: bool) -> dict[str, Any]:
    """Push n messages; one request in flight per keep-alive connection."""
    build0 = time.process_time()
    enc = msgspec.json.Encoder()
    if batch <= 1:
        requests = [http_post("/v1/messages", enc.encode(message(i, mix, bypass_qh)))
                    for i in range(n)]
        sizes = [1] * n
    else:
        requests, sizes = [], []
        for k in range(0, n, batch):
            msgs = [message(i, mix, bypass_qh) for i in range(k, min(n, k + batch))]
            requests.append(http_post("/v1/messages", enc.encode({"messages": msgs})))
            sizes.append(len(msgs))
    todo = list(range(len(requests)))
    todo.reverse()  # pop() from the end = request order
    retry: list[tuple[float, int]] = []
    sel = selectors.DefaultSelector()
    socks = []
    for _ in range(connections):
        s = socket.create_connection(("127.0.0.1", port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
        socks.append(s)
    idle = list(socks)
    state: dict[socket.socket, list[Any]] = {s: [bytearray(), 0.0, -1] for s in socks}
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    queued = rejected = other = sent_msgs = 0
    per_second: dict[int, int] = {}
    t0 = time.perf_counter()
    wall0 = time.time()
    cpu0 = time.process_time()
    outstanding = 0

    # Every connection stays registered for reading (a closed loop: nothing arrives on an
    # idle one) and a request goes out with one non-blocking send: per request this client
    # makes a send, a recv and its share of a select, not also two epoll_ctl and two fcntl.
    # In a closed loop the client's turnaround is part of every request's cycle: single
    # mode, 7 interleaved pairs (session 7), this client's CPU 26-31 -> 22-27 us/request
    # and the gateway's req/s higher in 5 pairs (mean 6,068 -> 6,712).
    for s in socks:
        sel.register(s, selectors.EVENT_READ)

    def replace(s: socket.socket) -> None:
        # An idle connection the gateway timed out (paced runs: ``--rate`` leaves some
        # connections unused longer than its header/idle timeout): open another.
        sel.unregister(s)
        s.close()
        del state[s]
        fresh = socket.create_connection(("127.0.0.1", port))
        fresh.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        fresh.setblocking(False)
        sel.register(fresh, selectors.EVENT_READ)
        state[fresh] = [bytearray(), 0.0, -1]
        socks[socks.index(s)] = fresh
        idle[idle.index(s)] = fresh

    def send(s: socket.socket, idx: int, now: float) -> None:
        nonlocal outstanding, sent_msgs
        st = state[s]
        st[1], st[2] = now, idx
        data = requests[idx]
        try:
            sent = s.send(data)
        except BlockingIOError:
            sent = 0
        if sent < len(data):  # a big batch body: the rest blocking
            s.setblocking(True)
            s.sendall(data[sent:])
            s.setblocking(False)
        outstanding += 1
        sent_msgs += sizes[idx]

    while todo or retry or outstanding:
        now = time.perf_counter()
        # start requests on idle connections (paced by --rate)
        while idle:
            if retry and retry[0][0] <= now:
                idx = retry.pop(0)[1]
            elif todo and (rate <= 0 or sent_msgs < (now - t0) * rate):
                idx = todo.pop()
            else:
                break
            send(idle.pop(), idx, now)
        timeout = 0.05
        if rate > 0 and todo and idle:
            timeout = max(0.0, min(timeout, (sent_msgs + 1) / rate - (now - t0)))
        for key, _ in sel.select(timeout=timeout):
            s = key.fileobj
            assert isinstance(s, socket.socket)
            st = state[s]
            if st[2] < 0:  # idle: nothing asked, so a close (or its 408) is all it can be
                replace(s)
                continue
            chunk = s.recv(1 << 20)
            if not chunk:
                raise SystemExit("the gateway closed a connection")
            buf = st[0]
            buf += chunk
            head_end = buf.find(b"\r\n\r\n")
            if head_end < 0:
                continue
            head = bytes(buf[:head_end]).lower()
            at = head.find(b"content-length:")
            length = int(head[at + 15:head.find(b"\r\n", at) if head.find(b"\r\n", at) > 0
                              else None].strip())
            total = head_end + 4 + length
            if len(buf) < total:
                continue
            done = time.perf_counter()
            status = int(buf[9:12])
            body = bytes(buf[head_end + 4:total])
            del buf[:total]
            outstanding -= 1
            idle.append(s)
            statuses[status] = statuses.get(status, 0) + 1
            idx = st[2]
            st[2] = -1
            if status == 429:
                sent_msgs -= sizes[idx]
                retry.append((done + 0.5, idx))
                continue
            latencies.append(done - st[1])
            q = body.count(b'"status":"queued"')
            r = body.count(b'"status":"rejected"')
            queued += q
            rejected += r
            other += sizes[idx] - q - r if status < 300 else sizes[idx]
            sec = int(time.time())
            per_second[sec] = per_second.get(sec, 0) + sizes[idx]
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    for s in socks:
        s.close()
    return {"messages": n, "requests": len(requests), "seconds": round(elapsed, 3),
            # CPU of this client while it sent (the other core's budget), and before it
            # started (building the request bodies, not overlapping the gateway's work)
            "cpu_s": round(cpu, 3), "build_cpu_s": round(cpu0 - build0, 3),
            "started_at": wall0, "ended_at": wall0 + elapsed,
            "accepted_per_s": round(n / elapsed), "queued": queued, "rejected": rejected,
            "other": other, "statuses": statuses,
            "accept_latency_ms": {"p50": pct(latencies, 0.5), "p99": pct(latencies, 0.99),
                                  "max": pct(latencies, 1.0)},
            "per_second": per_second}


# ----------------------------------------------------------------------- store access

def seed_store(path: Path, n: int) -> float:
    """The store with n subscribed recipients (cached per n); returns seconds spent."""
    t0 = time.perf_counter()
    cache_root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "smsgw-bench"
    cached = cache_root / f"recipients-v1-{n}"
    if not (cached / "data.mdb").exists():
        import trio

        from gateway.store import RecipientRecord, WriteBatch, open_store
        from rules.numbers import number_facts

        tmp = cache_root / f"tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)

        async def fill() -> None:
            async with open_store(tmp, durability="os", map_size=1 << 33) as store:
                facts: dict[int, Any] = {}
                for k in range(0, n, 10_000):
                    batch = WriteBatch()
                    for i in range(k, min(n, k + 10_000)):
                        p = phone(i)
                        # number facts depend on the area code only (+1 NPA): compute once
                        f = facts.get(i % len(NPAS))
                        if f is None:
                            f = facts[i % len(NPAS)] = number_facts(p)
                        batch.put_recipient(RecipientRecord(
                            phone=p, consent="subscribed", consent_source="bench",
                            consent_at=time.time() - 86_400, region=f.region, state=f.state,
                            zones=f.zones))
                    await store.commit(batch)

        trio.run(fill)
        shutil.rmtree(cached, ignore_errors=True)
        tmp.rename(cached)
    path.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(cached / "data.mdb", path / "data.mdb")
    return time.perf_counter() - t0


class Follower:
    """Follows the gateway's ``events`` database read-only from this process."""

    def __init__(self, path: Path) -> None:
        import lmdb

        from gateway.store.keys import event_key
        from gateway.store.records import Event

        self._env = lmdb.open(str(path), readonly=True, lock=True, max_dbs=16,
                              map_size=1 << 35)
        self._db = self._env.open_db(b"events", create=False)
        self._key = event_key
        self._decode = msgspec.msgpack.Decoder(Event).decode
        self._next = event_key(0)
        self.counts: dict[str, int] = {}
        self.bins: dict[str, dict[int, int]] = {"queued": {}, "submitted": {},
                                                "receipt": {}, "final": {}}
        self.queued_at: dict[str, float] = {}
        self.submitted_at: dict[str, float] = {}
        self.accept_submit: list[float] = []
        self.submit_receipt: list[float] = []
        self.first_at: dict[str, float] = {}
        self.last_at: dict[str, float] = {}

    def _count(self, what: str, at: float) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1
        b = self.bins.setdefault(what, {})
        sec = int(at)
        b[sec] = b.get(sec, 0) + 1
        if what not in self.first_at:
            self.first_at[what] = at
        self.last_at[what] = at

    def poll(self) -> int:
        n = 0
        decode = self._decode
        with self._env.begin(db=self._db) as txn:
            cur = txn.cursor()
            if not cur.set_range(self._next):
                return 0
            last = None
            for key, value in cur:
                last = key
                ev = decode(value)
                n += 1
                at = ev.at
                if ev.type == "receipt":
                    self._count("receipt", at)
                elif ev.type == "message.status":
                    st = ev.status
                    mid = ev.message_id or ""
                    if st == "queued":
                        self._count("queued", at)
                        self.queued_at[mid] = at
                    elif st == "submitted":
                        self._count("submitted", at)
                        q = self.queued_at.pop(mid, None)
                        if q is not None:
                            self.accept_submit.append(at - q)
                        self.submitted_at[mid] = at
                    elif st in FINAL:
                        self._count("final", at)
                        self._count(st, at)
                        s = self.submitted_at.pop(mid, None)
                        if s is not None:
                            self.submit_receipt.append(at - s)
                    else:
                        self._count(st or "", at)
                else:
                    self._count(ev.type, at)
            if last is not None:
                self._next = (int.from_bytes(last, "big") + 1).to_bytes(8, "big")
        return n

    def close(self) -> None:
        self._env.close()


# ------------------------------------------------------------------------ processes

def proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_minflt(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[7])


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds per thread name (threads of one name summed)."""
    out: dict[str, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


def proc_mem(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmHWM", "VmRSS", "RssAnon", "RssFile")):
            k, v = line.split(":")
            out[k] = int(v.split()[0]) * 1024
    return out


def launch_sim(work: Path, port: int, args: list[str]) -> tuple[subprocess.Popen[bytes],
                                                                 dict[str, Any]]:
    """smsc_sim.js on 127.0.0.1:``port`` with ``args``; returns it once it is ready, with
    its ready file (``smpp_port``, ``control_port``...). bench/kannel.py starts it too."""
    if shutil.which("node") is None or not (PEERS / "node_modules" / "smpp").exists():
        raise SystemExit(f"the SMSC simulator needs node and `npm ci --prefix {PEERS}`")
    ready = work / f"sim-ready-{time.monotonic_ns()}.json"
    cmd = ["node", str(SIM_JS), "--port", str(port), "--ready-file", str(ready), *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE,
                            stderr=open(work / "sim.stderr", "wb"))  # noqa: SIM115
    deadline = time.monotonic() + 15
    while not ready.exists() or not ready.read_text().strip():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit(f"smsc_sim did not start: {(work / 'sim.stderr').read_text()}")
        time.sleep(0.02)
    info: dict[str, Any] = json.loads(ready.read_text())
    return proc, info


def start_sim(work: Path, port: int, tps: float, log: bool) -> subprocess.Popen[bytes]:
    args = ["--system-id", "bench", "--password", "bench", "--account", "bench2:bench2",
            "--dlr-delay", "0", "--control-port", "-1"]
    if tps:
        args += ["--tps", str(int(tps))]
    if log:
        args += ["--log", str(work / "sim-submits.jsonl")]
    return launch_sim(work, port, args)[0]


def stop_sim(proc: subprocess.Popen[bytes]) -> dict[str, Any]:
    proc.send_signal(signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    for line in out.decode().splitlines():
        if line.startswith("{"):
            return dict(json.loads(line))
    return {}


def http_get(port: int, path: str) -> int:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def metrics_text(port: int) -> str:
    """The gateway's /metrics exposition."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/metrics")
        return conn.getresponse().read().decode()
    finally:
        conn.close()


def scrape_counters(text: str, names: tuple[str, ...]) -> dict[str, float]:
    """Values of unlabelled samples ``names`` (full sample names) in an exposition."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in names:
            out[name] = float(value)
    return out


def scrape_histograms(text: str, names: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """p50/p99 (bucket upper bounds) and mean, in ms, of unlabelled histograms on /metrics."""
    out: dict[str, dict[str, float]] = {}
    for name in names:
        buckets: list[tuple[float, float]] = []
        total = count = 0.0
        for line in text.splitlines():
            if line.startswith(name + "_bucket{le="):
                le = line.split('"')[1]
                buckets.append((math.inf if le == "+Inf" else float(le), float(line.split()[-1])))
            elif line.startswith(name + "_sum "):
                total = float(line.split()[-1])
            elif line.startswith(name + "_count "):
                count = float(line.split()[-1])
        if not count:
            continue
        buckets.sort()

        def q(p: float, buckets: list[tuple[float, float]] = buckets, count: float = count
              ) -> float:
            return next((le for le, n in buckets if n >= p * count), math.inf)

        out[name] = {"p50_le_ms": round(q(0.5) * 1e3, 2), "p99_le_ms": round(q(0.99) * 1e3, 2),
                     "mean_ms": round(total / count * 1e3, 2), "count": int(count)}
    return out


def start_gateway(work: Path, config: Path, gc_threshold: str | None = None,
                  ) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    ready = work / "gateway-ready.json"
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, SMSGW_READY_FILE=str(ready), PYTHONPATH=path)
    cmd = [sys.executable, "-m", "gateway.cli", "run", "-c", str(config)]
    if gc_threshold:
        # Experiment: the cyclic GC's thresholds set before the gateway starts.
        thresholds = tuple(int(x) for x in gc_threshold.split(","))
        cmd = [sys.executable, "-c",
               f"import gc, sys; gc.set_threshold(*{thresholds!r}); "
               f"from gateway.cli import main; sys.exit(main(['run', '-c', {str(config)!r}]))"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env,
                            stdout=open(work / "gateway.log", "wb"),  # noqa: SIM115
                            stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            log = (work / "gateway.log").read_text()[-3000:]
            raise SystemExit("gateway did not start:\n" + log)
        time.sleep(0.05)
    return proc, json.loads(ready.read_text())


def wait_ready(port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if http_get(port, "/readyz") == 200:
                return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


def stop_gateway(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=40)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def write_config(work: Path, name: str, **values: Any) -> Path:
    text = string.Template((CONFIGS / f"{name}.toml").read_text()).substitute(values)
    out = work / "gateway.toml"
    out.write_text(text)
    return out


def quiet_hours_open(now: float, within: float) -> bool:
    """True when the default rules SEND to every area code of the plan from now to +within.

    (Quiet hours differ per state and weekday, e.g. Texas on Sundays: ask the engine.)
    """
    from gateway.pipeline.recipients import facts_from_record
    from gateway.store import RecipientRecord
    from rules.engine import evaluate
    from rules.model import Action, Message, MessageKind
    from rules.numbers import number_facts
    from rules.policy import Policy

    policy = Policy()
    for k in range(len(NPAS)):
        p = phone(k)
        f = number_facts(p)
        rec = RecipientRecord(phone=p, consent="subscribed", consent_at=now - 86_400,
                              region=f.region, state=f.state, zones=f.zones)
        facts = facts_from_record(rec, f)
        for t in (now, now + within):
            msg = Message(kind=MessageKind.CAMPAIGN, to_e164=p, text=GSM1, campaign_id="b")
            if evaluate(msg, facts, policy, datetime.fromtimestamp(t, UTC)).action \
                    is not Action.SEND:
                return False
    return True


def rate(count: int, first: float | None, last: float | None) -> float | None:
    if not count or first is None or last is None or last <= first:
        return None
    return round(count / (last - first), 1)


def steady_rate(bins: dict[int, int]) -> dict[str, float] | None:
    """Per-second counts without the first and last (partial) seconds."""
    if len(bins) < 3:
        return None
    secs = sorted(bins)[1:-1]
    vals = [bins.get(s, 0) for s in range(secs[0], secs[-1] + 1)]
    return {"mean": round(sum(vals) / len(vals), 1), "min": min(vals), "max": max(vals),
            "seconds": len(vals)}


def sim_max_window(log: Path, window_ms: int = 1000) -> int:
    """The most submits accepted (status 0) in any window_ms from the simulator's log."""
    ts = []
    with log.open() as f:
        for line in f:
            d = json.loads(line)
            if d.get("status") == 0:
                ts.append(int(d["ts"]))
    ts.sort()
    best = j = 0
    for i, t in enumerate(ts):
        while ts[j] <= t - window_ms:
            j += 1
        best = max(best, i - j + 1)
    return best


def plot(path: Path, fol: Follower, samples: list[tuple[float, float, int]], t0: float,
         title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 5))
    for what, label in (("queued", "accepted/s"), ("submitted", "submitted/s"),
                        ("receipt", "receipts recorded/s"), ("final", "done (final status)/s")):
        b = fol.bins.get(what, {})
        if b:
            xs = sorted(b)
            ax.plot([x - t0 for x in xs], [b[x] for x in xs], label=label)
    ax.set_xlabel("seconds since the first request")
    ax.set_ylabel("per second")
    ax.grid(True, alpha=0.3)
    if samples:
        ax2 = ax.twinx()
        ax2.plot([s[0] - t0 for s in samples], [s[2] / 2**20 for s in samples], "k:",
                 label="gateway RSS (MiB)")
        ax2.set_ylabel("RSS MiB")
        ax2.legend(loc="lower right")
    ax.legend(loc="upper left")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


# ------------------------------------------------------------------------------ main

def run(args: argparse.Namespace) -> dict[str, Any]:
    sc = SCENARIOS[args.scenario]
    mix = args.mix or sc["mix"]
    tps = sc.get("tps", 0)
    down = sc.get("carrier_down", False)
    n = args.n
    work = Path(tempfile.mkdtemp(prefix="smsgw-e2e-", dir=args.workdir))
    store = work / "store"
    sim = gw = None
    out: dict[str, Any] = {"bench": "e2e", "scenario": args.scenario, "n": n, "mix": mix}
    try:
        seeded_s = seed_store(store, n)
        sim_port = free_port()
        if not down:
            sim = start_sim(work, sim_port, tps, log=bool(tps))
        api_port = free_port()
        metrics_port = free_port()
        cfg = write_config(work, sc["config"], api_port=api_port, store=store, port_a=sim_port,
                           metrics_port=metrics_port,
                           durability=args.durability, tps=float(tps))
        gw, ready = start_gateway(work, cfg, args.gc_threshold)
        pid = int(ready.get("pid") or gw.pid)
        if not down and not wait_ready(api_port, 30):
            raise SystemExit("gateway not ready (no bind?):\n"
                             + (work / "gateway.log").read_text()[-3000:])
        if args.quiet_hours == "auto":
            bypass_qh = not quiet_hours_open(time.time(), min(args.timeout, 1800))
        else:
            bypass_qh = args.quiet_hours == "bypass"
        fol = Follower(store)
        batch = 1 if args.mode == "single" else args.batch
        connections = args.connections or (64 if args.mode == "single" else 4)
        spy = None
        if args.py_spy:
            # collapsed stacks ("raw"), all threads, idle frames left out
            # the bench extra installs py-spy next to this interpreter (the venv's bin/)
            py_spy = shutil.which("py-spy", path=os.path.dirname(sys.executable)) or "py-spy"
            spy = subprocess.Popen([py_spy, "record", "--pid", str(pid), "--rate", "250",
                                    "--format", "raw", "-o", args.py_spy, "--nonblocking"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # The VM's speed now (before any load; bench/_calibrate.py): CPU per message is
        # comparable across stretches only together with it.
        calib_before = calibrate()
        cpu0 = proc_cpu(pid)
        harness_cpu0 = time.process_time()
        threads0 = thread_cpu(pid)
        faults0 = proc_minflt(pid)
        sim_cpu0 = proc_cpu(sim.pid) if sim is not None else 0.0
        lg = subprocess.Popen(
            [sys.executable, __file__, "--loadgen", str(api_port), "-n", str(n), "--mix", mix,
             "--batch", str(batch), "--connections", str(connections), "--rate",
             str(args.rate), "--quiet-hours", "bypass" if bypass_qh else "evaluate"],
            stdout=subprocess.PIPE, cwd=ROOT)
        samples: list[tuple[float, float, int]] = []
        peak_anon = 0
        load: dict[str, Any] | None = None
        phases: dict[str, Any] = {}
        deadline = time.monotonic() + args.timeout
        released_at: float | None = None
        stdout_box: list[bytes] = []
        reader = threading.Thread(target=lambda: stdout_box.append(lg.stdout.read()),  # type: ignore[union-attr]
                                  daemon=True)
        reader.start()
        while True:
            time.sleep(0.25)
            fol.poll()
            now = time.time()
            m = proc_mem(pid)
            samples.append((now, proc_cpu(pid), m.get("VmRSS", 0)))
            peak_anon = max(peak_anon, m.get("RssAnon", 0))
            if load is None and lg.poll() is not None:
                reader.join()
                if lg.returncode != 0:
                    raise SystemExit(f"load generator failed ({lg.returncode})")
                load = json.loads(stdout_box[0])
                phases["accepted_cpu_s"] = round(proc_cpu(pid) - cpu0, 2)
            if down and load is not None and released_at is None:
                # every message waits in the outbox: measure, then bring the carrier up
                phases["queued_rss_bytes"] = proc_mem(pid).get("VmRSS", 0)
                phases["queued_rss_anon_bytes"] = proc_mem(pid).get("RssAnon", 0)
                phases["queued_peak_rss_bytes"] = proc_mem(pid).get("VmHWM", 0)
                released_at = time.time()
                sim = start_sim(work, sim_port, tps, log=False)
            expected = load["queued"] if load is not None else None
            if expected is not None and fol.counts.get("final", 0) >= expected:
                break
            if time.monotonic() > deadline:
                out["timed_out"] = True
                break
        t_end = time.time()
        cpu = proc_cpu(pid) - cpu0
        harness_cpu = time.process_time() - harness_cpu0
        faults = proc_minflt(pid) - faults0
        threads = {k: round(v - threads0.get(k, 0.0), 2) for k, v in thread_cpu(pid).items()}
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(timeout=30)
        calib_after = calibrate()
        mem = proc_mem(pid)
        try:
            text = metrics_text(metrics_port)
            out["latency_histograms"] = scrape_histograms(
                text, ("smsgw_inbound_ack_latency_seconds", "smsgw_store_commit_seconds"))
            # commit groups vs batches: how well group commit is grouping
            out["store"] = scrape_counters(
                text, ("smsgw_store_write_txns_total", "smsgw_store_commits_total"))
        except (OSError, ValueError) as e:
            out["latency_histograms"] = {"error": str(e)}
        assert load is not None
        c = fol.counts
        first_req = load["started_at"]
        accepted = c.get("queued", 0)
        out.update({
            "complete": not out.get("timed_out", False),
            "config": sc["config"], "mode": args.mode, "batch": batch,
            "connections": connections, "offered_rate": args.rate or "max",
            "durability": args.durability, "gc_threshold": args.gc_threshold,
            "quiet_hours": "bypassed" if bypass_qh else "evaluated (inside the window)",
            "accepted_per_s": load["accepted_per_s"],
            "submitted_per_s": rate(c.get("submitted", 0), fol.first_at.get("submitted"),
                                    fol.last_at.get("submitted")),
            "receipts_per_s": rate(c.get("receipt", 0), fol.first_at.get("receipt"),
                                   fol.last_at.get("receipt")),
            "e2e_messages_per_s": round(c.get("final", 0) / (fol.last_at.get("final", t_end)
                                                            - first_req), 1)
            if c.get("final") else None,
            "accept_latency_ms": load["accept_latency_ms"],
            "accept_to_submit_ms": {"p50": pct(fol.accept_submit, 0.5),
                                    "p99": pct(fol.accept_submit, 0.99)},
            "submit_to_receipt_ms": {"p50": pct(fol.submit_receipt, 0.5),
                                     "p99": pct(fol.submit_receipt, 0.99)},
            "gateway_cpu_s": round(cpu, 2),
            "gateway_cpu_us_per_message": round(cpu / n * 1e6, 1),
            "gateway_thread_cpu_s": {k: v for k, v in threads.items() if v > 0},
            "gateway_minor_faults": faults,
            "gateway_peak_rss_mb": round(mem.get("VmHWM", 0) / 2**20, 1),
            # VmHWM counts LMDB's file-backed mmap pages (page cache, shared, reclaimable);
            # the process's own memory is the anonymous part (sampled every 0.25 s).
            "gateway_peak_rss_anon_mb": round(peak_anon / 2**20, 1),
            "gateway_rss_file_mb_at_end": round(mem.get("RssFile", 0) / 2**20, 1),
            "counts": {"requested": n, "accepted": accepted, "rejected": load["rejected"],
                       "api_other": load["other"], "http": load["statuses"],
                       "submitted": c.get("submitted", 0), "receipts": c.get("receipt", 0),
                       "final": c.get("final", 0), "delivered": c.get("delivered", 0),
                       **{k: v for k, v in c.items() if k not in
                          ("queued", "submitted", "receipt", "final", "delivered")}},
            "steady_per_s": {k: steady_rate(fol.bins.get(k, {}))
                             for k in ("queued", "submitted", "receipt", "final")},
            "wall_s": round(t_end - first_req, 2), "seed_s": round(seeded_s, 1),
            "python": platform.python_version(), "cpus": os.cpu_count(),
            # which build: a distribution's (PGO + LTO) or a default source/pyenv one
            # differ by ~5-15 % CPU per message here (bench/RESULTS.md, session 5)
            "python_executable": os.path.realpath(sys.executable),
            # bench/_calibrate.py before and after the load (us per iteration, lower is a
            # faster VM), and the CPU per message scaled to its reference speed by the
            # faster of the two (a busy moment only ever makes one slower)
            "calibration_us": {"before": calib_before, "after": calib_after},
            "gateway_cpu_us_per_message_at_reference": round(
                cpu / n * 1e6 * REFERENCE_US / min(calib_before, calib_after), 1),
        })
        if down:
            out["carrier_down"] = {
                "accept_phase_cpu_s": phases.get("accepted_cpu_s"),
                "rss_mb_with_all_queued": round(phases.get("queued_rss_bytes", 0) / 2**20, 1),
                "rss_anon_mb_with_all_queued": round(
                    phases.get("queued_rss_anon_bytes", 0) / 2**20, 1),
                "peak_rss_mb_while_queued": round(
                    phases.get("queued_peak_rss_bytes", 0) / 2**20, 1),
                "drain_per_s": round(c.get("final", 0) / (t_end - released_at), 1)
                if released_at else None,
            }
        # What the other core spends per message: the simulator, the load generator and
        # this process (the event follower), which bounds what one gateway core can show.
        out["harness_cpu_s"] = {"loadgen": load.get("cpu_s"), "follower": round(harness_cpu, 2)}
        if sim is not None:
            out["sim_cpu_s"] = round(proc_cpu(sim.pid) - sim_cpu0, 2)
            out["other_core_cpu_us_per_message"] = round(
                (out["sim_cpu_s"] + (load.get("cpu_s") or 0.0) + harness_cpu) / n * 1e6, 1)
            stats = stop_sim(sim)
            sim = None
            out["sim"] = {k: stats.get(k) for k in ("submits", "submits_ok", "throttled",
                                                    "failed", "dlrs_sent", "dlrs_acked")}
            if tps and (work / "sim-submits.jsonl").exists():
                out["tps"] = {"configured": tps,
                              "submitted_steady": steady_rate(fol.bins.get("submitted", {})),
                              "max_accepted_in_any_1000ms": sim_max_window(
                                  work / "sim-submits.jsonl"),
                              "throttled": stats.get("throttled")}
        if args.plot:
            try:
                import matplotlib  # noqa: F401  (the `bench` extra; not a test dependency)
            except ImportError:
                # The numbers are the result; the picture is optional. Say why it is missing
                # rather than failing a run whose counts are all there.
                out["plot"] = None
                out["plot_skipped"] = "matplotlib not installed: pip install -e '.[bench]'"
            else:
                plot(Path(args.plot), fol, samples, first_req,
                     f"smsgw e2e {args.scenario} n={n} {args.mode}")
                out["plot"] = args.plot
        fol.close()
        return out
    finally:
        if gw is not None:
            code = stop_gateway(gw)
            out["gateway_exit"] = code
        if sim is not None:
            stop_sim(sim)
        if args.keep:
            out["workdir"] = str(work)
        else:
            shutil.rmtree(work, ignore_errors=True)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--scenario", choices=sorted(SCENARIOS), default="gsm1")
    ap.add_argument("-n", type=int, default=20_000, help="messages (default %(default)s)")
    ap.add_argument("--mode", choices=["batch", "single"], default="batch")
    ap.add_argument("--batch", type=int, default=1000, help="messages per batch request")
    ap.add_argument("--connections", type=int, default=0,
                    help="keep-alive connections (default: 4 batch, 64 single)")
    ap.add_argument("--rate", type=float, default=0.0,
                    help="offered messages/s (default 0: as fast as answered)")
    ap.add_argument("--mix", choices=["gsm1", "mixed"], help="override the scenario's mix")
    ap.add_argument("--durability", choices=["fsync", "os"], default="fsync")
    ap.add_argument("--quiet-hours", choices=["auto", "evaluate", "bypass"], default="auto")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for completion")
    ap.add_argument("--plot", metavar="PNG", help="write a plot of the rates over time")
    ap.add_argument("--gc-threshold", metavar="G0,G1,G2",
                    help="run the gateway with gc.set_threshold(G0, G1, G2) (experiment)")
    ap.add_argument("--py-spy", metavar="FILE",
                    help="profile the gateway with py-spy (collapsed stacks) during the load")
    ap.add_argument("--workdir", help="parent of the temporary run directory")
    ap.add_argument("--keep", action="store_true", help="keep the run directory (logs, store)")
    ap.add_argument("--loadgen", type=int, metavar="API_PORT", help=argparse.SUPPRESS)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.loadgen:
        res = run_loadgen(args.loadgen, args.n, args.mix or "gsm1", args.batch,
                          args.connections or 4, args.rate, args.quiet_hours == "bypass")
        sys.stdout.write(json.dumps(res) + "\n")
        return 0
    res = run(args)
    sys.stdout.write(json.dumps(res) + "\n")
    return 0 if res.get("complete") else 1


if __name__ == "__main__":
    sys.exit(main())
