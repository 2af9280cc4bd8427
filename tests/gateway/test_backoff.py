"""Backoff and FailureLog: pure, seeded randomness, plain-number time."""

import random

import pytest

from gateway.backoff import Backoff, FailureLog


class Max:
    def uniform(self, a: float, b: float) -> float:
        return b


class Min:
    def uniform(self, a: float, b: float) -> float:
        return a


def test_grows_and_caps() -> None:
    b = Backoff(1.0, 30.0)
    assert [b.next_delay(Max()) for _ in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    assert b.failures == 7
    b.reset()
    assert b.next_delay(Max()) == 1


def test_equal_jitter_never_below_half() -> None:
    b = Backoff(1.0, 30.0)
    assert [b.next_delay(Min()) for _ in range(6)] == [0.5, 1, 2, 4, 8, 15]


def test_seeded_jitter_spreads_and_is_bounded() -> None:
    rng = random.Random(7)
    delays = []
    for _ in range(50):
        b = Backoff(1.0, 60.0)
        for _ in range(3):
            b.next_delay(rng)
        delays.append(b.next_delay(rng))
    assert all(4.0 <= d <= 8.0 for d in delays)
    assert len(set(delays)) == 50


def test_many_failures_no_overflow() -> None:
    b = Backoff(0.1, 5.0, factor=3.0)
    for _ in range(10_000):
        d = b.next_delay(Max())
    assert d == 5.0


def test_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError):
        Backoff(0, 1)
    with pytest.raises(ValueError):
        Backoff(2, 1)
    with pytest.raises(ValueError):
        Backoff(1, 2, factor=0.5)


def test_failure_log_first_then_summary() -> None:
    log = FailureLog(interval=60.0)
    lines = []
    for t in range(0, 300, 2):  # a failure every 2 s for 5 minutes
        line = log.failure("bind refused: ESME_RINVPASWD", float(t))
        if line:
            lines.append(line)
    assert lines[0] == "bind refused: ESME_RINVPASWD"
    assert len(lines) == 5  # first + one summary per minute
    assert "still failing: 31 attempts in 60 s" in lines[1]
    assert log.count == 150


def test_failure_log_new_cause_logged_at_once_and_recovery() -> None:
    log = FailureLog(interval=60.0)
    assert log.failure("connect refused", 0.0) == "connect refused"
    assert log.failure("connect refused", 1.0) is None
    assert log.failure("bind timeout", 2.0) == "bind timeout"
    assert log.cause == "bind timeout"
    line = log.recovered(10.0)
    assert line is not None and "1 failed attempts" in line and "bind timeout" in line
    assert log.recovered(11.0) is None
    assert log.cause is None
