"""TokenBucket: pure, driven with plain numbers for ``now``."""

import math
from collections import deque

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.throttle import GRANT_QUANTUM_S, RECEIVE_BOUND_S, TokenBucket


def max_in_window(times: list[float], tps: int) -> int:
    """The most of ``times`` in any [t, t + 1 s): what the carrier's sliding window sees
    (the node simulator refuses a submit if the one ``tps`` before it came < 1000 ms ago).
    A hair of float slack: a part exactly 1 s after another is allowed."""
    ts = sorted(times)
    best = j = 0
    for i, t in enumerate(ts):
        while ts[j] <= t - 1.0 + 1e-9:
            j += 1
        best = max(best, i - j + 1)
    return best


def drive(b: TokenBucket, ms: int, rtt_ms: int = 1,
          stalls: tuple[tuple[int, int], ...] = ()) -> list[tuple[int, int]]:
    """Poll ``b`` every ms for ``ms`` ms like a bind writer with unlimited work; each grant
    is answered ``rtt_ms`` later (answers due in a stall [start, end) come at its end).
    Returns (ms, parts) per grant."""
    answers: deque[tuple[int, float, int]] = deque()
    grants: list[tuple[int, int]] = []
    for t in range(ms):
        now = t / 1000
        while answers and answers[0][0] <= t:
            _, granted_at, n = answers.popleft()
            b.answered(granted_at, now, n)
        got = b.take(10_000, now)
        if got:
            grants.append((t, got))
            due = t + rtt_ms
            for start, end in stalls:
                if start <= due < end:
                    due = end
            answers.append((due, now, got))
    return grants


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


def test_default_burst_and_rate() -> None:
    # Refill at exactly tps, 100 ms of burst; the window ledger keeps any 1 s <= tps.
    b = TokenBucket(500, now=0.0)
    assert b.burst == 50
    assert b.rate == 500


def test_carrier_view_sustains_exactly_tps() -> None:
    """receive_bound 0 (the SMSC side, gateway.sim): polled every ms for 20 s, exactly tps
    per second and never more in any sliding second."""
    b = TokenBucket(500, now=0.0)
    grants = drive(b, 20_000, rtt_ms=0)
    assert sum(n for t, n in grants if t >= 10_000) == 500 * 10
    assert max_in_window([t / 1000 for t, n in grants for _ in range(n)], 500) == 500


def test_sustained_rate_costs_only_the_round_trip() -> None:
    """Answered 1 ms after each grant: each part's slot comes back 1 s after its answer,
    so the schedule loses at most the round trip per second (was a 15 ms guard)."""
    b = TokenBucket(500, now=0.0, receive_bound=RECEIVE_BOUND_S)
    grants = drive(b, 60_000, rtt_ms=1)
    steady = sum(n for t, n in grants if t >= 10_000) / 50
    assert 500 / 1.001 - 1 <= steady <= 500
    assert max_in_window([t / 1000 for t, n in grants for _ in range(n)], 500) <= 500


@pytest.mark.parametrize(("burst", "at_least", "at_most"), [(5.0, 0, 490), (None, 499, 500)])
def test_burst_lets_the_schedule_recover_from_stalls(
        burst: float | None, at_least: float, at_most: float) -> None:
    """The SMSC stalls 70 ms every second: the answers of each stall come at its end, so a
    second later those slots open at once. 100 ms of burst takes them at once; 10 ms
    spreads them out at tps and each stall sets the schedule back for good (the e2e
    bench under load: 483-488/s with 10 ms, 498/s with 100 ms)."""
    b = TokenBucket(500, now=0.0, burst=burst, receive_bound=RECEIVE_BOUND_S)
    stalls = tuple((s * 1000 + 300, s * 1000 + 370) for s in range(2, 10))
    grants = drive(b, 10_000, stalls=stalls)
    steady = sum(n for t, n in grants if t >= 5_000) / 5
    assert at_least <= steady <= at_most
    assert max_in_window([t / 1000 for t, n in grants for _ in range(n)], 500) <= 500


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
    # the token is back after 1 s, and so is the window (exactly 1 s: the carrier's rule)
    assert b.ready_at(0.0) == pytest.approx(1.0)
    assert b.take(1, 0.999) == 0
    assert b.take(1, b.ready_at(0.999)) == 1


