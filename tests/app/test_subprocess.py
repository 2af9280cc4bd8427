"""``smsgw run`` as a user runs it: a subprocess, a config file, the CLI's ``send``.

Ports: the API and metrics listen on port 0 and the process writes what it bound to
``$SMSGW_READY_FILE``; the test polls that file (bounded), never sleeps for timing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from gateway.app import READY_FILE_ENV, Ready, ready_from_file
from tests.api.client import request
from tests.app.helpers import config_text, free_port, poll

pytestmark = pytest.mark.slow

TO = "+14155550123"


def smsgw() -> list[str]:
    script = Path(sys.executable).parent / "smsgw"
    return [str(script)] if script.exists() else [sys.executable, "-m", "gateway.cli"]


async def test_run_send_delivered_sigterm(tmp_path: Path) -> None:
    for module in ("gateway.backend", "gateway.pipeline.dispatch", "gateway.pipeline.inbound"):
        pytest.importorskip(module, reason="the pipeline has not landed")
    config = tmp_path / "gateway.toml"
    config.write_text(config_text(tmp_path / "data", free_port()))
    ready_file = tmp_path / "ready.json"
    log_file = tmp_path / "smsgw.log"
    env = {**os.environ, READY_FILE_ENV: str(ready_file)}
    with log_file.open("wb") as log, trio.fail_after(60):
        proc = await trio.lowlevel.open_process([*smsgw(), "run", "-c", str(config)],
                                                env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            async def started() -> Ready | None:
                assert proc.poll() is None, log_file.read_text()
                return ready_from_file(ready_file)

            ready = await poll(started, 0.05)

            sent = await trio.run_process(
                [*smsgw(), "send", "--to", TO, "--text", "Order 42 has shipped",
                 "--api", ready.api_url], capture_stdout=True, capture_stderr=True)
            answer = json.loads(sent.stdout)
            message_id = answer["results"][0]["id"]
            assert answer["results"][0]["status"] == "queued"

            async def delivered() -> dict[str, Any] | None:
                reply = await request(ready.api_port, "GET", f"/v1/messages/{message_id}")
                body: dict[str, Any] = reply.json()
                return body if body["status"] == "delivered" else None

            await poll(delivered, 0.05)

            proc.send_signal(signal.SIGTERM)
            with trio.fail_after(25):
                code = await proc.wait()
            assert code == 0, log_file.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
                await proc.wait()
    text = log_file.read_text()
    assert "ready" in text and "stopped" in text
    assert TO not in text  # phone numbers are masked in logs
