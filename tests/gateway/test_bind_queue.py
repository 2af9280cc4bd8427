"""WorkQueue and SubmitBatch bookkeeping (no I/O; plain numbers for ``now``)."""

from __future__ import annotations

import pytest

from gateway.bind import OutcomeKind, SubmitBatch, SubmitOutcome, WorkQueue
from gateway.smpp import pdu as P
from gateway.throttle import RECEIVE_BOUND_S


def batch(n: int, tag: str = "", seen: list[tuple[int, str]] | None = None) -> SubmitBatch:
    parts = [P.SubmitSm(destination_addr=f"{tag}{i}") for i in range(n)]

    def on_outcome(i: int, o: SubmitOutcome) -> None:
        if seen is not None:
            seen.append((i, o.kind.value))

    return SubmitBatch(parts, on_outcome)


def dests(items: list[tuple[SubmitBatch, int]]) -> list[str]:
    return [b.parts[i].destination_addr for b, i in items]


def test_take_in_order_across_batches() -> None:
    q = WorkQueue()
    q.put_nowait(batch(3, "a"))
    q.put_nowait(batch(2, "b"))
    assert len(q) == 5
    assert dests(q.take(2, 0.0)) == ["a0", "a1"]
    assert dests(q.take(10, 0.0)) == ["a2", "b0", "b1"]
    assert len(q) == 0
    assert q.take(5, 0.0) == []


def test_give_back_goes_first() -> None:
    q = WorkQueue()
    q.put_nowait(batch(4, "a"))
    items = q.take(3, 0.0)
    q.give_back(items[1:])
    assert dests(q.take(10, 0.0)) == ["a1", "a2", "a3"]


def test_tps_limits_take() -> None:
    q = WorkQueue(tps=500)
    q.put_nowait(batch(2000))
    assert len(q.take(200, 0.0)) == 50  # burst 50 (100 ms worth)
    assert q.ready_at(0.0) > 0.0
    assert len(q.take(200, 1.0)) == 50  # capped at the burst again


def test_answers_free_the_window() -> None:
    """The carrier's window counts a part until 1 s after its answer (gateway.throttle)."""
    q = WorkQueue(tps=2)
    woken: list[int] = []
    q.subscribe(lambda: woken.append(1))
    q.put_nowait(batch(10))
    assert len(q.take(5, 0.0)) == 1  # burst 1
    assert len(q.take(5, 0.5)) == 1  # the window is full now
    # unanswered: in the window until answered (at worst RECEIVE_BOUND_S)
    assert q.ready_at(0.5) == RECEIVE_BOUND_S + 1.0
    q.answered(0.0, 0.003)
    assert q.ready_at(0.5) == 1.003
    woken.clear()
    q.ended([0.5], 0.7)  # e.g. its link was lost: every bind may take the room
    assert woken
    assert q.ready_at(1.0) == 1.003
    assert len(q.take(5, 1.003)) == 1
    assert q.ready_at(1.003) == 1.7


def test_withdraw_mid_batch_and_retry() -> None:
    seen: list[tuple[int, str]] = []
    q = WorkQueue()
    a = batch(5, "a", seen)
    q.put_nowait(a)
    q.put_nowait(batch(2, "b"))
    taken = q.take(2, 0.0)
    q.give_back(taken[1:])  # a1 back in the retry lane
    assert q.withdraw(a) == 4  # a1 (retry) + a2..a4
    assert sorted(seen) == [(1, "not_sent"), (2, "not_sent"), (3, "not_sent"), (4, "not_sent")]
    assert a.outcomes[0] is None  # a0 was taken: its outcome comes from the bind
    assert dests(q.take(10, 0.0)) == ["b0", "b1"]
    assert q.withdraw(a) == 0


