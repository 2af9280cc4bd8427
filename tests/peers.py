"""Start the node-smpp SMSC simulator (../shared/peers/smsc_sim.js) for interop tests.

Tests that use it skip with a clear reason only when node or ../shared/peers is absent.
The simulator listens on 127.0.0.1 with ephemeral ports (``--port 0 --ready-file``) so
tests can run in parallel; it is stopped with SIGTERM and its final stats line is parsed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
PEERS = Path(os.environ.get("SMSGW_PEERS", ROOT.parent / "shared" / "peers")).resolve()
SIM_JS = PEERS / "smsc_sim.js"


def sim_unavailable_reason() -> str | None:
    """Why the simulator can't run here, or None when it can."""
    if shutil.which("node") is None:
        return "node is not installed"
    if not SIM_JS.exists():
        return f"{SIM_JS} not found (../shared/peers absent)"
    if not (PEERS / "node_modules" / "smpp").exists():
        return f"node-smpp not installed: run `npm ci --prefix {PEERS}`"
    return None


@dataclass
class SimHandle:
    """A running simulator: its ports, its process and (after stop) its final stats."""

    smpp_port: int
    control_port: int
    proc: subprocess.Popen[bytes]
    log_path: Path | None
    stats: dict[str, Any] = field(default_factory=dict)

    def control_url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.control_port}{path}"

    def submit_log(self) -> list[dict[str, Any]]:
        """The submit log lines (needs ``log=True``); flushes first via the control port."""
        assert self.log_path is not None, "start the simulator with log=True"
        self.control("POST", "/flush", {})
        if not self.log_path.exists():
            return []
        return [json.loads(line) for line in self.log_path.read_text().splitlines() if line]

    def control(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """Blocking HTTP call to the control port (use from a thread in trio tests)."""
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", self.control_port, timeout=10)
        try:
            payload = json.dumps(body).encode() if body is not None else None
            conn.request(method, path, body=payload, headers={"content-type": "application/json"})
            resp = conn.getresponse()
            data = resp.read()
            return {"status": resp.status, "body": json.loads(data) if data else None}
        finally:
            conn.close()


@contextmanager
def run_sim(
    *args: str, tmp_path: Path, log: bool = False, timeout: float = 10.0
) -> Iterator[SimHandle]:
    """Run smsc_sim.js with ``args`` (e.g. ``"--system-id", "gw"``); skip if unavailable."""
    reason = sim_unavailable_reason()
    if reason is not None:
        pytest.skip(f"SMSC simulator unavailable: {reason}")
    ready = tmp_path / f"sim-ready-{time.monotonic_ns()}.json"
    log_path = tmp_path / f"sim-submits-{time.monotonic_ns()}.jsonl" if log else None
    cmd = ["node", str(SIM_JS), "--port", "0", "--ready-file", str(ready), *args]
    if log_path is not None:
        cmd += ["--log", str(log_path)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    while not ready.exists() or not ready.read_text().strip():
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise RuntimeError(f"smsc_sim exited early ({proc.returncode}): {err}")
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("smsc_sim did not become ready")
        time.sleep(0.02)
    info = json.loads(ready.read_text())
    handle = SimHandle(info["smpp_port"], info["control_port"], proc, log_path)
    try:
        yield handle
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        for line in out.decode().splitlines():
            if line.startswith("{"):
                handle.stats = json.loads(line)
