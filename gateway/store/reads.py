"""The read side shared by ``LmdbStore`` and ``MemoryStore``.

Every method is one short read transaction through the concrete store's ``_read(fn)``
(LMDB: a real read txn, never held across a yield or an ``await``; memory: the dicts), so
the fake differs from LMDB only in that thin layer, like the write side in ``logic.py``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from . import logic
from .keys import carrier_key, event_key
from .kv import Db, KvTxn
from .records import (
    CarrierIdRecord,
    ErrorEntry,
    Event,
    IdempotencyRecord,
    MessageRecord,
    OutboxEntry,
    PhoneErrors,
    RecipientRecord,
)

__all__ = ["StoreReads"]

T = TypeVar("T")


class StoreReads:
    """Typed reads over ``_read``; the concrete store supplies ``_read``."""

    __slots__ = ()

    def _read(self, fn: Callable[[KvTxn], T]) -> T:
        raise NotImplementedError

    def read(self, fn: Callable[[KvTxn], T]) -> T:
        """Run ``fn`` in one short read transaction (for store extensions over ``KvTxn``,
        e.g. ``gateway.store.marketing``); ``fn`` must not keep anything it read lazily."""
        return self._read(fn)

    def get_message(self, message_id: str) -> MessageRecord | None:
        """The message record, or None."""
        raw = self._read(lambda tx: tx.get(Db.MESSAGES, message_id.encode()))
        return None if raw is None else logic.MESSAGE.decode(raw)

    def get_messages(self, message_ids: Iterable[str]) -> dict[str, MessageRecord]:
        """The records of the ids that exist, in one read transaction."""
        return self._read(lambda tx: logic.get_many(tx, Db.MESSAGES, message_ids, logic.MESSAGE))

    def get_recipient(self, phone: str) -> RecipientRecord | None:
        """The recipient record, or None."""
        raw = self._read(lambda tx: tx.get(Db.RECIPIENTS, phone.encode()))
        return None if raw is None else logic.RECIPIENT.decode(raw)

    def get_recipients(self, phones: Iterable[str]) -> dict[str, RecipientRecord]:
        """The records of the phones that exist, in one read transaction."""
        return self._read(lambda tx: logic.get_many(tx, Db.RECIPIENTS, phones, logic.RECIPIENT))

    def get_recipients_raw(self, phones: Iterable[str]) -> dict[str, bytes]:
        """The stored bytes of the phones' records that exist, in one read transaction
        (for a cache that decodes them itself and later writes with ``SWAP``)."""
        return self._read(lambda tx: logic.get_raw_many(tx, Db.RECIPIENTS, phones))

    def due_outbox(self, now: float, limit: int) -> list[OutboxEntry]:
        """Outbox entries due at or before ``now``, earliest first, at most ``limit``."""
        return self._read(lambda tx: logic.due_outbox(tx, now, limit))

    def outbox_depth(self) -> int:
        """Number of outbox entries (due or not)."""
        return self._read(lambda tx: tx.count(Db.OUTBOX))

    def outbox_oldest(self) -> OutboxEntry | None:
        """The entry due first, or None."""
        return self._read(logic.outbox_oldest)

    def lookup_carrier_id(self, carrier: str, carrier_msg_id: str) -> CarrierIdRecord | None:
        """(message id, part, at) of a carrier message id, or None."""
        raw = self._read(
            lambda tx: tx.get(Db.CARRIER_IDS, carrier_key(carrier, carrier_msg_id))
        )
        return None if raw is None else logic.CARRIER_ID.decode(raw)

    def lookup_carrier_ids(
        self, carrier: str, candidates: Iterable[str]
    ) -> tuple[str, CarrierIdRecord] | None:
        """The first of several id variants that is known: (variant, record), or None."""
        return self._read(lambda tx: logic.lookup_carrier_id(tx, carrier, candidates))

    def events_after(self, seq: int, limit: int) -> list[Event]:
        """Events with ``seq`` greater than the given one, in order, at most ``limit``."""
        return self._read(lambda tx: logic.events_after(tx, seq, limit))

    def get_event(self, seq: int) -> Event | None:
        """One event by sequence number, or None."""
        raw = self._read(lambda tx: tx.get(Db.EVENTS, event_key(seq)))
        return None if raw is None else logic.EVENT_DECODER.decode(raw)

    def last_event_seq(self) -> int:
        """The last assigned event sequence number (0 before any)."""
        return self._read(logic.last_event_seq)

    def get_errors(self, phone: str, since: float = 0.0) -> list[ErrorEntry]:
        """The errors of ``phone`` at or after ``since``, oldest first."""
        return self._read(lambda tx: logic.get_errors(tx, phone, since))

    def iter_error_segment(self, since: float, chunk: int = 1000) -> Iterator[list[PhoneErrors]]:
        """Phones with errors at or after ``since``, in chunks (phone order).

        Each chunk (``chunk`` phones visited) is read in its own short read transaction,
        resuming after the last phone; no transaction is held while the caller has the
        chunk. A phone's entries are never split across chunks.
        """
        pos: bytes | None = b""
        while pos is not None:
            found, pos = self._read(
                functools.partial(logic.error_segment_chunk, since=since, start=pos,
                                  max_phones=chunk))
            if found:
                yield found

    def get_idempotency(self, key: str) -> IdempotencyRecord | None:
        """What an idempotency key was used for, or None."""
        raw = self._read(lambda tx: tx.get(Db.IDEMPOTENCY, key.encode()))
        return None if raw is None else logic.IDEMPOTENCY.decode(raw)
