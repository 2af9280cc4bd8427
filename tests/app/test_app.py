"""The whole gateway in-process: sandbox SMSC, carriers, pipeline, API and metrics.

Ephemeral ports (127.0.0.1:0) for the API and metrics listeners; the app reports what it
bound through ``task_status`` (``Ready``). Every wait is bounded by ``trio.fail_after``
and polls; nothing sleeps for timing.
"""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path
from typing import Any

import pytest
import trio

from gateway.app import Gateway, Ready, load_rules_data, ready_from_file
from tests.api.client import request
from tests.api.fake import FakeBackend
from tests.app.helpers import ROOT, make_config, poll

TO = "+33612345678"


async def status_of(port: int, message_id: str) -> dict[str, Any]:
    reply = await request(port, "GET", f"/v1/messages/{message_id}")
    assert reply.status == 200, reply.body
    body: dict[str, Any] = reply.json()
    return body


@pytest.mark.slow
async def test_send_deliver_and_scrape(tmp_path: Path) -> None:
    for module in ("gateway.backend", "gateway.pipeline.dispatch", "gateway.pipeline.inbound"):
        pytest.importorskip(module, reason="the pipeline has not landed")
    cfg, _ = make_config(tmp_path / "data")
    gw = Gateway(cfg, config_dir=ROOT / "config", handle_signals=False)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            ready: Ready = await nursery.start(gw.run)
            assert ready.api_port > 0 and ready.metrics_port
            assert ready.sandbox_port and ready.sandbox_control_url

            health = await request(ready.api_port, "GET", "/healthz")
            assert health.status == 200

            reply = await request(ready.api_port, "POST", "/v1/messages",
                                  json={"to": TO, "text": "Your code is 1234",
                                        "kind": "transactional"})
            assert reply.status == 202, reply.body
            result = reply.json()["results"][0]
            assert result["status"] == "queued"
            mid = result["id"]

            async def delivered() -> dict[str, Any] | None:
                body = await status_of(ready.api_port, mid)
                return body if body["status"] == "delivered" else None

            body = await poll(delivered)
            assert body["status"] == "delivered"

            async def ready_now() -> bool | None:
                return True if (await request(ready.api_port, "GET", "/readyz")).status == 200 \
                    else None

            await poll(ready_now)

            scrape = await request(ready.metrics_port, "GET", "/metrics")
            assert scrape.status == 200
            text = scrape.body.decode()
            for series in ('smsgw_carrier_up{carrier="sandbox"} 1.0',
                           'smsgw_api_requests_total{route="POST /v1/messages",status="202"} 1.0',
                           "smsgw_store_commits_total",
                           "smsgw_outbox_depth",
                           'smsgw_carrier_submit_resp_total{carrier="sandbox",'
                           'outcome="accepted"} 1.0'):
                assert series in text, series
            assert TO not in text and not re.search(r"\+\d{6,}", text)
            assert "Your code" not in text

            gw.stop()
    assert gw.ready is ready


def test_rules_data_files() -> None:
    data = load_rules_data(make_config(Path("/nonexistent"))[0], ROOT / "config")
    assert data.keywords_file is not None and data.keywords_file.endswith("keywords.toml")
    assert data.quiet_hours_file is not None


def test_rules_data_bad_file(tmp_path: Path) -> None:
    (tmp_path / "keywords.toml").write_text("nonsense = 1\n")
    with pytest.raises(ValueError, match=r"keywords\.toml"):
        load_rules_data(make_config(Path("/nonexistent"))[0], tmp_path)


class FakePipelineGateway(Gateway):
    """The real lifecycle (store, sandbox, carriers, API, metrics, shutdown) with the
    API's fake backend in place of the pipeline: tests the wiring on its own."""

    async def _start_pipeline(self, nursery: trio.Nursery, store: Any, carrier_set: Any,
                              rules_data: Any) -> Any:
        return FakeBackend()


async def test_lifecycle_ready_file_and_stop(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    cfg, sandbox_port = make_config(tmp_path / "data")
    ready_file = tmp_path / "ready.json"
    monkeypatch.setenv("SMSGW_READY_FILE", str(ready_file))
    gw = FakePipelineGateway(cfg, config_dir=ROOT / "config", handle_signals=False)
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            ready: Ready = await nursery.start(gw.run)
            assert ready_from_file(ready_file) == ready
            assert ready.sandbox_port == sandbox_port
            carriers = gw.components["carriers"]
            await carriers["sandbox"].wait_bound()
            reply = await request(ready.api_port, "POST", "/v1/messages",
                                  json={"to": TO, "text": "hi"})
            assert reply.status == 202
            scrape = await request(ready.metrics_port, "GET", "/metrics")
            assert b'smsgw_carrier_up{carrier="sandbox"} 1.0' in scrape.body
            assert b"smsgw_sandbox_bound_sessions 1.0" in scrape.body
            gw.stop()
    # everything was closed: the ports are free again, the store can be reopened
    with trio.fail_after(5):
        with pytest.raises(OSError):
            await trio.open_tcp_stream("127.0.0.1", ready.api_port)
    assert not gw.components["carriers"]["sandbox"].live_binds


async def test_sigterm_is_a_graceful_stop(tmp_path: Path) -> None:
    cfg, _ = make_config(tmp_path / "data")
    gw = FakePipelineGateway(cfg, config_dir=ROOT / "config")
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            await nursery.start(gw.run)
            os.kill(os.getpid(), signal.SIGTERM)
    assert gw.ready is not None


@pytest.mark.slow
async def test_stop_under_traffic_loses_nothing(tmp_path: Path) -> None:
    """Messages accepted right before a stop are all found after a restart on the same
    store, each submitted to the carrier or delivered (a 202 is never forgotten)."""
    for module in ("gateway.backend", "gateway.pipeline.dispatch", "gateway.pipeline.inbound"):
        pytest.importorskip(module, reason="the pipeline has not landed")
    cfg, _ = make_config(tmp_path / "data")
    batch = {"messages": [{"to": f"+3361234{i:04d}", "text": f"code {i}",
                           "kind": "transactional"} for i in range(50)]}
    with trio.fail_after(15):
        gw = Gateway(cfg, config_dir=ROOT / "config", handle_signals=False)
        async with trio.open_nursery() as nursery:
            ready: Ready = await nursery.start(gw.run)
            reply = await request(ready.api_port, "POST", "/v1/messages", json=batch)
            assert reply.status == 202
            ids = [r["id"] for r in reply.json()["results"]]
            gw.stop()

        gw2 = Gateway(cfg, config_dir=ROOT / "config", handle_signals=False)
        async with trio.open_nursery() as nursery:
            ready2: Ready = await nursery.start(gw2.run)

            async def all_settled() -> bool | None:
                for mid in ids:
                    status = (await status_of(ready2.api_port, mid))["status"]
                    if status not in ("submitted", "delivered"):
                        return None
                return True

            await poll(all_settled)
            gw2.stop()
