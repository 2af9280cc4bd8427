"""The harness itself: a config that loads, both runners reach ``delivered``."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import trio

from gateway.config import load_config_bytes
from tests.e2e.harness import GatewayUnderTest, sim_carrier, to_toml
from tests.peers import run_sim

pytestmark = [pytest.mark.peers, pytest.mark.slow]


def test_to_toml_round_trips_a_config() -> None:
    doc = {"store": {"path": "/tmp/x"},
           "carriers": [{"name": "a", "host": "h", "port": 1, "system_id": "s"}],
           "routes": [{"prefix": "+", "carriers": ["a"]}],
           "rules": {"quiet_hours": {"enabled": False}, "smart_sending": {"hours": 1.5}}}
    cfg = load_config_bytes(to_toml(doc), env={})
    assert cfg.carriers[0].name == "a" and not cfg.rules.quiet_hours.enabled
    assert cfg.rules.smart_sending.hours == 1.5


@pytest.mark.parametrize("mode", ["in_process", "subprocess"])
async def test_harness_delivers(tmp_path: Path, mode: str) -> None:
    with run_sim("--system-id", "gw", "--password", "pw", "--dlr-delay", "10",
                 tmp_path=tmp_path) as sim:
        gut = GatewayUnderTest(tmp_path, carriers=[sim_carrier(sim, "gw", "pw")])
        with trio.fail_after(30):
            runner = gut.in_process() if mode == "in_process" else gut.subprocess()
            async with runner as api:
                res = await api.submit([{"to": "+33612345678", "text": "hello",
                                         "kind": "transactional"}])
                await api.wait_status([res[0]["id"]], {"delivered"})
                if mode == "subprocess":
                    assert await gut.kill(signal.SIGTERM) == 0
