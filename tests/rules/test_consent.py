"""Rule 1: consent, per message kind."""

from __future__ import annotations

import msgspec
import pytest

from rules import (
    Action,
    ConsentStatus,
    MessageKind,
    Policy,
    Reason,
    ReplyKind,
    evaluate,
)
from rules.consent import check
from tests.rules.helpers import NY, facts, msg, utc

NOW = utc(2026, 3, 4, 16, 0)  # 11:00 in New York
P = Policy()
C, F, T, R = (MessageKind.CAMPAIGN, MessageKind.FLOW, MessageKind.TRANSACTIONAL,
              MessageKind.REPLY)
SUB, UNSUB, NONE = ConsentStatus.SUBSCRIBED, ConsentStatus.UNSUBSCRIBED, ConsentStatus.NONE

# (kind, reply_to, consent, opt_out_confirmed, expected reason or None = passes)
TABLE = [
    (C, None, SUB, False, None),
    (C, None, NONE, False, Reason.NO_CONSENT),
    (C, None, UNSUB, False, Reason.OPTED_OUT),
    (F, None, SUB, False, None),
    (F, None, NONE, False, Reason.NO_CONSENT),
    (F, None, UNSUB, True, Reason.OPTED_OUT),
    (T, None, NONE, False, None),
    (T, None, SUB, False, None),
    (T, None, UNSUB, False, Reason.OPTED_OUT),
    (R, ReplyKind.OPT_OUT, UNSUB, False, None),  # the single confirmation
    (R, ReplyKind.OPT_OUT, UNSUB, True, Reason.OPTED_OUT),  # never a second one
    (R, ReplyKind.HELP, UNSUB, False, Reason.OPTED_OUT),
    (R, ReplyKind.OPT_IN, UNSUB, False, Reason.OPTED_OUT),
    (R, ReplyKind.HELP, NONE, False, None),
    (R, ReplyKind.OPT_IN, SUB, False, None),
]


@pytest.mark.parametrize(("kind", "reply_to", "consent", "confirmed", "reason"), TABLE)
def test_consent_matrix(kind: MessageKind, reply_to: ReplyKind | None,
                        consent: ConsentStatus, confirmed: bool,
                        reason: Reason | None) -> None:
    m = msg(kind, to=NY, reply_to=reply_to)
    f = facts(NY, consent=consent, opt_out_confirmed=confirmed)
    d = check(m, f, P, NOW)
    assert (d.reason if d else None) is reason
    full = evaluate(m, f, P, NOW)
    if reason is None:
        assert full.action is Action.SEND
    else:
        assert full.action is Action.REJECT
        assert full.reason is reason


@pytest.mark.parametrize(("setting", "kind", "reply_to", "consent", "reason"), [
    ({"transactional_requires_consent": True}, T, None, NONE, Reason.NO_CONSENT),
    ({"transactional_requires_consent": True}, T, None, SUB, None),
    ({"transactional_after_opt_out": True}, T, None, UNSUB, None),
    ({"help_after_opt_out": True}, R, ReplyKind.HELP, UNSUB, None),
    ({"enabled": False}, C, None, NONE, None),
    ({"enabled": False}, C, None, UNSUB, Reason.OPTED_OUT),  # opt-outs always honoured
])
def test_consent_switches(setting: dict[str, bool], kind: MessageKind,
                          reply_to: ReplyKind | None, consent: ConsentStatus,
                          reason: Reason | None) -> None:
    policy = msgspec.convert({"consent": setting}, Policy)
    d = check(msg(kind, to=NY, reply_to=reply_to), facts(NY, consent=consent), policy, NOW)
    assert (d.reason if d else None) is reason
