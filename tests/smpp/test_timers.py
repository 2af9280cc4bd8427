"""Pure timers (gateway.smpp.timers): integer clock, smppex style (tick at 59, 61, 89, 91)."""

from __future__ import annotations

import pytest

from gateway.smpp.timers import (
    EnquireLinkDue,
    Expired,
    LinkDeadReason,
    ResponseOverdue,
    TimerAction,
    Timers,
)


def make(**kw: float) -> Timers:
    args: dict[str, float] = {
        "now": 0,
        "response_timeout": 30,
        "enquire_link_interval": 60,
        "inactivity_timeout": 0,
        "bind_timeout": 0,
    }
    args.update(kw)
    now = args.pop("now")
    return Timers(now=now, **args)


def bound(t: Timers) -> Timers:
    t.binding = False
    t.keepalive = True
    return t


@pytest.mark.parametrize(
    ("now", "action"),
    [(59, None), (60, EnquireLinkDue()), (61, EnquireLinkDue())],
)
def test_enquire_link_due_when_idle(now: float, action: TimerAction | None) -> None:
    assert bound(make()).on_tick(now, None) == action


def test_receiving_postpones_enquire_link() -> None:
    t = bound(make())
    t.last_activity = t.last_received = 50
    assert t.on_tick(61, None) is None
    assert t.next_deadline(None) == 110
    assert t.on_tick(110, None) == EnquireLinkDue()


def test_sending_alone_does_not_postpone_enquire_link() -> None:
    """A peer that went silent while we keep submitting must still be probed: our own
    submits prove nothing about the link (else the link is never declared dead)."""
    t = bound(make())
    t.last_activity = 59  # we sent at 59; nothing received since 0
    assert t.on_tick(60, None) == EnquireLinkDue()
    assert t.next_deadline(None) == 60


def test_no_second_enquire_link_while_one_is_pending() -> None:
    t = bound(make())
    t.enquire_pending = True
    assert t.on_tick(1000, None) is None
    assert t.next_deadline(None) is None


def test_enquire_link_only_while_bound_and_enabled() -> None:
    assert make().on_tick(1000, None) is None  # not bound
    assert bound(make(enquire_link_interval=0)).on_tick(1000, None) is None


@pytest.mark.parametrize(
    ("now", "action"),
    [(89, None), (90, ResponseOverdue(7)), (91, ResponseOverdue(7))],
)
def test_response_overdue(now: float, action: TimerAction | None) -> None:
    # enquire_link sent at 60 (seq 7): its response is overdue at 60 + 30.
    t = bound(make())
    t.last_activity = 60
    t.enquire_pending = True
    assert t.on_tick(now, (7, 60)) == action


@pytest.mark.parametrize(
    ("now", "action"),
    [(9, None), (10, Expired(LinkDeadReason.BIND_TIMEOUT))],
)
def test_session_init_timer(now: float, action: TimerAction | None) -> None:
    t = make(bind_timeout=10)
    assert t.on_tick(now, None) == action
    assert t.next_deadline(None) == 10


def test_session_init_timer_disarmed_once_bound() -> None:
    assert bound(make(bind_timeout=10)).on_tick(59, None) is None


@pytest.mark.parametrize(
    ("now", "action"),
    [(119, None), (120, Expired(LinkDeadReason.INACTIVITY))],
)
def test_inactivity(now: float, action: TimerAction | None) -> None:
    t = bound(make(inactivity_timeout=100, enquire_link_interval=0))
    t.last_received = 20
    assert t.on_tick(now, None) == action


def test_fatal_expiries_come_first() -> None:
    t = make(bind_timeout=10, inactivity_timeout=10)
    assert t.on_tick(100, (1, 0)) == Expired(LinkDeadReason.BIND_TIMEOUT)
    t.binding = False
    assert t.on_tick(100, (1, 0)) == Expired(LinkDeadReason.INACTIVITY)


def test_next_deadline_is_the_earliest() -> None:
    t = bound(make(inactivity_timeout=100))
    t.last_activity = t.last_received = 5
    assert t.next_deadline(None) == 65  # enquire_link
    assert t.next_deadline(20) == 50  # response
    t.last_received = -50
    assert t.next_deadline(None) == 10  # enquire_link counts from the last receive
    u = bound(make(inactivity_timeout=30))
    u.last_activity = u.last_received = 5
    assert u.next_deadline(None) == 35  # inactivity
    assert make(bind_timeout=3).next_deadline(None) == 3
    assert make().next_deadline(None) is None


def test_deadline_and_tick_agree() -> None:
    # Ticking exactly at next_deadline() always finds the action (no busy loop).
    t = bound(make(inactivity_timeout=70))
    t.last_activity = 0.1
    t.last_received = 0.3
    for oldest in (None, (3, 0.2)):
        deadline = t.next_deadline(oldest[1] if oldest else None)
        assert deadline is not None
        assert t.on_tick(deadline, oldest) is not None
        assert t.on_tick(deadline - 1e-6, oldest) is None


def test_response_deadline() -> None:
    assert make(response_timeout=7).response_deadline(3) == 10
