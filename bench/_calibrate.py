"""How fast this VM runs Python right now: a fixed workload, timed (bench/e2e.py uses it).

The 2-core VM the benchmarks run on changes speed by +-30 % within minutes (the same tree
measured 69 and 90 us/msg half an hour apart, bench/RESULTS.md). A run's CPU per message
is only comparable with runs of the same stretch, unless the stretch's speed is known.
``calibrate()`` times a small fixed workload of the kinds of work the gateway does per
message (msgspec encode/decode of an array-like record, dict and tuple work, str
formatting, small function calls) and returns microseconds per iteration: the best of a
few repeats, so that a descheduled repeat does not count. Run it while nothing else of the
benchmark is busy (before the load starts and after it ends).

``REFERENCE_US`` is what it took on this VM in a fast stretch (session 7); a run's
``per_message x REFERENCE_US / calibration`` is its CPU per message "at reference speed".
"""

from __future__ import annotations

import time

import msgspec

#: calibrate() on the project's VM in a fast stretch (session 7, Debian CPython 3.11.2).
REFERENCE_US = 0.75


class _Rec(msgspec.Struct, array_like=True, gc=False):
    id: str
    phone: str
    status: str
    parts: tuple[int, ...]
    at: float | None = None


_ENC = msgspec.msgpack.Encoder()
_DEC = msgspec.msgpack.Decoder(_Rec)
_STATUS = ("queued", "sending", "submitted", "delivered")


def _step(i: int, seen: dict[str, int]) -> int:
    rec = _Rec(f"m{i:08d}", f"+1415555{i % 10_000:04d}", _STATUS[i & 3], (i, i + 1),
               i * 0.001)
    raw = _ENC.encode(rec)
    back = _DEC.decode(raw)
    seen[back.phone] = seen.get(back.phone, 0) + 1
    return len(raw) + len(back.parts) + (1 if back.status == "delivered" else 0)


def _workload(n: int) -> int:
    seen: dict[str, int] = {}
    total = 0
    for i in range(n):
        total += _step(i, seen)
    return total + len(seen)


def calibrate(iterations: int = 50_000, repeats: int = 7) -> float:
    """Microseconds per workload iteration on this thread now (best of ``repeats``)."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        _workload(iterations)
        best = min(best, time.perf_counter() - t0)
    return round(best / iterations * 1e6, 3)


if __name__ == "__main__":
    print(calibrate())
