"""Rule 4: state frequency caps (FL, OK, MD: 3 per rolling 24 h)."""

from __future__ import annotations

from datetime import timedelta

import msgspec
import pytest

from rules import Bypass, MessageKind, Policy, Reason, evaluate
from tests.rules.helpers import FL, MD, NY, OK, facts, msg, utc

NOW = utc(2026, 3, 4, 17, 0)  # 12:00 ET, 11:00 CT
P = Policy()
# Smart sending would skip first; bypass it to exercise the cap alone.
NO_SS = frozenset({Bypass.SMART_SENDING})


def hours_ago(*hs: float) -> tuple:  # type: ignore[type-arg]
    return tuple(sorted(NOW - timedelta(hours=h) for h in hs))


@pytest.mark.parametrize(("to", "sends", "reason"), [
    (FL, hours_ago(1, 2), Reason.OK),
    (FL, hours_ago(1, 2, 3), Reason.STATE_FREQUENCY_CAP),
    (OK, hours_ago(1, 5, 23.9), Reason.STATE_FREQUENCY_CAP),
    (MD, hours_ago(1, 2, 3, 4), Reason.STATE_FREQUENCY_CAP),
    (FL, hours_ago(1, 2, 24), Reason.OK),  # exactly 24 h ago no longer counts
    (FL, hours_ago(1, 2, 24.01), Reason.OK),
    (NY, hours_ago(1, 2, 3, 4), Reason.OK),  # not a capped state
])
@pytest.mark.parametrize("kind", [MessageKind.CAMPAIGN, MessageKind.FLOW])
def test_cap(to: str, sends: tuple, reason: Reason, kind: MessageKind) -> None:  # type: ignore[type-arg]
    d = evaluate(msg(kind, to=to, bypass=NO_SS), facts(to, marketing_sends=sends), P, NOW)
    assert d.reason is reason


def test_transactional_not_capped() -> None:
    f = facts(FL, marketing_sends=hours_ago(1, 2, 3))
    assert evaluate(msg(MessageKind.TRANSACTIONAL, to=FL), f, P, NOW).reason is Reason.OK


@pytest.mark.parametrize(("setting", "to", "reason"), [
    ({"max_messages": 4}, FL, Reason.OK),
    ({"states": {"US": ["NY"]}}, NY, Reason.STATE_FREQUENCY_CAP),
    ({"states": {"US": ["NY"]}}, FL, Reason.OK),
    ({"window_hours": 2.5}, FL, Reason.OK),
    ({"enabled": False}, FL, Reason.OK),
])
def test_switches(setting: dict[str, object], to: str, reason: Reason) -> None:
    policy = msgspec.convert({"frequency_caps": setting}, Policy)
    f = facts(to, marketing_sends=hours_ago(1, 2, 3))
    assert evaluate(msg(to=to, bypass=NO_SS), f, policy, NOW).reason is reason
