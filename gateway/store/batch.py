"""WriteBatch: the typed list of writes that one ``commit`` applies atomically.

Records are encoded when they are added (on the caller's thread), so a value that cannot
be encoded fails right there, in the caller, and the writer thread only moves bytes.
Two kinds of ops run logic inside the write transaction, on the writer thread:

* ``claim_idempotency`` checks the key is free (or already points at the same message)
  and otherwise fails the batch with ``IdempotencyConflictError``;
* ``update_message`` / ``update_recipient`` take a function ``old -> new | None`` that is
  called with the record as of that transaction (None = absent), which makes
  read-modify-write free of lost updates between concurrent tasks. The function must be
  pure and quick (it runs on the writer thread and holds up every other commit); it must
  not touch trio. Returning None leaves the record unchanged. If it raises, that batch
  fails with the exception and nothing of it is written.

A batch is all or nothing: it is applied in its own nested transaction, so a failing
batch does not take the other batches of its group commit with it.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import Any, Final, TypeAlias

import msgspec

from .keys import (
    MAX_KEY_BYTES,
    carrier_key,
    check_key,
    error_key,
    error_prefix,
    to_ms,
    unknown_part_key,
)
from .kv import Db
from .records import (
    CarrierIdRecord,
    ErrorEntry,
    Event,
    IdempotencyRecord,
    Lease,
    MessageRecord,
    RecipientRecord,
    UnknownPart,
)

__all__ = ["MessageUpdate", "RecipientUpdate", "TxnFn", "WriteBatch"]

MessageUpdate: TypeAlias = Callable[[MessageRecord | None], MessageRecord | None]
RecipientUpdate: TypeAlias = Callable[[RecipientRecord | None], RecipientRecord | None]
#: ``run_in_txn``'s function: gets the ``KvTxn``, returns the events to append.
TxnFn: TypeAlias = Callable[[Any], Sequence[Event]]

# Op codes. An op is a tuple (code, ...), kept flat because a batch may hold thousands.
PUT: Final = 0  # (PUT, db, key, value)
DELETE: Final = 1  # (DELETE, db, key)
UPDATE: Final = 2  # (UPDATE, db, key, fn, decoder)
ADD_ERROR: Final = 3  # (ADD_ERROR, prefix, at_ms, value)
EVENT: Final = 4  # (EVENT, event)
CLAIM: Final = 5  # (CLAIM, key, client_key, message_id, value)
PRUNE_EVENTS: Final = 6  # (PRUNE_EVENTS, through_seq)
#: (FN, fn): ``fn(tx) -> events to append``, run inside the transaction (``run_in_txn``).
FN: Final = 7
#: (SWAP, db, key, expect, new, fn, decoder): put ``new`` when the stored value is the
#: bytes ``expect`` (None: absent), else ``UPDATE`` with ``fn``. For a caller that applied
#: ``fn`` to its own copy of the record (a write-through cache): the usual case costs the
#: writer a get, a bytes compare and a put, no decode, call or encode.
SWAP: Final = 8

Op: TypeAlias = tuple[Any, ...]

_encode = msgspec.msgpack.Encoder().encode
_pack_u64 = struct.Struct(">Q").pack
# The databases of the per-message builders as globals (an enum member is a class
# attribute lookup on every use).
_MESSAGES: Final = Db.MESSAGES
_OUTBOX: Final = Db.OUTBOX
_CARRIER_IDS: Final = Db.CARRIER_IDS
MESSAGE_DECODER: Final = msgspec.msgpack.Decoder(MessageRecord)
RECIPIENT_DECODER: Final = msgspec.msgpack.Decoder(RecipientRecord)


def _id_key(s: str, what: str) -> bytes:
    key = s.encode()
    if not 0 < len(key) <= MAX_KEY_BYTES:  # check_key's test without its call
        check_key(key, what)
    return key


class WriteBatch:
    """Writes to apply in one transaction; ``await store.commit(batch)`` applies them.

    A batch is not thread-safe and must not be changed after it was handed to ``commit``.
    """

    __slots__ = ("_n_events", "ops", "urgent")

    def __init__(self, *, urgent: bool = False) -> None:
        self.ops: list[Op] = []
        self._n_events = 0
        #: Small and latency-bound (receipts waiting for their ack, submits waiting for
        #: their ``sending`` mark): the writer commits urgent batches in their own group,
        #: ahead of the normal ones queued (big accept groups), see ``writer.py``.
        self.urgent = urgent

    def __len__(self) -> int:
        return len(self.ops)

    def __bool__(self) -> bool:
        return bool(self.ops)

    # messages
    # The builders called for every message (put_message, update_message, outbox_add,
    # outbox_remove, put_carrier_id, append_event) have their key helpers written out: ~12
    # calls per message on the trio thread (bench/store.py --builders).
    def put_message(self, record: MessageRecord) -> None:
        """Insert or replace a message record."""
        key = record.id.encode()
        if not 0 < len(key) <= MAX_KEY_BYTES:
            check_key(key, "message id")
        self.ops.append((PUT, _MESSAGES, key, _encode(record)))

    def update_message(self, message_id: str, fn: MessageUpdate) -> None:
        """Read-modify-write a message inside the transaction (see module docstring)."""
        key = message_id.encode()
        if not 0 < len(key) <= MAX_KEY_BYTES:
            check_key(key, "message id")
        self.ops.append((UPDATE, _MESSAGES, key, fn, MESSAGE_DECODER))

    def delete_message(self, message_id: str) -> None:
        """Delete a message record (its outbox/carrier entries are separate ops)."""
        self.ops.append((DELETE, Db.MESSAGES, _id_key(message_id, "message id")))

    # recipients
    def put_recipient(self, record: RecipientRecord) -> None:
        """Insert or replace a recipient record."""
        self.ops.append((PUT, Db.RECIPIENTS, _id_key(record.phone, "phone"), _encode(record)))

    def update_recipient(self, phone: str, fn: RecipientUpdate) -> None:
        """Read-modify-write a recipient inside the transaction (see module docstring)."""
        key = _id_key(phone, "phone")
        self.ops.append((UPDATE, Db.RECIPIENTS, key, fn, RECIPIENT_DECODER))

    def delete_recipient(self, phone: str) -> None:
        """Delete a recipient record."""
        self.ops.append((DELETE, Db.RECIPIENTS, _id_key(phone, "phone")))

    # outbox
    def outbox_add(self, due: float, message_id: str,
                   lease: Lease | msgspec.Struct | None = None) -> None:
        """Queue ``message_id`` as due at ``due`` (epoch seconds, ms precision); with a
        ``lease``, the entry records parts in flight (``OutboxEntry.lease``). Another
        record (the dispatcher's ``Parked``) is stored as the entry's value as given."""
        ms = round(due * 1000)  # keys.outbox_key
        key = _pack_u64(ms if ms > 0 else 0) + message_id.encode()
        if len(key) > MAX_KEY_BYTES:
            check_key(key, "outbox")
        self.ops.append((PUT, _OUTBOX, key, b"" if lease is None else _encode(lease)))

    def outbox_remove(self, due: float, message_id: str) -> None:
        """Remove the outbox entry added with the same ``due`` (absent is no error)."""
        ms = round(due * 1000)  # keys.outbox_key
        key = _pack_u64(ms if ms > 0 else 0) + message_id.encode()
        if len(key) > MAX_KEY_BYTES:
            check_key(key, "outbox")
        self.ops.append((DELETE, _OUTBOX, key))

    # carrier message ids
    def put_carrier_id(
        self, carrier: str, carrier_msg_id: str, message_id: str, part: int, at: float
    ) -> None:
        """Map a carrier's message id to (message id, part)."""
        key = carrier.encode() + b"\0" + carrier_msg_id.encode()
        if key.count(b"\0") != 1 or len(key) > MAX_KEY_BYTES:  # keys.carrier_key
            key = carrier_key(carrier, carrier_msg_id)  # raises
        self.ops.append((PUT, _CARRIER_IDS, key, _encode(CarrierIdRecord(message_id, part, at))))

    def delete_carrier_id(self, carrier: str, carrier_msg_id: str) -> None:
        """Forget a carrier message id."""
        self.ops.append((DELETE, Db.CARRIER_IDS, carrier_key(carrier, carrier_msg_id)))

    # unknown parts (receipt reconciliation, ``gateway.store.unknown_parts``)
    def put_unknown_part(self, carrier: str, dest: str, entry: UnknownPart) -> None:
        """Index a part that became ``unknown`` under its carrier and destination as sent."""
        key = unknown_part_key(carrier, dest, entry.sent_at, entry.message_id, entry.part)
        self.ops.append((PUT, Db.UNKNOWN_PARTS, key, _encode(entry)))

    def delete_unknown_part(self, carrier: str, dest: str, entry: UnknownPart) -> None:
        """Remove the index entry ``put_unknown_part`` made (absent is no error)."""
        key = unknown_part_key(carrier, dest, entry.sent_at, entry.message_id, entry.part)
        self.ops.append((DELETE, Db.UNKNOWN_PARTS, key))

    # errors
    def add_error(self, phone: str, entry: ErrorEntry) -> None:
        """Record a delivery error of ``phone`` at ``entry.at`` (never overwrites another)."""
        prefix = error_prefix(phone)
        check_key(prefix + bytes(8), "errors")
        self.ops.append((ADD_ERROR, prefix, to_ms(entry.at), _encode(entry)))

    # events
    def append_event(self, event: Event) -> int:
        """Append to the event feed; returns the index into ``CommitResult.event_seqs``.

        ``event.seq`` is ignored: the store assigns the next sequence number.
        """
        self.ops.append((EVENT, event))
        n = self._n_events
        self._n_events = n + 1
        return n

    # idempotency
    def put_idempotency(self, key: str, record: IdempotencyRecord) -> None:
        """Set what an idempotency key points at (overwrites)."""
        self.ops.append((PUT, Db.IDEMPOTENCY, _id_key(key, "idempotency key"), _encode(record)))

    def claim_idempotency(self, key: str, record: IdempotencyRecord) -> None:
        """Set the key unless it points at another message; then the whole batch fails
        with ``IdempotencyConflictError`` (checked inside the transaction: race-free)."""
        k = _id_key(key, "idempotency key")
        self.ops.append((CLAIM, k, key, record.message_id, _encode(record)))

    def delete_idempotency(self, key: str) -> None:
        """Forget an idempotency key."""
        self.ops.append((DELETE, Db.IDEMPOTENCY, _id_key(key, "idempotency key")))

    def delete_error(self, phone: str, at: float) -> None:
        """Delete the error entry of ``phone`` stored at ``at`` (ms precision)."""
        self.ops.append((DELETE, Db.ERRORS, error_key(phone, to_ms(at))))

    def run_in_txn(self, fn: TxnFn) -> None:
        """Run ``fn(tx)`` inside the transaction, in op order; it returns events to append
        (sequence numbers assigned like ``append_event``). Same contract as an update
        function: pure apart from ``tx``, quick, no trio; if it raises, the batch fails.
        It may run more than once (a group retried after the map grew)."""
        self.ops.append((FN, fn))

    def delete_events_through(self, seq: int) -> None:
        """Drop events with sequence number <= ``seq`` (the counter is never reset)."""
        self.ops.append((PRUNE_EVENTS, seq))
