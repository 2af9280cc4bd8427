"""``RecipientCache``: the in-memory, write-through view of ``RecipientRecord``s.

Why a cache: the accept path evaluates every message against its recipient's facts, and
two reads cost more than the rules themselves (an LMDB read txn + msgpack decode, and the
``datetime`` conversions of ``RecipientFacts``). ``phonenumbers`` costs 25-65 us, so the
number facts (region, state, zone candidates) are computed ONCE per new recipient and
stored in the record.

Rules of use (the store stays the truth; the cache is a view of it):

* Reads: :meth:`load` / :meth:`get_many` fetch the misses in ONE read transaction.
  A phone the store does not know gets a fresh record (number facts filled in) that is
  not stored until someone writes it.
* Writes go through :meth:`update` (or :meth:`update_op`): the change is a pure function
  ``record -> record`` that is applied to the cached record now AND, inside the write
  transaction, to whatever the store holds (``WriteBatch.update_recipient``), so two
  writers (accept, receipts, consent) never lose each other's change.
* A failed commit must be followed by :meth:`invalidate` of the phones it touched: the
  next read reloads them from the store.
* Entries with a change in flight (``pin``/``unpin`` around a commit) are never evicted:
  reloading one before its commit landed would forget the change (smart sending exactness).
* The size is bounded (LRU); evicting is safe because the store is the truth.

Conversion to ``rules.model.RecipientFacts`` is cached per entry and replaced (not
recomputed) when the accept path hands back the facts ``rules.apply_send`` returned.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable
from datetime import UTC, datetime
from typing import Any, Final

import msgspec

from gateway.store import RecipientRecord, Store, WriteBatch
from gateway.store.batch import RECIPIENT_DECODER, SWAP, UPDATE
from gateway.store.keys import check_key
from gateway.store.kv import Db
from gateway.store.records import ErrorSummary as StoredErrors
from rules.model import (
    ConsentStatus,
    DoubleOptIn,
    ErrorClass,
    ErrorSummary,
    NumberFacts,
    RecipientFacts,
)
from rules.numbers import number_facts
from rules.policy import Policy

__all__ = [
    "DEFAULT_MAX_SIZE",
    "ENTRY_BYTES",
    "RecipientCache",
    "RecipientFn",
    "errors_from_facts",
    "facts_from_record",
    "fresh_record",
    "record_with_facts",
    "to_dt",
]

#: Entries kept by default. An entry (record + rules facts) is ~1-1.3 KB, so this bounds
#: the cache near 50-65 MB (was 200,000: up to ~260 MB, most of the anonymous RSS with
#: 1,000,000 messages queued, bench/RESULTS.md). A campaign to distinct recipients gains
#: nothing from a bigger cache (a miss is one read per batch, not per message); the app
#: takes another size from ``$SMSGW_RECIPIENT_CACHE`` (``gateway.app``).
DEFAULT_MAX_SIZE: Final = 50_000
#: Approximate memory of one cached entry (bytes), for sizing by memory.
ENTRY_BYTES: Final = 1_200

RecipientFn = Callable[[RecipientRecord], RecipientRecord]
"""A pure change of a recipient record (runs in the caller AND on the writer thread)."""

_replace = msgspec.structs.replace
_encode = msgspec.msgpack.Encoder().encode
_fromts = datetime.fromtimestamp
_CONSENT = {c.value: c for c in ConsentStatus}
_DOI = {d.value: d for d in DoubleOptIn}
_UNREACH = ErrorClass.TEMPORARY_UNREACHABLE.value
_DISC = ErrorClass.DISCONNECTED.value
_EMPTY_ERRORS = ErrorSummary()
_NO_MARKS: frozenset[str] = frozenset()
# Enum members as globals (``EnumClass.MEMBER`` costs ~50 ns on 3.11).
_NONE = ConsentStatus.NONE
_DOI_NONE = DoubleOptIn.NONE


def to_dt(t: float | None) -> datetime | None:
    """Epoch seconds -> aware UTC datetime (None stays None)."""
    return None if t is None else _fromts(t, UTC)


def _ts(d: datetime | None) -> float | None:
    return None if d is None else d.timestamp()


def fresh_record(phone: str, facts: NumberFacts, now: float | None = None) -> RecipientRecord:
    """A new record for ``phone`` carrying its number facts (nothing else known)."""
    return RecipientRecord(phone=phone, region=facts.region, state=facts.state,
                           zones=facts.zones, updated_at=now)


def _number_of(rec: RecipientRecord) -> NumberFacts:
    return NumberFacts(valid=True, region=rec.region or "", zones=rec.zones, state=rec.state)


def _errors(e: StoredErrors) -> ErrorSummary:
    if (e.last_temp_error_at is None and not e.counts and not e.permanent
            and e.last_delivered_at is None):
        return _EMPTY_ERRORS
    return ErrorSummary(
        last_temporary_at=to_dt(e.last_temp_error_at),
        unreachable_count=e.counts.get(_UNREACH, 0),
        disconnected_count=e.counts.get(_DISC, 0),
        permanent=e.permanent, permanent_at=to_dt(e.permanent_at),
        last_delivered_at=to_dt(e.last_delivered_at))


def facts_from_record(rec: RecipientRecord, number: NumberFacts | None = None, *,
                      sends_since: float = 0.0) -> RecipientFacts:
    """The rules' view of a stored record (marketing sends older than ``sends_since``
    are left out: no rule looks at them)."""
    # Runs once per recipient loaded (a campaign: once per message), hence the inlined
    # conversions and the shared empty values (a generator or ``frozenset({})`` per
    # record costs more than the check).
    sends = rec.marketing_sends
    if sends:
        if sends[0] < sends_since:
            sends = tuple(t for t in sends if t >= sends_since)
        sends_dt: tuple[datetime, ...] = tuple([_fromts(t, UTC) for t in sends])
    else:
        sends_dt = ()
    at = rec.consent_at
    doi_at = rec.double_opt_in_at
    marks = rec.flow_marks
    return RecipientFacts(
        phone=rec.phone,
        consent=_CONSENT.get(rec.consent, _NONE),
        consent_at=None if at is None else _fromts(at, UTC),
        double_opt_in=_DOI.get(rec.double_opt_in, _DOI_NONE),
        double_opt_in_at=None if doi_at is None else _fromts(doi_at, UTC),
        opt_out_confirmed=rec.opt_out_confirmed,
        number=number if number is not None else _number_of(rec),
        marketing_sends=sends_dt,
        flow_marks=frozenset(marks) if marks else _NO_MARKS,
        errors=_errors(rec.errors),
    )


def errors_from_facts(stored: StoredErrors, e: ErrorSummary) -> StoredErrors:
    """``stored`` with the rules' summary fields written back (other fields kept)."""
    counts = dict(stored.counts)
    if e.unreachable_count:
        counts[_UNREACH] = e.unreachable_count
    if e.disconnected_count:
        counts[_DISC] = e.disconnected_count
    return _replace(stored, last_temp_error_at=_ts(e.last_temporary_at), counts=counts,
                    permanent=e.permanent, permanent_at=_ts(e.permanent_at),
                    last_delivered_at=_ts(e.last_delivered_at))


