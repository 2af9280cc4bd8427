"""TokenBucket: pure, driven with plain numbers for ``now``."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.throttle import WINDOW_GUARD_S, TokenBucket


def test_unlimited_grants_everything() -> None:
    b = TokenBucket(0, now=0.0)
    assert b.unlimited
    assert b.take(10_000, 0.0) == 10_000
    assert b.ready_at(5.0) == 5.0
    assert b.available(1.0) > 1_000_000


def test_unlimited_still_pauses() -> None:
    b = TokenBucket(0, now=0.0)
    b.pause(3.0, now=1.0)
    assert b.take(5, 2.0) == 0
    assert b.ready_at(2.0) == 3.0
    assert b.take(5, 3.0) == 5


def test_default_burst_and_rate_keep_sliding_window() -> None:
    # Refill at exactly tps, 10 ms of burst; the window ledger keeps any 1 s <= tps.
    b = TokenBucket(500, now=0.0)
    assert b.burst == 5
    assert b.rate == 500


def test_sustained_rate_is_tps_within_the_guard() -> None:
    """Polled every ms for 20 s: the sustained rate is tps / (1 + guard) (was tps - burst)."""
    b = TokenBucket(500, now=0.0)
    grants: list[tuple[float, int]] = []
    for ms in range(20_000):
        now = ms / 1000
        got = b.take(1000, now)
        if got:
            grants.append((now, got))
    total = sum(g for t, g in grants if t >= 10.0)  # steady state: the last 10 s
    assert 500 * 10 / (1 + WINDOW_GUARD_S) - 10 <= total <= 500 * 10
    assert total >= 500 * 10 * 0.98
    for i, (t0, _) in enumerate(grants):
        assert sum(g for t, g in grants[i:] if t < t0 + 1.0) <= 500


def test_take_refills_over_time() -> None:
    b = TokenBucket(100, now=0.0, burst=10)
    assert b.take(50, 0.0) == 10
    assert b.take(1, 0.0) == 0
    assert b.ready_at(0.0) == pytest.approx(1 / 100)
    assert b.take(50, 0.1 + 1e-9) == 10  # 0.1 s * 100/s
    assert b.available(10.0) == 10  # capped at the burst


def test_give_back_is_capped() -> None:
    b = TokenBucket(100, now=0.0, burst=10)
    assert b.take(4, 0.0) == 4
    b.give_back(100)
    assert b.available(0.0) == 10


def test_pause_grants_nothing_and_accumulates_nothing() -> None:
    b = TokenBucket(100, now=0.0, burst=10)
    assert b.take(10, 0.0) == 10
    b.pause(5.0, now=0.0)
    assert b.take(1, 4.9) == 0
    assert b.available(4.9) == 0
    # tokens only start refilling when the pause ends
    assert b.ready_at(1.0) == pytest.approx(5.0 + 1 / 100)
    assert b.take(10, 5.0) == 0
    assert b.take(10, 5.1 + 1e-9) == 10


def test_pause_never_shortens() -> None:
    b = TokenBucket(10, now=0.0)
    b.pause(5.0, now=0.0)
    b.pause(2.0, now=0.0)
    assert b.paused_until == 5.0


def test_small_tps() -> None:
    b = TokenBucket(1, now=0.0)
    assert b.burst == 1 and b.rate == 1
    assert b.take(3, 0.0) == 1
    # the token is back after 1 s; the window ledger adds its guard
    assert b.ready_at(0.0) == pytest.approx(1.0 + WINDOW_GUARD_S)
    assert b.take(1, 1.0) == 0
    assert b.take(1, b.ready_at(1.0)) == 1


@pytest.mark.parametrize("tps", [-1])
def test_rejects_negative(tps: float) -> None:
    with pytest.raises(ValueError):
        TokenBucket(tps, now=0)
    with pytest.raises(ValueError):
        TokenBucket(10, now=0, burst=0.5)


@given(
    tps=st.integers(2, 5000),
    steps=st.lists(st.tuples(st.floats(0, 0.3), st.integers(0, 500)), max_size=200),
)
def test_never_more_than_tps_in_any_second(tps: int, steps: list[tuple[float, int]]) -> None:
    """The carrier-side rule we must respect: at most tps in any sliding 1 s window."""
    b = TokenBucket(tps, now=0.0)
    now = 0.0
    grants: list[tuple[float, int]] = []
    for dt, n in steps:
        now += dt
        got = b.take(n, now)
        assert 0 <= got <= n
        if got:
            grants.append((now, got))
    for i, (t0, _) in enumerate(grants):
        in_window = sum(g for t, g in grants[i:] if t < t0 + 1.0)
        assert in_window <= tps


@given(tps=st.integers(1, 10_000), now=st.floats(0, 1e6))
def test_ready_at_is_when_take_succeeds(tps: int, now: float) -> None:
    b = TokenBucket(tps, now=now)
    while b.take(1_000_000, now):
        pass
    t = b.ready_at(now)
    assert t > now and math.isfinite(t)
    assert b.take(1, t + 1e-9 * max(1.0, t)) == 1


def test_set_tps_changes_rate_and_caps_tokens() -> None:
    b = TokenBucket(0, now=0.0)
    b.set_tps(10, now=1.0)
    assert not b.unlimited and b.tps == 10
    assert b.take(5, 1.0) == 0  # starts empty when leaving "unlimited"
    assert b.take(5, 2.0) == 1  # burst 1
    b.set_tps(1000, now=2.0)
    assert b.take(100, 2.1) == 10  # burst: 10 ms worth
    b.set_tps(0, now=3.0)
    assert b.unlimited and b.take(10**6, 3.0) == 10**6
