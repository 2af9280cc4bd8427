"""Per-carrier submit rate limiting: a pure token bucket plus a "slow down" pause.

No clock and no I/O here: every method takes ``now`` (seconds, any monotonic origin), so
the bucket is tested with plain numbers and driven by ``trio.current_time()`` in
``gateway.bind``/``gateway.carriers``.

Carriers (and the node-smpp simulator we test against) usually enforce "at most N in any
1000 ms" as a *sliding window* over the times **they receive** the submits. A **window
ledger** caps what the bucket grants: a grant at ``now`` needs fewer than ``tps`` earlier
grants that the carrier may have received after ``now - 1 s``.

When did the carrier receive a part? Not before we wrote it (a grant's ``now`` is read
before its bytes go out) and not after its response reached us (a carrier answers after
it has received). So the ledger counts a part until 1 s after its **answer**
(``answered``), not 1 s after its grant plus a guard. The carrier's receive delay varies:
the node simulator, sharing a busy core, read parts up to 180 ms after we wrote them, and
a version that trusted 100 ms got 25 parts refused in one run (bench/RESULTS.md,
2026-11-22 session 2). A guess at that delay either costs rate or lets a throttle
through. With the answer time, a carrier stall delays our next grants by exactly the
stall, and no window of the carrier's holds more than ``tps`` whatever the delays. The
cost is the round trip: the sustained rate is at worst ``tps / (1 s + rtt + our wake-up
lateness)``, ~498/s at 500 against the simulator (rtt 1-4 ms), but 476/s against a
carrier that answers in 50 ms.

A part the bind never reports (``answered`` is also called for a response timeout and a
lost link) leaves the window ``receive_bound`` after its grant. ``receive_bound = 0``
(the default) counts the grant time instead: that is the carrier's own view
(``gateway.sim`` uses the bucket as the SMSC's limiter).

The ledger alone keeps the carrier's limit; the tokens (refill ``tps``, burst ``BURST_S``
= 100 ms worth) only pace the grants: evenly from a start, yet able to follow the ledger
when a stall (the carrier's, or our own trio thread's) compressed the answers of a second
ago into a burst. With a 10 ms burst every such stall shifted the schedule for good (the
backlog drained at exactly ``tps``): 483-488/s steady under load, against 498/s with 100 ms.
"""

from __future__ import annotations

import math
from collections import deque

__all__ = ["BURST_S", "GRANT_QUANTUM_S", "RECEIVE_BOUND_S", "WINDOW_S", "TokenBucket"]

#: The carrier's sliding window.
WINDOW_S = 1.0
#: The bind reports every part's end to the ledger (its answer, its response timeout, its
#: link's loss); a part it never reports (a bug) still leaves the window this long after
#: its grant, as if the carrier had received it then.
RECEIVE_BOUND_S = 10.0
#: Default burst, in seconds' worth of tokens (see the module docstring).
BURST_S = 0.1
#: A limited bucket grants in steps of this many seconds' worth of tokens while enough
#: parts wait (``quantum``): at 500/s, 5 parts every 10 ms rather than 1 every 2 ms. The
#: rate and the window are the same; what changes is how many parts share a wake-up, a
#: read of their answers, an outcome commit and a receipt batch. One part at a time cost
#: ~2.3 fsync'd write transactions and ~1.1 ms of CPU per message at ``tps = 500``
#: (bench/RESULTS.md, session 7). Below 200/s the step is one part (no change).
GRANT_QUANTUM_S = 0.01

# Float slack when flooring tokens: ready_at() computes the exact instant a token is
# complete, and rounding must not leave 0.9999999 tokens there (a wake-up that grants
# nothing, again and again).
_EPS = 1e-6