def record_with_facts(rec: RecipientRecord, facts: RecipientFacts,
                      now: float | None = None) -> RecipientRecord:
    """``rec`` with the consent fields of ``facts`` (e.g. after ``rules.keywords.apply_mo``).

    Only consent, double opt-in and the opt-out confirmation flag are copied: sends, marks
    and errors have their own delta functions, so concurrent writers compose.
    """
    return _replace(rec, consent=facts.consent.value, consent_at=_ts(facts.consent_at),
                    double_opt_in=facts.double_opt_in.value,
                    double_opt_in_at=_ts(facts.double_opt_in_at),
                    opt_out_confirmed=facts.opt_out_confirmed,
                    updated_at=now if now is not None else rec.updated_at)


class _Entry:
    __slots__ = ("facts", "raw", "record", "stored")

    def __init__(self, record: RecipientRecord, stored: bool, raw: bytes | None = None) -> None:
        self.record = record
        self.facts: RecipientFacts | None = None
        #: The store holds a record for this phone (or a write of one is in flight).
        self.stored = stored
        #: The bytes the store holds for ``record`` (as read, or as this cache last wrote
        #: them: the ``SWAP`` op's ``expect``); None when not known.
        self.raw = raw


class RecipientCache:
    """Write-through LRU of recipient records and their rules facts (see module doc).

    ``policy`` sets how far back marketing sends matter (the longest of the smart-sending
    and frequency-cap windows); older ones are pruned from records on write and left out
    of the facts.
    """

    __slots__ = ("_entries", "_invalid", "_keep_s", "_max", "_pins", "_store", "hits",
                 "loads", "misses")

    def __init__(self, store: Store, *, policy: Policy | None = None,
                 max_size: int = DEFAULT_MAX_SIZE) -> None:
        if max_size < 1:
            raise ValueError("max_size must be >= 1")
        self._store = store
        self._max = max_size
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._pins: dict[str, int] = {}
        #: Numbers found invalid (no record is made for them); bounded like the entries.
        self._invalid: OrderedDict[str, None] = OrderedDict()
        p = policy if policy is not None else Policy()
        self._keep_s = 3600.0 * max(p.smart_sending.hours, p.frequency_caps.window_hours)
        self.hits = 0
        self.misses = 0
        self.loads = 0

    # --- reads ---------------------------------------------------------------------

    @property
    def keep_sends_s(self) -> float:
        """How long marketing send times are kept (seconds)."""
        return self._keep_s

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, phone: object) -> bool:
        return phone in self._entries

    def load(self, phones: Collection[str]) -> None:
        """Make every phone of ``phones`` cached; the misses are read in one read txn.

        Unknown phones get a fresh record with their number facts (25-65 us each, once).
        Invalid numbers get no entry (:meth:`is_valid` answers False).
        """
        entries = self._entries
        missing = [p for p in phones if p not in entries and p not in self._invalid]
        if not missing:
            self.hits += len(phones)
            return
        self.hits += len(phones) - len(missing)
        self.misses += len(missing)
        self.loads += 1
        found = self._store.get_recipients_raw(missing)
        decode = RECIPIENT_DECODER.decode
        for phone in missing:
            raw = found.get(phone)
            rec = None if raw is None else decode(raw)
            if rec is not None and rec.region is not None:
                entries[phone] = _Entry(rec, True, raw)
                continue
            nf = number_facts(phone)
            if not nf.valid:
                if rec is not None:  # stored but not a valid number: keep the record
                    entries[phone] = _Entry(rec, True)
                    continue
                self._invalid[phone] = None
                if len(self._invalid) > self._max:
                    self._invalid.popitem(last=False)
                continue
            if rec is None:
                entries[phone] = _Entry(fresh_record(phone, nf), False)
            else:  # a record written before its number facts were known: "not stored"
                # makes the next writer add them (``_TxnFn`` fills them in the txn).
                entries[phone] = _Entry(
                    _replace(rec, region=nf.region, state=nf.state, zones=nf.zones), False)
        self._evict()

    def is_valid(self, phone: str) -> bool:
        """False when ``phone`` was loaded and is not a valid number."""
        if phone in self._entries:
            return True
        if phone in self._invalid:
            return False
        self.load((phone,))
        return phone in self._entries

    def get(self, phone: str) -> RecipientRecord | None:
        """The record (loaded if needed); None for an invalid number."""
        e = self._entries.get(phone)
        if e is None:
            self.load((phone,))
            e = self._entries.get(phone)
            if e is None:
                return None
        else:
            self._entries.move_to_end(phone)
        return e.record

    def get_many(self, phones: Iterable[str]) -> dict[str, RecipientRecord]:
        """Records of ``phones`` (misses in one read txn); invalid numbers are left out."""
        ps = phones if isinstance(phones, Collection) else list(phones)
        self.load(ps)
        entries = self._entries
        return {p: entries[p].record for p in ps if p in entries}

    def is_stored(self, phone: str) -> bool:
        """Whether the store has (or is being written) a record for ``phone``."""
        e = self._entries.get(phone)
        return e is not None and e.stored

    def facts(self, phone: str) -> RecipientFacts:
        """The rules' facts for ``phone`` (cached; converted once per change).

        Raises KeyError for an invalid number (check :meth:`is_valid` or use ``load``).
        """
        got = self.facts_stored(phone)
        if got is None:
            raise KeyError(phone)
        return got[0]

    def facts_stored(self, phone: str) -> tuple[RecipientFacts, bool] | None:
        """``(facts, stored)`` of ``phone`` in one lookup: :meth:`facts` and
        :meth:`is_stored` together (loaded if needed); None for an invalid number."""
        e = self._entries.get(phone)
        if e is None:
            if phone in self._invalid:
                return None
            self.load((phone,))
            e = self._entries.get(phone)
            if e is None:
                return None
        f = e.facts
        if f is None:
            f = e.facts = facts_from_record(e.record, sends_since=self._sends_since(e.record))
        return f, e.stored

    def _sends_since(self, rec: RecipientRecord) -> float:
        sends = rec.marketing_sends
        # Relative to the newest send: no clock here, and keeping a few stale sends only
        # costs memory (the rules compare against their own ``now``).
        return sends[-1] - self._keep_s if sends else 0.0

    # --- writes --------------------------------------------------------------------

    def update(self, phone: str, fn: RecipientFn, batch: WriteBatch, *,
               facts: RecipientFacts | None = None) -> RecipientRecord:
        """Apply ``fn`` to the cached record now and add it to ``batch`` (write-through).

        ``fn`` must be pure and quick: it also runs on the store's writer thread, on the
        record as of that transaction (a fresh record when the store has none). ``facts``,
        when given, become the cached facts of the new record (the accept path passes what
        ``rules.apply_send`` returned, saving a conversion); otherwise they are recomputed
        on next use.
        """
        new, op = self.update_op(phone, fn, facts=facts)
        batch.ops.append(op)
        return new

    def update_op(self, phone: str, fn: RecipientFn, *,
                  facts: RecipientFacts | None = None) -> tuple[RecipientRecord, Any]:
        """Like :meth:`update`, but returns ``(new record, op)``; append the op to
        ``WriteBatch.ops`` of the batch that commits it."""
        e = self._entries.get(phone)
        if e is None:
            self.load((phone,))
            e = self._entries.get(phone)
            if e is None:
                raise KeyError(f"{phone!r} is not a valid number")
        else:
            self._entries.move_to_end(phone)
        old = e.record
        new = fn(old)
        expect = e.raw
        e.record = new
        e.facts = facts
        e.stored = True
        key = check_key(phone.encode(), "phone")
        e.raw = raw = _encode(new)  # what the store holds once this commits
        if expect is None:
            # Not known what the store holds (a new recipient, a record that lacked its
            # number facts): in the transaction, a record the store has is changed as the
            # store has it; when it has none, a fresh one carrying the number facts is the
            # base (``_TxnFn``).
            return new, (UPDATE, Db.RECIPIENTS, key, _TxnFn(fn, old, new), RECIPIENT_DECODER)
        # When the store still holds the bytes this record was read from or last written
        # as (the usual case), the new bytes are put as they are: the writer thread, which
        # holds the GIL the trio thread waits for, neither decodes, runs ``fn`` nor encodes
        # (0.74 -> 0.04 us; one encode here, 0.16 us). Otherwise ``_TxnFn`` as above.
        return new, (SWAP, Db.RECIPIENTS, key, expect, raw, _TxnFn(fn, old),
                     RECIPIENT_DECODER)

    def put_facts(self, phone: str, facts: RecipientFacts) -> None:
        """Replace the cached facts of ``phone`` (no write: only for facts that match the
        cached record, e.g. after ``rules.apply_send`` when the marks were written)."""
        e = self._entries.get(phone)
        if e is not None:
            e.facts = facts

    def pin(self, phones: Iterable[str]) -> None:
        """Keep these entries while a commit that changes them is in flight."""
        pins = self._pins
        for p in phones:
            pins[p] = pins.get(p, 0) + 1

    def unpin(self, phones: Iterable[str]) -> None:
        """The commit of a :meth:`pin` ended (either way)."""
        pins = self._pins
        for p in phones:
            n = pins.get(p, 0) - 1
            if n <= 0:
                pins.pop(p, None)
            else:
                pins[p] = n
        self._evict()

    def invalidate(self, phones: Iterable[str]) -> None:
        """Forget these entries (after a failed commit): the next read reloads them."""
        entries = self._entries
        for p in phones:
            entries.pop(p, None)

    def clear(self) -> None:
        """Forget everything (tests, or after the store was replaced)."""
        self._entries.clear()
        self._invalid.clear()

    def _evict(self) -> None:
        entries = self._entries
        over = len(entries) - self._max
        if over <= 0:
            return
        pins = self._pins
        skipped = 0
        while over > 0 and skipped < len(entries):
            phone, e = entries.popitem(last=False)
            if phone in pins:
                entries[phone] = e  # back to the young end
                skipped += 1
                continue
            over -= 1

    def statistics(self) -> dict[str, int]:
        """Counters for metrics."""
        return {"size": len(self._entries), "hits": self.hits, "misses": self.misses,
                "loads": self.loads, "pinned": len(self._pins)}


