"""Carrier faults against the node-smpp simulator, with the gateway in-process.

Each scenario sends a CI-sized load through the API while the simulator misbehaves in
one way, waits until every message is final and every receipt recorded, and checks:

* **no loss, no duplicate**: :func:`tests.reliability.helpers.audit` (per the submit
  log, each 2xx message is at the SMSC once, failed, or unknown only when the SMSC never
  answered it);
* **bounded retries**: submits per message (from the log) stay under a stated bound;
* **recovery time**: measured from the simulator's log (fault -> next accepted submit)
  or from the restart;
* **one clear log line per cause** (``smsgw.carriers`` / ``smsgw.bind`` warnings);
* **metrics** that show it (``GET /metrics``).

Measured numbers are printed (``-s``) and summarised in docs/reliability.md.
"""

from __future__ import annotations

import collections
import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.api.client import request
from tests.e2e.harness import TERMINAL, GatewayUnderTest, poll, sim_carrier, to_toml
from tests.peers import SimHandle, run_sim
from tests.reliability.helpers import (
    Audit,
    Load,
    audit,
    sim_call,
    sim_log,
    wait_receipts_recorded,
)

pytestmark = [pytest.mark.slow, pytest.mark.peers]

SIM = ("--system-id", "gw", "--password", "pw", "--dlr-delay", "20")


async def metrics(gut: GatewayUnderTest) -> dict[str, float]:
    """``GET /metrics`` as {"name{labels}": value} (comments dropped)."""
    assert gut.ready is not None and gut.ready.metrics_port is not None
    reply = await request(gut.ready.metrics_port, "GET", "/metrics")
    out: dict[str, float] = {}
    for line in reply.body.decode().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


def metric(m: dict[str, float], name: str, **labels: str) -> float:
    """Sum of the series ``name`` whose labels include ``labels``."""
    total = 0.0
    for key, value in m.items():
        series, _, rest = key.partition("{")
        if series != name:
            continue
        if all(f'{k}="{v}"' in rest for k, v in labels.items()):
            total += value
    return total


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name.startswith("smsgw.") and r.levelno >= logging.WARNING]


async def settle(api: Any, sim: SimHandle, accepted: dict[str, str]) -> Audit:
    await api.wait_status(accepted.values(), TERMINAL, interval=0.1)
    await wait_receipts_recorded(api, sim)
    return await audit(api, sim, accepted)


def submits_per_message(log: list[dict[str, Any]]) -> int:
    per = collections.Counter(line.get("text", "") for line in log)
    return max(per.values()) if per else 0


def resume_gaps_ms(log: list[dict[str, Any]], results: set[str]) -> list[int]:
    """For each submit with a result in ``results`` (the fault), ms until the next
    accepted submit on another session (the gateway reconnected and sends again)."""
    gaps = []
    for i, line in enumerate(log):
        if line["result"] in results:
            nxt = next((x for x in log[i + 1:] if x["session"] != line["session"]
                        and x["result"] == "ok"), None)
            if nxt is not None:
                gaps.append(int(nxt["ts"]) - int(line["ts"]))
    return gaps


def report(name: str, a: Audit, **more: Any) -> dict[str, Any]:
    counts = {k: v for k, v in a.as_dict().items() if k != "examples" and v}
    counts.update(more)
    print(f"\n{name}: {json.dumps(counts)}")
    return counts


def assert_promise(a: Audit) -> None:
    assert not a.violations(), (a.violations(), a.examples)


