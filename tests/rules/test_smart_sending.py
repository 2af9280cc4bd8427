"""Rule 3: smart sending."""

from __future__ import annotations

from datetime import timedelta

import msgspec
import pytest

from rules import Action, Bypass, MessageKind, Policy, Reason, evaluate
from tests.rules.helpers import NY, facts, msg, utc

NOW = utc(2026, 3, 4, 16, 0)
P = Policy()


@pytest.mark.parametrize(("ago", "kind", "reason"), [
    (timedelta(hours=23, minutes=59), MessageKind.CAMPAIGN, Reason.SMART_SENDING),
    (timedelta(hours=24), MessageKind.CAMPAIGN, Reason.OK),  # exactly 24 h ago: free
    (timedelta(hours=24, minutes=1), MessageKind.CAMPAIGN, Reason.OK),
    (timedelta(minutes=5), MessageKind.FLOW, Reason.SMART_SENDING),
    (timedelta(minutes=5), MessageKind.TRANSACTIONAL, Reason.OK),  # not marketing
    (None, MessageKind.CAMPAIGN, Reason.OK),
])
def test_window(ago: timedelta | None, kind: MessageKind, reason: Reason) -> None:
    sends = () if ago is None else (NOW - timedelta(days=3), NOW - ago)
    d = evaluate(msg(kind, to=NY), facts(NY, marketing_sends=sends), P, NOW)
    assert d.reason is reason
    if reason is Reason.SMART_SENDING:
        assert d.action is Action.REJECT  # skipped, never rescheduled
        assert d.defer_until is None


def test_unsorted_history_uses_latest() -> None:
    sends = (NOW - timedelta(hours=1), NOW - timedelta(hours=40))
    d = evaluate(msg(to=NY), facts(NY, marketing_sends=sends), P, NOW)
    assert d.reason is Reason.SMART_SENDING


def test_bypass() -> None:
    m = msg(to=NY, bypass=frozenset({Bypass.SMART_SENDING}))
    d = evaluate(m, facts(NY, marketing_sends=(NOW - timedelta(hours=1),)), P, NOW)
    assert d.action is Action.SEND


@pytest.mark.parametrize(("setting", "kind", "reason"), [
    ({"hours": 12}, MessageKind.CAMPAIGN, Reason.OK),
    ({"hours": 48}, MessageKind.CAMPAIGN, Reason.SMART_SENDING),
    ({"flows": False}, MessageKind.FLOW, Reason.OK),
    ({"flows": False}, MessageKind.CAMPAIGN, Reason.SMART_SENDING),
    ({"campaigns": False}, MessageKind.CAMPAIGN, Reason.OK),
    ({"enabled": False}, MessageKind.CAMPAIGN, Reason.OK),
])
def test_switches(setting: dict[str, object], kind: MessageKind, reason: Reason) -> None:
    policy = msgspec.convert({"smart_sending": setting}, Policy)
    f = facts(NY, marketing_sends=(NOW - timedelta(hours=20),))
    assert evaluate(msg(kind, to=NY), f, policy, NOW).reason is reason
