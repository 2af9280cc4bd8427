"""The rules' memoisation (session 3, bench/RESULTS.md "accept") against fresh computation.

Each memo keeps a value computed from exactly the arguments it is keyed by; these tests
evaluate the same inputs with the memo in use (in the order a batch would: the same
``now`` object for many recipients, repeated texts) and with it cleared before every
call, and require the same answers.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from rules import content, engine, quiet_hours
from rules.model import (
    Bypass,
    ConsentStatus,
    Message,
    MessageKind,
    RecipientFacts,
)
from rules.policy import ContentPolicy, Policy, with_quiet_hours
from tests.rules.helpers import (
    AL,
    AU,
    CA_LA,
    FL,
    FR,
    ID,
    NY,
    TX,
    nf,
    quiet_hours_table,
)

PHONES = (NY, FL, TX, AL, ID, CA_LA, FR, AU)
TEXTS = ("Big sale today", "Big sale today. Reply STOP to opt out", "https://x.example/a",
         "Soldes: -20% aujourd'hui")
# A Sunday and a Monday in January (Texas' and Alabama's Sunday rules), hours across the
# day in UTC: open and closed windows in every zone set above.
NOWS = tuple(datetime(2026, 1, d, h, 30, tzinfo=UTC) for d in (4, 5) for h in (3, 9, 14, 19, 23))


def _facts(phone: str) -> RecipientFacts:
    return RecipientFacts(phone=phone, consent=ConsentStatus.SUBSCRIBED, number=nf(phone))


def _clear() -> None:
    engine._LAST_SEND[0] = None
    quiet_hours._PLANS.clear()
    content._CACHE.clear()


def test_evaluate_with_memos_equals_fresh_evaluation() -> None:
    policy = with_quiet_hours(Policy(), quiet_hours_table())
    cases = []
    for now in NOWS:
        for text, phone, kind, bypass in itertools.product(
                TEXTS, PHONES, (MessageKind.CAMPAIGN, MessageKind.FLOW),
                (frozenset(), frozenset({Bypass.QUIET_HOURS}))):
            msg = Message(kind=kind, to_e164=phone, text=text, flow_id="f",
                          flow_type="abandoned_cart" if kind is MessageKind.FLOW else None,
                          trigger_id="t", trigger_at=now - timedelta(hours=1), bypass=bypass)
            cases.append((msg, _facts(phone), now))
    _clear()
    memoised = [engine.evaluate(m, f, policy, now) for m, f, now in cases]
    again = [engine.evaluate(m, f, policy, now) for m, f, now in cases]  # warm memos
    fresh = []
    for m, f, now in cases:
        _clear()
        # an equal but distinct ``now``: the SEND memo is keyed by identity
        fresh.append(engine.evaluate(m, f, policy, now + timedelta(0)))
    assert memoised == fresh and again == fresh
    assert {d.action for d in fresh} == {"send", "defer", "reject"}


def test_quiet_hours_open_memo_follows_now() -> None:
    # The plan remembers the last instant found open; a later closed instant is closed.
    policy = Policy()
    facts = _facts(NY)
    msg = Message(kind=MessageKind.CAMPAIGN, to_e164=NY, text="x")
    open_at = datetime(2026, 1, 5, 15, 0, tzinfo=UTC)  # 10:00 in New York
    closed = datetime(2026, 1, 6, 3, 0, tzinfo=UTC)  # 22:00 in New York
    _clear()
    assert quiet_hours.check(msg, facts, policy, open_at) is None
    assert quiet_hours.check(msg, facts, policy, open_at) is None
    deferred = quiet_hours.check(msg, facts, policy, closed)
    assert deferred is not None and deferred.defer_until == datetime(2026, 1, 6, 13, 0,
                                                                     tzinfo=UTC)
    assert quiet_hours.check(msg, facts, policy, open_at) is None


def test_final_text_memo_per_policy_text_region_language() -> None:
    policies = (Policy(), Policy(content=ContentPolicy(brand_prefix={"FR": "Acme: "})),
                Policy(content=ContentPolicy(opt_out_mode="off")))
    cases = [(p, Message(kind=MessageKind.CAMPAIGN, to_e164=phone, text=text, language=lang),
              _facts(phone))
             for p in policies for text in TEXTS for phone in (NY, FR, AU)
             for lang in (None, "fr", "de")]
    _clear()
    memoised = [content.final_text(m, f, p) for p, m, f in cases * 2]
    fresh = []
    for p, m, f in cases * 2:
        content._CACHE.clear()
        fresh.append(content.final_text(m, f, p))
    assert memoised == fresh
    assert any(t.endswith("Reply STOP to opt out") for t in fresh)
    assert any(t.startswith("Acme:") for t in fresh)
