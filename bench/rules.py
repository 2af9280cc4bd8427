"""Rules engine throughput: decisions per second with every rule on, facts preloaded.

Prints ONE JSON object. Facts carry their NumberFacts (the gateway caches them per
recipient), so no phonenumbers work happens in the timed loop. The mix covers single-zone
(US-FL, FR, GB), two-zone (US-ID) and eight-zone (AU) numbers, campaigns, flows and
abandoned carts, sends, deferrals and rejections. Goal: >= 100,000 decisions/s on one core.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rules import (
    ConsentStatus,
    DoubleOptIn,
    ErrorSummary,
    Message,
    MessageKind,
    Policy,
    RecipientFacts,
    evaluate,
    number_facts,
)

NUMBERS = ["+13055550123", "+12085550123", "+33612345678", "+447400123456", "+61412345678",
           "+14055550123", "+12125550123", "+14165550123"]


def build(n: int, now: datetime,
          same_text: bool = False) -> list[tuple[Message, RecipientFacts]]:
    cache = {e164: number_facts(e164) for e164 in NUMBERS}
    work = []
    for i in range(n):
        e164 = NUMBERS[i % len(NUMBERS)]
        sends = (now - timedelta(hours=30 + i % 7),) if i % 3 else ()
        facts = RecipientFacts(
            phone=e164,
            consent=ConsentStatus.SUBSCRIBED if i % 11 else ConsentStatus.NONE,
            double_opt_in=DoubleOptIn.CONFIRMED if i % 2 else DoubleOptIn.NONE,
            number=cache[e164],
            marketing_sends=sends,
            errors=ErrorSummary(last_temporary_at=now - timedelta(days=40)),
        )
        kind = (MessageKind.CAMPAIGN, MessageKind.FLOW, MessageKind.FLOW)[i % 3]
        cart = kind is MessageKind.FLOW and i % 2 == 0
        msg = Message(
            kind=kind, to_e164=e164,
            text=("Acme: spring sale, 20% off today. Shop at https://acme.example/s"
                  if same_text else
                  f"Acme: spring sale, 20% off today {i}. Shop at https://acme.example/s"),
            campaign_id="c1" if kind is MessageKind.CAMPAIGN else None,
            flow_id="f1" if kind is MessageKind.FLOW else None,
            flow_type="abandoned_cart" if cart else ("welcome" if kind is MessageKind.FLOW
                                                     else None),
            trigger_id=f"t{i}" if cart else None,
            trigger_at=now - timedelta(hours=2) if cart else None,
        )
        work.append((msg, facts))
    return work


def run(work: list[tuple[Message, RecipientFacts]], policy: Policy, now: datetime,
        repeat: int) -> tuple[float, Counter[str]]:
    reasons: Counter[str] = Counter()
    for msg, facts in work:  # warm caches, count outcomes
        reasons[evaluate(msg, facts, policy, now).reason] += 1
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for msg, facts in work:
            evaluate(msg, facts, policy, now)
        best = min(best, time.perf_counter() - t0)
    return len(work) / best, reasons


def main() -> None:
    policy = Policy()
    n = 20_000
    # 18:00 UTC (afternoon in the Americas, evening in Europe: mostly sends) and 03:00 UTC
    # (night in the Americas: mostly deferrals).
    results = {}
    afternoon = datetime(2026, 3, 10, 18, 0, tzinfo=UTC)
    night = datetime(2026, 3, 10, 3, 0, tzinfo=UTC)
    # unique texts (worst case: content analysis per message) and one campaign text
    for label, now, same in (("afternoon_us_unique_texts", afternoon, False),
                             ("night_us_unique_texts", night, False),
                             ("afternoon_us_one_text", afternoon, True)):
        rate, reasons = run(build(n, now, same), policy, now, repeat=7)
        results[label] = {"decisions_per_s": round(rate), "us_per_decision":
                          round(1e6 / rate, 2), "reasons": dict(reasons)}
    print(json.dumps({
        "bench": "rules.evaluate",
        "python": platform.python_version(),
        "messages": n,
        "goal_decisions_per_s": 100_000,
        "results": results,
        "min_decisions_per_s": min(r["decisions_per_s"] for r in results.values()),
    }))


if __name__ == "__main__":
    main()
