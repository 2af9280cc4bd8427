"""The store's logic over a ``KvTxn``: applying batches and the read queries.

Shared by the LMDB store and the memory fake, so both behave the same by construction;
only the ``KvTxn`` underneath differs.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Sequence
from typing import Final, TypeVar

import msgspec

from .batch import (
    ADD_ERROR,
    CLAIM,
    DELETE,
    EVENT,
    FN,
    PRUNE_EVENTS,
    PUT,
    SWAP,
    UPDATE,
    WriteBatch,
)
from .errors import IdempotencyConflictError
from .keys import (
    carrier_key,
    error_prefix,
    event_key,
    from_ms,
    pack_event_key,
    parse_event_key,
    parse_outbox_key,
    to_ms,
)
from .kv import Db, KvTxn
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
)

__all__ = [
    "SCHEMA_VERSION",
    "apply_group",
    "due_outbox",
    "error_segment_chunk",
    "events_after",
    "events_or_head",
    "get_errors",
    "get_raw_many",
    "init_schema",
    "last_event_seq",
    "lookup_carrier_id",
    "outbox_oldest",
]

R = TypeVar("R")

SCHEMA_VERSION: Final = 1
_SCHEMA_KEY: Final = b"schema"
_SEQ_KEY: Final = b"event_seq"

_encode = msgspec.msgpack.Encoder().encode
MESSAGE: Final = msgspec.msgpack.Decoder(MessageRecord)
RECIPIENT: Final = msgspec.msgpack.Decoder(RecipientRecord)
EVENT_DECODER: Final = msgspec.msgpack.Decoder(Event)
ERROR: Final = msgspec.msgpack.Decoder(ErrorEntry)
CARRIER_ID: Final = msgspec.msgpack.Decoder(CarrierIdRecord)
IDEMPOTENCY: Final = msgspec.msgpack.Decoder(IdempotencyRecord)


class SchemaError(RuntimeError):
    """The data was written by a newer schema than this code knows."""


def init_schema(tx: KvTxn) -> None:
    """Stamp a new store with the schema version; refuse a store from the future."""
    raw = tx.get(Db.META, _SCHEMA_KEY)
    if raw is None:
        tx.put(Db.META, _SCHEMA_KEY, SCHEMA_VERSION.to_bytes(4, "big"))
    elif int.from_bytes(raw, "big") > SCHEMA_VERSION:
        raise SchemaError(
            f"store schema {int.from_bytes(raw, 'big')} is newer than {SCHEMA_VERSION}"
        )


def last_event_seq(tx: KvTxn) -> int:
    """The last assigned event sequence number (0 before the first event).

    The greater of the last event's key and the counter in ``meta``. ``meta`` is written
    only by a transaction that leaves the newest assigned number without its event
    (pruning every event, say), so the sequence never restarts; while the newest event
    exists, its key is the number (``apply_group``).
    """
    return max(_meta_seq(tx), _last_event_key(tx))


def _meta_seq(tx: KvTxn) -> int:
    raw = tx.get(Db.META, _SEQ_KEY)
    return int.from_bytes(raw, "big") if raw else 0


def _last_event_key(tx: KvTxn) -> int:
    last = tx.last(Db.EVENTS)
    return 0 if last is None else parse_event_key(last[0])


def _record_key(record: object) -> bytes:
    if isinstance(record, MessageRecord):
        return record.id.encode()
    if isinstance(record, RecipientRecord):
        return record.phone.encode()
    raise TypeError(f"update function returned {type(record).__name__}")


def _check_update(new: object, expected: type, key: bytes) -> None:
    if not isinstance(new, expected) or _record_key(new) != key:
        raise ValueError(f"update of {key!r} returned a record of another key")


_replace = msgspec.structs.replace
# The key of an updated record, for the exact record types (``_record_key`` without
# its call and isinstance chain).
_KEY_OF: Final[dict[type, Callable[[object], str]]] = {
    MessageRecord: operator.attrgetter("id"),
    RecipientRecord: operator.attrgetter("phone"),
}


def _apply(tx: KvTxn, batch: WriteBatch, seq: int) -> tuple[CommitResult, int]:
    # The writer's hot loop (~13 writes and 3 read-modify-writes per message). Why it
    # looks like this: the codes are tested in order of frequency; each database's put,
    # delete and get are bound once per batch (``KvTxn.putter``...), which saves the
    # adapter's method call and handle lookup on every op (bench/store.py lifecycle).
    seqs: list[int] = []
    puts: dict[Db, Callable[[bytes, bytes], object]] = {}
    dels: dict[Db, Callable[[bytes], object]] = {}
    gets: dict[Db, Callable[[bytes], bytes | None]] = {}
    put_event: Callable[[bytes, bytes], object] | None = None
    for op in batch.ops:
        code = op[0]
        if code == PUT:
            put = puts.get(op[1])
            if put is None:
                put = puts[op[1]] = tx.putter(op[1])
            put(op[2], op[3])
        elif code == EVENT:
            if put_event is None:
                put_event = tx.putter(Db.EVENTS)
            seq += 1
            put_event(pack_event_key(seq), _encode(_replace(op[1], seq=seq)))
            seqs.append(seq)
        elif code == DELETE:
            delete = dels.get(op[1])
            if delete is None:
                delete = dels[op[1]] = tx.deleter(op[1])
            delete(op[2])
        elif code in (UPDATE, SWAP):
            if code == UPDATE:
                _, db, key, fn, decoder = op
            else:
                _, db, key, expect, value, fn, decoder = op
            get = gets.get(db)
            if get is None:
                get = gets[db] = tx.getter(db)
            raw = get(key)
            if code == SWAP and raw == expect:
                put = puts.get(db)
                if put is None:
                    put = puts[db] = tx.putter(db)
                put(key, value)
                continue
            new = fn(None if raw is None else decoder.decode(raw))
            if new is not None:
                key_of = _KEY_OF.get(type(new))
                if key_of is None or type(new) is not decoder.type or key_of(new).encode() != key:
                    _check_update(new, decoder.type, key)  # the general check, or raises
                put = puts.get(db)
                if put is None:
                    put = puts[db] = tx.putter(db)
                put(key, _encode(new))
        elif code == ADD_ERROR:
            _, prefix, at_ms, value = op
            # Same phone, same millisecond: take the next free one, so no error is lost.
            while not tx.add(Db.ERRORS, prefix + at_ms.to_bytes(8, "big"), value):
                at_ms += 1
        elif code == CLAIM:
            _, key, client_key, message_id, value = op
            raw = tx.get(Db.IDEMPOTENCY, key)
            if raw is None:
                tx.put(Db.IDEMPOTENCY, key, value)
            else:
                existing = IDEMPOTENCY.decode(raw).message_id
                if existing != message_id:
                    raise IdempotencyConflictError(client_key, existing)
        elif code == PRUNE_EVENTS:
            through = op[1]
            doomed: list[bytes] = []
            for key, _ in tx.scan(Db.EVENTS):
                if parse_event_key(key) > through:
                    break
                doomed.append(key)
            for key in doomed:
                tx.delete(Db.EVENTS, key)
        elif code == FN:
            for ev in op[1](tx):
                seq += 1
                tx.put(Db.EVENTS, event_key(seq), _encode(msgspec.structs.replace(ev, seq=seq)))
                seqs.append(seq)
        else:  # pragma: no cover - WriteBatch makes only the codes above
            raise ValueError(f"unknown op {code!r}")
    return CommitResult(tuple(seqs)), seq


def apply_group(
    tx: KvTxn,
    batches: Sequence[WriteBatch],
    fatal: tuple[type[BaseException], ...] = (),
    seq: int | None = None,
) -> tuple[list[CommitResult | Exception], int, int]:
    """Apply ``batches`` in order inside ``tx``, each in its own nested transaction.

    Returns one outcome per batch (a ``CommitResult``, or the exception that failed only
    that batch), the number of batches applied and the last assigned event sequence
    number after them. Exceptions of a ``fatal`` type (the backend's own errors: map
    full, disk) propagate: the caller aborts ``tx`` and fails the whole group. Events get
    sequence numbers in batch order. ``seq``: the last assigned number as of the start of
    ``tx`` when the caller knows it (what the previous committed group returned; the
    only writer's own bookkeeping), else it is read from the store.

    A group of one batch is applied in ``tx`` itself, without a nested transaction: if
    it fails, nothing of ``tx`` is kept (the caller aborts ``tx`` when none applied).
    """
    if seq is None:
        seq = last_event_seq(tx)
    start = seq
    outcomes: list[CommitResult | Exception] = []
    applied = 0
    if len(batches) == 1:
        try:
            result, seq = _apply(tx, batches[0], seq)
        except fatal:
            raise
        except Exception as exc:
            return [exc], 0, start
        outcomes.append(result)
        applied = 1
    else:
        for batch in batches:
            child = tx.child()
            try:
                result, new_seq = _apply(child, batch, seq)
                child.commit()
            except fatal:
                child.abort()
                raise
            except Exception as exc:
                child.abort()
                outcomes.append(exc)
                continue
            seq = new_seq
            applied += 1
            outcomes.append(result)
    # The counter goes to ``meta`` only when the newest number has no event left (a prune
    # or a ``run_in_txn`` function deleted it): writing it every transaction dirtied one
    # more B-tree page per fsync'ed commit (bench/store.py --txn-mix).
    if applied and _last_event_key(tx) < seq and _meta_seq(tx) < seq:
        tx.put(Db.META, _SEQ_KEY, seq.to_bytes(8, "big"))
    return outcomes, applied, seq


# reads ---------------------------------------------------------------------------------


def get_many(
    tx: KvTxn, db: Db, keys: Iterable[str], decoder: msgspec.msgpack.Decoder[R]
) -> dict[str, R]:
    """Decode the values of ``keys`` that exist (absent keys are left out)."""
    out: dict[str, R] = {}
    for k in keys:
        raw = tx.get(db, k.encode())
        if raw is not None:
            out[k] = decoder.decode(raw)
    return out


def get_raw_many(tx: KvTxn, db: Db, keys: Iterable[str]) -> dict[str, bytes]:
    """The stored values of ``keys`` that exist, undecoded (absent keys are left out)."""
    out: dict[str, bytes] = {}
    for k in keys:
        raw = tx.get(db, k.encode())
        if raw is not None:
            out[k] = raw
    return out


def due_outbox(tx: KvTxn, now: float, limit: int) -> list[OutboxEntry]:
    """Outbox entries due at or before ``now``, earliest first, at most ``limit``."""
    now_ms = to_ms(now)
    out: list[OutboxEntry] = []
    if limit <= 0:
        return out
    for key, value in tx.scan(Db.OUTBOX):
        due_ms, message_id = parse_outbox_key(key)
        if due_ms > now_ms:
            break
        out.append(OutboxEntry(from_ms(due_ms), message_id, value))
        if len(out) >= limit:
            break
    return out


def outbox_oldest(tx: KvTxn) -> OutboxEntry | None:
    """The outbox entry due first, or None when the outbox is empty."""
    for key, _ in tx.scan(Db.OUTBOX):
        due_ms, message_id = parse_outbox_key(key)
        return OutboxEntry(from_ms(due_ms), message_id)
    return None


def lookup_carrier_id(
    tx: KvTxn, carrier: str, candidates: Iterable[str]
) -> tuple[str, CarrierIdRecord] | None:
    """The first candidate id of ``carrier`` that is known, with its record."""
    for cid in candidates:
        raw = tx.get(Db.CARRIER_IDS, carrier_key(carrier, cid))
        if raw is not None:
            return cid, CARRIER_ID.decode(raw)
    return None


def events_after(tx: KvTxn, after: int, limit: int) -> list[Event]:
    """Events with ``seq > after``, in order, at most ``limit``."""
    out: list[Event] = []
    if limit <= 0:
        return out
    for _, value in tx.scan(Db.EVENTS, event_key(max(after, -1) + 1)):
        out.append(EVENT_DECODER.decode(value))
        if len(out) >= limit:
            break
    return out


def events_or_head(tx: KvTxn, after: int, limit: int) -> tuple[list[Event], int]:
    """The events after ``after`` (at most ``limit``) and, when there are none, the last
    assigned sequence number (else 0), in one read transaction: read apart, an event
    committed between the two reads would look pruned. A head beyond ``after`` with no
    event after it means retention removed every event after ``after``. ``limit`` 0
    looks at no event: 0."""
    evs = events_after(tx, after, limit)
    return evs, 0 if evs or limit <= 0 else last_event_seq(tx)


def _phone_errors(tx: KvTxn, prefix: bytes, since_ms: int) -> list[ErrorEntry]:
    out: list[ErrorEntry] = []
    for key, value in tx.scan(Db.ERRORS, prefix + since_ms.to_bytes(8, "big")):
        if key[:-8] != prefix:
            break
        out.append(ERROR.decode(value))
    return out


def get_errors(tx: KvTxn, phone: str, since: float) -> list[ErrorEntry]:
    """The errors of ``phone`` at or after ``since``, oldest first."""
    return _phone_errors(tx, error_prefix(phone), to_ms(since))


def error_segment_chunk(
    tx: KvTxn, since: float, start: bytes, max_phones: int
) -> tuple[list[PhoneErrors], bytes | None]:
    """Up to ``max_phones`` phones with errors, from key ``start`` on.

    Returns the phones that have errors at or after ``since`` and the key to resume at
    (None when done). Work per chunk is bounded by ``max_phones`` phones visited, whether
    or not they had recent errors: each phone costs two cursor seeks, old entries are
    skipped, not read.
    """
    since_ms = to_ms(since)
    out: list[PhoneErrors] = []
    pos = start
    for _ in range(max(1, max_phones)):
        first = next(tx.scan(Db.ERRORS, pos), None)
        if first is None:
            return out, None
        prefix = first[0][:-8]  # phone + b"\0"
        entries = _phone_errors(tx, prefix, since_ms)
        if entries:
            out.append(PhoneErrors(prefix[:-1].decode(), tuple(entries)))
        pos = prefix[:-1] + b"\x01"  # first key after every key of this phone
    return out, pos
