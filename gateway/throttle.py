"""Per-carrier submit rate limiting: a pure token bucket plus a "slow down" pause.

No clock and no I/O here: every method takes ``now`` (seconds, any monotonic origin), so
the bucket is tested with plain numbers and driven by ``trio.current_time()`` in
``gateway.bind``/``gateway.carriers``.

Why the bucket's burst is small and its refill is ``tps - burst``: carriers (and the
node-smpp simulator we test against) usually enforce "at most N in any 1000 ms" as a
*sliding window*. A token bucket of capacity B refilled at r tokens/s lets through at most
``B + r * T`` in any window of T seconds, so ``B + r <= tps`` keeps us strictly under the
carrier's limit in every window while still allowing a small batch per send_all.
"""

from __future__ import annotations

import math

__all__ = ["TokenBucket"]

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

    __slots__ = ("_burst", "_paused_until", "_rate", "_stamp", "_tokens", "tps")

    def __init__(self, tps: float, *, now: float, burst: float | None = None) -> None:
        self._tokens = 0.0
        self._stamp = now
        self._paused_until = -math.inf
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
                # 50 ms worth of tokens, at least one: small bursts, see the module docstring.
                burst = max(1.0, min(tps / 20.0, tps / 2.0))
            if burst < 1:
                raise ValueError("burst must be >= 1")
            self._burst = float(burst)
            # B + r <= tps whenever tps >= 2 * burst; below that (tps < 2) keep half the
            # rate rather than a near-zero one: strict sliding-window compliance needs tps >= 2.
            self._rate = max(float(tps) - self._burst, float(tps) / 2.0)

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

    def available(self, now: float) -> int:
        """Whole tokens that ``take`` would grant at ``now`` (huge when unlimited)."""
        if now < self._paused_until:
            return 0
        if self.unlimited:
            return 1 << 30
        self._refill(now)
        return int(self._tokens + _EPS)

    def take(self, n: int, now: float) -> int:
        """Grant up to ``n`` tokens at ``now``; returns how many were granted (maybe 0)."""
        if n <= 0 or now < self._paused_until:
            return 0
        if self.unlimited:
            return n
        self._refill(now)
        granted = min(n, int(self._tokens + _EPS))
        self._tokens -= granted
        return granted

    def give_back(self, n: int) -> None:
        """Return ``n`` unused tokens taken by ``take`` (capped at the burst)."""
        if not self.unlimited and n > 0:
            self._tokens = min(self._burst, self._tokens + n)

    def ready_at(self, now: float) -> float:
        """Earliest time >= ``now`` at which ``take(1)`` grants a token."""
        if now < self._paused_until:
            start = self._paused_until
            if self.unlimited:
                return start
            # Tokens don't accumulate while paused: what we hold now is what we'll have then.
            self._refill(now)
            missing = 1.0 - self._tokens
            return start if missing <= 0 else start + missing / self._rate
        if self.unlimited:
            return now
        self._refill(now)
        missing = 1.0 - self._tokens
        return now if missing <= 0 else now + missing / self._rate

    def pause(self, until: float, now: float) -> None:
        """Grant nothing before ``until`` (extends, never shortens, a current pause)."""
        if not self.unlimited:
            self._refill(now)
        self._paused_until = max(self._paused_until, until)