class TokenBucket:
    """Tokens refill continuously at ``rate``/s up to ``burst``; ``tps = 0`` means unlimited.

    ``pause(until)`` grants nothing before ``until`` (the carrier said ESME_RTHROTTLED or
    ESME_RMSGQFUL); tokens do not accumulate during a pause, so a pause is never followed
    by a burst larger than the normal one. ``answered(granted_at, now)`` tells the window
    ledger that the carrier answered a part granted at ``granted_at`` (the ``now`` given
    to ``take``); see the module docstring.
    """

    __slots__ = ("_bound", "_burst", "_cap", "_done", "_done_n", "_open", "_open_n",
                 "_open_order", "_paused_until", "_quantum", "_rate", "_stamp", "_tokens",
                 "tps")

    def __init__(self, tps: float, *, now: float, burst: float | None = None,
                 receive_bound: float = 0.0) -> None:
        if receive_bound < 0:
            raise ValueError("receive_bound must be >= 0")
        self._tokens = 0.0
        self._stamp = now
        self._paused_until = -math.inf
        # The window ledger. Answered parts: [answer time, parts], in answer order (the
        # times never decrease), ``_done_n`` parts in all; they leave the window 1 s
        # after their answer. Open parts: grant time -> parts not answered yet,
        # ``_open_n`` in all, ``_open_order`` the grant times oldest first (entries
        # answered meanwhile are skipped lazily); they stay in the window until answered,
        # or until ``receive_bound`` after their grant.
        self._done: deque[list[float]] = deque()
        self._done_n = 0
        self._open: dict[float, int] = {}
        self._open_n = 0
        self._open_order: deque[float] = deque()
        self._bound = float(receive_bound)
        self._cap = 0
        self._configure(tps, burst)
        self._tokens = 0.0 if tps == 0 else self._burst

    def set_tps(self, tps: float, now: float) -> None:
        """Change the rate from ``now`` on (tokens held are kept, up to the new burst)."""
        if not self.unlimited:
            self._refill(now)
        self._stamp = now
        self._configure(tps, None)
        if self.unlimited:
            self._tokens = 0.0
        else:
            self._tokens = min(self._tokens, self._burst)

    def _configure(self, tps: float, burst: float | None) -> None:
        if tps < 0:
            raise ValueError("tps must be >= 0")
        self.tps = float(tps)
        if tps == 0:
            self._rate = math.inf
            self._burst = math.inf
            self._quantum = 1
        else:
            if burst is None:
                # 100 ms worth of tokens, at least one: see the module docstring.
                burst = max(1.0, tps * BURST_S)
            if burst < 1:
                raise ValueError("burst must be >= 1")
            self._burst = float(burst)
            self._rate = float(tps)
            # The window ledger grants whole parts: at most floor(tps) per window (>= 1).
            self._cap = max(1, int(tps + _EPS))
            # Never more than the burst or the window can ever hold at once.
            self._quantum = max(1, min(int(tps * GRANT_QUANTUM_S + _EPS), int(self._burst),
                                       self._cap))

    @property
    def unlimited(self) -> bool:
        """True when the bucket never limits (tps = 0)."""
        return self._rate == math.inf

    @property
    def rate(self) -> float:
        """Refill rate in tokens per second (inf when unlimited)."""
        return self._rate

    @property
    def burst(self) -> float:
        """Capacity in tokens (inf when unlimited)."""
        return self._burst

    @property
    def quantum(self) -> int:
        """Parts per grant while enough wait (``GRANT_QUANTUM_S`` worth, >= 1; 1 when
        unlimited): pass ``min(quantum, parts waiting)`` as ``take``'s ``at_least`` and
        ``ready_at``'s ``want``."""
        return self._quantum

    @property
    def paused_until(self) -> float:
        """End of the current pause (-inf when never paused)."""
        return self._paused_until

    def _refill(self, now: float) -> None:
        if now > self._stamp:
            start = max(self._stamp, self._paused_until)
            if now > start:
                self._tokens = min(self._burst, self._tokens + (now - start) * self._rate)
            self._stamp = now

    def _finish(self, n: int, stamp: float) -> None:
        """``n`` parts the carrier received by ``stamp``: they leave the window 1 s later."""
        done = self._done
        if done:
            last = done[-1]
            if stamp <= last[0]:
                # Answers arrive in time order; a stamp out of order (an unanswered part
                # reaching its bound) joins the latest one: later, so conservative.
                last[1] += n
                self._done_n += n
                return
        done.append([stamp, n])
        self._done_n += n

    def _room(self, now: float) -> int:
        """What the window ledger still allows at ``now`` (drops what left the window)."""
        order = self._open_order
        opened = self._open
        while order and order[0] not in opened:  # answered meanwhile
            order.popleft()
        bound = self._bound
        while order and order[0] + bound <= now:  # reached their bound unanswered
            at = order.popleft()
            k = opened.pop(at, 0)
            if k:
                self._open_n -= k
                self._finish(k, at + bound)
        done = self._done
        while done and done[0][0] + WINDOW_S <= now:
            self._done_n -= int(done.popleft()[1])
        return self._cap - self._done_n - self._open_n

    def _record(self, n: int, now: float) -> None:
        if not self._bound:
            self._finish(n, now)  # the carrier's view: received when granted
            return
        opened = self._open
        if now in opened:
            opened[now] += n
        else:
            opened[now] = n
            self._open_order.append(now)
        self._open_n += n

    def _window_ready(self, at: float, want: int = 1) -> float:
        """Earliest time >= ``at`` at which the ledger allows ``want`` more grants (read
        only: ``at`` may lie in the future). Open parts leave in grant order at their
        bound, answered parts in answer order: walk both, earliest first."""
        excess = self._done_n + self._open_n - self._cap + want
        if excess <= 0:
            return at
        done = iter(self._done)
        opened = self._open
        order = (t for t in self._open_order if opened.get(t))
        bound = self._bound
        d = next(done, None)
        o = next(order, None)
        while d is not None or o is not None:
            if o is None or (d is not None and d[0] <= o + bound):
                assert d is not None
                leaves, k = d[0], int(d[1])
                d = next(done, None)
            else:
                leaves, k = o + bound, opened[o]
                o = next(order, None)
            excess -= k
            if excess <= 0:
                return max(at, leaves + WINDOW_S)
        return at  # pragma: no cover - excess <= the parts in the ledger

    def available(self, now: float) -> int:
        """Whole tokens that ``take`` would grant at ``now`` (huge when unlimited)."""
        if now < self._paused_until:
            return 0
        if self.unlimited:
            return 1 << 30
        self._refill(now)
        return max(0, min(int(self._tokens + _EPS), self._room(now)))

    def take(self, n: int, now: float, at_least: int = 1) -> int:
        """Grant up to ``n`` tokens at ``now``, but nothing unless ``min(at_least, n)``
        can be granted; returns how many were granted (maybe 0)."""
        if n <= 0 or now < self._paused_until:
            return 0
        if self.unlimited:
            return n
        self._refill(now)
        granted = max(0, min(n, int(self._tokens + _EPS), self._room(now)))
        if granted < at_least and granted < n:
            return 0
        if granted:
            self._tokens -= granted
            self._record(granted, now)
        return granted

    def give_back(self, n: int) -> None:
        """Return ``n`` unused tokens taken by ``take`` (capped at the burst): the newest
        grants did not happen."""
        if self.unlimited or n <= 0:
            return
        self._tokens = min(self._burst, self._tokens + n)
        opened = self._open
        order = self._open_order
        while n > 0 and order:
            at = order[-1]
            have = opened.get(at, 0)  # 0: answered meanwhile, a stale entry
            k = min(n, have)
            n -= k
            self._open_n -= k
            if k == have:
                opened.pop(at, None)
                order.pop()
            else:
                opened[at] = have - k
        done = self._done
        while n > 0 and done:  # receive_bound 0: they were recorded as done
            last = done[-1]
            k = min(n, int(last[1]))
            last[1] -= k
            self._done_n -= k
            n -= k
            if last[1] <= 0:
                done.pop()

    def answered(self, granted_at: float, now: float, n: int = 1) -> None:
        """The carrier answered ``n`` parts granted at ``granted_at`` (their ``take``'s
        ``now``): it received them by ``now``, so they leave its window at ``now + 1 s``.

        Any answer counts, a refusal too (conservative: the node simulator does not count
        refused parts), and so does any other end of a part whose receive time is bounded
        by ``now`` (its link closed). Unknown ``granted_at`` (the part reached its
        ``receive_bound``, or was given back) is ignored.
        """
        opened = self._open
        k = min(n, opened.get(granted_at, 0))
        if k <= 0:
            return
        if k == opened[granted_at]:
            del opened[granted_at]
        else:
            opened[granted_at] -= k
        self._open_n -= k
        self._finish(k, now)

    def answered_all(self, granted_at: list[float], now: float) -> None:
        """``answered(t, now)`` for every ``t`` in ``granted_at`` (the answers of one read).

        Equal grant times are usually adjacent (one ``take`` grants many parts, answered
        in order), so they are counted in runs: one ledger update per run, not per part.
        """
        if not self._open or not granted_at:
            return  # nothing open: unlimited, or receive_bound 0 (the carrier's view)
        run_at = granted_at[0]
        run = 0
        for t in granted_at:
            if t == run_at:
                run += 1
            else:
                self.answered(run_at, now, run)
                run_at = t
                run = 1
        self.answered(run_at, now, run)

    def ready_at(self, now: float, want: int = 1) -> float:
        """Earliest time >= ``now`` at which ``take(want, at_least=want)`` grants (``want``
        is capped at ``quantum``, which the bucket can always reach)."""
        want = max(1, min(want, self._quantum))
        if now < self._paused_until:
            start = self._paused_until
            if self.unlimited:
                return start
            # Tokens don't accumulate while paused: what we hold now is what we'll have then.
            self._refill(now)
            missing = want - self._tokens
            t = start if missing <= _EPS else start + missing / self._rate
            return max(t, self._window_ready(t, want))
        if self.unlimited:
            return now
        self._refill(now)
        missing = want - self._tokens
        t = now if missing <= _EPS else now + missing / self._rate
        return max(t, self._window_ready(t, want))

    def pause(self, until: float, now: float) -> None:
        """Grant nothing before ``until`` (extends, never shortens, a current pause)."""
        if not self.unlimited:
            self._refill(now)
        self._paused_until = max(self._paused_until, until)
