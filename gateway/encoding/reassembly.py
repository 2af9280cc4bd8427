"""Reassembly of concatenated MO messages: a pure structure, time passed in by the caller.

Key = (source address, reference, total parts), as handsets reuse references across
senders. Parts may come in any order and twice (a resent deliver_sm after a lost resp):
the first copy of a sequence number wins. Bodies are joined *before* decoding, so a sender
that split an ESC pair or a surrogate pair across parts still decodes cleanly.
"""

from __future__ import annotations

import msgspec

from gateway.encoding.decode import MoFragment, decode_text
from gateway.encoding.options import Dcs0

__all__ = ["Expired", "Reassembler", "ReassemblyStats"]


class Expired(msgspec.Struct, frozen=True):
    """An incomplete message dropped by TTL or by the pending cap, with what had arrived."""

    source: str
    ref: int
    total: int
    received: tuple[int, ...]
    partial_text: str


class ReassemblyStats(msgspec.Struct, frozen=True):
    """Counters since creation, and messages currently pending."""

    pending: int
    completed: int
    expired: int
    duplicates: int


class _Pending:
    __slots__ = ("first_seen", "parts")

    def __init__(self, now: float) -> None:
        self.first_seen = now
        self.parts: dict[int, MoFragment] = {}


class Reassembler:
    """Collects MO parts until complete.

    - ttl: seconds an incomplete message waits for its missing parts (from its first part);
    - max_pending: cap on incomplete messages kept (a misbehaving peer cannot grow memory
      without bound): the oldest is dropped and reported by the next `expire()`.
    """

    def __init__(self, ttl: float, *, max_pending: int = 10_000, dcs0: Dcs0 = "gsm") -> None:
        self._ttl = ttl
        self._max_pending = max_pending
        self._dcs0: Dcs0 = dcs0
        self._pending: dict[tuple[str, int, int], _Pending] = {}
        self._dropped: list[Expired] = []
        self._completed = 0
        self._expired = 0
        self._duplicates = 0

    def add(self, source: str, fragment: MoFragment, *, now: float) -> str | None:
        """Add one received fragment; the whole text when this completes a message (a
        fragment without concatenation info is complete by itself), else None."""
        c = fragment.concat
        if c is None or c.total == 1:
            self._completed += 1
            return decode_text(fragment.body, fragment.data_coding, dcs0=self._dcs0,
                               single_shift=fragment.single_shift)
        key = (source, c.ref, c.total)
        entry = self._pending.get(key)
        if entry is not None and now - entry.first_seen >= self._ttl:
            # Stale leftovers of an earlier message with the same reference.
            self._drop(key, entry)
            entry = None
        if entry is None:
            if len(self._pending) >= self._max_pending:
                oldest = next(iter(self._pending))
                self._drop(oldest, self._pending[oldest])
            entry = self._pending[key] = _Pending(now)
        if c.seq in entry.parts:
            self._duplicates += 1
            return None
        entry.parts[c.seq] = fragment
        if len(entry.parts) < c.total:
            return None
        del self._pending[key]
        self._completed += 1
        return self._text([entry.parts[i] for i in range(1, c.total + 1)])

    def expire(self, now: float) -> tuple[Expired, ...]:
        """Drop messages whose first part is `ttl` or more old; return them (and any
        dropped by the pending cap since the last call)."""
        stale = [k for k, e in self._pending.items() if now - e.first_seen >= self._ttl]
        for key in stale:
            self._drop(key, self._pending[key])
        out = tuple(self._dropped)
        self._dropped.clear()
        return out

    def next_deadline(self) -> float | None:
        """When the oldest pending message expires (for the caller's timer), or None."""
        if not self._pending:
            return None
        return min(e.first_seen for e in self._pending.values()) + self._ttl

    def statistics(self) -> ReassemblyStats:
        """Counters for metrics."""
        return ReassemblyStats(len(self._pending), self._completed, self._expired,
                               self._duplicates)

    def _drop(self, key: tuple[str, int, int], entry: _Pending) -> None:
        del self._pending[key]
        self._expired += 1
        seqs = tuple(sorted(entry.parts))
        self._dropped.append(Expired(key[0], key[1], key[2], seqs,
                                     self._text([entry.parts[i] for i in seqs])))

    def _text(self, parts: list[MoFragment]) -> str:
        first = parts[0]
        if all(p.data_coding == first.data_coding and p.single_shift == first.single_shift
               for p in parts):
            return decode_text(b"".join(p.body for p in parts), first.data_coding,
                               dcs0=self._dcs0, single_shift=first.single_shift)
        return "".join(decode_text(p.body, p.data_coding, dcs0=self._dcs0,
                                   single_shift=p.single_shift) for p in parts)
