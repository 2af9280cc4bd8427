"""Named read positions in the event feed, kept in ``meta`` (e.g. a webhook's cursor).

A consumer of the durable event feed (``events_after``) that must survive restarts keeps
the sequence number it has finished with under its own name. Keys live in the ``meta``
database as ``cursor:<name>`` (8 bytes big-endian), next to ``schema`` and ``event_seq``;
nothing else in ``meta`` starts with ``cursor:``.

Writes go into a caller's batch (``WriteBatch.run_in_txn``), so a cursor moves in the
same transaction as whatever the consumer records with it (a dead-letter event), and
group-commits with everything else. A cursor never moves back: a write of a smaller
value than the stored one is ignored (a late commit of an older position cannot undo a
newer one).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final, Protocol

from .batch import WriteBatch
from .keys import check_key
from .kv import Db, KvTxn
from .records import Event

__all__ = ["CURSOR_PREFIX", "cursor_key", "get_cursor", "list_cursors", "set_cursor"]

CURSOR_PREFIX: Final = b"cursor:"


class _Readable(Protocol):
    def read(self, fn: Callable[[KvTxn], Any]) -> Any: ...


def cursor_key(name: str) -> bytes:
    """The ``meta`` key of cursor ``name``."""
    return check_key(CURSOR_PREFIX + name.encode(), "cursor")


def get_cursor(store: _Readable, name: str) -> int | None:
    """The stored position of cursor ``name``, or None when it was never set."""
    raw: bytes | None = store.read(lambda tx: tx.get(Db.META, cursor_key(name)))
    return None if raw is None else int.from_bytes(raw, "big")


def list_cursors(store: _Readable) -> dict[str, int]:
    """Every stored cursor: name -> position."""

    def read(tx: KvTxn) -> dict[str, int]:
        out: dict[str, int] = {}
        for key, value in tx.scan(Db.META, CURSOR_PREFIX):
            if not key.startswith(CURSOR_PREFIX):
                break
            out[key[len(CURSOR_PREFIX):].decode()] = int.from_bytes(value, "big")
        return out

    result: dict[str, int] = store.read(read)
    return result


class _SetCursor:
    """``run_in_txn`` function: move the cursor forward (never back), append events."""

    __slots__ = ("events", "key", "seq")

    def __init__(self, key: bytes, seq: int, events: Sequence[Event]) -> None:
        self.key = key
        self.seq = seq
        self.events = events

    def __call__(self, tx: KvTxn) -> Sequence[Event]:
        raw = tx.get(Db.META, self.key)
        if raw is None or int.from_bytes(raw, "big") < self.seq:
            tx.put(Db.META, self.key, self.seq.to_bytes(8, "big"))
        return self.events


def set_cursor(batch: WriteBatch, name: str, seq: int, events: Sequence[Event] = ()) -> None:
    """In ``batch``: set cursor ``name`` to ``seq`` (if ahead) and append ``events``."""
    if seq < 0:
        raise ValueError(f"cursor position must be >= 0, got {seq}")
    batch.run_in_txn(_SetCursor(cursor_key(name), seq, tuple(events)))
