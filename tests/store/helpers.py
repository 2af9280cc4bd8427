"""Record builders for the store tests, and a retention sweep without its pauses."""

from __future__ import annotations

import pytest

from gateway.store import ErrorEntry, Event, MessageRecord, RecipientRecord

T0 = 1_790_000_000.0  # a fixed epoch second; the store never reads the clock


def message(mid: str, *, at: float = T0, to: str = "+15551230000", **kw: object) -> MessageRecord:
    return MessageRecord(id=mid, created_at=at, to=to, text=f"text of {mid}", kind="campaign", **kw)  # type: ignore[arg-type]


def recipient(phone: str, **kw: object) -> RecipientRecord:
    return RecipientRecord(phone=phone, **kw)  # type: ignore[arg-type]


def event(kind: str = "status", *, at: float = T0, mid: str | None = None) -> Event:
    return Event(seq=0, at=at, type=kind, message_id=mid)


def error(at: float, cls: str = "temp_unreachable", **kw: object) -> ErrorEntry:
    return ErrorEntry(at=at, error_class=cls, **kw)  # type: ignore[arg-type]


def no_retention_pauses(monkeypatch: pytest.MonkeyPatch) -> None:
    """A retention sweep that never pauses between its chunks (tests that sweep an LMDB
    store run without an autojump clock, which would jump while the writer thread works)."""
    import gateway.retention

    monkeypatch.setattr(gateway.retention, "PAUSE_MIN_S", 0.0)
    monkeypatch.setattr(gateway.retention, "PAUSE_FACTOR", 0.0)
    monkeypatch.setattr(gateway.retention, "READ_PAUSE_S", 0.0)
