"""Receipt reconciliation against the node-smpp simulator (docs/reliability.md).

A submit whose answer never reached us (response timeout, connection cut after the SMSC
took it) is ``unknown``; the SMSC still delivers it and sends its receipt, whose carrier
id we never committed. The inbound processor reconciles such a receipt with the one part
left ``unknown`` for its destination and submit minute (gateway.pipeline.inbound
``_reconcile``): the message reaches its true status. Each scenario checks the usual
audit (no loss, no duplicate), that every carrier id a part holds is the one the SMSC
gave THAT message (``attributions``: 0 wrong), and the counters.

The simulator writes receipt dates in its local time: these tests run it in UTC (a
zone west or east of ours is never reconciled, tests/pipeline/test_inbound_reconcile.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import pytest
import trio

from gateway.receipts import normalise_message_id
from tests.e2e.harness import GatewayUnderTest, sim_carrier
from tests.peers import SimHandle, run_sim
from tests.reliability.helpers import SMSC_ACCEPTED, Load, sim_log
from tests.reliability.test_carrier_faults import (
    SIM,
    assert_promise,
    metric,
    metrics,
    report,
    settle,
    submits_per_message,
)

pytestmark = [pytest.mark.slow, pytest.mark.peers]


async def attributions(api: Any, sim: SimHandle, accepted: dict[str, str]
                       ) -> tuple[int, int, list[str]]:
    """``(right, wrong, examples)``: each part's carrier id against the id the SMSC's log
    gives the submit of that message's text (a token per message)."""
    by_text: dict[str, set[str]] = {}
    for line in await sim_log(sim):
        if line["result"] in SMSC_ACCEPTED:
            by_text.setdefault(line.get("text", ""), set()).add(
                normalise_message_id(line["message_id"]))
    right = wrong = 0
    examples: list[str] = []
    for tok, mid in accepted.items():
        body = await api.message(mid)
        for p in body.get("parts", []):
            cid = p.get("carrier_message_id")
            if cid is None:
                continue
            if normalise_message_id(cid) in by_text.get(tok, set()):
                right += 1
            else:
                wrong += 1
                if len(examples) < 5:
                    examples.append(f"{tok} {mid}: {cid} not in {by_text.get(tok)}")
    return right, wrong, examples


@pytest.fixture
def utc_sim(monkeypatch: pytest.MonkeyPatch) -> None:
    """The simulator (a child process) writes receipt dates in UTC."""
    monkeypatch.setenv("TZ", "UTC")


class Outcome(NamedTuple):
    """What a reconciliation scenario left: the audit, the attributions, the metrics and
    the simulator's log."""

    a: Any
    right: int
    wrong: int
    examples: list[str]
    m: dict[str, float]
    log: list[dict[str, Any]]


async def run_scenario(tmp_path: Path, sim_args: tuple[str, ...], n: int, batch: int, *,
                       recipients: int = 10_000_000, **carrier: Any) -> Outcome:
    """Load ``n`` messages (``batch`` per request) through an in-process gateway bound to
    a simulator run with ``sim_args``; settle, attribute, read the metrics."""
    with run_sim(*SIM, *sim_args, tmp_path=tmp_path, log=True) as sim:
        gut = GatewayUnderTest(tmp_path, carriers=[sim_carrier(sim, "gw", "pw", **carrier)])
        with trio.fail_after(60):
            async with gut.in_process() as api:
                load = Load(api, 0, n, batch=batch, recipients=recipients)
                await load.run()
                a = await settle(api, sim, load.accepted)
                right, wrong, examples = await attributions(api, sim, load.accepted)
                m = await metrics(gut)
        log = await sim_log(sim)
    return Outcome(a, right, wrong, examples, m, log)


async def test_late_answers_with_shared_destinations(tmp_path: Path, utc_sim: None) -> None:
    """``--resp-delay 1500`` against a 0.5 s response timeout: all 40 submits ``unknown``.
    30 destinations: 20 messages have theirs alone and are reconciled; messages 0-9 and
    30-39 share one two by two, submitted within the same second: ambiguous, their
    receipts stay ``receipt.unmatched`` and the messages ``unknown``."""
    a, right, wrong, examples, m, log = await run_scenario(
        tmp_path, ("--resp-delay", "1500"), 40, 40, recipients=30,
        response_timeout_s=0.5, window=16)
    report("resp-delay 1.5 s, 30 destinations", a, right=right, wrong=wrong,
           reconciled=metric(m, "smsgw_receipts_reconciled_total"),
           ambiguous=metric(m, "smsgw_receipts_reconcile_ambiguous_total"))
    assert_promise(a)
    assert wrong == 0, examples
    assert a.delivered == right == 20 and a.unknown == 20
    assert submits_per_message(log) == 1
    assert metric(m, "smsgw_receipts_reconciled_total") == 20
    assert metric(m, "smsgw_receipts_reconcile_ambiguous_total") == 20
    assert metric(m, "smsgw_receipts_unmatched_total") == 20


@pytest.mark.parametrize("mode", ["rst", "fin"])
async def test_cuts_with_answers_still_on_their_way(tmp_path: Path, utc_sim: None,
                                                    mode: str) -> None:
    """``--resp-delay 300 --drop-after 100``: the SMSC answers each submit 0.3 s late and
    cuts a session at its 100th submit (unanswered); the answers it still owed are lost
    with the connection, so the submits it took in the last 0.3 s are ``unknown`` for us
    (before reconciliation they stayed so, their receipts ``receipt.unmatched``), and the
    submits pipelined behind the cut were discarded. Every message the SMSC took ends
    with its receipt's status; ``unknown`` are only those it never had."""
    a, right, wrong, examples, m, log = await run_scenario(
        tmp_path, ("--resp-delay", "300", "--drop-after", "100", "--drop-mode", mode,
                   "--drop-times", "4"), 1000, 250)
    drops = sum(1 for x in log if x["result"] == "dropped")
    reconciled = metric(m, "smsgw_receipts_reconciled_total")
    report(f"resp-delay 300 + drop-after 100 ({mode})", a, drops=drops, right=right,
           wrong=wrong, reconciled=reconciled,
           unknown_outcomes=metric(m, "smsgw_submits_total", outcome="unknown"))
    assert_promise(a)
    assert drops == 4 and wrong == 0, examples
    assert reconciled > 0  # answers were lost with the cuts, their receipts reconciled
    assert a.unknown_accepted_unanswered == 0  # each such one reached its true status
    assert a.unknown == a.unknown_dropped_by_smsc + a.unknown_never_sent
    assert a.unknown_dropped_by_smsc == drops
    assert a.delivered == a.at_smsc_once == right
    assert submits_per_message(log) == 1  # nothing was sent again
    assert metric(m, "smsgw_receipts_unmatched_total") == 0
