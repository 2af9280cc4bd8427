"""Capped exponential backoff with jitter, and a log limiter for repeated failures.

Pure: the random source and ``now`` are arguments, so tests pass a seeded
``random.Random`` and plain numbers.

Jitter is "equal jitter" (AWS architecture blog, "Exponential Backoff And Jitter"): the
delay for attempt k is ``d/2 + U(0, d/2)`` with ``d = min(cap, initial * factor**k)``.
Unlike "full jitter" it never draws a delay near zero, so a refused bind can never turn
into a hot reconnect loop, while N binds that failed together still spread out.
"""

from __future__ import annotations

import random
from typing import Protocol

__all__ = ["Backoff", "FailureLog", "Uniform"]


class Uniform(Protocol):
    """The one method of ``random.Random`` we need (so tests can pass a fake)."""

    def uniform(self, a: float, b: float) -> float: ...


class Backoff:
    """Delays for successive failures: grows by ``factor`` from ``initial`` up to ``cap``.

    ``next_delay(rng)`` returns the delay before the next attempt and counts a failure;
    ``reset()`` after a success starts again from ``initial``.
    """

    __slots__ = ("_attempt", "cap", "factor", "initial")

    def __init__(self, initial: float = 1.0, cap: float = 60.0, factor: float = 2.0) -> None:
        if initial <= 0 or cap < initial or factor < 1:
            raise ValueError("need 0 < initial <= cap and factor >= 1")
        self.initial = initial
        self.cap = cap
        self.factor = factor
        self._attempt = 0

    @property
    def failures(self) -> int:
        """Failures counted since the last reset."""
        return self._attempt

    def peek_ceiling(self) -> float:
        """The un-jittered delay the next ``next_delay`` will draw under."""
        # Stop growing the exponent once capped (no float overflow after many failures).
        ceiling = self.initial * self.factor**min(self._attempt, 64)
        return min(self.cap, ceiling)

    def next_delay(self, rng: Uniform | random.Random) -> float:
        """Count one failure and return the jittered delay in [d/2, d]."""
        d = self.peek_ceiling()
        self._attempt += 1
        return d / 2.0 + rng.uniform(0.0, d / 2.0)

    def reset(self) -> None:
        """Back to ``initial`` (call after a success)."""
        self._attempt = 0


class FailureLog:
    """Decides which failure lines to log so that a persistent fault never floods the log.

    The first occurrence of a cause is logged at once; the same cause repeating is
    summarised at most every ``interval`` seconds ("still failing, n attempts"); a
    different cause is logged at once. ``recovered`` reports how many failures preceded a
    success (and forgets the cause), so the caller logs one "recovered" line.
    """

    __slots__ = ("_cause", "_count", "_first_at", "_last_logged", "_suppressed", "interval")

    def __init__(self, interval: float = 60.0) -> None:
        self.interval = interval
        self._cause: str | None = None
        self._count = 0
        self._suppressed = 0
        self._first_at = 0.0
        self._last_logged = 0.0

    @property
    def cause(self) -> str | None:
        """The cause currently failing, or None."""
        return self._cause

    @property
    def count(self) -> int:
        """Consecutive failures of the current cause."""
        return self._count

    def failure(self, cause: str, now: float) -> str | None:
        """Record a failure; return the line to log now, or None to stay quiet."""
        if cause != self._cause:
            self._cause = cause
            self._count = 1
            self._suppressed = 0
            self._first_at = now
            self._last_logged = now
            return cause
        self._count += 1
        if now - self._last_logged >= self.interval:
            self._last_logged = now
            self._suppressed = 0
            return (
                f"{cause} (still failing: {self._count} attempts "
                f"in {now - self._first_at:.0f} s)"
            )
        self._suppressed += 1
        return None

    def recovered(self, now: float) -> str | None:
        """Record a success; return a line if it ends a failure streak, else None."""
        if self._cause is None:
            return None
        line = (
            f"recovered after {self._count} failed attempts in "
            f"{now - self._first_at:.0f} s (last cause: {self._cause})"
        )
        self._cause = None
        self._count = 0
        self._suppressed = 0
        return line
