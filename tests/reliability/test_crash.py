"""Crash safety: SIGKILL the gateway at three points, restart on the same store, audit.

Against the node-smpp simulator (``--log`` submit log, receipts for every accepted
submit, re-sent while unacknowledged), the gateway as a subprocess (``smsgw run``):

1. killed **during accept**: a client posts batches; the kill lands with requests in
   progress (the client retries those with the same idempotency keys after the restart);
2. killed **during submits**: the simulator answers each submit_sm after 40 ms, so a
   window of submits is always in flight at the kill;
3. killed **while receipts arrive**: receipts come 150 ms after their submit; the kill
   lands after the first ones were received, with more on the way and some unanswered;
4. a last start drains everything; then :func:`tests.reliability.helpers.audit` checks
   every 2xx message against the simulator's log and the API, and every receipt the
   simulator sent against the gateway's event feed.

Run once per durability (``fsync`` and ``os``): a process crash loses nothing with
either; ``os`` only differs on power loss (docs/reliability.md).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.e2e.harness import GatewayUnderTest, poll, sim_carrier
from tests.peers import SimHandle, run_sim
from tests.reliability.helpers import (
    Load,
    audit,
    sim_log,
    sim_outstanding,
    sim_stats,
    wait_receipts_recorded,
)

pytestmark = [pytest.mark.slow, pytest.mark.peers]

WINDOW = 32
#: What the dispatcher may have marked ``sending`` per carrier (one bind): the window on
#: the wire plus gateway.pipeline.dispatch.INFLIGHT_HEADROOM (half a window; was 4
#: windows): the most a crash can leave ``unknown`` without the SMSC ever seeing it.
NEVER_SENT_BOUND = WINDOW + WINDOW // 2


async def _wait(cond: Any, interval: float = 0.02) -> None:
    async def check() -> bool | None:
        return True if await cond() else None
    await poll(check, interval)


async def crash_run(tmp_path: Path, sim: SimHandle, durability: str, *, n_accept: int,
                    n_submit: int, n_receipt: int) -> dict[str, Any]:
    """The three kills and the final audit; returns the counts (also for bench/chaos)."""
    gut = GatewayUnderTest(tmp_path, durability=durability, name=f"gw-{durability}",
                           carriers=[sim_carrier(sim, "gw", "pw", window=WINDOW)])
    loads: list[Load] = []
    kills: dict[str, dict[str, int]] = {}
    try:
        # 1. during accept
        api = await gut.start_subprocess()
        load = Load(api, 0, n_accept, batch=50, notify_at=n_accept // 3)
        loads.append(load)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(load.run)
            await load.progress.wait()
            await gut.kill()
        kills["accept"] = {"answered": len(load.accepted), "unanswered": len(load.unanswered)}

        # 2. during submits
        api = await gut.start_subprocess()
        before = len(await sim_log(sim))
        load = Load(api, 1_000_000, n_submit, batch=200)
        loads.append(load)
        await load.run()

        async def submits_flowing() -> bool:
            return len(await sim_log(sim)) >= before + n_submit // 4
        await _wait(submits_flowing)
        await gut.kill()
        kills["submits"] = {"accepted": len(load.accepted),
                            "smsc_submits": len(await sim_log(sim)) - before}

        # 3. while receipts arrive
        api = await gut.start_subprocess()
        dlrs0 = (await sim_stats(sim))["dlrs_sent"]
        load = Load(api, 2_000_000, n_receipt, batch=200)
        loads.append(load)
        await load.run()

        async def receipts_flowing() -> bool:
            return int((await sim_stats(sim))["dlrs_sent"]) >= dlrs0 + n_receipt // 3
        await _wait(receipts_flowing)
        outstanding_at_kill = await sim_outstanding(sim)
        await gut.kill()
        kills["receipts"] = {"accepted": len(load.accepted),
                             "dlrs_sent": int((await sim_stats(sim))["dlrs_sent"]) - dlrs0,
                             "receipts_unacked_at_kill": outstanding_at_kill}

        # 4. restart, the client retries what got no answer, everything settles
        api = await gut.start_subprocess()
        await api.wait_ready()
        retried = sum([await ld.retry_unanswered(api) for ld in loads])
        accepted: dict[str, str] = {}
        for ld in loads:
            accepted.update(ld.accepted)
        t0 = trio.current_time()
        await api.wait_status(accepted.values(), {"delivered", "unknown", "failed",
                                                  "undelivered", "expired"}, interval=0.2)
        await wait_receipts_recorded(api, sim)

        async def sim_quiet() -> bool:
            return await sim_outstanding(sim) == 0
        await _wait(sim_quiet, 0.1)
        settle_s = trio.current_time() - t0
        result = await audit(api, sim, accepted)
        recovered = gut.log().count("recovered ")
        await gut.terminate()
    finally:
        if gut.proc is not None and gut.proc.poll() is None:
            gut.proc.kill()
    counts = result.as_dict()
    counts.update(durability=durability, kills=kills, retried_after_crash=retried,
                  settle_s=round(settle_s, 2), recovery_log_lines=recovered,
                  sim=await sim_stats(sim))
    return counts


@pytest.mark.parametrize("durability", ["fsync", "os"])
async def test_sigkill_during_accept_submits_and_receipts(tmp_path: Path,
                                                          durability: str) -> None:
    with run_sim("--system-id", "gw", "--password", "pw", "--resp-delay", "40",
                 "--dlr-delay", "150", tmp_path=tmp_path, log=True) as sim:
        with trio.fail_after(90):
            counts = await crash_run(tmp_path, sim, durability, n_accept=1500,
                                     n_submit=1200, n_receipt=600)
    print(json.dumps(counts, indent=1))  # the numbers, for docs/reliability.md
    assert counts["accepted"] >= 2000
    assert counts["duplicates"] == 0, counts["examples"]
    assert counts["lost"] == 0, counts["examples"]
    assert counts["receipts_missing"] == 0, counts["examples"]
    # Every kill interrupted real work.
    assert counts["kills"]["accept"]["unanswered"] > 0
    assert counts["unknown"] > 0
    # What a crash can leave unknown without the SMSC ever seeing it is bounded (3 kills).
    assert counts["unknown_never_sent"] <= 3 * NEVER_SENT_BOUND, counts
    assert counts["at_smsc_once"] + counts["unknown_never_sent"] \
        + counts["unknown_dropped_by_smsc"] + counts["failed"] == counts["accepted"]
