"""Kannel side by side: the same simulator, HTTP in, SMPP out, receipts back, one JSON line.

A measurement tool for issue 7 ("measured side by side on the same machine"), not part of
the gateway: nothing in ``make test`` or ``make run`` needs Kannel. Install it with
``apt-get install -y kannel`` (Debian's 1.4.5: ``/usr/sbin/bearerbox``, ``/usr/sbin/smsbox``).

What runs:

* the node-smpp SMSC simulator (``../shared/peers/smsc_sim.js``) exactly as
  ``bench/e2e.py`` starts it (``--system-id bench --password bench``, ``--dlr-delay 0``, a
  DELIVRD receipt for every message), plus its control port on 127.0.0.1 so that this
  process can poll ``GET /stats`` (submit_sm counters) every 0.1 s;
* Kannel's ``bearerbox`` and ``smsbox`` with a config written into a temp dir (rendered
  by ``render_config``; every listener on 127.0.0.1 through ``admin-interface``,
  ``smsbox-interface`` and ``sendsms-interface``): ``dlr-storage = internal``, no message
  store unless ``--store``, ``--binds`` ``smsc = smpp`` groups (one SMSC id, transceiver
  mode) with ``max-pending-submits = --window`` and no ``throughput`` limit, one
  ``sendsms-user``; logs at warning level (the gateway's bench config logs at warning too).
  One bind by default: with two, the simulator may send a receipt on the other bind
  before Kannel has stored the DLR entry from the submit_sm_resp, and Kannel 1.4.5 drops
  it ("DLR ... not found"; counted under ``kannel_log`` and ``lost``);
* a DLR sink (a selectors HTTP/1.1 keep-alive server in a thread of this process) that
  counts Kannel's DLR callbacks and records when each arrived. The ``dlr-url`` carries the
  message's index and Kannel's ``%d`` (1 delivered, 2 failed, 4 buffered, 8 SMSC ack,
  16 SMSC reject); types 1 and 2 are final;
* the load generator in a separate process: ``GET /cgi-bin/sendsms?...`` one message per
  request over ``--connections`` keep-alive connections, one request in flight each,
  distinct recipients (``bench/e2e.py``'s ``phone(i)``), its gsm1 text (1 GSM-7 part).

What the numbers count:

* ``accepted_per_s``: n / (first request -> last HTTP answer); an answer counts as
  accepted when it is ``202`` with ``Accepted for delivery`` (smsbox answers after
  bearerbox acknowledged the message, ``immediate-sendsms-reply`` stays off);
* ``submitted_per_s``: submit_sm answered OK by the simulator, from its counters (first
  poll that saw one -> first poll that saw all n);
* ``dlr_per_s``: final DLR callbacks received by the sink, first -> last;
* ``e2e_messages_per_s``: n / (first request -> last final DLR callback), i.e. accept ->
  submit -> receipt -> DLR handed back upstream over HTTP;
* ``kannel_cpu_s``: bearerbox + smsbox user+system CPU from ``/proc`` over the same
  window; ``harness_cpu_s``: the load generator, the sink and the poller (other core);
* ``calibration_us``: the VM's speed before and after the load (``bench/_calibrate.py``,
  as ``bench/e2e.py`` reports it; lower is faster).

    .venv/bin/python bench/kannel.py -n 20000 --connections 64 --window 256

Prints ONE JSON object. Exits with a message (status 2) when Kannel is not installed.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import re
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

# Run as a script, this file's directory is sys.path[0], and bench/http.py would shadow
# the standard library's `http` package: drop it (as bench/e2e.py does).
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]


def _load_e2e() -> Any:
    """bench/e2e.py as a module (bench/ is not a package): free_port, phone, the sim."""
    spec = importlib.util.spec_from_file_location("smsgw_bench_e2e", _HERE / "e2e.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


e2e = _load_e2e()

SBIN = ("/usr/sbin", "/usr/local/sbin", "/usr/bin", "/usr/local/bin")
USER = PASSWORD = "bench"
SENDER = "12345"
FINAL_TYPES = frozenset({1, 2})  # Kannel dlr-mask bits: 1 delivered, 2 failed (final)
ACCEPTED = b"Accepted for delivery"


# ------------------------------------------------------------------------------ config

def render_config(*, work: Path, sim_port: int, admin_port: int, smsbox_port: int,
                  sendsms_port: int, binds: int = 1, window: int = 256,
                  store: str = "none", log_level: int = 2,
                  smsbox_max_pending: int = 0, max_pending_requests: int = 512,
                  admin_password: str = "bench") -> str:
    """The kannel.conf text: groups of ``key = value`` lines separated by one blank line.

    Kannel ends a group at a blank line, so no group may contain one. Every listener is
    pinned to 127.0.0.1 (admin, the smsbox link, sendsms); the SMPP side only connects.
    """
    if binds < 1:
        raise ValueError("binds must be >= 1")
    if store not in ("none", "file", "spool"):
        raise ValueError("store must be none, file or spool")

    def q(s: str | Path) -> str:
        return '"' + str(s).replace('"', '') + '"'

    core: list[tuple[str, str]] = [
        ("group", "core"),
        ("admin-port", str(admin_port)),
        ("admin-interface", "127.0.0.1"),
        ("admin-password", q(admin_password)),
        ("status-password", q(admin_password)),
        ("admin-allow-ip", q("127.0.0.1")),
        ("smsbox-port", str(smsbox_port)),
        ("smsbox-interface", "127.0.0.1"),
        ("box-allow-ip", q("127.0.0.1")),
        ("box-deny-ip", q("*.*.*.*")),
        ("dlr-storage", "internal"),
        ("log-file", q(work / "bearerbox.log")),
        ("log-level", str(log_level)),
    ]
    if smsbox_max_pending:
        core.append(("smsbox-max-pending", str(smsbox_max_pending)))
    if store == "file":
        core += [("store-type", "file"), ("store-location", q(work / "kannel.store"))]
    elif store == "spool":
        core += [("store-type", "spool"), ("store-location", q(work / "spool"))]
    groups = [core]
    # One SMSC id over several groups = several binds Kannel load-balances over.
    groups += [[
            ("group", "smsc"),
            ("smsc", "smpp"),
            ("smsc-id", "sim"),
            ("host", "127.0.0.1"),
            ("port", str(sim_port)),
            ("transceiver-mode", "true"),
            ("smsc-username", q(USER)),
            ("smsc-password", q(PASSWORD)),
            ("system-type", q("")),
            ("max-pending-submits", str(window)),
            ("enquire-link-interval", "30"),
            ("reconnect-delay", "1"),
        ] for _ in range(binds)]
    groups.append([
        ("group", "smsbox"),
        ("bearerbox-host", "127.0.0.1"),
        ("sendsms-port", str(sendsms_port)),
        ("sendsms-interface", "127.0.0.1"),
        ("max-pending-requests", str(max_pending_requests)),
        ("log-file", q(work / "smsbox.log")),
        ("log-level", str(log_level)),
    ])
    groups.append([
        ("group", "sendsms-user"),
        ("username", q(USER)),
        ("password", q(PASSWORD)),
        ("user-allow-ip", q("127.0.0.1")),
        ("max-messages", "1"),
    ])
    return "\n\n".join("\n".join(f"{k} = {v}" for k, v in g) for g in groups) + "\n"


def sendsms_path(i: int, text: str, dlr_base: str, dlr_mask: int) -> str:
    """The sendsms request path for message i; its DLR URL carries i and Kannel's %d."""
    dlr_url = f"{dlr_base}/dlr?i={i}&t=%d"
    query = urllib.parse.urlencode({
        "username": USER, "password": PASSWORD, "from": SENDER, "to": e2e.phone(i),
        "text": text, "dlr-mask": str(dlr_mask), "dlr-url": dlr_url})
    return "/cgi-bin/sendsms?" + query


