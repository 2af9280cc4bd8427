"""Rule 6: error segment (campaigns) and undeliverable numbers (all marketing)."""

from __future__ import annotations

from datetime import timedelta

import msgspec
import pytest

from rules import ErrorSummary, MessageKind, Policy, Reason, evaluate
from tests.rules.helpers import NY, facts, msg, utc

NOW = utc(2026, 3, 4, 16, 0)
P = Policy()
C, F, T = MessageKind.CAMPAIGN, MessageKind.FLOW, MessageKind.TRANSACTIONAL


def days_ago(d: float) -> object:
    return NOW - timedelta(days=d)


@pytest.mark.parametrize(("errors", "kind", "reason"), [
    (ErrorSummary(last_temporary_at=days_ago(29.9)), C, Reason.ERROR_SEGMENT),
    (ErrorSummary(last_temporary_at=days_ago(30)), C, Reason.OK),  # lapses after 30 days
    (ErrorSummary(last_temporary_at=days_ago(1)), F, Reason.OK),  # flows still go
    (ErrorSummary(last_temporary_at=days_ago(1)), T, Reason.OK),
    (ErrorSummary(unreachable_count=2, last_temporary_at=days_ago(200)), C,
     Reason.ERROR_SEGMENT),  # >= 2 ever keeps it in
    (ErrorSummary(disconnected_count=2), C, Reason.ERROR_SEGMENT),
    (ErrorSummary(unreachable_count=1, last_temporary_at=days_ago(90)), C, Reason.OK),
    (ErrorSummary(permanent=True), C, Reason.UNDELIVERABLE_NUMBER),
    (ErrorSummary(permanent=True), F, Reason.UNDELIVERABLE_NUMBER),
    (ErrorSummary(permanent=True), T, Reason.OK),
    (ErrorSummary(), C, Reason.OK),
])
def test_segment(errors: ErrorSummary, kind: MessageKind, reason: Reason) -> None:
    d = evaluate(msg(kind, to=NY), facts(NY, errors=errors), P, NOW)
    assert d.reason is reason


@pytest.mark.parametrize(("setting", "errors", "kind", "reason"), [
    ({"days": 60}, ErrorSummary(last_temporary_at=days_ago(45)), C, Reason.ERROR_SEGMENT),
    ({"sticky_count": 0}, ErrorSummary(unreachable_count=5), C, Reason.OK),
    ({"clear_on_delivery": True}, ErrorSummary(last_temporary_at=days_ago(3),
                                               last_delivered_at=days_ago(1)), C, Reason.OK),
    ({"clear_on_delivery": True}, ErrorSummary(last_temporary_at=days_ago(1),
                                               last_delivered_at=days_ago(3)), C,
     Reason.ERROR_SEGMENT),
    ({"enabled": False}, ErrorSummary(last_temporary_at=days_ago(1)), C, Reason.OK),
    ({"suppress_undeliverable": False}, ErrorSummary(permanent=True), C, Reason.OK),
    ({"suppress_undeliverable_transactional": True}, ErrorSummary(permanent=True), T,
     Reason.UNDELIVERABLE_NUMBER),
])
def test_switches(setting: dict[str, object], errors: ErrorSummary, kind: MessageKind,
                  reason: Reason) -> None:
    policy = msgspec.convert({"error_segment": setting}, Policy)
    assert evaluate(msg(kind, to=NY), facts(NY, errors=errors), policy, NOW).reason is reason
