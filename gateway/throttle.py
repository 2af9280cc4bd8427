"""Per-carrier submit rate limiting: a pure token bucket plus a "slow down" pause.

No clock and no I/O here: every method takes ``now`` (seconds, any monotonic origin), so
the bucket is tested with plain numbers and driven by ``trio.current_time()`` in
``gateway.bind``/``gateway.carriers``.

Carriers (and the node-smpp simulator we test against) usually enforce "at most N in any
1000 ms" as a *sliding window*. A plain token bucket of capacity B refilled at r tokens/s
lets through at most ``B + r * T`` in any window of T seconds, so it had to refill at
``tps - burst`` (475/s at tps 500) to stay under the limit. Instead the bucket refills at
exactly ``tps`` with a small burst (``tps / 100``, 10 ms worth: a small batch per send_all)
and a **window ledger** caps what it grants: at most ``tps`` in any window of
``1 s + guard`` (``WINDOW_GUARD_S``, a few ms for scheduling and network jitter between
our clock and the carrier's). The sustained rate is ``tps / (1 + guard)`` (98.5 % of tps)
and no window of the carrier's ever sees more than ``tps``.
"""

from __future__ import annotations

import math
from collections import deque

__all__ = ["WINDOW_GUARD_S", "WINDOW_S", "TokenBucket"]

#: The carrier's sliding window, and the margin we add to it (jitter between our grant
#: time and the carrier's receive time).
WINDOW_S = 1.0
WINDOW_GUARD_S = 0.015

# Float slack when flooring tokens: ready_at() computes the exact instant a token is
# complete, and rounding must not leave 0.9999999 tokens there (a wake-up that grants
# nothing, again and again).
_EPS = 1e-6


class TokenBucket:
    """Tokens refill continuously at ``rate``/s up to ``burst``; ``tps = 0`` means unlimited.

    ``pause(until)`` grants nothing before ``until`` (the carrier said ESME_RTHROTTLED or
    ESME_RMSGQFUL); tokens do not accumulate during a pause, so a pause is never followed
    by a burst larger than the normal one.
    """

    __slots__ = ("_burst", "_cap", "_granted", "_ledger", "_paused_until", "_rate", "_stamp",
                 "_tokens", "_window", "tps")

    def __init__(self, tps: float, *, now: float, burst: float | None = None) -> None:
        self._tokens = 0.0
        self._stamp = now
        self._paused_until = -math.inf
        #: (time, count) of grants within the last window, oldest first; ``_granted`` sums them.
        self._ledger: deque[list[float]] = deque()
        self._granted = 0
        self._window = WINDOW_S + WINDOW_GUARD_S
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
        else:
            if burst is None:
                # 10 ms worth of tokens, at least one: small bursts, see the module docstring.
                burst = max(1.0, tps / 100.0)
            if burst < 1:
                raise ValueError("burst must be >= 1")
            self._burst = float(burst)
            self._rate = float(tps)
            # The window ledger grants whole parts: at most floor(tps) per window (>= 1).
            self._cap = max(1, int(tps + _EPS))

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
    def paused_until(self) -> float:
        """End of the current pause (-inf when never paused)."""
        return self._paused_until

    def _refill(self, now: float) -> None:
        if now > self._stamp:
            start = max(self._stamp, self._paused_until)
            if now > start:
                self._tokens = min(self._burst, self._tokens + (now - start) * self._rate)
            self._stamp = now

    def _room(self, now: float) -> int:
        """What the window ledger still allows at ``now`` (drops what left the window)."""
        ledger = self._ledger
        window = self._window
        while ledger and ledger[0][0] + window <= now:
            self._granted -= int(ledger.popleft()[1])
        return self._cap - self._granted

    def _record(self, n: int, now: float) -> None:
        ledger = self._ledger
        if ledger and ledger[-1][0] == now:
            ledger[-1][1] += n
        else:
            ledger.append([now, n])
        self._granted += n

    def _window_ready(self, at: float) -> float:
        """Earliest time >= ``at`` at which the ledger allows one more grant (read only:
        ``at`` may lie in the future)."""
        window = self._window
        inside = [(t, int(n)) for t, n in self._ledger if t + window > at]
        excess = sum(n for _, n in inside) - self._cap + 1
        if excess <= 0:
            return at
        for t, n in inside:  # the oldest grants leave the window first
            excess -= n
            if excess <= 0:
                return t + window
        return at  # pragma: no cover - excess <= sum of the entries

    def available(self, now: float) -> int:
        """Whole tokens that ``take`` would grant at ``now`` (huge when unlimited)."""
        if now < self._paused_until:
            return 0
        if self.unlimited:
            return 1 << 30
        self._refill(now)
        return max(0, min(int(self._tokens + _EPS), self._room(now)))

    def take(self, n: int, now: float) -> int:
        """Grant up to ``n`` tokens at ``now``; returns how many were granted (maybe 0)."""
        if n <= 0 or now < self._paused_until:
            return 0
        if self.unlimited:
            return n
        self._refill(now)
        granted = max(0, min(n, int(self._tokens + _EPS), self._room(now)))
        if granted:
            self._tokens -= granted
            self._record(granted, now)
        return granted

    def give_back(self, n: int) -> None:
        """Return ``n`` unused tokens taken by ``take`` (capped at the burst)."""
        if not self.unlimited and n > 0:
            self._tokens = min(self._burst, self._tokens + n)
            ledger = self._ledger
            while n > 0 and ledger:  # the newest grants did not happen
                last = ledger[-1]
                k = min(n, int(last[1]))
                last[1] -= k
                self._granted -= k
                n -= k
                if last[1] <= 0:
                    ledger.pop()

    def ready_at(self, now: float) -> float:
        """Earliest time >= ``now`` at which ``take(1)`` grants a token."""
        if now < self._paused_until:
            start = self._paused_until
            if self.unlimited:
                return start
            # Tokens don't accumulate while paused: what we hold now is what we'll have then.
            self._refill(now)
            missing = 1.0 - self._tokens
            t = start if missing <= 0 else start + missing / self._rate
            return max(t, self._window_ready(t))
        if self.unlimited:
            return now
        self._refill(now)
        missing = 1.0 - self._tokens
        t = now if missing <= 0 else now + missing / self._rate
        return max(t, self._window_ready(t))

    def pause(self, until: float, now: float) -> None:
        """Grant nothing before ``until`` (extends, never shortens, a current pause)."""
        if not self.unlimited:
            self._refill(now)
        self._paused_until = max(self._paused_until, until)
