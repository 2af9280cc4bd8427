"""Message ids: 26 characters, time-sortable, unique without a syscall per id.

Layout (lowercase Crockford base32, whose ASCII order is its numeric order, so ids sort
as strings in creation order within one process and by millisecond across processes)::

    tttttttttt rrrrrr cccccccccc
    ms time    random counter

* ``t``: 10 characters = 50 bits of Unix milliseconds (good until the year 37648). It never
  goes backwards inside a process: a clock step back keeps the last value.
* ``r``: 30 random bits drawn once per process (``secrets``), so two processes (or a
  restart within the same millisecond) do not collide.
* ``c``: a per-process counter (50 bits, hexadecimal digits are a prefix of the alphabet
  with the same order), so ids of one process are strictly increasing.

The time part is encoded once per millisecond and the counter with ``format``: about
0.3 us per id. Ids are generated in the I/O layer (``Accepter``), never inside the pure
cores.
"""

from __future__ import annotations

import secrets
import time

__all__ = ["ALPHABET", "ID_LENGTH", "IdGenerator", "id_time", "time_prefix"]

#: Crockford base32, lowercase (no i, l, o, u): URL- and key-safe, sorts numerically.
ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
ID_LENGTH = 26
_DECODE = {c: i for i, c in enumerate(ALPHABET)}


def _b32(value: int, width: int) -> str:
    out = []
    for _ in range(width):
        out.append(ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(out))


def time_prefix(t: float) -> str:
    """The 10-character time part of the ids made in ``t``'s millisecond (the inverse of
    :func:`id_time`): every id made at or after ``t`` sorts ``>=`` it, every id of an
    earlier millisecond ``<`` it."""
    return _b32(int(t * 1000), 10)


def id_time(message_id: str) -> float:
    """The creation time (epoch seconds, ms precision) encoded in a message id."""
    ms = 0
    for ch in message_id[:10]:
        ms = ms * 32 + _DECODE[ch]
    return ms / 1000


class IdGenerator:
    """Makes message ids; one per process (``random_part`` is for tests only)."""

    __slots__ = ("_counter", "_last_ms", "_prefix", "_random")

    def __init__(self, *, random_part: int | None = None) -> None:
        rnd = secrets.randbits(30) if random_part is None else random_part & ((1 << 30) - 1)
        self._random = _b32(rnd, 6)
        self._counter = 0
        self._last_ms = -1
        self._prefix = ""

    def _prefix_for(self, now: float) -> str:
        ms = int(now * 1000)
        if ms > self._last_ms:
            self._last_ms = ms
            self._prefix = _b32(ms, 10) + self._random
        return self._prefix

    def next(self, now: float | None = None) -> str:
        """One id for a message created at ``now`` (default: ``time.time()``)."""
        prefix = self._prefix_for(time.time() if now is None else now)
        self._counter += 1
        return f"{prefix}{self._counter:010x}"

    def many(self, n: int, now: float | None = None) -> list[str]:
        """``n`` increasing ids sharing one time read."""
        prefix = self._prefix_for(time.time() if now is None else now)
        start = self._counter + 1
        self._counter += n
        return [f"{prefix}{c:010x}" for c in range(start, start + n)]
