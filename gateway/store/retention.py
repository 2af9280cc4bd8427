"""Retention's store side: bounded scans (reads) and in-transaction prune ops (writes).

The retention task (``gateway.retention``) decides *what* may go with pure functions; this
module only knows key layouts and runs those decisions where they must run:

* the **scans** read one bounded chunk in one short read transaction (``store.read``) and
  return where to resume, so no transaction is held between chunks and no chunk visits
  more than ``limit`` keys;
* the **prune ops** are ``WriteBatch.run_in_txn`` functions: they re-read each candidate
  inside the write transaction and delete it only if it still qualifies (a receipt or a
  dispatcher outcome may have changed a record since it was read), and count what they
  deleted. Like every ``run_in_txn`` function they may run more than once (a group retried
  after the map grew): the counts are reset at each run.

Both stores run these through the same ``logic.apply_group``, so the memory fake prunes
exactly like LMDB (tests/store/test_retention.py runs both).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final

import msgspec

from gateway.marketing.store import Click

from .keys import MAX_KEY_BYTES, carrier_key, from_ms, parse_event_key, parse_outbox_key
from .kv import Db, KvTxn
from .logic import CARRIER_ID, ERROR, EVENT_DECODER, IDEMPOTENCY, MESSAGE
from .records import CarrierIdRecord, ErrorEntry, Event, MessageRecord
from .unknown_parts import delete_entries_of

__all__ = [
    "CLICK",
    "PruneCarrierIds",
    "PruneErrors",
    "PruneIdempotency",
    "PruneKeys",
    "PruneMessages",
    "PruneRecords",
    "PruneStarts",
    "carrier_id_chunk",
    "error_chunk",
    "event_head",
    "event_newest",
    "message_chunk",
    "outbox_chunk",
    "record_chunk",
    "start_chunk",
]

CLICK: Final = msgspec.msgpack.Decoder(Click)

#: ``(carrier, carrier message id)`` pairs a message's parts may be stored under.
CarrierIdsOf = Callable[[MessageRecord], Iterable[tuple[str, str]]]


# reads ------------------------------------------------------------------------------------


def message_chunk(tx: KvTxn, start: bytes, limit: int) -> tuple[list[MessageRecord], bytes | None]:
    """Up to ``limit`` message records from key ``start`` on (key order = id order, and ids
    are time-sortable); the key to resume at, None at the end."""
    found, pos = record_chunk(tx, Db.MESSAGES, MESSAGE, start, limit)
    return [rec for _, rec in found], pos


def outbox_chunk(tx: KvTxn, start: bytes, limit: int) -> tuple[list[str], bytes | None]:
    """The message ids of up to ``limit`` outbox entries from key ``start`` on."""
    out: list[str] = []
    for key, _ in tx.scan(Db.OUTBOX, start):
        if len(out) >= limit:
            return out, key
        out.append(parse_outbox_key(key)[1])
    return out, None


def event_head(tx: KvTxn, limit: int) -> list[tuple[int, float]]:
    """``(seq, at)`` of the first ``limit`` events of the feed, oldest first."""
    out: list[tuple[int, float]] = []
    for key, value in tx.scan(Db.EVENTS):
        if len(out) >= limit:
            break
        ev: Event = EVENT_DECODER.decode(value)
        out.append((parse_event_key(key), ev.at))
    return out


def event_newest(tx: KvTxn) -> int | None:
    """The sequence number of the newest event in the feed (None when it is empty)."""
    last = tx.last(Db.EVENTS)
    return None if last is None else parse_event_key(last[0])


def carrier_id_chunk(
    tx: KvTxn, start: bytes, limit: int, older_than: float
) -> tuple[list[tuple[bytes, CarrierIdRecord, bool]], int, bytes | None]:
    """Carrier ids among the next ``limit`` keys from ``start`` whose ``at`` is before
    ``older_than``, each with whether its message still exists; also the number of keys
    visited and the key to resume at (None at the end). Younger ids cost a decode, no
    message lookup."""
    out: list[tuple[bytes, CarrierIdRecord, bool]] = []
    get_message = tx.getter(Db.MESSAGES)
    n = 0
    for key, value in tx.scan(Db.CARRIER_IDS, start):
        if n >= limit:
            return out, n, key
        n += 1
        rec = CARRIER_ID.decode(value)
        if rec.at < older_than:
            out.append((bytes(key), rec, get_message(rec.message_id.encode()) is not None))
    return out, n, None


def record_chunk(
    tx: KvTxn, db: Db, decoder: msgspec.msgpack.Decoder[Any], start: bytes, limit: int
) -> tuple[list[tuple[bytes, Any]], bytes | None]:
    """Up to ``limit`` ``(key, decoded value)`` of ``db`` from key ``start`` on, and the
    key to resume at (None at the end)."""
    out: list[tuple[bytes, Any]] = []
    decode = decoder.decode
    for key, value in tx.scan(db, start):
        if len(out) >= limit:
            return out, key
        out.append((bytes(key), decode(value)))
    return out, None


def start_chunk(tx: KvTxn, start: bytes, limit: int,
                ) -> tuple[list[tuple[bytes, float]], bytes | None]:
    """Up to ``limit`` keys of the opt-in start log (``optin_starts``: prefix, 8-byte ms,
    2-byte counter; docs/marketing.md) from ``start`` on, each with its time; and the key
    to resume at (None at the end)."""
    out: list[tuple[bytes, float]] = []
    for key, _ in tx.scan(Db.OPTIN_STARTS, start):
        if len(out) >= limit:
            return out, key
        out.append((bytes(key), from_ms(int.from_bytes(key[-10:-2], "big"))))
    return out, None


def error_chunk(
    tx: KvTxn, start: bytes, max_entries: int
) -> tuple[list[tuple[bytes, list[tuple[bytes, ErrorEntry]]]], bytes | None]:
    """Whole phones' error histories from key ``start`` on, until at least ``max_entries``
    entries were read (a phone is never split; one phone alone may exceed the bound).

    Returns ``[(phone prefix, [(key, entry), ...oldest first]), ...]`` and the key to
    resume at (None at the end).
    """
    out: list[tuple[bytes, list[tuple[bytes, ErrorEntry]]]] = []
    n = 0
    pos = start
    while n < max_entries:
        first = next(tx.scan(Db.ERRORS, pos), None)
        if first is None:
            return out, None
        prefix = bytes(first[0][:-8])  # phone + b"\0"
        entries: list[tuple[bytes, ErrorEntry]] = []
        for key, value in tx.scan(Db.ERRORS, prefix):
            if key[:-8] != prefix:
                break
            entries.append((bytes(key), ERROR.decode(value)))
        out.append((prefix, entries))
        n += len(entries)
        pos = prefix[:-1] + b"\x01"  # first key after every key of this phone
    return out, pos


# writes ------------------------------------------------------------------------------------


class PruneMessages:
    """In the write txn: delete each listed message that ``prunable(record)`` still
    accepts, with the carrier ids and the idempotency claim that point at it (and its
    ``unknown_parts`` entries, given ``unknown_parts_of``).

    A carrier id or claim is deleted only when its stored value names this message (a
    carrier may reuse an id; a key may have been claimed again since).
    """

    __slots__ = ("carrier_ids", "carrier_ids_of", "claims", "ids", "messages", "prunable",
                 "unknown_parts", "unknown_parts_of")

    def __init__(self, ids: Sequence[str], prunable: Callable[[MessageRecord], bool],
                 carrier_ids_of: CarrierIdsOf,
                 unknown_parts_of: CarrierIdsOf | None = None) -> None:
        self.ids = tuple(ids)
        self.prunable = prunable
        self.carrier_ids_of = carrier_ids_of
        #: ``(carrier, destination)`` pairs the message's ``unknown_parts`` entries may be
        #: under (``gateway.store.unknown_parts``); None: none looked for.
        self.unknown_parts_of = unknown_parts_of
        self.messages = self.carrier_ids = self.claims = self.unknown_parts = 0

    def __call__(self, tx: KvTxn) -> tuple[()]:
        self.messages = self.carrier_ids = self.claims = self.unknown_parts = 0
        for mid in self.ids:
            key = mid.encode()
            raw = tx.get(Db.MESSAGES, key)
            if raw is None:
                continue
            rec = MESSAGE.decode(raw)
            if not self.prunable(rec):
                continue
            tx.delete(Db.MESSAGES, key)
            self.messages += 1
            seen: set[bytes] = set()
            for carrier, cid in self.carrier_ids_of(rec):
                try:
                    ck = carrier_key(carrier, cid)
                except ValueError:
                    continue  # not a storable key: it was never stored
                if ck in seen:
                    continue
                seen.add(ck)
                v = tx.get(Db.CARRIER_IDS, ck)
                if v is not None and CARRIER_ID.decode(v).message_id == mid:
                    tx.delete(Db.CARRIER_IDS, ck)
                    self.carrier_ids += 1
            if self.unknown_parts_of is not None:
                pairs = list(self.unknown_parts_of(rec))
                if pairs:
                    self.unknown_parts += delete_entries_of(tx, mid, pairs)
            if rec.idempotency_key:
                ik = rec.idempotency_key.encode()
                if 0 < len(ik) <= MAX_KEY_BYTES:
                    v = tx.get(Db.IDEMPOTENCY, ik)
                    if v is not None and IDEMPOTENCY.decode(v).message_id == mid:
                        tx.delete(Db.IDEMPOTENCY, ik)
                        self.claims += 1
        return ()


class _PruneOlder:
    """In the write txn: delete each listed key of ``db`` whose value still qualifies
    (``_still``: re-read here, it may have changed since the chunk was read)."""

    __slots__ = ("deleted", "keys", "older_than")
    db: Db

    def __init__(self, keys: Sequence[bytes], older_than: float) -> None:
        self.keys = tuple(keys)
        self.older_than = older_than
        self.deleted = 0

    def _still(self, tx: KvTxn, key: bytes, value: bytes) -> bool:
        raise NotImplementedError

    def __call__(self, tx: KvTxn) -> tuple[()]:
        self.deleted = 0
        for key in self.keys:
            v = tx.get(self.db, key)
            if v is not None and self._still(tx, key, v):
                tx.delete(self.db, key)
                self.deleted += 1
        return ()


class PruneCarrierIds(_PruneOlder):
    """In the write txn: delete each listed carrier id that is still older than
    ``older_than`` and whose message is (still) gone."""

    __slots__ = ()
    db = Db.CARRIER_IDS

    def _still(self, tx: KvTxn, key: bytes, value: bytes) -> bool:
        rec = CARRIER_ID.decode(value)
        return rec.at < self.older_than and tx.get(Db.MESSAGES, rec.message_id.encode()) is None


class PruneIdempotency(_PruneOlder):
    """In the write txn: delete each listed claim that is still older than ``older_than``
    (a claim is never rewritten with an older time, so the re-check is enough)."""

    __slots__ = ()
    db = Db.IDEMPOTENCY

    def _still(self, tx: KvTxn, key: bytes, value: bytes) -> bool:
        return IDEMPOTENCY.decode(value).at < self.older_than


class PruneKeys:
    """In the write txn: delete the listed keys of ``db``, for values written once and
    never changed whose key or value alone decided (no re-check needed)."""

    __slots__ = ("deleted", "keys")
    db: Db

    def __init__(self, keys: Sequence[bytes]) -> None:
        self.keys = tuple(keys)
        self.deleted = 0

    def __call__(self, tx: KvTxn) -> tuple[()]:
        self.deleted = 0
        for key in self.keys:
            if tx.delete(self.db, key):
                self.deleted += 1
        return ()


class PruneErrors(PruneKeys):
    """The listed ``errors`` keys. Error entries are written once and never changed, and a
    newer entry only makes an older one less needed, so the read's decision stands."""

    __slots__ = ()
    db = Db.ERRORS


class PruneStarts(PruneKeys):
    """The listed opt-in start-log keys (their time is in the key, the value is empty)."""

    __slots__ = ()
    db = Db.OPTIN_STARTS


class PruneRecords:
    """In the write txn: delete each listed key of ``db`` whose record (re-read and decoded
    here: it may have changed since the chunk was read) ``check(tx, key, record)`` still
    finds prunable: the same decision the task took on the read."""

    __slots__ = ("check", "db", "decoder", "deleted", "keys")

    def __init__(self, db: Db, decoder: msgspec.msgpack.Decoder[Any], keys: Sequence[bytes],
                 check: Callable[[KvTxn, bytes, Any], bool]) -> None:
        self.db = db
        self.decoder = decoder
        self.keys = tuple(keys)
        self.check = check
        self.deleted = 0

    def __call__(self, tx: KvTxn) -> tuple[()]:
        self.deleted = 0
        db, decode, check = self.db, self.decoder.decode, self.check
        for key in self.keys:
            v = tx.get(db, key)
            if v is not None and check(tx, key, decode(v)):
                tx.delete(db, key)
                self.deleted += 1
        return ()