def parse_dlr_target(target: bytes) -> tuple[int, int] | None:
    """(index, type) from a DLR callback's request target ``/dlr?i=..&t=..``, else None."""
    _, _, qs = target.partition(b"?")
    fields = urllib.parse.parse_qs(qs.decode("ascii", "replace"))
    try:
        return int(fields["i"][0]), int(fields["t"][0])
    except (KeyError, ValueError, IndexError):
        return None


# ------------------------------------------------------------------------------ binaries

def find_binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for d in SBIN:
        p = Path(d) / name
        if p.is_file() and os.access(p, os.X_OK):
            return str(p)
    return None


def kannel_version(bearerbox: str) -> str:
    try:
        out = subprocess.run([bearerbox, "--version"], capture_output=True, timeout=10,
                             check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unknown ({e})"
    m = re.search(r"version `([^']+)'", (out.stdout + out.stderr).decode(errors="replace"))
    return m.group(1) if m else "unknown"


# ------------------------------------------------------------------------------ DLR sink

class DlrSink:
    """HTTP/1.1 keep-alive server on 127.0.0.1 counting DLR callbacks (a thread)."""

    REPLY = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nOK"

    def __init__(self) -> None:
        self._lsock = socket.socket()
        self._lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._lsock.bind(("127.0.0.1", 0))
        self._lsock.listen(1024)
        self._lsock.setblocking(False)
        self.port = int(self._lsock.getsockname()[1])
        self._stop = threading.Event()
        self.final_at: dict[int, float] = {}  # first final callback per message
        self.types: dict[int, int] = {}
        self.duplicates = 0
        self.bad = 0
        self.connections = 0
        self._thread = threading.Thread(target=self._run, name="dlr-sink", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    @property
    def final(self) -> int:
        return len(self.final_at)

    def _run(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self._lsock, selectors.EVENT_READ)
        bufs: dict[socket.socket, bytearray] = {}
        while not self._stop.is_set():
            for key, _ in sel.select(timeout=0.1):
                s = key.fileobj
                assert isinstance(s, socket.socket)
                if s is self._lsock:
                    try:
                        c, _ = s.accept()
                    except BlockingIOError:
                        continue
                    c.setblocking(False)
                    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    sel.register(c, selectors.EVENT_READ)
                    bufs[c] = bytearray()
                    self.connections += 1
                    continue
                try:
                    chunk = s.recv(65536)
                except BlockingIOError:
                    continue
                except ConnectionError:
                    chunk = b""
                if not chunk:
                    sel.unregister(s)
                    bufs.pop(s, None)
                    s.close()
                    continue
                buf = bufs[s]
                buf += chunk
                replies = 0
                while True:
                    end = buf.find(b"\r\n\r\n")
                    if end < 0:
                        break
                    line = bytes(buf[:buf.find(b"\r\n")])
                    del buf[:end + 4]  # GET callbacks carry no body
                    self._record(line, time.time())
                    replies += 1
                if replies:
                    s.setblocking(True)
                    with contextlib.suppress(OSError):
                        s.sendall(self.REPLY * replies)
                    s.setblocking(False)
        for s in bufs:
            s.close()
        self._lsock.close()

    def _record(self, request_line: bytes, at: float) -> None:
        parts = request_line.split(b" ")
        got = parse_dlr_target(parts[1]) if len(parts) >= 2 else None
        if got is None:
            self.bad += 1
            return
        i, t = got
        self.types[t] = self.types.get(t, 0) + 1
        if t in FINAL_TYPES:
            if i in self.final_at:
                self.duplicates += 1
            else:
                self.final_at[i] = at


# ------------------------------------------------------------------------------ load generator

def run_loadgen(port: int, n: int, connections: int, dlr_base: str, dlr_mask: int
                ) -> dict[str, Any]:
    """Push n sendsms GETs; one request in flight per keep-alive connection."""
    requests = [(f"GET {sendsms_path(i, e2e.GSM1, dlr_base, dlr_mask)} HTTP/1.1\r\n"
                 "Host: 127.0.0.1\r\n\r\n").encode() for i in range(n)]
    todo = list(range(n))
    todo.reverse()
    sel = selectors.DefaultSelector()

    def connect() -> socket.socket:
        s = socket.create_connection(("127.0.0.1", port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
        return s

    idle = [connect() for _ in range(connections)]
    state: dict[socket.socket, list[Any]] = {s: [bytearray(), 0.0, -1] for s in idle}
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    accepted = other = reconnects = 0
    outstanding = 0
    t0 = time.perf_counter()
    wall0 = time.time()
    cpu0 = time.process_time()

    def send(s: socket.socket, idx: int, now: float) -> None:
        nonlocal outstanding
        st = state[s]
        st[1], st[2] = now, idx
        s.setblocking(True)
        s.sendall(requests[idx])
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        outstanding += 1

    while todo or outstanding:
        now = time.perf_counter()
        while idle and todo:
            send(idle.pop(), todo.pop(), now)
        for key, _ in sel.select(timeout=0.05):
            s = key.fileobj
            assert isinstance(s, socket.socket)
            st = state[s]
            chunk = s.recv(1 << 16)
            buf = st[0]
            if not chunk:
                # the server closed: a request in flight without its answer is resent
                sel.unregister(s)
                s.close()
                del state[s]
                outstanding -= 1
                todo.append(st[2])
                reconnects += 1
                c = connect()
                state[c] = [bytearray(), 0.0, -1]
                idle.append(c)
                continue
            buf += chunk
            head_end = buf.find(b"\r\n\r\n")
            if head_end < 0:
                continue
            head = bytes(buf[:head_end]).lower()
            at = head.find(b"content-length:")
            if at < 0:
                raise SystemExit("sendsms answer without Content-Length: "
                                 + bytes(buf[:head_end]).decode(errors="replace"))
            eol = head.find(b"\r\n", at)
            length = int(head[at + 15:eol if eol > 0 else None].strip())
            total = head_end + 4 + length
            if len(buf) < total:
                continue
            done = time.perf_counter()
            status = int(buf[9:12])
            body = bytes(buf[head_end + 4:total])
            close = b"connection: close" in head
            del buf[:total]
            sel.unregister(s)
            outstanding -= 1
            statuses[status] = statuses.get(status, 0) + 1
            latencies.append(done - st[1])
            if status == 202 and ACCEPTED in body:
                accepted += 1
            else:
                other += 1
            if close:
                s.close()
                del state[s]
                reconnects += 1
                c = connect()
                state[c] = [bytearray(), 0.0, -1]
                idle.append(c)
            else:
                idle.append(s)
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    for s in state:
        s.close()
    return {"messages": n, "seconds": round(elapsed, 3), "cpu_s": round(cpu, 3),
            "started_at": wall0, "ended_at": wall0 + elapsed,
            "accepted": accepted, "other": other, "statuses": statuses,
            "reconnects": reconnects,
            "accepted_per_s": round(accepted / elapsed, 1) if elapsed > 0 else None,
            "accept_latency_ms": {"p50": e2e.pct(latencies, 0.5),
                                  "p99": e2e.pct(latencies, 0.99),
                                  "max": e2e.pct(latencies, 1.0)}}


# ------------------------------------------------------------------------------ processes

def start_sim(work: Path, port: int) -> tuple[subprocess.Popen[bytes], int]:
    """The simulator as bench/e2e.py starts it, with its control port (for /stats)."""
    proc, info = e2e.launch_sim(work, port, [
        "--system-id", USER, "--password", PASSWORD, "--dlr-delay", "0",
        "--control-port", "0"])
    return proc, int(info["control_port"])


def http_get_text(port: int, path: str, timeout: float = 5.0) -> str:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        return conn.getresponse().read().decode("utf-8", "replace")
    finally:
        conn.close()


def sim_stats(control_port: int) -> dict[str, Any]:
    return dict(json.loads(http_get_text(control_port, "/stats")))


def kannel_status(admin_port: int, password: str) -> str:
    return http_get_text(admin_port, f"/status.txt?password={password}")


def wait_kannel(admin_port: int, sendsms_port: int, binds: int, password: str,
                procs: list[subprocess.Popen[bytes]], work: Path, timeout: float) -> str:
    """Until every SMPP bind is online and sendsms answers; returns the status text."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        for p in procs:
            if p.poll() is not None:
                raise SystemExit(f"{p.args[0]} exited ({p.returncode}):\n"
                                 + tail(work / "kannel.stderr"))
        try:
            last = kannel_status(admin_port, password)
            online = last.count("(online")
            if online >= binds:
                with socket.create_connection(("127.0.0.1", sendsms_port), timeout=1):
                    return last
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit("Kannel not ready (SMPP binds online?):\n" + last[-2000:]
                     + tail(work / "kannel.stderr"))


def tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def log_summary(paths: list[Path], keep: int = 8) -> dict[str, int]:
    """Warning/error lines of Kannel's logs, counted by message (ids and numbers blanked)."""
    counts: dict[str, int] = {}
    for path in paths:
        for line in tail(path, 1 << 22).splitlines():
            m = re.search(r"\] (WARNING|ERROR|PANIC): (.*)$", line)
            if m is None:
                continue
            text = re.sub(r"<[^>]*>", "<..>", m.group(2))  # ids, numbers, addresses
            msg = f"{path.stem}: {m.group(1)}: {text}"[:160]
            counts[msg] = counts.get(msg, 0) + 1
    top = sorted(counts.items(), key=lambda kv: -kv[1])[:keep]
    return dict(top)


def stop(proc: subprocess.Popen[bytes], timeout: float = 20) -> int:
    if proc.poll() is not None:
        return proc.returncode
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def listeners(pids: list[int]) -> list[str]:
    """Listening TCP sockets of pids (``ss -ltnp``), to show nothing is on 0.0.0.0."""
    try:
        out = subprocess.run(["ss", "-ltnpH"], capture_output=True, timeout=10,
                             check=False).stdout.decode()
    except (OSError, subprocess.TimeoutExpired):
        return []
    keep = []
    for line in out.splitlines():
        if any(f"pid={p}," in line for p in pids):
            cols = line.split()
            keep.append(cols[3] if len(cols) > 3 else line)
    return sorted(keep)


# ------------------------------------------------------------------------------ main

def run(args: argparse.Namespace) -> dict[str, Any]:
    bearerbox, smsbox = find_binary("bearerbox"), find_binary("smsbox")
    if bearerbox is None or smsbox is None:
        raise SystemExit("Kannel is not installed (bearerbox/smsbox not found): "
                         "`apt-get install -y kannel` (a measurement tool only)")
    n = args.n
    work = Path(tempfile.mkdtemp(prefix="smsgw-kannel-", dir=args.workdir))
    sim: subprocess.Popen[bytes] | None = None
    boxes: list[subprocess.Popen[bytes]] = []
    sink: DlrSink | None = None
    out: dict[str, Any] = {"bench": "kannel", "n": n, "connections": args.connections}
    try:
        sim_port = e2e.free_port()
        sim, control_port = start_sim(work, sim_port)
        sink = DlrSink()
        sink.start()
        ports = {"admin_port": e2e.free_port(), "smsbox_port": e2e.free_port(),
                 "sendsms_port": e2e.free_port()}
        conf = work / "kannel.conf"
        (work / "spool").mkdir()
        conf.write_text(render_config(
            work=work, sim_port=sim_port, binds=args.binds, window=args.window,
            store=args.store, smsbox_max_pending=args.smsbox_max_pending,
            max_pending_requests=args.max_pending_requests, **ports))
        err = open(work / "kannel.stderr", "wb")  # noqa: SIM115
        # -v 2: warnings and worse on stderr (the default is debug, a line per PDU)
        boxes.append(subprocess.Popen([bearerbox, "-v", "2", str(conf)], cwd=work,
                                      stdout=err, stderr=subprocess.STDOUT))
        deadline = time.monotonic() + 15
        while True:
            try:
                with socket.create_connection(("127.0.0.1", ports["smsbox_port"]), timeout=1):
                    break
            except OSError:
                if boxes[0].poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("bearerbox did not start:\n"
                                     + tail(work / "kannel.stderr")) from None
                time.sleep(0.05)
        boxes.append(subprocess.Popen([smsbox, "-v", "2", str(conf)], cwd=work,
                                      stdout=err, stderr=subprocess.STDOUT))
        wait_kannel(ports["admin_port"], ports["sendsms_port"], args.binds, "bench", boxes,
                    work, 30)
        time.sleep(0.5)  # smsbox's link to bearerbox comes up after sendsms listens
        out["listening"] = listeners([p.pid for p in boxes])
        pids = [p.pid for p in boxes]
        # The VM's speed before and after the load (bench/_calibrate.py through e2e.py),
        # so that a run can be placed in its stretch like the gateway's runs.
        calibrate = getattr(e2e, "calibrate", None)
        calib_before = calibrate() if calibrate else None
        cpu0 = [e2e.proc_cpu(p) for p in pids]
        sim_cpu0 = e2e.proc_cpu(sim.pid)
        harness0 = time.process_time()
        stats0 = sim_stats(control_port)
        lg = subprocess.Popen(
            [sys.executable, __file__, "--loadgen", str(ports["sendsms_port"]), "-n", str(n),
             "--connections", str(args.connections), "--dlr-mask", str(args.dlr_mask),
             "--dlr-base", f"http://127.0.0.1:{sink.port}"],
            stdout=subprocess.PIPE)
        box: list[bytes] = []
        reader = threading.Thread(target=lambda: box.append(lg.stdout.read()),  # type: ignore[union-attr]
                                  daemon=True)
        reader.start()
        load: dict[str, Any] | None = None
        submits: list[tuple[float, int]] = []
        deadline = time.monotonic() + args.timeout
        base_ok = int(stats0.get("submits_ok", 0))

        def snapshot() -> tuple[list[float], float, float]:
            return ([e2e.proc_cpu(p) - c0 for p, c0 in zip(pids, cpu0, strict=True)],
                    time.process_time() - harness0, e2e.proc_cpu(sim.pid) - sim_cpu0)

        # CPU as of the last progress (a final DLR or the load finishing), so that the
        # settle wait below adds no idle time to the per-message figures.
        snap = snapshot()
        seen = 0
        progress_at = time.monotonic()
        while True:
            time.sleep(0.1)
            now = time.time()
            try:
                st = sim_stats(control_port)
                submits.append((now, int(st.get("submits_ok", 0)) - base_ok))
            except (OSError, ValueError):
                pass
            if load is None and lg.poll() is not None:
                reader.join()
                if lg.returncode != 0:
                    raise SystemExit(f"load generator failed ({lg.returncode})")
                load = json.loads(box[0])
                snap, progress_at = snapshot(), time.monotonic()
            if sink.final > seen:
                seen = sink.final
                snap, progress_at = snapshot(), time.monotonic()
            if load is not None and sink.final >= load["accepted"]:
                break
            if load is not None and time.monotonic() - progress_at > args.settle:
                out["gave_up_after_s_without_a_dlr"] = args.settle
                break
            if time.monotonic() > deadline:
                out["timed_out"] = True
                break
        t_end = time.time()
        cpu, harness, sim_cpu = snap
        calib_after = calibrate() if calibrate else None
        if load is None:
            lg.kill()
            raise SystemExit("timed out before the load generator finished")
        try:
            status_text = kannel_status(ports["admin_port"], "bench")
        except OSError as e:
            status_text = f"error: {e}"
        first_req = load["started_at"]
        finals = sorted(sink.final_at.values())
        first_sub = next((t for t, c in submits if c > 0), None)
        last_sub = next((t for t, c in submits if c >= n), None)
        kcpu = sum(cpu)
        out.update({
            "complete": not out.get("timed_out", False) and sink.final >= n,
            "accepted_per_s": load["accepted_per_s"],
            "submitted_per_s": round(n / (last_sub - first_sub), 1)
            if first_sub and last_sub and last_sub > first_sub else None,
            "dlr_per_s": round(len(finals) / (finals[-1] - finals[0]), 1)
            if len(finals) > 1 and finals[-1] > finals[0] else None,
            "e2e_messages_per_s": round(len(finals) / (finals[-1] - first_req), 1)
            if finals else None,
            "accept_latency_ms": load["accept_latency_ms"],
            "lost": n - sink.final,
            "counts": {"requested": n, "accepted": load["accepted"],
                       "http_other": load["other"], "http": load["statuses"],
                       "reconnects": load["reconnects"],
                       "submitted_ok": submits[-1][1] if submits else None,
                       "dlr_final": sink.final, "dlr_types": sink.types,
                       "dlr_duplicates": sink.duplicates, "dlr_bad": sink.bad,
                       "dlr_connections": sink.connections},
            "kannel_cpu_s": round(kcpu, 2),
            "kannel_cpu_by_box_s": {"bearerbox": round(cpu[0], 2), "smsbox": round(cpu[1], 2)},
            "kannel_cpu_us_per_message": round(kcpu / n * 1e6, 1),
            "harness_cpu_s": {"loadgen": load["cpu_s"], "sink_and_poller": round(harness, 2)},
            "sim_cpu_s": round(sim_cpu, 2),
            "wall_s": round(t_end - first_req, 2),
            "config": {"binds": args.binds, "max_pending_submits": args.window,
                       "throughput": "unlimited", "dlr_storage": "internal",
                       "store": args.store, "dlr_mask": args.dlr_mask,
                       "smsbox_max_pending": args.smsbox_max_pending or "default",
                       "max_pending_requests": args.max_pending_requests,
                       "log_level": 2, "transceiver_mode": True},
            "calibration_us": {"before": calib_before, "after": calib_after},
            "kannel_version": kannel_version(bearerbox),
            "cpus": os.cpu_count(),
        })
        out["sim"] = {k: st.get(k) for k in ("submits", "submits_ok", "dlrs_sent", "dlrs_acked")
                      } if submits else None
        # (kannel.stderr repeats the log files' lines: -v 2 = the same level)
        out["kannel_log"] = log_summary([work / "bearerbox.log", work / "smsbox.log"])
        m = re.search(r"^SMS: received (.*)$", status_text, re.M)
        out["kannel_status_sms"] = m.group(0) if m else None
        return out
    finally:
        for p in reversed(boxes):
            stop(p)
        if sim is not None:
            e2e.stop_sim(sim)
        if sink is not None:
            sink.stop()
        if args.keep:
            out["workdir"] = str(work)
        else:
            shutil.rmtree(work, ignore_errors=True)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0] if __doc__ else None,
        epilog="Needs Kannel (apt-get install -y kannel), node and ../shared/peers.")
    ap.add_argument("-n", type=int, default=20_000, help="messages (default %(default)s)")
    ap.add_argument("--connections", type=int, default=64,
                    help="keep-alive sendsms connections (default %(default)s)")
    ap.add_argument("--binds", type=int, default=1,
                    help="SMPP transceiver binds (smsc groups, one smsc-id; default "
                         "%(default)s: with 2, as bench/configs/single.toml, Kannel 1.4.5 "
                         "loses the receipts that come back on the other bind before its "
                         "submit_sm_resp is stored: 'DLR ... not found')")
    ap.add_argument("--window", type=int, default=256,
                    help="max-pending-submits per bind (default %(default)s)")
    ap.add_argument("--store", choices=["none", "file", "spool"], default="none",
                    help="bearerbox message store (default none: queued messages in memory)")
    ap.add_argument("--dlr-mask", type=int, default=3,
                    help="dlr-mask per message (default 3 = delivered|failed; 31 adds "
                         "buffered, SMSC ack and reject callbacks); types 1 and 2 count")
    ap.add_argument("--smsbox-max-pending", type=int, default=0,
                    help="bearerbox's smsbox-max-pending (0: Kannel's default)")
    ap.add_argument("--max-pending-requests", type=int, default=512,
                    help="smsbox's max-pending-requests (default %(default)s, Kannel's)")
    ap.add_argument("--timeout", type=float, default=600.0,
                    help="seconds to wait for every DLR (default %(default)s)")
    ap.add_argument("--settle", type=float, default=10.0,
                    help="after the last request, stop waiting when no DLR came for this "
                         "many seconds; the missing ones count as lost (default %(default)s)")
    ap.add_argument("--workdir", help="parent of the temporary run directory")
    ap.add_argument("--keep", action="store_true", help="keep the run directory (config, logs)")
    ap.add_argument("--print-config", action="store_true",
                    help="print the kannel.conf this would run with (placeholder ports), exit")
    ap.add_argument("--loadgen", type=int, metavar="SENDSMS_PORT", help=argparse.SUPPRESS)
    ap.add_argument("--dlr-base", help=argparse.SUPPRESS)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.loadgen:
        res = run_loadgen(args.loadgen, args.n, args.connections, args.dlr_base,
                          args.dlr_mask)
        sys.stdout.write(json.dumps(res) + "\n")
        return 0
    if args.print_config:
        sys.stdout.write(render_config(
            work=Path("/tmp/kannel-run"), sim_port=2775, admin_port=13000,
            smsbox_port=13001, sendsms_port=13013, binds=args.binds, window=args.window,
            store=args.store, smsbox_max_pending=args.smsbox_max_pending,
            max_pending_requests=args.max_pending_requests))
        return 0
    if find_binary("bearerbox") is None or find_binary("smsbox") is None:
        sys.stderr.write("bench/kannel.py: Kannel is not installed (bearerbox/smsbox not "
                         "found in PATH or /usr/sbin): apt-get install -y kannel\n")
        return 2
    res = run(args)
    sys.stdout.write(json.dumps(res) + "\n")
    return 0 if res.get("complete") else 1


if __name__ == "__main__":
    sys.exit(main())