def test_close_resolves_everything_not_sent() -> None:
    q = WorkQueue()
    a, b = batch(3), batch(2)
    q.put_nowait(a)
    q.put_nowait(b)
    q.take(1, 0.0)
    q.close()
    assert a.outcomes[0] is None and a.remaining == 1
    assert all(o is not None and o.kind is OutcomeKind.NOT_SENT for o in a.outcomes[1:])
    assert b.done
    late = batch(1)
    q.put_nowait(late)
    assert late.done and late.outcomes[0] is not None
    assert late.outcomes[0].reason == "carrier shut down"


def test_batch_first_outcome_wins() -> None:
    b = batch(1)
    b.resolve(0, SubmitOutcome(kind=OutcomeKind.ACCEPTED, message_id="x"))
    b.resolve(0, SubmitOutcome(kind=OutcomeKind.UNKNOWN))
    assert b.done and b.outcomes[0] is not None and b.outcomes[0].message_id == "x"
    assert SubmitBatch([]).done


def test_throttling_pauses_and_adapts_the_rate() -> None:
    q = WorkQueue(tps=0, throttle_pause=1.0, throttle_pause_max=8.0)
    b = batch(1000)
    q.put_nowait(b)
    items = q.take(300, 0.0)
    assert len(items) == 300  # unlimited
    for _ in range(200):
        q.accepted(0.0)
    # the SMSC refuses the rest of the burst at t=0.5
    for item in items[200:]:
        assert q.throttled_part(item, 0x58, 0.5, "b#0")
    assert q.pauses == 1 and q.throttled == 100
    assert q.adaptive_tps == 180.0  # 90 % of 200 accepted in (at least) 1 s
    assert q.bucket.paused_until > 0.5
    assert q.take(10, 0.5) == []  # paused
    assert len(q) == 800  # nothing dropped: the refused parts are queued again, first
    resume = q.bucket.paused_until
    again = q.take(1000, resume + 0.5)
    assert 0 < len(again) <= 100
    assert dests(again[:1]) == ["200"]  # the refused ones go first
    # 10 %/s growth back towards unlimited
    q.take(1, resume + 10.0)
    assert q.adaptive_tps is not None and q.adaptive_tps > 350


def test_throttled_part_gives_up_after_retry_window() -> None:
    q = WorkQueue(throttle_retry_for=60.0)
    b = batch(1)
    q.put_nowait(b)
    (item,) = q.take(1, 0.0)
    assert q.throttled_part(item, 0x58, 0.0, "b")
    (item,) = q.take(1, 100.0)
    assert not q.throttled_part(item, 0x58, 100.0, "b")  # refused for > 60 s: give up
    assert len(q) == 0


def test_tps_takes_in_quanta_while_enough_wait() -> None:
    """At 500/s a take grants 5 parts at a time (10 ms worth) while 5 wait, and
    ``ready_at`` is when those 5 are there: the same rate with a fifth of the wake-ups,
    outcome commits and receipt batches (gateway.throttle.GRANT_QUANTUM_S)."""
    q = WorkQueue(tps=500)
    q.put_nowait(batch(60))
    assert len(q.take(200, 0.0)) == 50  # the burst
    assert q.take(200, 0.004) == []  # 2 tokens: not a quantum yet
    assert q.ready_at(0.004) == pytest.approx(0.010)
    assert len(q.take(200, 0.010)) == 5
    # the session's window has room for 2 only: wake for 2, take 2
    assert q.ready_at(0.010, room=2) == pytest.approx(0.014)
    assert len(q.take(2, 0.014)) == 2
    # fewer parts wait than a quantum: each goes as soon as its token is there
    assert len(q) == 3
    assert q.ready_at(0.014) == pytest.approx(0.020)
    assert len(q.take(200, 0.020)) == 3


def test_unlimited_and_slow_carriers_take_part_by_part() -> None:
    q = WorkQueue(tps=100)
    q.put_nowait(batch(20))
    assert len(q.take(200, 0.0)) == 10  # burst
    assert q.ready_at(0.0) == pytest.approx(0.01)
    assert len(q.take(200, 0.01)) == 1
    u = WorkQueue()
    u.put_nowait(batch(3))
    assert len(u.take(1, 0.0)) == 1
