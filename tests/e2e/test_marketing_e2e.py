"""Issue 9 end to end against the node-smpp SMSC simulator: a templated message with a URL
reaches the SMSC with the branded short link (the simulator's submit log), and a GET on
that link is redirected and recorded (``link_clicked`` event, click count on the
message)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

from tests.api.client import request
from tests.e2e.harness import GatewayUnderTest, poll, sim_carrier
from tests.peers import run_sim

pytestmark = [pytest.mark.peers, pytest.mark.slow]

SYS, PW = "gw", "pw"
DOMAIN = "go.example.com"
PHONE = "+33612345678"


async def test_short_link_reaches_the_smsc_and_its_click_is_recorded(tmp_path: Path) -> None:
    with run_sim("--system-id", SYS, "--password", PW, tmp_path=tmp_path, log=True) as sim:
        gut = GatewayUnderTest(
            tmp_path, carriers=[sim_carrier(sim, SYS, PW)],
            rules={"quiet_hours": {"enabled": False}},
            extra={"links": {"listen": "127.0.0.1:0", "domains": {"*": DOMAIN}}})
        with trio.fail_after(30):
            async with gut.in_process() as api:
                assert gut.ready is not None and gut.ready.links_port
                res = await api.submit_one({
                    "to": PHONE, "kind": "transactional", "campaign_id": "c9",
                    "text": "Hi {{ name }}, your order: https://shop.example/orders/42?x=1",
                    "vars": {"name": "Zoé"}})
                assert res["status"] == "queued", res
                await api.wait_status([res["id"]], {"delivered"})

                rows: list[dict[str, Any]] = await trio.to_thread.run_sync(sim.submit_log)
                [row] = [r for r in rows if r["destination_addr"].lstrip("+") == PHONE[1:]]
                prefix = f"Hi Zoé, your order: https://{DOMAIN}/"
                assert row["text"].startswith(prefix), row["text"]
                token = row["text"][len(prefix):]
                assert len(token) == 8 and token.isalnum()

                reply = await request(gut.ready.links_port, "GET", f"/{token}")
                assert reply.status == 302
                assert reply.headers["location"] == "https://shop.example/orders/42?x=1"

                async def clicked() -> list[dict[str, Any]] | None:
                    evs = [e for e in await api.all_events() if e["type"] == "link_clicked"]
                    return evs or None

                [ev] = await poll(clicked)
                assert (ev["message_id"], ev["phone"]) == (res["id"], PHONE)
                assert ev["data"]["campaign_id"] == "c9"
                status = await api.message(res["id"])
                assert status["clicks"]["total"] == 1
                assert status["clicks"]["links"] == [{
                    "url": "https://shop.example/orders/42?x=1",
                    "short_url": f"https://{DOMAIN}/{token}", "clicks": 1}]