@pytest.mark.parametrize("mode", ["rst", "fin"])
async def test_connection_cut_every_n_submits(tmp_path: Path, mode: str,
                                              caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    with run_sim(*SIM, "--drop-after", "150", "--drop-mode", mode, "--drop-times", "4",
                 tmp_path=tmp_path, log=True) as sim:
        gut = GatewayUnderTest(tmp_path, carriers=[sim_carrier(sim, "gw", "pw")])
        with trio.fail_after(60):
            async with gut.in_process() as api:
                load = Load(api, 0, 1000, batch=250)
                await load.run()
                a = await settle(api, sim, load.accepted)
                m = await metrics(gut)
        log = await sim_log(sim)
    drops = sum(1 for x in log if x["result"] == "dropped")
    gaps = resume_gaps_ms(log, {"dropped"})
    report(f"drop-after 150 ({mode})", a, drops=drops, resume_ms=gaps,
           bind_failures=metric(m, "smsgw_carrier_bind_failures_total"))
    assert_promise(a)
    assert drops == 4
    # Each cut leaves its unanswered submit unknown, and what was pipelined behind it (up
    # to a window, discarded by the SMSC, unanswered): unknown as well, never resent.
    assert a.unknown_accepted_unanswered == 0
    assert a.unknown == a.unknown_dropped_by_smsc + a.unknown_never_sent
    assert a.unknown_dropped_by_smsc == drops
    assert a.unknown_never_sent <= drops * 64  # window 64 per cut
    assert submits_per_message(log) == 1  # an unanswered submit is never resent
    assert len(gaps) == drops and max(gaps) < 2000
    assert metric(m, "smsgw_carrier_bind_failures_total", carrier="sim") == drops
    assert metric(m, "smsgw_submits_total", carrier="sim", outcome="unknown") == a.unknown
    lost_lines = [w for w in warnings(caplog) if "sim#0" in w]
    assert 1 <= len(lost_lines) <= drops, lost_lines


async def test_throttling(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """``--tps 200``: ESME_RTHROTTLED answers pause the queue and cut the rate (AIMD);
    every part is sent again until accepted, none fails, one log line for the episode."""
    caplog.set_level(logging.INFO)
    with run_sim(*SIM, "--tps", "200", tmp_path=tmp_path, log=True) as sim:
        gut = GatewayUnderTest(tmp_path, carriers=[sim_carrier(sim, "gw", "pw")])
        with trio.fail_after(60):
            async with gut.in_process() as api:
                t0 = trio.current_time()
                load = Load(api, 0, 800, batch=400)
                await load.run()
                a = await settle(api, sim, load.accepted)
                took = trio.current_time() - t0
                m = await metrics(gut)
        log = await sim_log(sim)
    throttled = sum(1 for x in log if x["result"] == "throttled")
    report("tps 200", a, throttled=throttled, seconds=round(took, 2),
           rate=round(len(load.accepted) / took), max_submits=submits_per_message(log))
    assert_promise(a)
    assert a.delivered == a.accepted == 800
    assert throttled > 0
    assert metric(m, "smsgw_carrier_throttled_total", carrier="sim") == throttled
    # Bounded: a part is refused a few times, not hammered (pauses between tries).
    assert submits_per_message(log) <= 10
    lines = [w for w in warnings(caplog) if "throttling" in w]
    assert 1 <= len(lines) <= 2, lines


async def test_random_rsyserr(tmp_path: Path) -> None:
    """``--fail-rate 0.2`` ESME_RSYSERR (retry class TEMPORARY): only the refused parts
    go back to the outbox with backoff; each message is accepted once in the end."""
    with run_sim(*SIM, "--fail-rate", "0.2", "--seed", "7", tmp_path=tmp_path,
                 log=True) as sim:
        gut = GatewayUnderTest(tmp_path, carriers=[sim_carrier(sim, "gw", "pw")],
                               pipeline={"retry_backoff_min_s": 0.1,
                                         "retry_backoff_max_s": 0.4})
        with trio.fail_after(60):
            async with gut.in_process() as api:
                load = Load(api, 0, 600, batch=300)
                await load.run()
                a = await settle(api, sim, load.accepted)
                m = await metrics(gut)
        log = await sim_log(sim)
    failed = sum(1 for x in log if x["result"] == "failed")
    report("fail-rate 0.2", a, rsyserr=failed, max_submits=submits_per_message(log))
    assert_promise(a)
    assert a.delivered == a.accepted and a.at_smsc_once == a.accepted
    assert failed > 50
    assert submits_per_message(log) <= 8  # 0.2**8: the retries stop when it gets through
    assert metric(m, "smsgw_submit_rejections_total", carrier="sim",
                  status="ESME_RSYSERR") == failed


async def test_responses_slower_than_the_timeout(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """submit_sm_resp after 1.5 s, response_timeout_s 0.5: every part is ``unknown``
    (never resent, so never duplicated); the late answers are ignored; the SMSC's
    receipts (whose carrier ids never reached us) are reconciled with those parts (one
    per destination and minute): every message ends ``delivered``, each with the carrier
    id the SMSC gave it (tests/reliability/test_reconcile.py)."""
    from tests.reliability.test_reconcile import run_scenario

    monkeypatch.setenv("TZ", "UTC")  # the simulator's receipt dates: local time
    a, right, wrong, examples, m, log = await run_scenario(
        tmp_path, ("--resp-delay", "1500"), 40, 40, response_timeout_s=0.5, window=16)
    report("resp-delay 1.5 s > timeout 0.5 s", a, max_submits=submits_per_message(log),
           reconciled=metric(m, "smsgw_receipts_reconciled_total"), wrong=wrong)
    assert_promise(a)
    assert a.delivered == a.accepted == right == 40 and wrong == 0, examples
    assert submits_per_message(log) == 1
    assert metric(m, "smsgw_carrier_submit_resp_total", carrier="sim",
                  outcome="unknown") == 40
    assert metric(m, "smsgw_receipts_reconciled_total") == 40
    assert metric(m, "smsgw_receipts_unmatched_total") == 0


async def test_smsc_initiated_unbind(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The SMSC unbinds in the middle of a load: answered, reconnected, the rest sent."""
    caplog.set_level(logging.INFO)
    with run_sim(*SIM, "--resp-delay", "5", tmp_path=tmp_path, log=True) as sim:
        gut = GatewayUnderTest(tmp_path, carriers=[sim_carrier(sim, "gw", "pw", window=16)])
        with trio.fail_after(60):
            async with gut.in_process() as api:
                load = Load(api, 0, 1500, batch=500)
                await load.run()

                async def some_sent() -> bool | None:
                    return True if len(await sim_log(sim)) >= 200 else None
                await poll(some_sent)
                t_unbind = trio.current_time()
                await sim_call(sim, "POST", "/unbind", {})
                a = await settle(api, sim, load.accepted)
                m = await metrics(gut)
        log = await sim_log(sim)
    sessions = sorted({x["session"] for x in log})
    first_new = next(x for x in log if x["session"] != sessions[0])
    last_old = max(int(x["ts"]) for x in log if x["session"] == sessions[0])
    report("SMSC unbind", a, sessions=len(sessions), refused_then_resent=len(
               [x for x in log if x["result"] == "invalid_bind_state"]),
           resume_ms=int(first_new["ts"]) - last_old, unbind_at=round(t_unbind, 2))
    assert_promise(a)
    assert len(sessions) == 2
    assert a.delivered + a.unknown == a.accepted and a.unknown <= 16
    # Submits already on the wire when the SMSC unbound may be refused (ESME_RINVBNDSTS,
    # an explicit "not taken"): those, and only those, are sent again on the new bind.
    per = collections.defaultdict(list)
    for x in log:
        per[x["text"]].append(x["result"])
    again = {t: r for t, r in per.items() if len(r) > 1}
    assert all(r[:-1] == ["invalid_bind_state"] * (len(r) - 1) for r in again.values()), again
    assert submits_per_message(log) <= 2
    unbind_lines = [r.getMessage() for r in caplog.records if "sent unbind" in r.getMessage()]
    assert len(unbind_lines) == 1
    assert metric(m, "smsgw_carrier_bind_attempts_total", carrier="sim") == 2


async def test_bind_refused_then_fixed_by_restart(tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    """A wrong password: every bind refused (ESME_RINVPASWD), attempts spaced by the
    backoff, one log line; messages wait in the outbox (202, durable). The config is
    fixed and the gateway restarted on the same store: everything is sent."""
    caplog.set_level(logging.INFO)
    with run_sim(*SIM, tmp_path=tmp_path, log=True) as sim:
        gut = GatewayUnderTest(tmp_path, carriers=[sim_carrier(
            sim, "gw", "wrong", reconnect_min_s=0.1, reconnect_max_s=0.4)])
        with trio.fail_after(60):
            async with gut.in_process(wait_ready=False) as api:
                load = Load(api, 0, 300, batch=300)
                await load.run()
                await trio.sleep(2.0)  # the fault lasts 2 s: what is measured is the attempts
                assert not await api.ready()
                m = await metrics(gut)
                queued = {(await api.message(mid))["status"] for mid in load.accepted.values()}
            refused_lines = [w for w in warnings(caplog) if "RINVPASWD" in w]
            gut.doc["carriers"][0]["password"] = "pw"
            gut.config_path.write_text(to_toml(gut.doc))
            t0 = trio.current_time()
            async with gut.in_process() as api:
                a = await settle(api, sim, load.accepted)
                recovery = trio.current_time() - t0
        stats = await trio.to_thread.run_sync(sim.control, "GET", "/stats", None)
    attempts = metric(m, "smsgw_carrier_bind_attempts_total", carrier="sim")
    report("bind refused 2 s, then restart", a, bind_attempts=attempts,
           bind_failures_at_sim=stats["body"]["bind_failures"],
           restart_to_all_delivered_s=round(recovery, 2))
    assert_promise(a)
    assert queued == {"queued"}
    assert a.delivered == a.accepted == 300
    # 2 s with a 0.1..0.4 s jittered backoff: 5..21 attempts, not a storm.
    assert 5 <= attempts <= 21, attempts
    assert len(refused_lines) == 1, refused_lines
    assert re.search(r"refused: ESME_RINVPASWD", refused_lines[0])
