"""The small key-value transaction interface the store logic is written against.

Both stores run the same logic (``logic.py``) over a ``KvTxn``: the LMDB store adapts an
``lmdb.Transaction``, the memory store a dict with sorted keys. So the fake differs from
the real thing only in this thin layer, and the contract suite checks both.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator
from typing import Protocol

__all__ = ["Db", "KvTxn"]


class Db(enum.Enum):
    """The named databases (DESIGN.md "Storage (LMDB)") plus ``meta``."""

    MESSAGES = b"messages"
    OUTBOX = b"outbox"
    CARRIER_IDS = b"carrier_ids"
    RECIPIENTS = b"recipients"
    ERRORS = b"errors"
    EVENTS = b"events"
    IDEMPOTENCY = b"idempotency"
    META = b"meta"  # schema version, last event sequence number
    # marketing (gateway/store/marketing.py, docs/marketing.md)
    LINKS = b"links"  # token -> LinkTarget
    CLICKS = b"clicks"  # token \0 bucket -> Click
    MESSAGE_CLICKS = b"message_clicks"  # message id -> MessageClicks
    OPTIN_CHALLENGES = b"optin_challenges"  # challenge id -> Challenge
    OPTIN_STARTS = b"optin_starts"  # p:phone\0 / i:ip\0 + time ms -> b""
    # receipt reconciliation (gateway/store/unknown_parts.py, docs/pipeline.md "Inbound")
    UNKNOWN_PARTS = b"unknown_parts"  # carrier\0 dest\0 + sent ms + part + message id

    # Every store op looks its database handle up by member. Enum's own __hash__ is
    # Python code (hash of the name): 0.14 us a lookup against 0.02 us for the identity
    # hash, ~16 lookups per message on the writer thread alone. Members are singletons
    # and compare by identity, so the identity hash is consistent with ==.
    __hash__ = object.__hash__


class KvTxn(Protocol):
    """One transaction over the named databases. Keys sort bytewise."""

    def get(self, db: Db, key: bytes) -> bytes | None:
        """The value of ``key``, or None."""
        ...

    def put(self, db: Db, key: bytes, value: bytes) -> None:
        """Insert or overwrite."""
        ...

    def add(self, db: Db, key: bytes, value: bytes) -> bool:
        """Insert if absent; False (and no change) when ``key`` exists."""
        ...

    def delete(self, db: Db, key: bytes) -> bool:
        """Delete; False when ``key`` did not exist."""
        ...

    def getter(self, db: Db) -> Callable[[bytes], bytes | None]:
        """``get`` bound to ``db`` (hot loops: no per-call lookup of the database)."""
        ...

    def putter(self, db: Db) -> Callable[[bytes, bytes], object]:
        """``put`` bound to ``db``."""
        ...

    def deleter(self, db: Db) -> Callable[[bytes], object]:
        """``delete`` bound to ``db``."""
        ...

    def scan(self, db: Db, start: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        """Items with key >= ``start`` in key order; consume inside the transaction."""
        ...

    def last(self, db: Db) -> tuple[bytes, bytes] | None:
        """The item with the greatest key, or None."""
        ...

    def count(self, db: Db) -> int:
        """Number of entries."""
        ...

    def child(self) -> KvTxn:
        """A nested write transaction: ``commit`` folds it into this one, ``abort`` undoes it."""
        ...

    def commit(self) -> None:
        """Make the transaction's writes permanent (for a child: part of the parent)."""
        ...

    def abort(self) -> None:
        """Drop the transaction's writes."""
        ...
