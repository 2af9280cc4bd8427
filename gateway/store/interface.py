"""``Store``: what the pipeline, API and binds may rely on; LMDB and memory implement it.

Reads are synchronous and cheap (one short read transaction each): call them from trio
directly. The one write is ``await commit(batch)``: atomic per batch, durable when it
returns, group-committed with other tasks' batches.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Protocol, TypeVar

from .batch import WriteBatch
from .kv import KvTxn
from .records import (
    CarrierIdRecord,
    CommitResult,
    ErrorEntry,
    Event,
    IdempotencyRecord,
    MessageRecord,
    OutboxEntry,
    PhoneErrors,
    RecipientRecord,
    StoreStats,
)

__all__ = ["Store"]

T = TypeVar("T")


class Store(Protocol):
    """The store interface (see ``lmdb_store`` for the semantics of each method)."""

    async def commit(self, batch: WriteBatch) -> CommitResult:
        """Apply ``batch`` atomically; return once durable."""
        ...

    async def wait_for_events(self, after_seq: int) -> None:
        """Sleep until an event with ``seq > after_seq`` exists."""
        ...

    def get_message(self, message_id: str) -> MessageRecord | None:
        """The message record, or None."""
        ...

    def get_messages(self, message_ids: Iterable[str]) -> dict[str, MessageRecord]:
        """Records of the ids that exist (one read transaction)."""
        ...

    def get_recipient(self, phone: str) -> RecipientRecord | None:
        """The recipient record, or None."""
        ...

    def get_recipients(self, phones: Iterable[str]) -> dict[str, RecipientRecord]:
        """Records of the phones that exist (one read transaction)."""
        ...

    def get_recipients_raw(self, phones: Iterable[str]) -> dict[str, bytes]:
        """The stored bytes of the records of the phones that exist (one read txn)."""
        ...

    def due_outbox(self, now: float, limit: int) -> list[OutboxEntry]:
        """Entries due at or before ``now``, earliest first."""
        ...

    def outbox_depth(self) -> int:
        """Number of outbox entries."""
        ...

    def outbox_oldest(self) -> OutboxEntry | None:
        """The entry due first."""
        ...

    def lookup_carrier_id(self, carrier: str, carrier_msg_id: str) -> CarrierIdRecord | None:
        """The part a carrier message id belongs to."""
        ...

    def lookup_carrier_ids(
        self, carrier: str, candidates: Iterable[str]
    ) -> tuple[str, CarrierIdRecord] | None:
        """The first known variant of a carrier message id, with its record."""
        ...

    def events_after(self, seq: int, limit: int) -> list[Event]:
        """Events after ``seq``, in order."""
        ...

    def get_event(self, seq: int) -> Event | None:
        """One event."""
        ...

    def last_event_seq(self) -> int:
        """The last assigned event sequence number (0 before any)."""
        ...

    def get_errors(self, phone: str, since: float = 0.0) -> list[ErrorEntry]:
        """A phone's errors since ``since``, oldest first."""
        ...

    def iter_error_segment(self, since: float, chunk: int = 1000) -> Iterator[list[PhoneErrors]]:
        """Phones with errors since ``since``, in chunks, no transaction held between."""
        ...

    def get_idempotency(self, key: str) -> IdempotencyRecord | None:
        """What an idempotency key was used for."""
        ...

    def statistics(self) -> StoreStats:
        """Counters for metrics."""
        ...

    def read(self, fn: Callable[[KvTxn], T]) -> T:
        """Run ``fn`` in one short read transaction (store extensions, e.g. marketing)."""
        ...
