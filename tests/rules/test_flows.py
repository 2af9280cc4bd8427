"""Rule 5: abandoned carts (double opt-in, 48 h window) and one message per flow trigger."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import msgspec
import pytest

from rules import (
    Action,
    DoubleOptIn,
    MessageKind,
    Policy,
    Reason,
    apply_send,
    evaluate,
    flow_mark_key,
)
from tests.rules.helpers import FL, FR, NY, facts, msg, utc

P = Policy()
NYC = ZoneInfo("America/New_York")
CONFIRMED = DoubleOptIn.CONFIRMED


def cart(trigger_at: datetime | None, to: str = NY, **kw: object):  # type: ignore[no-untyped-def]
    return msg(MessageKind.FLOW, to=to, flow_type="abandoned_cart", trigger_id="cart-1",
               trigger_at=trigger_at, **kw)


# The trigger at 11:00 ET; evaluated at trigger + offset (all inside 08-21 ET).
TRIGGER = datetime(2026, 3, 4, 11, 0, tzinfo=NYC)


@pytest.mark.parametrize(("after", "reason"), [
    (timedelta(hours=2), Reason.OK),
    (timedelta(hours=47, minutes=59), Reason.OK),
    (timedelta(hours=48), Reason.OK),  # the window is inclusive
    (timedelta(hours=48, minutes=1), Reason.CART_WINDOW_EXPIRED),
    (timedelta(days=5), Reason.CART_WINDOW_EXPIRED),
])
def test_cart_window(after: timedelta, reason: Reason) -> None:
    d = evaluate(cart(TRIGGER), facts(NY, double_opt_in=CONFIRMED), P, TRIGGER + after)
    assert d.reason is reason


@pytest.mark.parametrize(("trigger_local", "now_local", "expected"), [
    # Abandoned Mon 22:00 ET; Wed 20:30 ET is 46.5 h later but quiet: next opening Thu
    # 08:00 = 58 h after the trigger -> rejected, not deferred.
    ((2026, 3, 2, 22, 0), (2026, 3, 4, 21, 30), Reason.CART_WINDOW_EXPIRED),
    # Abandoned Mon 09:00 ET; evaluated Tue 23:00 ET: deferral to Wed 08:00 = 47 h -> ok
    ((2026, 3, 2, 9, 0), (2026, 3, 3, 23, 0), Reason.QUIET_HOURS),
    # Abandoned Mon 07:59 ET; Tue 23:00 -> Wed 08:00 is 48:01 after -> rejected
    ((2026, 3, 2, 7, 59), (2026, 3, 3, 23, 0), Reason.CART_WINDOW_EXPIRED),
    # Abandoned Mon 08:00 ET; Wed 08:00 is exactly 48:00 after -> deferred
    ((2026, 3, 2, 8, 0), (2026, 3, 3, 23, 0), Reason.QUIET_HOURS),
])
def test_quiet_hours_deferral_past_window_is_rejection(
        trigger_local: tuple[int, ...], now_local: tuple[int, ...], expected: Reason) -> None:
    trigger = datetime(*trigger_local, tzinfo=NYC)  # type: ignore[misc]
    now = datetime(*now_local, tzinfo=NYC)  # type: ignore[misc]
    d = evaluate(cart(trigger), facts(NY, double_opt_in=CONFIRMED), P, now)
    assert d.reason is expected
    if expected is Reason.QUIET_HOURS:
        assert d.action is Action.DEFER
        assert d.defer_until is not None
        assert d.defer_until <= trigger + timedelta(hours=48)
    else:
        assert d.action is Action.REJECT


@pytest.mark.parametrize(("to", "doi", "reason"), [
    (NY, DoubleOptIn.NONE, Reason.DOUBLE_OPT_IN_REQUIRED),
    (NY, DoubleOptIn.PENDING, Reason.DOUBLE_OPT_IN_REQUIRED),
    (NY, DoubleOptIn.CONFIRMED, Reason.OK),
    (FR, DoubleOptIn.NONE, Reason.OK),  # only US recipients need it
])
def test_double_opt_in(to: str, doi: DoubleOptIn, reason: Reason) -> None:
    now = utc(2026, 3, 4, 13, 0)  # 09:00 ET, 14:00 Paris (a Wednesday)
    d = evaluate(cart(now - timedelta(hours=1), to=to), facts(to, double_opt_in=doi), P, now)
    assert d.reason is reason


def test_missing_trigger_at() -> None:
    now = utc(2026, 3, 4, 16, 0)
    d = evaluate(cart(None), facts(NY, double_opt_in=CONFIRMED), P, now)
    assert d.reason is Reason.MISSING_TRIGGER


def test_other_flows_are_not_carts() -> None:
    now = utc(2026, 3, 4, 16, 0)
    m = msg(MessageKind.FLOW, to=NY, flow_type="welcome", trigger_at=now - timedelta(days=9))
    assert evaluate(m, facts(NY), P, now).reason is Reason.OK


def test_one_message_per_trigger() -> None:
    now = utc(2026, 3, 4, 16, 0)
    m = cart(now - timedelta(hours=1), to=FL)
    f = facts(FL, double_opt_in=CONFIRMED)
    first = evaluate(m, f, P, now)
    assert first.action is Action.SEND
    assert first.marks.flow_mark == "f1:cart-1"
    f2 = apply_send(f, m, first, now)
    assert f2.flow_marks == {"f1:cart-1"}
    later = now + timedelta(hours=30)  # past smart sending, inside the cart window
    assert evaluate(m, f2, P, later).reason is Reason.FLOW_LIMIT_REACHED
    # another trigger of the same flow is a new event
    other = msgspec.structs.replace(m, trigger_id="cart-2")
    assert evaluate(other, f2, P, later).action is Action.SEND


@pytest.mark.parametrize(("flow_type", "trigger_id", "trigger_at", "limited", "key"), [
    ("abandoned_cart", "t1", None, ("abandoned_cart",), "f1:t1"),
    ("abandoned_cart", None, utc(2026, 1, 2, 3, 4), ("abandoned_cart",),
     "f1:2026-01-02T03:04:00+00:00"),
    ("welcome", "t1", None, ("abandoned_cart",), None),
    ("welcome", "t1", None, ("*",), "f1:t1"),
    ("welcome", None, None, ("*",), "f1:"),
])
def test_flow_mark_key(flow_type: str, trigger_id: str | None, trigger_at: datetime | None,
                       limited: tuple[str, ...], key: str | None) -> None:
    policy = msgspec.convert({"flows": {"once_per_trigger": list(limited)}}, Policy)
    m = msg(MessageKind.FLOW, flow_type=flow_type, trigger_id=trigger_id,
            trigger_at=trigger_at)
    assert flow_mark_key(m, policy) == key
    assert flow_mark_key(msg(MessageKind.CAMPAIGN), policy) is None


def test_general_flow_limit_for_any_flow() -> None:
    policy = msgspec.convert({"flows": {"once_per_trigger": ["*"]}}, Policy)
    now = utc(2026, 3, 4, 16, 0)
    m = msg(MessageKind.FLOW, to=NY, flow_type="browse_abandon", trigger_id="b1")
    f = facts(NY, flow_marks=frozenset({"f1:b1"}))
    assert evaluate(m, f, policy, now).reason is Reason.FLOW_LIMIT_REACHED
    assert evaluate(m, f, P, now).reason is Reason.OK


@pytest.mark.parametrize(("setting", "reason"), [
    ({"window_hours": 72, "double_opt_in_regions": []}, Reason.OK),
    ({"enabled": False}, Reason.OK),
    ({"double_opt_in_regions": []}, Reason.CART_WINDOW_EXPIRED),
])
def test_cart_switches(setting: dict[str, object], reason: Reason) -> None:
    policy = msgspec.convert({"cart": setting}, Policy)
    now = TRIGGER + timedelta(hours=50)  # 13:00 ET
    assert evaluate(cart(TRIGGER), facts(NY), policy, now).reason is reason