@pytest.mark.parametrize("tps", [-1])
def test_rejects_negative(tps: float) -> None:
    with pytest.raises(ValueError):
        TokenBucket(tps, now=0)
    with pytest.raises(ValueError):
        TokenBucket(10, now=0, burst=0.5)
    with pytest.raises(ValueError):
        TokenBucket(10, now=0, receive_bound=-1)


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
    assert b.take(1000, 2.1) == 100  # burst: 100 ms worth
    b.set_tps(0, now=3.0)
    assert b.unlimited and b.take(10**6, 3.0) == 10**6


def test_unanswered_parts_count_until_the_receive_bound() -> None:
    b = TokenBucket(10, now=0.0, burst=10, receive_bound=0.1)
    assert b.take(10, 0.0) == 10
    # no answer: the carrier may have received them as late as 0.1
    assert b.ready_at(0.5) == pytest.approx(1.1)
    assert b.take(1, 1.05) == 0
    assert b.take(1, 1.1) == 1


def test_answers_open_the_window_one_second_later() -> None:
    b = TokenBucket(10, now=0.0, burst=10, receive_bound=1.0)
    assert b.take(4, 0.0) == 4
    assert b.take(6, 0.01) == 6
    assert b.ready_at(0.05) == pytest.approx(2.0)  # nothing answered: 1 s after the bound
    b.answered(0.0, 0.002, 3)
    assert b.ready_at(0.05) == pytest.approx(1.002)
    b.answered(0.0, 0.004)
    b.answered(0.01, 0.5, 6)  # a late answer: those count until 1 s after it
    assert b.take(10, 1.0019) == 0
    assert b.take(10, 1.002) == 3
    assert b.take(10, 1.004) == 1
    assert b.ready_at(1.004) == pytest.approx(1.5)
    b.answered(0.01, 0.6)  # nothing open from 0.01 any more: ignored
    b.answered(7.0, 7.0)  # never granted: ignored
    assert b.take(10, 1.5) == 6


def test_answers_in_any_order() -> None:
    """Two binds answer in any order: a part leaves the window 1 s after its own answer."""
    b = TokenBucket(2, now=0.0, burst=2, receive_bound=1.0)
    assert b.take(1, 0.0) == 1
    assert b.take(1, 0.001) == 1
    b.answered(0.001, 0.002)
    b.answered(0.0, 0.050)
    assert b.ready_at(0.5) == pytest.approx(1.002)
    assert b.take(2, 1.0019) == 0
    assert b.take(2, 1.002) == 1
    assert b.ready_at(1.002) == pytest.approx(1.050)


def test_given_back_parts_leave_the_window() -> None:
    b = TokenBucket(8, now=0.0, burst=8, receive_bound=1.0)
    assert b.take(3, 0.0) == 3
    b.answered(0.0, 0.001, 3)
    assert b.take(5, 0.5) == 5
    b.give_back(5)  # never sent: not in the window, and their answer never comes
    b.answered(0.5, 0.6)  # ignored
    assert b.available(0.6) == 5
    assert b.take(5, 0.6) == 5
    b.give_back(2)
    assert b.available(0.6) == 2
    b.answered(0.6, 0.601, 3)
    assert b.take(5, 0.7) == 2
    assert b.ready_at(0.7) == pytest.approx(1.001)  # the first three leave first


def test_carrier_view_give_back() -> None:
    b = TokenBucket(4, now=0.0, burst=4)
    assert b.take(4, 0.0) == 4
    b.give_back(3)
    assert b.take(4, 0.0) == 3
    assert b.ready_at(0.0) == pytest.approx(1.0)