def _fresh_like(rec: RecipientRecord) -> RecipientRecord:
    return RecipientRecord(phone=rec.phone, region=rec.region, state=rec.state, zones=rec.zones)


class _TxnFn:
    """The writer-thread side of an update: ``fn`` over the stored record, or over a fresh
    one carrying the number facts of ``base`` (the cached record it was applied to; the
    fresh seed is only made when the store has none, off the accept path).

    ``new`` is ``fn(base)`` as the cache computed it: when the store holds a record equal
    to ``base`` (the usual case), it is the answer (``fn`` is pure), so the writer thread,
    which holds the GIL the trio thread waits for, compares instead of running ``fn``.
    """

    __slots__ = ("base", "fn", "new")

    def __init__(self, fn: RecipientFn, base: RecipientRecord,
                 new: RecipientRecord | None = None) -> None:
        self.fn = fn
        self.base = base
        self.new = new

    @property
    def seed(self) -> RecipientRecord:
        """The record ``fn`` starts from when the store has none."""
        return _fresh_like(self.base)

    def __call__(self, old: RecipientRecord | None) -> RecipientRecord | None:
        base = self.base
        if old is None:
            return self.fn(_fresh_like(base))
        new = self.new
        if new is not None and old == base:
            return new
        if old.region is None and base.region is not None:
            old = _replace(old, region=base.region, state=base.state, zones=base.zones)
        return self.fn(old)
