"""Resource exhaustion: the LMDB map fills up under the running gateway.

A tiny map (``map_size = max_map_size = 1 MiB``) so it cannot grow. Expected behaviour
(DESIGN.md "Errors and bad input", gateway/store/lmdb_store.py "Map size"):
- writes are refused with a clear ``507 store_full`` through the API, nothing half-written;
- reads keep being served: ``GET /v1/messages/{id}``, ``/healthz``, ``/metrics``;
- the pipeline (dispatcher, inbound receipts) failing its own commits meanwhile does not
  take the process down;
- once there is room again the same process accepts again, without a restart.

"Room again" is simulated by lifting the store's growth cap in place (what an operator
gets by raising ``max_map_size`` and restarting; the point here is that nothing in the
gateway stays latched in a failed state after a StoreFullError).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

from gateway.app import Gateway, Ready
from gateway.config import load_config_bytes
from tests.api.client import request
from tests.app.helpers import ROOT, config_text, free_port

pytestmark = pytest.mark.slow

TEXT = "Your order has shipped. " * 40  # ~960 chars: 7 GSM-7 parts, fills the map fast


def tiny_config(store: Path) -> Any:
    text = config_text(store, free_port()).replace(
        'durability = "os"', 'durability = "os"\nmap_size = 1048576\nmax_map_size = 1048576')
    return load_config_bytes(text, env={})


async def post_batch(port: int, start: int, n: int) -> Any:
    messages = [{"to": f"+1415555{(start + i) % 10000:04d}", "text": TEXT,
                 "kind": "transactional"} for i in range(n)]
    return await request(port, "POST", "/v1/messages", json={"messages": messages})


async def test_map_full_is_507_reads_go_on_and_writes_resume(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path / "data")
    gw = Gateway(cfg, config_dir=ROOT / "config", handle_signals=False)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            ready: Ready = await nursery.start(gw.run)
            port = ready.api_port
            first_id = None
            full = None
            for round_ in range(200):
                reply = await post_batch(port, round_ * 20, 20)
                if reply.status == 507:
                    full = reply
                    break
                assert reply.status == 202, reply.body
                if first_id is None:
                    first_id = reply.json()["results"][0]["id"]
            assert full is not None, "the 1 MiB map never filled"
            assert first_id is not None
            error = full.json()["error"]
            assert error["code"] == "store_full" and "full" in error["message"]

            # Reads and health go on while full; the pipeline's own failing commits
            # (outcomes, receipts) do not stop the process: give them time to try.
            for _ in range(3):
                await trio.sleep(0.3)
                got = await request(port, "GET", f"/v1/messages/{first_id}")
                assert got.status == 200, got.body
                assert (await request(port, "GET", "/healthz")).status == 200
                assert ready.metrics_port is not None
                scrape = await request(ready.metrics_port, "GET", "/metrics")
                assert scrape.status == 200
            # Still full: still a clean 507 (not a 500, not a hang). The probe is larger
            # than the first batches: with the lease in the outbox entry (no record rewrite
            # at dispatch) the pipeline's own commits leave a few free pages, enough for
            # 20 more of these messages but not for 100.
            again = await post_batch(port, 90_000, 100)
            assert again.status == 507, again.body

            # Room again: the same process accepts again.
            store = gw.components["store"]
            store._max_map_size = 64 << 20
            reply = await post_batch(port, 95_000, 5)
            assert reply.status == 202, reply.body
            new_id = reply.json()["results"][0]["id"]
            got = await request(port, "GET", f"/v1/messages/{new_id}")
            assert got.status == 200 and got.json()["status"] in (
                "queued", "submitted", "delivered")
            gw.stop()
