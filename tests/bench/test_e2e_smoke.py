"""A CI-sized run of the end-to-end harness (bench/e2e.py): counts are right, not speed.

Runs the real thing (the node-smpp simulator, the gateway as a subprocess, the load
generator process, the read-only event follower) with a few thousand messages, in batch
and single-message mode, and checks that every message was accepted, submitted, receipted
and reached ``delivered``, and that the JSON carries every field RESULTS.md quotes.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.peers import sim_unavailable_reason

ROOT = Path(__file__).resolve().parents[2]
E2E = ROOT / "bench" / "e2e.py"

pytestmark = [pytest.mark.slow, pytest.mark.peers]

FIELDS = ("accepted_per_s", "submitted_per_s", "receipts_per_s", "e2e_messages_per_s",
          "accept_latency_ms", "accept_to_submit_ms", "submit_to_receipt_ms",
          "gateway_cpu_s", "gateway_peak_rss_mb", "n", "config")


def _run(tmp_path: Path, *args: str) -> dict[str, object]:
    reason = sim_unavailable_reason()
    if reason is not None:
        pytest.skip(f"SMSC simulator unavailable: {reason}")
    env_cache = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, str(E2E), "--workdir", str(tmp_path),
                           "--timeout", "120", *args], capture_output=True, timeout=240,
                          env={**os.environ, **env_cache}, check=False)
    assert proc.returncode == 0, proc.stderr.decode()[-3000:] + proc.stdout.decode()[-2000:]
    out: dict[str, object] = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    for f in FIELDS:
        assert f in out, f
    return out


def test_batch_mixed_counts(tmp_path: Path) -> None:
    n = 3000
    out = _run(tmp_path, "--scenario", "mixed", "-n", str(n), "--batch", "500",
               "--quiet-hours", "bypass", "--plot", str(tmp_path / "e2e.png"))
    counts = out["counts"]
    assert isinstance(counts, dict)
    assert out["complete"] is True
    assert counts["requested"] == counts["accepted"] == n
    assert counts["rejected"] == counts["api_other"] == 0
    assert counts["submitted"] == counts["final"] == counts["delivered"] == n
    # 60% 1-part and 30% 2-part GSM-7, 10% 1-part UCS-2 (bench/e2e.py text_for)
    parts = sum(2 if (i * 7) % 10 in (1, 2, 3) else 1 for i in range(n))
    assert counts["receipts"] == parts
    sim = out["sim"]
    assert isinstance(sim, dict)
    assert sim["submits"] == sim["submits_ok"] == sim["dlrs_acked"] == counts["receipts"]
    assert sim["throttled"] == 0
    # the other core's budget is reported: the client sent for a while, the follower polled
    harness = out["harness_cpu_s"]
    assert isinstance(harness, dict)
    assert harness["loadgen"] > 0 and harness["follower"] > 0
    other = out["other_core_cpu_us_per_message"]
    assert isinstance(other, float) and other > 0
    # the VM's speed around the load, and the CPU per message scaled by it
    calib = out["calibration_us"]
    assert isinstance(calib, dict) and calib["before"] > 0 and calib["after"] > 0
    scaled = out["gateway_cpu_us_per_message_at_reference"]
    cpu_per_msg = out["gateway_cpu_us_per_message"]
    assert isinstance(scaled, float) and isinstance(cpu_per_msg, float)
    assert scaled == pytest.approx(
        cpu_per_msg * 0.75 / min(calib["before"], calib["after"]), rel=0.01)
    if importlib.util.find_spec("matplotlib") is None:  # the `bench` extra
        assert out["plot"] is None and "matplotlib" in str(out["plot_skipped"])
    else:
        assert (tmp_path / "e2e.png").stat().st_size > 0


def test_single_message_mode_counts(tmp_path: Path) -> None:
    n = 1500
    out = _run(tmp_path, "--scenario", "gsm1", "-n", str(n), "--mode", "single",
               "--connections", "16", "--quiet-hours", "bypass")
    counts = out["counts"]
    assert isinstance(counts, dict)
    assert out["complete"] is True
    assert counts["accepted"] == counts["submitted"] == counts["receipts"] == n
    assert counts["final"] == counts["delivered"] == n
    assert counts["http"] == {"202": n}