@given(
    tps=st.integers(2, 2000),
    bound=st.sampled_from([0.1, RECEIVE_BOUND_S]),
    steps=st.lists(
        st.tuples(st.floats(0, 0.3), st.integers(0, 500), st.floats(0, 0.3), st.floats(0, 1)),
        max_size=150),
)
def test_carrier_window_holds_whatever_the_receive_delays(
        tps: int, bound: float, steps: list[tuple[float, int, float, float]]) -> None:
    """What makes zero ESME_RTHROTTLED certain: each grant is received by the carrier at
    some time between our write and its answer (and within ``receive_bound`` of the write
    when the answer is late), answers come in any order and are seen at the next step;
    the carrier never sees more than tps in any sliding second."""
    b = TokenBucket(tps, now=0.0, receive_bound=bound)
    now = 0.0
    pending: list[tuple[float, float, int]] = []  # (answer time, granted_at, parts)
    received: list[float] = []
    for dt, n, rtt, where in steps:
        now += dt
        due = [p for p in pending if p[0] <= now]
        pending = [p for p in pending if p[0] > now]
        for _, granted_at, k in due:
            b.answered(granted_at, now, k)
        got = b.take(n, now)
        assert 0 <= got <= n
        if got:
            pending.append((now + rtt, now, got))
            received += [now + where * min(rtt, bound)] * got
    assert max_in_window(received, tps) <= tps


@given(tps=st.integers(1, 10_000), now=st.floats(0, 1e6), rtt=st.floats(0, 0.2))
def test_ready_at_is_when_take_succeeds_after_answers(tps: int, now: float, rtt: float) -> None:
    b = TokenBucket(tps, now=now, receive_bound=RECEIVE_BOUND_S)
    while got := b.take(1_000_000, now):
        b.answered(now, now + rtt, got)
    t = b.ready_at(now)
    assert t > now and math.isfinite(t)
    assert b.take(1, t + 1e-9 * max(1.0, t)) == 1


@given(grants=st.lists(st.integers(1, 5), min_size=1, max_size=6),
       answers=st.lists(st.integers(0, 30), max_size=30))
def test_answered_all_is_answered_one_by_one(grants: list[int], answers: list[int]) -> None:
    """``answered_all`` (a bind's answers of one read) leaves the ledger exactly as one
    ``answered`` per part would, including unknown and repeated grant times."""
    one, many = (TokenBucket(50, now=0.0, burst=50, receive_bound=1.0) for _ in range(2))
    times = []
    for i, n in enumerate(grants):
        at = i / 100
        assert one.take(n, at) == many.take(n, at) == n
        times += [at] * n
    times.append(9.0)  # never granted: ignored
    picked = [times[a % len(times)] for a in answers]
    for t in picked:
        one.answered(t, 0.2)
    many.answered_all(picked, 0.2)
    for now in (0.2, 0.5, 1.0, 1.2, 1.5):
        assert one.available(now) == many.available(now)
        assert one.ready_at(now) == many.ready_at(now)


def test_answered_all_with_nothing_open() -> None:
    b = TokenBucket(0, now=0.0)
    b.answered_all([], 1.0)
    b.answered_all([0.0, 0.0], 1.0)  # unlimited: nothing is ever open
    assert b.take(5, 1.0) == 5


# --- grants in quanta (GRANT_QUANTUM_S): same rate and window, fewer wake-ups ----------


@pytest.mark.parametrize(("tps", "burst", "quantum"), [
    (0, None, 1), (100, None, 1), (199, None, 1), (200, None, 2), (500, None, 5),
    (1000, None, 10), (1000, 3.0, 3), (0.5, None, 1)])
def test_quantum_is_ten_ms_worth_from_200_per_second(
        tps: float, burst: float | None, quantum: int) -> None:
    b = TokenBucket(tps, now=0.0, burst=burst)
    assert b.quantum == quantum
    assert GRANT_QUANTUM_S == 0.01


def test_quantum_follows_set_tps() -> None:
    b = TokenBucket(500, now=0.0)
    b.set_tps(1000, now=1.0)
    assert b.quantum == 10
    b.set_tps(150, now=2.0)
    assert b.quantum == 1


