"""Session 5b review probe (no bug found): the gateway stopped while small requests are
in the accept coalescer's hands (c78e552: its workers start with the pipeline and stop
after the API): every request is answered (202, or 503 / the connection closed if it came
too late), none hangs, and every 202 is found after a restart on the same store."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from gateway.app import Gateway, Ready
from tests.api.client import Client
from tests.app.helpers import ROOT, make_config


@pytest.mark.slow
async def test_probe_stop_with_coalesced_requests_in_flight(tmp_path: Path) -> None:
    cfg, _ = make_config(tmp_path / "data")
    accepted: list[str] = []
    others: list[object] = []
    with trio.fail_after(30):
        gw = Gateway(cfg, config_dir=ROOT / "config", handle_signals=False)
        async with trio.open_nursery() as nursery:
            ready: Ready = await nursery.start(gw.run)
            clients = [await Client.connect(ready.api_port) for _ in range(40)]
            first = trio.Event()

            async def one(k: int, client: Client) -> None:
                try:
                    reply = await client.request(
                        "POST", "/v1/messages",
                        json={"to": f"+3361234{k:04d}", "text": f"code {k}",
                              "kind": "transactional"})
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError,
                        ValueError) as e:
                    others.append(e)
                else:
                    if reply.status == 202:
                        accepted.append(reply.json()["results"][0]["id"])
                    else:
                        assert reply.status == 503, reply.body
                        others.append(reply.status)
                    first.set()
                finally:
                    await client.aclose()

            async with trio.open_nursery() as n:
                for k, c in enumerate(clients):
                    n.start_soon(one, k, c)
                await first.wait()
                gw.stop()
        assert len(accepted) + len(others) == 40 and accepted

        gw2 = Gateway(cfg, config_dir=ROOT / "config", handle_signals=False)
        async with trio.open_nursery() as nursery:
            await nursery.start(gw2.run)
            store = gw2.components["store"]
            for mid in accepted:
                assert store.get_message(mid) is not None, mid
            gw2.stop()
