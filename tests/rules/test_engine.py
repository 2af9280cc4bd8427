"""The engine: order, applicability matrix, marks, apply_send and batch check-and-set."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rules import (
    APPLICABILITY,
    ORDER,
    Action,
    Bypass,
    ConsentStatus,
    Decision,
    DoubleOptIn,
    ErrorSummary,
    Message,
    MessageKind,
    Policy,
    Reason,
    RecipientFacts,
    ReplyKind,
    apply_send,
    evaluate,
    rules_for,
)
from rules.model import NO_MARKS
from tests.rules.helpers import FL, FR, NY, facts, msg, utc

P = Policy()
NOW = utc(2026, 3, 4, 16, 0)  # 11:00 ET, 17:00 Paris (Wednesday)


def test_order_is_documented_and_stable() -> None:
    assert [rule_id for rule_id, _ in ORDER] == [
        "consent", "undeliverable", "content", "abandoned_cart", "flow_limit",
        "error_segment", "quiet_hours", "smart_sending", "state_frequency_cap"]
    assert set(APPLICABILITY) == {rule_id for rule_id, _ in ORDER}


def test_matrix() -> None:
    assert rules_for(MessageKind.CAMPAIGN) == (
        "consent", "undeliverable", "content", "error_segment", "quiet_hours",
        "smart_sending", "state_frequency_cap")
    assert rules_for(MessageKind.FLOW) == (
        "consent", "undeliverable", "content", "abandoned_cart", "flow_limit",
        "quiet_hours", "smart_sending", "state_frequency_cap")
    assert rules_for(MessageKind.TRANSACTIONAL) == ("consent", "undeliverable",
                                                    "quiet_hours")
    assert rules_for(MessageKind.REPLY) == ("consent",)


def test_matrix_matches_docs() -> None:
    from pathlib import Path
    doc = (Path(__file__).resolve().parents[2] / "docs" / "rules.md").read_text("utf-8")
    for rule_id, _ in ORDER:
        assert f"`{rule_id}`" in doc, rule_id


def test_first_decision_wins() -> None:
    # opted out AND in the error segment AND starts with a link AND quiet hours
    f = facts(NY, consent=ConsentStatus.UNSUBSCRIBED,
              errors=ErrorSummary(last_temporary_at=NOW - timedelta(days=1)))
    late = utc(2026, 3, 5, 3, 0)
    assert evaluate(msg(to=NY, text="https://x.example"), f, P, late).reason is \
        Reason.OPTED_OUT
    f = msgspec.structs.replace(f, consent=ConsentStatus.SUBSCRIBED)
    assert evaluate(msg(to=NY, text="https://x.example"), f, P, late).reason is \
        Reason.STARTS_WITH_LINK
    assert evaluate(msg(to=NY), f, P, late).reason is Reason.ERROR_SEGMENT


def test_quiet_hours_before_send_time_checks() -> None:
    # At night a recently-messaged recipient is deferred, and smart sending is judged when
    # the message wakes up (the store re-evaluates deferred messages).
    f = facts(NY, marketing_sends=(utc(2026, 3, 4, 20, 0),))
    night = utc(2026, 3, 5, 3, 0)
    d = evaluate(msg(to=NY), f, P, night)
    assert d.reason is Reason.QUIET_HOURS
    assert d.defer_until is not None
    assert evaluate(msg(to=NY), f, P, d.defer_until).reason is Reason.SMART_SENDING
    assert evaluate(msg(to=NY), f, P, utc(2026, 3, 5, 20, 0)).reason is Reason.OK


def test_invalid_number_and_lazy_number_facts() -> None:
    bad = RecipientFacts(phone="+1555", consent=ConsentStatus.SUBSCRIBED)
    assert evaluate(msg(to="+1555"), bad, P, NOW).reason is Reason.INVALID_NUMBER
    lazy = RecipientFacts(phone=NY, consent=ConsentStatus.SUBSCRIBED)
    assert evaluate(msg(to=NY), lazy, P, NOW) == evaluate(msg(to=NY), facts(NY), P, NOW)


def test_now_in_another_zone_gives_utc() -> None:
    from zoneinfo import ZoneInfo
    late = datetime(2026, 3, 4, 23, 0, tzinfo=ZoneInfo("America/New_York"))
    d = evaluate(msg(to=NY), facts(NY), P, late)
    assert d.defer_until == utc(2026, 3, 5, 13, 0)
    assert d.defer_until is not None and d.defer_until.tzinfo is UTC
    s = evaluate(msg(to=NY), facts(NY), P, NOW.astimezone(ZoneInfo("Asia/Tokyo")))
    assert s.marks.marketing_send_at is not None
    assert s.marks.marketing_send_at.tzinfo is UTC


def test_naive_now_is_a_fault() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        evaluate(msg(to=NY), facts(NY), P, datetime(2026, 3, 4, 16, 0))


def test_send_by_deadline() -> None:
    late = utc(2026, 3, 5, 3, 0)  # 22:00 ET
    m = msg(MessageKind.TRANSACTIONAL, to=NY)
    pol = msgspec.convert({"quiet_hours": {"transactional": True}}, Policy)
    ok = msgspec.structs.replace(m, send_by=utc(2026, 3, 5, 13, 0))  # 08:00 ET
    assert evaluate(ok, facts(NY), pol, late).action is Action.DEFER
    tight = msgspec.structs.replace(m, send_by=utc(2026, 3, 5, 12, 59))
    assert evaluate(tight, facts(NY), pol, late).reason is Reason.SEND_WINDOW_EXPIRED


@pytest.mark.parametrize(("kind", "reply_to", "marketing", "confirm"), [
    (MessageKind.CAMPAIGN, None, True, False),
    (MessageKind.FLOW, None, True, False),
    (MessageKind.TRANSACTIONAL, None, False, False),
    (MessageKind.REPLY, ReplyKind.HELP, False, False),
    (MessageKind.REPLY, ReplyKind.OPT_OUT, False, True),
])
def test_marks(kind: MessageKind, reply_to: ReplyKind | None, marketing: bool,
               confirm: bool) -> None:
    f = facts(NY, consent=(ConsentStatus.UNSUBSCRIBED if confirm
                           else ConsentStatus.SUBSCRIBED))
    d = evaluate(msg(kind, to=NY, reply_to=reply_to), f, P, NOW)
    assert d.action is Action.SEND
    assert (d.marks.marketing_send_at == NOW) is marketing
    assert d.marks.opt_out_confirmation is confirm
    if not (marketing or confirm):
        assert d.marks is NO_MARKS


def test_apply_send_keeps_sends_sorted_and_ignores_non_sends() -> None:
    f = facts(NY, marketing_sends=(NOW - timedelta(hours=30),))
    m = msg(to=NY)
    d = evaluate(m, f, P, NOW)
    f2 = apply_send(f, m, d, NOW)
    assert f2.marketing_sends == (NOW - timedelta(hours=30), NOW)
    early = msgspec.structs.replace(d, marks=msgspec.structs.replace(
        d.marks, marketing_send_at=NOW - timedelta(hours=40)))
    assert apply_send(f2, m, early, NOW).marketing_sends == (
        NOW - timedelta(hours=40), NOW - timedelta(hours=30), NOW)
    reject = Decision(action=Action.REJECT, reason=Reason.SMART_SENDING)
    assert apply_send(f, m, reject, NOW) is f


def test_opt_out_confirmation_only_once() -> None:
    f = facts(NY, consent=ConsentStatus.UNSUBSCRIBED)
    m = msg(MessageKind.REPLY, to=NY, reply_to=ReplyKind.OPT_OUT, text="You are out.")
    d = evaluate(m, f, P, NOW)
    assert d.action is Action.SEND
    f = apply_send(f, m, d, NOW)
    assert f.opt_out_confirmed
    assert evaluate(m, f, P, NOW).reason is Reason.OPTED_OUT


def run_batch(batch: list[Message], store: dict[str, RecipientFacts],
              now: datetime) -> list[Decision]:
    """What the pipeline does under its accept lock: evaluate in order, feed updated facts
    to the next message for the same recipient, commit the facts with the batch."""
    local = dict(store)
    out = []
    for m in batch:
        d = evaluate(m, local[m.to_e164], P, now)
        local[m.to_e164] = apply_send(local[m.to_e164], m, d, now)
        out.append(d)
    store.update(local)  # the single write transaction
    return out


def test_batch_same_recipient_smart_sending_and_flow_limit() -> None:
    store = {NY: facts(NY, double_opt_in=DoubleOptIn.CONFIRMED)}
    cart = msg(MessageKind.FLOW, to=NY, flow_type="abandoned_cart", trigger_id="c1",
               trigger_at=NOW - timedelta(hours=1),
               bypass=frozenset({Bypass.SMART_SENDING}))
    batch = [msg(to=NY), msg(to=NY), cart, cart]
    reasons = [d.reason for d in run_batch(batch, store, NOW)]
    assert reasons == [Reason.OK, Reason.SMART_SENDING, Reason.OK, Reason.FLOW_LIMIT_REACHED]
    # a second, "concurrent" batch serialized behind the lock sees the committed marks
    again = run_batch([cart, msg(to=NY)], store, NOW + timedelta(seconds=1))
    assert [d.reason for d in again] == [Reason.FLOW_LIMIT_REACHED, Reason.SMART_SENDING]


def test_batch_state_cap_exact() -> None:
    store = {FL: facts(FL)}
    m = msg(to=FL, bypass=frozenset({Bypass.SMART_SENDING}))
    reasons = [d.reason for d in run_batch([m] * 5, store, NOW)]
    assert reasons == [Reason.OK] * 3 + [Reason.STATE_FREQUENCY_CAP] * 2
    assert len(store[FL].marketing_sends) == 3


KINDS = st.sampled_from(list(MessageKind))
TIMES = st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2028, 12, 31),
                     timezones=st.just(UTC))


@pytest.mark.slow  # ~0.3 s: 300 examples
@settings(max_examples=300, deadline=None)
@given(kind=KINDS, now=TIMES, to=st.sampled_from([NY, FL, FR, "+12085550123",
                                                   "+61412345678"]),
       consent=st.sampled_from(list(ConsentStatus)), hours_ago=st.floats(0, 100),
       bypass=st.frozensets(st.sampled_from(list(Bypass))))
def test_decision_invariants(kind: MessageKind, now: datetime, to: str,
                             consent: ConsentStatus, hours_ago: float,
                             bypass: frozenset[Bypass]) -> None:
    m = msg(kind, to=to, bypass=bypass,
            reply_to=ReplyKind.HELP if kind is MessageKind.REPLY else None)
    f = facts(to, consent=consent, marketing_sends=(now - timedelta(hours=hours_ago),))
    d = evaluate(m, f, P, now)
    assert isinstance(d.reason, Reason)
    if d.action is Action.SEND:
        assert d.reason is Reason.OK
        assert d.text is not None
        assert d.text.startswith(m.text.rstrip())
    else:
        assert d.reason is not Reason.OK
        assert d.marks is NO_MARKS
    if d.action is Action.DEFER:
        assert d.reason is Reason.QUIET_HOURS
        assert d.defer_until is not None
        assert now < d.defer_until <= now + timedelta(days=14)
        # at the opening the quiet-hours rule is satisfied
        assert evaluate(m, f, P, d.defer_until).reason is not Reason.QUIET_HOURS
    else:
        assert d.defer_until is None
    if kind is MessageKind.REPLY or Bypass.QUIET_HOURS in bypass:
        assert d.action is not Action.DEFER
    # pure: same inputs, same answer
    assert evaluate(m, f, P, now) == d
