"""Webhooks in the whole gateway (LMDB store, sandbox SMSC, real clock, bounded waits).

Also: ``[sandbox] control_listen``, the submit->receipt latency histogram being fed, and
rejections by reason from the accepter.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from gateway.app import Gateway, Ready
from gateway.config import GatewayConfig, load_config_bytes
from gateway.http import Request, Response, serve
from gateway.webhooks import SIGNATURE_HEADER, WebhookSender, verify_signature
from tests.api.client import request
from tests.app.helpers import ROOT, config_text, free_port, poll

TO = "+33612345678"
SECRET = "app-secret-app-secret"


class Receiver:
    def __init__(self) -> None:
        self.ids: list[int] = []
        self.types: list[str] = []
        self.bad = 0
        self.stuck = False

    async def __call__(self, request: Request) -> Response:
        if not verify_signature(SECRET.encode(), request.header(SIGNATURE_HEADER.lower().encode()),
                                request.body, now=time.time()):
            self.bad += 1
            return Response(401)
        if self.stuck:
            await trio.sleep_forever()
        for e in json.loads(request.body):
            self.ids.append(int(e["id"]))
            self.types.append(e["type"])
        return Response(204)


@asynccontextmanager
async def receiving(rx: Receiver) -> AsyncIterator[int]:
    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve, rx)
        yield server.port
        nursery.cancel_scope.cancel()


def make_cfg(store: Path, hook_port: int, control_port: int | None = None) -> GatewayConfig:
    text = config_text(store, free_port())
    if control_port is not None:
        text = text.replace("dlr_delay_ms = 20", f'dlr_delay_ms = 20\ncontrol_listen = '
                            f'"127.0.0.1:{control_port}"')
    text += f"""
[[webhooks]]
name = "crm"
url = "http://127.0.0.1:{hook_port}/smsgw"
secret_env = "WH"
start_from = "beginning"
backoff_min_s = 0.05
backoff_max_s = 0.2
timeout_s = 2.0
"""
    return load_config_bytes(text, env={"WH": SECRET})


async def send(port: int, n: int, text: str = "Your code is 1234") -> list[str]:
    reply = await request(port, "POST", "/v1/messages", json={"messages": [
        {"to": TO, "text": text, "kind": "transactional"} for _ in range(n)]})
    assert reply.status == 202, reply.body
    return [r["id"] for r in reply.json()["results"]]


async def all_delivered(port: int, ids: list[str]) -> None:
    async def check() -> bool | None:
        for mid in ids:
            body = (await request(port, "GET", f"/v1/messages/{mid}")).json()
            if body["status"] != "delivered":
                return None
        return True

    await poll(check)


def sender(gw: Gateway) -> WebhookSender:
    senders: list[WebhookSender] = gw.components["webhooks"]
    return senders[0]


async def caught_up(gw: Gateway) -> None:
    async def check() -> bool | None:
        return True if sender(gw).statistics().lag_events == 0 else None

    await poll(check)


@pytest.mark.slow
async def test_events_reach_the_receiver_across_a_restart(tmp_path: Path) -> None:
    rx = Receiver()
    control = free_port()
    async with receiving(rx) as hook_port:
        cfg = make_cfg(tmp_path / "data", hook_port, control)
        gw = Gateway(cfg, config_dir=ROOT / "config", handle_signals=False)
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                ready: Ready = await nursery.start(gw.run)
                assert ready.sandbox_control_url == f"http://127.0.0.1:{control}"
                ids = await send(ready.api_port, 3)
                await all_delivered(ready.api_port, ids)
                await caught_up(gw)
                assert ready.metrics_port is not None
                scrape = (await request(ready.metrics_port, "GET", "/metrics")).body.decode()
                gw.stop()
        first = list(rx.ids)
        assert rx.bad == 0
        assert first == sorted(set(first)) and first[0] == 1  # in order, from the start
        assert rx.types.count("receipt") == 3
        assert "message.status" in rx.types
        assert 'smsgw_webhook_lag_events{webhook="crm"} 0.0' in scrape
        assert f'smsgw_webhook_delivered_events_total{{webhook="crm"}} {len(first)}.0' in scrape
        # fed by the inbound processor once the receipts were committed
        assert 'smsgw_submit_receipt_latency_seconds_count{carrier="sandbox"} 3.0' in scrape

        # restart on the same store: the cursor was kept, nothing is sent twice
        gw2 = Gateway(cfg, config_dir=ROOT / "config", handle_signals=False)
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                ready = await nursery.start(gw2.run)
                ids = await send(ready.api_port, 1)
                await all_delivered(ready.api_port, ids)
                await caught_up(gw2)
                gw2.stop()
        assert rx.ids[: len(first)] == first
        later = rx.ids[len(first):]
        assert later and min(later) > max(first)
        assert rx.ids == sorted(set(rx.ids))


@pytest.mark.slow
async def test_stuck_receiver_does_not_hold_up_the_pipeline(tmp_path: Path) -> None:
    rx = Receiver()
    rx.stuck = True
    async with receiving(rx) as hook_port:
        cfg = make_cfg(tmp_path / "data", hook_port)
        gw = Gateway(cfg, config_dir=ROOT / "config", handle_signals=False)
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                ready: Ready = await nursery.start(gw.run)
                t0 = trio.current_time()
                ids: list[str] = []
                for _ in range(5):
                    ids += await send(ready.api_port, 20)
                assert trio.current_time() - t0 < 5.0
                await all_delivered(ready.api_port, ids)
                st = sender(gw).statistics()
                assert st.delivered_events == 0 and st.lag_events > 100
                t1 = trio.current_time()
                gw.stop()
            assert trio.current_time() - t1 < 10.0  # a hanging POST does not delay the stop
        assert rx.ids == []


@pytest.mark.slow
async def test_rejections_are_exported_once_by_reason(tmp_path: Path) -> None:
    async with receiving(Receiver()) as hook_port:
        cfg = make_cfg(tmp_path / "data", hook_port)
        gw = Gateway(cfg, config_dir=ROOT / "config", handle_signals=False)
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                ready: Ready = await nursery.start(gw.run)
                reply = await request(ready.api_port, "POST", "/v1/messages",
                                      json={"to": TO, "text": "Spring sale",
                                            "kind": "campaign"})
                reason = reply.json()["results"][0]["reason"]
                stats: Any = gw.components["accepter"].statistics()
                assert ready.metrics_port is not None
                assert stats.rejected_by_reason == {reason: 1}
                scrape = (await request(ready.metrics_port, "GET", "/metrics")).body.decode()
                assert scrape.count(f'smsgw_messages_rejected_total{{reason="{reason}"}} 1.0') == 1
                gw.stop()