def test_take_at_least_grants_nothing_below_it() -> None:
    b = TokenBucket(500, now=0.0)
    assert b.take(10_000, 0.0) == 50  # the burst
    assert b.take(100, 0.008, at_least=5) == 0  # 4 tokens: not yet
    assert b.ready_at(0.008, 5) == pytest.approx(0.010)
    assert b.take(100, 0.010, at_least=5) == 5
    # fewer wanted than the quantum: granted as soon as they are there
    assert b.take(3, 0.016, at_least=5) == 3
    # the refused take granted nothing and recorded nothing in the window
    assert b.available(0.016) == 0


def drive_at_ready(b: TokenBucket, ms: int, rtt_ms: int = 1) -> list[tuple[float, int]]:
    """A bind writer with unlimited work that sleeps until ``ready_at(now, quantum)`` and
    takes with ``at_least=quantum``; each grant is answered ``rtt_ms`` later."""
    answers: deque[tuple[float, float, int]] = deque()
    grants: list[tuple[float, int]] = []
    now = 0.0
    end = ms / 1000
    while now < end:
        while answers and answers[0][0] <= now:
            _, granted_at, n = answers.popleft()
            b.answered(granted_at, now, n)
        got = b.take(10_000, now, at_least=b.quantum)
        if got:
            grants.append((now, got))
            answers.append((now + rtt_ms / 1000, now, got))
        nxt = b.ready_at(now, b.quantum)
        if answers:
            nxt = min(nxt, answers[0][0])
        now = max(nxt, now + 1e-6)
    return grants


def test_quanta_keep_the_rate_and_the_window_with_a_fifth_of_the_grants() -> None:
    """At 500/s the writer wakes for 5 parts every ~10 ms instead of 1 every 2 ms: the
    sustained rate still costs only the round trip, no sliding second holds more than
    500, and every grant is at least a quantum (the first burst's 50 slots come back
    together once a second, as before)."""
    b = TokenBucket(500, now=0.0, receive_bound=RECEIVE_BOUND_S)
    grants = drive_at_ready(b, 30_000)
    steady = sum(n for t, n in grants if t >= 10.0) / 20
    assert 500 / 1.001 - 2 <= steady <= 500
    assert max_in_window([t for t, n in grants for _ in range(n)], 500) <= 500
    assert all(n >= 5 for t, n in grants)
    assert len(grants) <= sum(n for t, n in grants) / 5


@given(tps=st.integers(1, 10_000), now=st.floats(0, 1e6), rtt=st.floats(0, 0.2),
       want=st.integers(1, 200))
def test_ready_at_want_is_when_take_at_least_succeeds(
        tps: int, now: float, rtt: float, want: int) -> None:
    b = TokenBucket(tps, now=now, receive_bound=RECEIVE_BOUND_S)
    while got := b.take(1_000_000, now):
        b.answered(now, now + rtt, got)
    k = min(want, b.quantum)
    t = b.ready_at(now, want)
    assert t > now and math.isfinite(t)
    assert b.take(1_000_000, t + 1e-9 * max(1.0, t), at_least=k) >= k


@given(
    tps=st.integers(2, 3000),
    steps=st.lists(st.tuples(st.floats(0, 0.05), st.integers(0, 500), st.floats(0, 0.1),
                             st.integers(1, 40)), max_size=200),
)
def test_window_holds_with_any_at_least(
        tps: int, steps: list[tuple[float, int, float, int]]) -> None:
    """``at_least`` only ever withholds grants: the carrier's window holds as before."""
    b = TokenBucket(tps, now=0.0, receive_bound=RECEIVE_BOUND_S)
    now = 0.0
    pending: list[tuple[float, float, int]] = []
    received: list[float] = []
    for dt, n, rtt, at_least in steps:
        now += dt
        for _, granted_at, k in [p for p in pending if p[0] <= now]:
            b.answered(granted_at, now, k)
        pending = [p for p in pending if p[0] > now]
        got = b.take(n, now, at_least=at_least)
        assert got == 0 or got >= min(at_least, n)
        if got:
            pending.append((now + rtt, now, got))
            received += [now] * got
    assert max_in_window(received, tps) <= tps
