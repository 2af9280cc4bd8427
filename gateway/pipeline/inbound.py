"""The inbound processor: receipts and MO from every carrier -> store (docs/pipeline.md).

One task drains the carriers' merged inbound channel (lists of ``gateway.bind.Inbound``)
in batches of up to ``[pipeline] receipt_batch_max``; per batch ONE write, then ``ack()``
of every ``Inbound`` it settled. The deliver_sm_resp only goes out after the commit, so
a crash before it means the SMSC re-sends: never a lost receipt or opt-out. If the
commit fails nothing is acked (the SMSC re-sends) and the recipient cache entries the
batch touched are invalidated.

Receipts (domain.md §1.7, §1.8, §4): ``parse_receipt`` -> ``receipt_lookup_keys`` with the
carrier's ``message_id_format`` (``receipt_first_key`` alone first, the others after it
missed) -> the carrier id and the message record (one read transaction for the whole
batch, ``_lookup``). A miss that the
dispatcher has answered but not committed yet (``Dispatcher.pending_carrier_id``) waits
for its next commit (when that is its first key, its other keys are not read before: the
usual receipt right behind its submit_sm_resp costs one lookup after the commit); a miss
while that carrier still has submits without a response (a receipt overtaking its
submit_sm_resp, e.g. on another bind) is kept unacked and tried
again until ``unmatched_grace_s``; then it is a ``receipt.unmatched`` event (and acked),
unless it is reconciled: the ``unknown_parts`` index (parts whose submit got no answer,
``gateway.store.unknown_parts``) has exactly one message for its carrier, destination and
submit minute, whose part then adopts it as if its carrier id had matched
(``InboundProcessor._reconcile``; none or several: unmatched).
A match updates the part (stat, err, done date, error class), rolls the message up
(``dispatch.rollup``) and, for failures, classifies the error
(``rules.classify_delivery_error`` with the carrier's ``error_codes``) and records it in
the recipient's history (``errors`` entry + ``ErrorSummary`` through the
``RecipientCache``): that is what feeds the error segment and ``undeliverable_number``.
A receipt repeating what the part already says (same stat, final) is a duplicate: acked,
nothing written. The receipts are applied to the record as read (that state makes the
events); the write txn puts the result as is when the stored bytes are unchanged, else
applies them again to the stored record (``_WriteReceipts``).

MO: ``parse_mo`` -> ``Reassembler`` (fragments stay unacked until their whole message is
committed, but at most ``fragment_hold_s``: SMSCs re-send deliveries left unanswered past
their response timeout; a fragment set that never completes is recorded as an incomplete
``mo`` event after ``reassembly_ttl_s``) -> ``rules.keywords.classify`` (sender's country)
-> ``handle_mo`` -> consent change + keyword record on the recipient, at most one reply
(``Accepter.build_replies``, kind ``reply``) and the ``mo`` / ``consent`` events, all in
the batch's write.

Re-sent MO (SMPP delivery is at-least-once: an SMSC re-sends a deliver_sm whose response
it did not get, after its response timeout or on the next bind, under a new sequence
number since sequence numbers are per session) must not act twice. Two guards:
- in memory: a deliver_sm byte-identical (carrier, source, destination, data coding,
  UDH/SAR, body) to the sender's LATEST MO (or one of its fragments), committed within
  ``mo_dedup_window_s``, is acked and dropped (no event, no consent change, no reply), and
  so is a second copy in the same batch. Only the latest: "STOP", "START", "STOP" is
  three MO, and the last opt-out must apply. Keys are remembered only after their commit
  succeeded: a copy re-sent because the commit failed is processed, never dropped;
- in the store (survives a crash between commit and ack): a keyword MO repeating the
  recipient's most recent keyword (same keyword and kind) within ``mo_dedup_window_s``
  is recorded but triggers no second reply (HELP, opt-in, YES; a second STOP never
  had one: ``rules.keywords.handle_mo``).
"""

from __future__ import annotations

import bisect
import itertools
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Final, Protocol

import msgspec
import trio

from gateway.bind import Inbound, ack_all
from gateway.config import CarrierConfig, GatewayConfig
from gateway.encoding import Reassembler, UdhError, UnsupportedDataCoding, parse_mo
from gateway.pipeline.accept import ReplyRequest
from gateway.pipeline.dispatch import (
    DELETED,
    DELIVERED,
    EXPIRED,
    RECEIPT_FINAL,
    REJECTED,
    UNDELIVERED,
    UNKNOWN,
    UNKNOWN_RECEIPT,
    ReceiptGate,
    rollup,
    rollup_one,
)
from gateway.pipeline.events import (
    MESSAGE_STATUS,
    RECEIPT,
    ConsentData,
    MoData,
    ReceiptData,
    StatusData,
    consent_event,
    encode_data,
    metadata_raw,
    mo_event,
    receipt_event,
    status_event,
)
from gateway.pipeline.recipients import RecipientCache, errors_from_facts, record_with_facts
from gateway.receipts import (
    DeliveryReceipt,
    MessageIdFormat,
    ReceiptState,
    is_receipt_esm_class,
    parse_receipt,
    receipt_first_key,
    receipt_lookup_keys,
)
from gateway.smpp import pdu as P
from gateway.store import (
    ErrorEntry,
    Event,
    HistoryEntry,
    KeywordEntry,
    MessageRecord,
    PartRecord,
    RecipientRecord,
    Store,
    StoreError,
    WriteBatch,
)
from gateway.store.batch import EVENT, MESSAGE_DECODER
from gateway.store.keys import MAX_KEY_BYTES, carrier_key
from gateway.store.kv import Db, KvTxn
from gateway.store.logic import CARRIER_ID
from gateway.store.records import ErrorSummary as StoredErrors
from gateway.store.records import UnknownPart
from gateway.store.unknown_parts import dest_of, entries_for
from rules.delivery_errors import classify_delivery_error, record_delivered, record_error
from rules.keywords import ConsentChange, KeywordSets, apply_mo, classify, handle_mo
from rules.model import ErrorClass, ErrorSummary

__all__ = ["InboundProcessor", "InboundStats", "PendingCommits"]

log = logging.getLogger("smsgw.inbound")

#: Receipt state -> part status (docs/pipeline.md "Statuses"); states not listed
#: (ENROUTE, ACCEPTD, SCHEDULED) are intermediate: the stat is noted, the status stays.
PART_STATUS: Final[dict[ReceiptState, str]] = {
    ReceiptState.DELIVRD: DELIVERED,
    ReceiptState.UNDELIV: UNDELIVERED,
    ReceiptState.EXPIRED: EXPIRED,
    ReceiptState.REJECTD: REJECTED,
    ReceiptState.DELETED: DELETED,
    ReceiptState.SKIPPED: UNDELIVERED,
    ReceiptState.UNKNOWN: UNKNOWN_RECEIPT,
}
#: Keywords kept per recipient (for "sent keyword" segments), newest last.
KEYWORDS_KEPT: Final = 50
#: What identifies a re-sent MO or fragment (``InboundProcessor._mo_key``).
_MoKey = tuple[str, str, str, int, int, bytes, bytes, tuple[int, int, int] | None]
DEFERRED_RETRY_S: Final = 0.1
#: Reconciliation (``InboundProcessor._reconcile``): how far apart our clock and the SMSC's
#: may be. The receipt's ``submit date`` is the SMSC's clock truncated to the minute, so the
#: SMSC took the part within ``[submit date, + 60 s)`` of its clock; an index entry says we
#: handed the part out within ``[sent_at, until]`` of ours. The two intervals must meet
#: once each is widened by this much: NTP-synchronised hosts agree within well under a
#: second, a minute also covers an SMSC clock that drifts or steps. Wider only costs
#: ambiguity (more candidates: the receipt then stays unmatched), never a wrong match
#: of its own.
RECONCILE_SKEW_S: Final = 60.0
#: Reconciliation reads the receipt's dates as UTC, as ``done_at`` is read everywhere (the
#: receipt has no zone). An SMSC writing its local time in another zone would shift the
#: submit minute by hours onto another part, so a receipt is reconciled only when its
#: ``done date`` shows that clock agrees with ours: not after our receive time (+ the
#: skew: zones east of UTC are refused) and at most this long before it (zones west of
#: UTC are at least an hour behind). The price: a receipt the SMSC held longer than this
#: (our binds down for longer) is not reconciled; it stays unmatched.
RECONCILE_DONE_AGE_S: Final = 1800.0
PENDING_COMMIT_WAIT_S: Final = 5.0
#: Upper bounds (seconds) of the deliver_sm arrival -> ack buckets (``InboundStats``).
#: An SMSC sends at most its window of unacked deliveries per session (64 is common), so
#: receipts/s per session <= window / this time.
ACK_LATENCY_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                              2.5, 5.0, 10.0)

_replace = msgspec.structs.replace
#: ``gateway.pipeline.events.encode_data``'s encoding (a default JSON Encoder), without
#: the Python call around it, for the per-receipt event payload.
_encode_payload = msgspec.json.Encoder().encode
#: The store's record encoding (``gateway.store.batch``: a default msgpack Encoder).
_encode_record = msgspec.msgpack.Encoder().encode
_UNREACH = ErrorClass.TEMPORARY_UNREACHABLE.value
_DISC = ErrorClass.DISCONNECTED.value
_CONSENT_ACTION = {ConsentChange.UNSUBSCRIBED: "unsubscribe",
                   ConsentChange.SUBSCRIBED: "subscribe",
                   ConsentChange.PENDING: "double_opt_in_requested",
                   ConsentChange.CONFIRMED: "confirm"}


class PendingCommits(Protocol):
    """What the processor uses of ``gateway.pipeline.dispatch.Dispatcher``."""

    def pending_carrier_id(self, carrier: str, keys: Sequence[str]) -> tuple[str, int] | None:
        ...

    def awaiting_response(self, carrier: str | None = None) -> int: ...

    async def wait_committed(self) -> None: ...


class ReplyBuilder(Protocol):
    """What the processor uses of ``gateway.pipeline.accept.Accepter``."""

    def build_replies(self, batch: WriteBatch, replies: Sequence[ReplyRequest],
                      now: float) -> list[Any]: ...


class InboundStats(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot for metrics (``InboundProcessor.statistics()``)."""

    batches: int
    receipts: int
    receipts_by_stat: dict[str, int]
    errors_by_class: dict[str, int]
    unmatched: int
    duplicates: int
    deferred: int
    mo: int
    mo_by_keyword: dict[str, int]
    mo_fragments_pending: int
    mo_incomplete: int
    replies: int
    commit_failures: int
    acked: int
    #: Re-sent copies of an MO or fragment already committed: acked and dropped.
    mo_duplicates: int = 0
    #: Keyword replies not sent because the same keyword came within the dedup window.
    replies_suppressed: int = 0
    #: deliver_sm (or data_sm) arrival at the bind -> its ack queued after the commit:
    #: cumulative ``(upper bound seconds, count)`` pairs (Prometheus ``le`` buckets, the
    #: last bound is ``inf``), their sum in seconds and their count.
    ack_latency_buckets: tuple[tuple[float, int], ...] = ()
    ack_latency_sum: float = 0.0
    ack_latency_count: int = 0
    #: Receipts no carrier id matched that were adopted by an ``unknown`` part (the one
    #: index candidate: same carrier and destination, sending time within the receipt's
    #: submit minute; counted in ``receipts`` too, not in ``unmatched``).
    reconciled: int = 0
    #: Receipts left ``receipt.unmatched`` because several messages were candidates.
    reconcile_ambiguous: int = 0


def _epoch(d: datetime) -> float:
    """Epoch seconds of a receipt date (a naive one is taken as UTC)."""
    return (d if d.tzinfo is not None else d.replace(tzinfo=UTC)).timestamp()


def _dt(t: float | None) -> datetime | None:
    return None if t is None else datetime.fromtimestamp(t, UTC)


def _rules_errors(e: StoredErrors) -> ErrorSummary:
    return ErrorSummary(
        last_temporary_at=_dt(e.last_temp_error_at),
        unreachable_count=e.counts.get(_UNREACH, 0),
        disconnected_count=e.counts.get(_DISC, 0),
        permanent=e.permanent, permanent_at=_dt(e.permanent_at),
        last_delivered_at=_dt(e.last_delivered_at))


class _RecordError:
    """Recipient change: one delivery failure (pure; runs on the writer thread too)."""

    __slots__ = ("at", "cls")

    def __init__(self, cls: ErrorClass, at: float) -> None:
        self.cls = cls
        self.at = at

    def __call__(self, rec: RecipientRecord) -> RecipientRecord:
        e = rec.errors
        summary = record_error(_rules_errors(e), self.cls, datetime.fromtimestamp(self.at, UTC))
        new = errors_from_facts(e, summary)
        counts = dict(new.counts)
        if self.cls.value not in (_UNREACH, _DISC):  # those two come from the summary
            counts[self.cls.value] = counts.get(self.cls.value, 0) + 1
        last_at = e.last_error_at
        newer = last_at is None or self.at >= last_at
        new = _replace(new, counts=counts,
                       last_error_at=self.at if newer else last_at,
                       last_error_class=self.cls.value if newer else e.last_error_class,
                       permanent_reason=(e.permanent_reason or self.cls.value)
                       if new.permanent else e.permanent_reason)
        return _replace(rec, errors=new, updated_at=self.at)


class _RecordDelivered:
    """Recipient change: a DELIVRD receipt (membership may lapse on delivery)."""

    __slots__ = ("at",)

    def __init__(self, at: float) -> None:
        self.at = at

    def __call__(self, rec: RecipientRecord) -> RecipientRecord:
        e = rec.errors
        summary = record_delivered(_rules_errors(e), datetime.fromtimestamp(self.at, UTC))
        return _replace(rec, errors=errors_from_facts(e, summary))


class _ApplyMo:
    """Recipient change: consent fields from the MO outcome + the keyword record."""

    __slots__ = ("facts", "keyword", "now")

    def __init__(self, facts: Any, keyword: KeywordEntry | None, now: float) -> None:
        self.facts = facts
        self.keyword = keyword
        self.now = now

    def __call__(self, rec: RecipientRecord) -> RecipientRecord:
        new = rec if self.facts is None else record_with_facts(rec, self.facts, self.now)
        if self.keyword is not None:
            new = _replace(new, keywords=(*new.keywords, self.keyword)[-KEYWORDS_KEPT:],
                           updated_at=self.now)
        if self.facts is not None and self.facts.consent.value != rec.consent:
            new = _replace(new, consent_source="keyword")
        return new


#: ``esm_class & 0x3F`` of the esm_class values ``is_receipt_esm_class`` takes (a receipt
#: or an intermediate notification; it reads bits 2-5 only, so the mask keeps its answer for
#: any int).
_RECEIPT_ESM_CLASSES: Final = frozenset(e for e in range(0x40) if is_receipt_esm_class(e))


#: One receipt's change to its message: ``(part, status, stat, err, done_at, error_class,
#: now)``; what ``_matched`` keeps per receipt for
#: ``_WriteReceipts`` (a tuple: no object to build per receipt).
_ReceiptChange = tuple[int, str | None, str, str | None, float | None, str | None, float]


def _apply_receipt(old: MessageRecord | None,
                   change: _ReceiptChange) -> tuple[MessageRecord, str | None] | None:
    """``(new record, roll-up of its parts)`` after the receipt ``change`` (one receipt on
    one part, then the roll-up; pure), or None when nothing changes."""
    part, status, stat, err, done_at, error_class, now = change
    if old is None:
        return None
    old_parts = old.parts
    n = len(old_parts)
    if part >= n:
        return None
    p = old_parts[part]
    if p.status in RECEIPT_FINAL and p.status != UNKNOWN_RECEIPT:
        return None  # a final receipt is kept (re-deliveries, late contradictions)
    np = _replace(p, receipt_stat=stat, receipt_err=err, done_at=done_at,
                  error_class=error_class, status=p.status if status is None else status)
    parts: tuple[PartRecord, ...]
    if n == 1:  # most messages: no list of parts to copy and roll up
        parts = (np,)
        st = rollup_one(np.status)
    else:
        copy = list(old_parts)
        copy[part] = np
        parts = tuple(copy)
        st = rollup(parts)
    if st is not None and st != old.status:
        return _replace(old, parts=parts, updated_at=now, status=st,
                        history=(*old.history, HistoryEntry(
                            now, st, None, f"part {part + 1}: {stat}"
                            + (f" err {err}" if err else "")))), st
    return _replace(old, parts=parts, updated_at=now), st


def _mark_reconciled(batch: WriteBatch, start: int) -> None:
    """The ``receipt`` events appended from op ``start`` on say ``reconciled``: the field is
    the last of ``ReceiptData``, so its JSON object ends with it, as encoding the payload
    with ``reconciled=True`` would (tests compare); the matched path's encoding stays."""
    ops = batch.ops
    for i in range(start, len(ops)):
        op = ops[i]
        if op[0] == EVENT and op[1].type == RECEIPT and op[1].data.endswith(b"}"):
            ev = op[1]
            ops[i] = (EVENT, _replace(ev, data=ev.data[:-1] + b',"reconciled":true}'))


class _AdoptPart:
    """Message change: an ``unknown`` part takes the carrier id of the receipt reconciled
    to it (``InboundProcessor._reconcile``; pure, runs on the writer thread too). A part
    that is no longer ``unknown`` or has a carrier id is left alone (None)."""

    __slots__ = ("carrier", "cid", "now", "part")

    def __init__(self, part: int, carrier: str, cid: str, now: float) -> None:
        self.part = part
        self.carrier = carrier
        self.cid = cid
        self.now = now

    def __call__(self, rec: MessageRecord) -> MessageRecord | None:
        parts = rec.parts
        i = self.part
        if i >= len(parts) or parts[i].status != UNKNOWN or parts[i].carrier_msg_id is not None:
            return None
        new = list(parts)
        new[i] = _replace(parts[i], carrier=self.carrier, carrier_msg_id=self.cid)
        return _replace(rec, parts=tuple(new), updated_at=self.now, history=(
            *rec.history, HistoryEntry(self.now, rec.status, "reconciled",
                                       f"part {i + 1}: its receipt ({self.cid}) matched by "
                                       "destination and submit time")))


class _Work:
    """A message that receipts of the batch being built change (``_matched``)."""

    __slots__ = ("fns", "key", "raw", "rec")

    def __init__(self, key: bytes, raw: bytes, rec: MessageRecord) -> None:
        self.key = key
        #: The stored bytes the receipts were decided on.
        self.raw = raw
        #: The record after the batch's receipts so far.
        self.rec = rec
        #: The receipts applied, in order (``_apply_receipt``'s arguments; an
        #: ``_AdoptPart`` before the receipt of a reconciled part).
        self.fns: list[_ReceiptChange | _AdoptPart] = []


class _WriteReceipts:
    """In the write txn: the message records of one batch's receipts.

    The receipts were applied on the trio thread to the record as read there (to build the
    events), so the new record is known: when the stored bytes are still the ones read
    (nothing committed the message since, the usual case) the new bytes are put as they
    are, without a second decode, roll-up and encode on the writer thread. Otherwise (a
    dispatcher outcome or another batch got there first) the same changes are applied
    (``_apply_receipt``), in order, to the stored record, as ``WriteBatch.update_message``
    would.
    """

    __slots__ = ("items",)

    def __init__(self, items: list[tuple[bytes, bytes, bytes,
                                         list[_ReceiptChange | _AdoptPart]]]) -> None:
        self.items = items

    def __call__(self, tx: KvTxn) -> tuple[()]:
        get = tx.getter(Db.MESSAGES)
        put = tx.putter(Db.MESSAGES)
        for key, raw, new, fns in self.items:
            stored = get(key)
            if stored == raw:
                put(key, new)
                continue
            if stored is None:
                continue  # deleted meanwhile: ``_apply_receipt`` would leave it absent
            rec = MESSAGE_DECODER.decode(stored)
            changed = False
            for change in fns:
                if isinstance(change, _AdoptPart):  # (reconciliation only)
                    adopted = change(rec)
                    if adopted is not None:
                        rec, changed = adopted, True
                    continue
                got = _apply_receipt(rec, change)
                if got is not None:
                    rec, changed = got[0], True
            if changed:
                put(key, _encode_record(rec))
        return ()


class _Held:
    """An inbound receipt (waiting for its carrier id to be committed, when held)."""

    __slots__ = ("_keys", "carrier", "first_seen", "fmt", "inbound", "key", "receipt",
                 "waiting")

    def __init__(self, inbound: Inbound, receipt: DeliveryReceipt, carrier: str,
                 fmt: MessageIdFormat, now: float) -> None:
        self.inbound = inbound
        self.receipt = receipt
        self.carrier = carrier
        self.fmt = fmt
        #: ``keys[0]`` (None when there are no keys), computed alone: most receipts are
        #: found under it, and the other keys are only computed when it misses.
        self.key = receipt_first_key(receipt, fmt)
        self._keys: tuple[str, ...] | None = None
        self.first_seen = now
        #: Its first key missed while the dispatcher held it answered but uncommitted
        #: (``InboundProcessor._lookup`` with ``pending``): its other keys were not tried.
        self.waiting = False

    @property
    def keys(self) -> tuple[str, ...]:
        """Every carrier id to try, in order (``receipt_lookup_keys``)."""
        keys = self._keys
        if keys is None:
            keys = self._keys = receipt_lookup_keys(self.receipt, self.fmt) \
                if self.key is not None else ()
        return keys


#: A receipt found under one of its keys: ``(receipt, message id, its store key, part,
#: stored record bytes or None)`` (``InboundProcessor._lookup``).
_Found = tuple[_Held, str, bytes, int, bytes | None]


class InboundProcessor:
    """Receipts and MO -> one commit per batch -> acks (see the module docstring).

    ``inbound`` is the carriers' merged channel (``CarrierSet.inbound``). ``clock``
    returns epoch seconds. ``keyword_sets`` come from ``config/keywords.toml``
    (``rules.load_keyword_sets``); without them every MO is keyword-less.
    """

    #: Called once per committed batch with its ``(carrier, seconds)`` pairs, one for
    #: each receipt that gave a part its (first) final state: submit_sm accepted ->
    #: receipt received (the app feeds ``smsgw_submit_receipt_latency_seconds``; one call
    #: per batch, not per receipt). None = not measured.
    on_receipt_latencies: Callable[[list[tuple[str, float]]], None] | None = None
    #: A receipt whose first key the dispatcher holds uncommitted waits for that commit
    #: without its other keys being read (``_lookup``'s ``pending``). False: every key is
    #: read first (the general path; tests compare the two).
    wait_on_first_key: bool = True

    def __init__(
        self,
        store: Store,
        config: GatewayConfig,
        recipients: RecipientCache,
        accepter: ReplyBuilder | None,
        dispatcher: PendingCommits | None,
        *,
        inbound: trio.MemoryReceiveChannel[list[Inbound]] | None = None,
        keyword_sets: KeywordSets | None = None,
        clock: Callable[[], float] = time.time,
        batch_max: int | None = None,
        reassembly_ttl_s: float = 600.0,
        fragment_hold_s: float = 8.0,
        unmatched_grace_s: float = 5.0,
        mo_dedup_window_s: float = 60.0,
    ) -> None:
        self._store = store
        self._config = config
        self._policy = config.rules
        self._recipients = recipients
        self._accepter = accepter
        self._dispatcher = dispatcher
        self._inbound = inbound
        self._keyword_sets = keyword_sets if keyword_sets is not None else KeywordSets()
        self._clock = clock
        self._batch_max = batch_max or config.pipeline.receipt_batch_max
        self._grace = unmatched_grace_s
        self._cfg: dict[str, CarrierConfig] = {c.name: c for c in config.carriers}
        self._carrier_of_bind: dict[str, str] = {}
        #: carrier -> its ``message_id_format`` ("auto" for a carrier not configured).
        self._id_formats: dict[str, MessageIdFormat] = {}
        self._reassemblers: dict[str, Reassembler] = {}
        self._ttl = reassembly_ttl_s
        #: Unacked fragments of incomplete MOs: (carrier, source, ref, total) ->
        #: {segment: (latest copy, held since)}.
        self._fragments: dict[tuple[str, str, int, int], dict[int, tuple[Inbound, float]]] = {}
        self._hold = fragment_hold_s
        self._held: list[_Held] = []
        self._dedup_s = mo_dedup_window_s
        #: (carrier, source) -> keys (``_mo_key``) of the sender's latest committed MO (its
        #: fragments) and the commit time; oldest first.
        self._recent_mo: dict[tuple[str, str], tuple[frozenset[_MoKey], float]] = {}
        #: The same for complete MOs handled in the batch being built (kept on commit).
        self._batch_mo: dict[tuple[str, str], frozenset[_MoKey]] = {}
        self._n: dict[str, int] = defaultdict(int)
        self._by_stat: dict[str, int] = defaultdict(int)
        self._by_class: dict[str, int] = defaultdict(int)
        self._by_keyword: dict[str, int] = defaultdict(int)
        self._latencies: list[tuple[str, float]] = []  # of the batch being built
        self._epochs: dict[datetime, float] = {}
        #: ``message.status`` payloads of receipts, by what they hold (``_matched``).
        self._status_data: dict[tuple[int, str, str, str | None, str | None, str], bytes] = {}
        self._ack_counts = [0] * (len(ACK_LATENCY_BUCKETS) + 1)
        self._ack_seconds = 0.0
        #: Tells the dispatcher a batch is in progress (it yields to receipts).
        self._gate = ReceiptGate()
        share = getattr(dispatcher, "share_with", None)
        if share is not None:
            share(self._gate)

    # -- running ------------------------------------------------------------------------

    async def run(self, inbound: trio.MemoryReceiveChannel[list[Inbound]] | None = None, *,
                  task_status: trio.TaskStatus[InboundProcessor] = trio.TASK_STATUS_IGNORED,
                  ) -> None:
        """Drain the inbound channel until it closes or the task is cancelled."""
        recv = inbound if inbound is not None else self._inbound
        if recv is None:
            raise ValueError("no inbound channel")
        task_status.started(self)
        closed = False
        while not closed or self._held:
            items: list[Inbound] = []
            deadline = self._next_deadline()
            if not closed:
                with trio.move_on_at(deadline):
                    try:
                        items.extend(await recv.receive())
                    except trio.EndOfChannel:
                        closed = True
            elif deadline < float("inf"):
                await trio.sleep_until(deadline)
            else:
                break
            while len(items) < self._batch_max:
                try:
                    items.extend(recv.receive_nowait())
                except (trio.WouldBlock, trio.EndOfChannel):
                    break
            await self.process(items)

    def _next_deadline(self) -> float:
        t = float("inf")
        now_epoch = self._clock()
        now = trio.current_time()
        if self._held:
            t = now + DEFERRED_RETRY_S
        for r in self._reassemblers.values():
            d = r.next_deadline()
            if d is not None:
                t = min(t, now + max(d - now_epoch, 0.0))
        for held in self._fragments.values():
            for inb, since in held.values():
                if not inb.acked:
                    t = min(t, now + max(since + self._hold - now_epoch, 0.0))
        return t

    async def process(self, items: list[Inbound]) -> None:
        """Handle one batch (plus held receipts and expired fragments): one commit, acks."""
        self._gate.enter()
        try:
            await self._process(items)
        finally:
            self._gate.leave()

    async def _process(self, items: list[Inbound]) -> None:
        now = self._clock()
        # Urgent: the SMSC holds its next receipts until these are acked (after the commit).
        batch = WriteBatch(urgent=True)
        acks: list[Inbound] = []
        phones: set[str] = set()
        self._n["batches"] += 1
        self._latencies = []
        receipts: list[_Held] = []
        receipts.extend(self._held)
        self._held = []
        self._batch_mo = {}
        formats = self._id_formats
        for inb in items:
            pdu = inb.pdu
            # (``_carrier``, ``is_receipt_esm_class`` and ``_parse_receipt`` written out
            # for a bind's deliver_sm: this loop runs once per receipt)
            carrier = inb.carrier if type(inb) is Inbound else self._carrier(inb)
            # A receipt (0x04) or an intermediate notification (0x20).
            if (int(pdu.esm_class) & 0x3F) not in _RECEIPT_ESM_CLASSES:
                r = None
            elif type(pdu) is P.DeliverSm:
                r = parse_receipt(pdu.esm_class, pdu.short_message, pdu.tlvs,
                                  data_coding=pdu.data_coding)
            else:
                r = self._parse_receipt(pdu)
            if r is not None:
                fmt = formats.get(carrier)
                if fmt is None:
                    fmt = formats[carrier] = self._cfg[carrier].message_id_format \
                        if carrier in self._cfg else "auto"
                receipts.append(_Held(inb, r, carrier, fmt, now))
            else:
                self._mo(batch, inb, carrier, now=now, acks=acks, phones=phones)
        self._expire_fragments(batch, now, acks)
        if receipts:
            await self._receipts(batch, receipts, now, acks, phones)
        if batch:
            try:
                await self._store.commit(batch)
            except StoreError as e:
                self._n["commit_failures"] += 1
                self._recipients.invalidate(phones)
                log.warning("inbound: commit of %d deliveries failed (%s); not acked, the "
                            "SMSC will re-send", len(acks), e)
                return
        self._remember_mo(now)
        if self._latencies and self.on_receipt_latencies is not None:
            self.on_receipt_latencies(self._latencies)
        self._ack(acks)

    def _ack(self, acks: list[Inbound]) -> None:
        """Ack, and note each delivery's time from its arrival to its ack."""
        now = trio.current_time()
        counts = self._ack_counts
        total = 0.0
        last_at: float | None = None
        i = 0
        ack_all(acks)
        for inb in acks:
            at = getattr(inb, "received_at", None)  # (test fakes have none)
            if at is None:
                continue
            if at != last_at:  # one bind read's deliveries share their arrival time
                last_at = at
                i = bisect.bisect_left(ACK_LATENCY_BUCKETS, now - at)
            counts[i] += 1
            total += now - at
        self._ack_seconds += total
        self._n["acked"] += len(acks)

    # -- receipts -----------------------------------------------------------------------

    @staticmethod
    def _parse_receipt(pdu: P.DeliverSm | P.DataSm) -> DeliveryReceipt | None:
        if isinstance(pdu, P.DataSm):
            return parse_receipt(pdu.esm_class, b"", pdu.tlvs, data_coding=pdu.data_coding)
        return parse_receipt(pdu.esm_class, pdu.short_message, pdu.tlvs,
                             data_coding=pdu.data_coding)

    def _lookup(self, receipts: Sequence[_Held], found: list[_Found], misses: list[_Held],
                pending: Callable[[str, Sequence[str]], object] | None = None, *,
                prechecked: bool = False) -> None:
        """Appends each receipt to ``found`` with ``(message id, its key, part, stored
        record bytes)`` of its carrier id, or to ``misses``; the ids and the records in
        ONE read transaction.

        With ``pending`` (``Dispatcher.pending_carrier_id``): a receipt whose first key
        misses while the dispatcher has that key answered but not committed (a receipt
        right behind its submit_sm_resp: nearly every one with one message per request)
        goes to ``misses`` marked ``waiting``, its other keys not computed nor read: the
        caller waits for that commit and looks it up again in full, where the first key
        is found (the other keys would only find another submit's id). ``prechecked``: the
        caller has marked those ``waiting`` already, before any read: they are not read
        at all (their first key may also be in the store, for an older submit the
        carrier gave the same id: the commit will replace it)."""
        def read(tx: KvTxn) -> None:
            get_id = tx.getter(Db.CARRIER_IDS)
            get_message = tx.getter(Db.MESSAGES)
            prefixes: dict[str, bytes] = {}
            for h in receipts:
                if prechecked and h.waiting:
                    misses.append(h)
                    continue
                carrier = h.carrier
                # logic.lookup_carrier_id over a bound getter (0.2 us a receipt less), the
                # first key alone first (``_Held.key``), then the others in order.
                key = h.key
                if key is None:
                    misses.append(h)
                    continue
                # carrier_key(carrier, key) with the carrier's part built once per batch
                # (its checks redone by carrier_key itself when they could fail)
                prefix = prefixes.get(carrier)
                if prefix is None:
                    prefix = prefixes[carrier] = carrier_key(carrier, "x")[:-1]
                k = prefix + key.encode()
                if len(k) > MAX_KEY_BYTES or k.count(b"\0") != 1:
                    k = carrier_key(carrier, key)
                raw = get_id(k)
                if raw is None:
                    if pending is not None and not prechecked \
                            and pending(carrier, (key,)) is not None:
                        h.waiting = True
                        misses.append(h)
                        continue
                    for cid in h.keys[1:]:
                        raw = get_id(carrier_key(carrier, cid))
                        if raw is not None:
                            break
                    else:
                        h.waiting = False
                        misses.append(h)
                        continue
                hit = CARRIER_ID.decode(raw)
                mid = hit.message_id
                mkey = mid.encode()
                found.append((h, mid, mkey, hit.part, get_message(mkey)))

        self._store.read(read)

    async def _receipts(self, batch: WriteBatch, receipts: list[_Held], now: float,
                        acks: list[Inbound], phones: set[str]) -> None:
        found: list[_Found] = []
        misses: list[_Held] = []
        d = self._dispatcher
        pending = None
        prechecked = False
        if d is not None and self.wait_on_first_key:
            pending = d.pending_carrier_id
            last = receipts[-1]
            if last.key is not None and pending(last.carrier, (last.key,)) is not None:
                # The newest receipt came right behind its submit_sm_resp (one message per
                # request: most batches), so most of the batch did: those wait for their
                # commit without a read before it (their first key is missing or about to
                # be replaced).
                prechecked = True
                n = 0
                for h in receipts:
                    key = h.key
                    if key is not None and pending(h.carrier, (key,)) is not None:
                        h.waiting = True
                        n += 1
                    else:
                        h.waiting = False
                if n == len(receipts):
                    misses.extend(receipts)
        if not misses:
            self._lookup(receipts, found, misses, pending, prechecked=prechecked)
        if misses and d is not None:
            # Answered by the carrier, not committed yet: wait for that commit.
            waited = False
            with trio.move_on_after(PENDING_COMMIT_WAIT_S):
                while any(self._pending(d, h) for h in misses):
                    waited = True
                    await d.wait_committed()
            if waited:
                again, misses = misses, []
                self._lookup(again, found, misses)
        works: dict[str, _Work] = {}
        late: list[_Held] = []
        for h in misses:
            if (d is not None and h.keys and d.awaiting_response(h.carrier) > 0
                    and now - h.first_seen < self._grace):
                self._held.append(h)  # its submit_sm_resp may still be on its way
                continue
            late.append(h)
        if late:  # unmatched, or reconciled with an ``unknown`` part
            flush = getattr(d, "flush", None)
            if flush is not None:
                # A submit that just timed out no longer counts as awaiting a response
                # (no grace for its receipt) while its ``unknown`` outcome, which indexes
                # it, may not be committed yet: let the dispatcher commit what it has;
                # then look the receipts up again (an answer committed by that flush
                # is theirs, never a reconciliation).
                with trio.move_on_after(PENDING_COMMIT_WAIT_S):
                    await flush()
                again, late = late, []
                self._lookup(again, found, late)
            acks.extend(h.inbound for h in late)
            self._reconcile(batch, late, now, works, phones)
        self._n["deferred"] = len(self._held)
        if not found and not works:
            return
        matched = 0
        for h, mid, mkey, part, raw in found:
            acks.append(h.inbound)
            w = works.get(mid)
            if w is None:
                if raw is None:
                    self._unmatched(batch, h, now)
                    continue
                w = works[mid] = _Work(mkey, raw, MESSAGE_DECODER.decode(raw))
            if part >= len(w.rec.parts):
                self._unmatched(batch, h, now)
                continue
            matched += 1
            self._matched(batch, h, w, part, now=now, phones=phones)
        self._n["receipts"] += matched
        # The records last, in one op: no event or other op of the batch reads them.
        items = [(w.key, w.raw, _encode_record(w.rec), w.fns) for w in works.values() if w.fns]
        if items:
            batch.run_in_txn(_WriteReceipts(items))

    @staticmethod
    def _pending(d: PendingCommits, h: _Held) -> bool:
        """Whether ``h`` missed on a carrier id the dispatcher has not committed yet (its
        first key when ``waiting``: the one it will be found under)."""
        key = h.key
        if h.waiting and key is not None:
            return d.pending_carrier_id(h.carrier, (key,)) is not None
        return d.pending_carrier_id(h.carrier, h.keys) is not None

    def _epoch(self, d: datetime | None) -> float | None:
        """:func:`_epoch` of ``d`` (None stays None), remembered per value: receipts of one
        minute share their date."""
        if d is None:
            return None
        t = self._epochs.get(d)
        if t is None:
            if len(self._epochs) >= 1024:
                self._epochs.clear()
            t = self._epochs[d] = _epoch(d)
        return t

    def _reconcile(self, batch: WriteBatch, late: list[_Held], now: float,
                   works: dict[str, _Work], phones: set[str]) -> None:
        """Receipts no carrier id matched, after their grace: each becomes
        ``receipt.unmatched``, unless the ``unknown_parts`` index (parts whose submit got
        no answer, ``gateway.store.unknown_parts``) has exactly one message for it: same
        carrier, same destination (the receipt's source_addr), handed out within the
        receipt's submit minute (``RECONCILE_SKEW_S``), indexed within
        ``[pipeline] carrier_id_ttl_s``; and only a receipt whose done date is of our clock
        (``RECONCILE_DONE_AGE_S``). That message's part adopts the receipt: its
        carrier id is committed (later receipts of the id match as usual), the receipt is
        applied as ``_matched`` applies it (status, roll-up, events, error class and
        history) and its ``receipt`` event says ``reconciled``; the entry goes.

        Several messages -> ambiguous: unmatched (never attach a receipt to a message it
        may not belong to); so is a receipt while a part to its destination is handed to
        its carrier with no answer yet (``Dispatcher.unanswered_dests``: it may be that
        part's). Parts of ONE message are interchangeable for its receipts (a
        receipt does not say which segment it is for): the lowest part still ``unknown``
        without a carrier id takes it. A candidate whose part is no longer ``unknown`` (a
        receipt adopted it; a part sent again has its own carrier id) is not adopted, but
        still counts: the receipt may be its own, so it stays unmatched.

        The rare path only: nothing here runs for a receipt its carrier id matched."""
        ttl = self._config.pipeline.carrier_id_ttl_s
        unanswered = getattr(self._dispatcher, "unanswered_dests", None)
        busy: set[tuple[str, str]] | None = None  # read once, at the first adoption
        asks: list[tuple[_Held, str, float]] = []
        for h in late:
            r = h.receipt
            done = None if r.done_date is None else _epoch(r.done_date)
            if r.submit_date is None or h.key is None or done is None \
                    or not now - RECONCILE_DONE_AGE_S <= done <= now + RECONCILE_SKEW_S:
                self._unmatched(batch, h, now)  # no date, or not one of our clock
                continue
            dest = dest_of(self._phone(h.inbound.pdu))
            asks.append((h, dest, _epoch(r.submit_date)))
        if not asks:
            return

        def read(tx: KvTxn) -> tuple[list[list[tuple[bytes, UnknownPart]]], dict[str, bytes]]:
            get = tx.getter(Db.MESSAGES)
            raws: dict[str, bytes] = {}
            out = []
            for h, dest, _ in asks:
                entries = entries_for(tx, h.carrier, dest)
                for _, e in entries:
                    if e.message_id not in raws and e.message_id not in works:
                        raw = get(e.message_id.encode())
                        if raw is not None:
                            raws[e.message_id] = raw
                out.append(entries)
            return out, raws

        found, raws = self._store.read(read)
        adopted: dict[tuple[str, str], tuple[_Work, int]] = {}  # (carrier, key) this batch
        taken: set[bytes] = set()  # index keys adopted in this batch
        for (h, dest, start), entries in zip(asks, found, strict=True):
            key = h.key
            assert key is not None
            again = adopted.get((h.carrier, key))
            if again is not None:  # a copy of a receipt adopted in this batch
                self._n["receipts"] += 1
                self._matched(batch, h, again[0], again[1], now=now, phones=phones)
                continue
            lo = start - RECONCILE_SKEW_S
            hi = start + 60.0 + RECONCILE_SKEW_S
            cands = [(k, e) for k, e in entries
                     if k not in taken and now - e.at <= ttl and e.sent_at <= hi
                     and e.until >= lo]
            mids = {e.message_id for _, e in cands}
            if len(mids) == 1 and unanswered is not None:
                if busy is None:
                    busy = unanswered()
                if (h.carrier, dest) in busy:
                    # A part to this destination still waits for its submit_sm_resp (past
                    # the receipt's grace): the receipt may be its own. Ambiguous.
                    mids.add("")
            if len(mids) != 1:
                if mids:
                    self._n["reconcile_ambiguous"] += 1
                self._unmatched(batch, h, now)
                continue
            mid = cands[0][1].message_id
            w = works.get(mid)
            if w is None:
                raw = raws.get(mid)
                if raw is None:  # its message is gone
                    self._unmatched(batch, h, now)
                    continue
                w = works[mid] = _Work(mid.encode(), raw, MESSAGE_DECODER.decode(raw))
            parts = w.rec.parts
            choice = None
            for k, e in sorted(cands, key=lambda c: c[1].part):
                p = parts[e.part] if e.part < len(parts) else None
                if p is not None and p.status == UNKNOWN and p.carrier_msg_id is None \
                        and p.carrier in (None, h.carrier):
                    choice = (k, e)
                    break
            if choice is None:  # no longer unknown: not adopted blindly
                self._unmatched(batch, h, now)
                continue
            k, e = choice
            adopt = _AdoptPart(e.part, h.carrier, h.receipt.message_id, now)
            new = adopt(w.rec)
            assert new is not None  # the checks above are its own
            w.rec = new
            w.fns.append(adopt)
            taken.add(k)
            adopted[(h.carrier, key)] = (w, e.part)
            batch.put_carrier_id(h.carrier, key, mid, e.part, now)
            batch.delete_unknown_part(h.carrier, dest, e)
            n0 = len(batch.ops)
            self._matched(batch, h, w, e.part, now=now, phones=phones)
            _mark_reconciled(batch, n0)
            self._n["reconciled"] += 1
            self._n["receipts"] += 1

    def _unmatched(self, batch: WriteBatch, h: _Held, now: float) -> None:
        r = h.receipt
        self._n["unmatched"] += 1
        self._n["receipts"] += 1
        batch.append_event(receipt_event(now, None, self._phone(h.inbound.pdu), None, ReceiptData(
            carrier=h.carrier, carrier_message_id=r.message_id, stat=r.stat or r.state.value,
            err=r.err, done_at=self._epoch(r.done_date))))

    def _matched(self, batch: WriteBatch, h: _Held, w: _Work, part: int, *, now: float,
                 phones: set[str]) -> None:
        # Runs once per matched receipt on the trio thread: attribute reads are kept in
        # locals and the event helpers (``receipt_event``, ``_epoch``) are inlined.
        r = h.receipt
        stat = (r.stat or r.state.value).upper()
        rec = w.rec
        p = rec.parts[part]
        p_status = p.status
        self._by_stat[stat] += 1
        if (p_status in RECEIPT_FINAL and p_status != UNKNOWN_RECEIPT) \
                or (p.receipt_stat == stat and (r.intermediate or not r.final)):
            self._n["duplicates"] += 1
            return
        carrier = h.carrier
        status = None if r.intermediate else PART_STATUS.get(r.state)
        cls = None
        error_class = None
        if status is not None and status != DELIVERED:
            cfg = self._cfg.get(carrier)
            nec = (r.network_type, r.error_code) if r.network_type is not None \
                and r.error_code is not None else None
            got = classify_delivery_error(stat, r.err, nec,
                                          cfg.error_codes if cfg is not None else None)
            # (a config built in code may hold plain strings: normalise to the enum)
            if got is not None:
                cls = ErrorClass(got)
                error_class = cls.value
        done = r.done_date
        if done is None:
            done_at = now
        else:
            epoch = self._epochs.get(done)
            done_at = (epoch if epoch is not None else self._epoch(done)) or now
        # Receipt dates are the SMSC's clock (often local time, no zone): for ordering the
        # recipient's history we use our own receive time.
        at = now
        if status is not None and p.submitted_at is not None:
            took = now - p.submitted_at
            self._latencies.append((carrier, took if took > 0.0 else 0.0))
        err = r.err
        change = (part, status, stat, err, done_at, error_class, now)
        applied = _apply_receipt(rec, change)
        if applied is None:  # pragma: no cover - the checks above are the same
            return
        w.rec, new_status = applied
        w.fns.append(change)
        old_status = rollup(rec.parts) or rec.status
        meta = metadata_raw(rec.metadata) if rec.metadata else None
        rid = rec.id
        to = rec.to
        # ``receipt_event(...)`` inlined: the same Event and payload bytes.
        batch.append_event(Event(0, now, RECEIPT, rid, to, status or p_status, _encode_payload(
            ReceiptData(carrier=carrier, carrier_message_id=r.message_id, stat=stat, err=err,
                        part=part + 1, error_class=error_class, done_at=done_at,
                        metadata=meta))))
        if new_status is not None and new_status != old_status:
            if meta is None:
                # Without metadata the payload depends on these only: encoded once.
                key = (part, stat, rec.kind, rec.campaign_id, rec.flow_id, carrier)
                data = self._status_data.get(key)
                if data is None:
                    if len(self._status_data) >= 4096:
                        self._status_data.clear()
                    data = self._status_data[key] = encode_data(StatusData(
                        detail=f"part {part + 1}: {stat}", kind=rec.kind,
                        campaign_id=rec.campaign_id, flow_id=rec.flow_id, carrier=carrier,
                        part=part + 1))
                batch.append_event(Event(0, now, MESSAGE_STATUS, rid, to, new_status, data))
            else:
                batch.append_event(status_event(now, rid, to, new_status, StatusData(
                    detail=f"part {part + 1}: {stat}", kind=rec.kind,
                    campaign_id=rec.campaign_id, flow_id=rec.flow_id, carrier=carrier,
                    part=part + 1, metadata=meta)))
        if cls is None and status != DELIVERED:
            return
        rc = self._recipients
        if cls is not None:
            self._by_class[cls.value] += 1
            batch.add_error(rec.to, ErrorEntry(
                at=at, error_class=cls.value, code=r.err, carrier=h.carrier, message_id=rec.id,
                stat=stat, permanent=cls is ErrorClass.PERMANENT))
            if rc.is_valid(rec.to):
                rc.update(rec.to, _RecordError(cls, at), batch)
                phones.add(rec.to)
        elif status == DELIVERED and self._policy.error_segment.clear_on_delivery:
            cached = rc.get(rec.to)
            if cached is not None and (cached.errors.last_temp_error_at is not None
                                       or cached.errors.counts):
                rc.update(rec.to, _RecordDelivered(at), batch)
                phones.add(rec.to)

    # -- MO -----------------------------------------------------------------------------

    def _reassembler(self, carrier: str) -> Reassembler:
        r = self._reassemblers.get(carrier)
        if r is None:
            cfg = self._cfg.get(carrier)
            dcs0 = cfg.encoding.dcs0 if cfg is not None else "gsm"
            r = self._reassemblers[carrier] = Reassembler(self._ttl, dcs0=dcs0)
        return r

    @staticmethod
    def _phone(pdu: P.DeliverSm | P.DataSm) -> str:
        addr = pdu.source_addr.strip()
        if addr.startswith("+"):
            return addr
        if addr.startswith("00") and addr[2:].isdigit():
            return "+" + addr[2:]
        if addr.isdigit():
            # SMSCs send the handset's number international without '+' (TON 1), and
            # in practice often with TON 0 too.
            return "+" + addr
        return addr

    def _mo_key(self, inb: Inbound, carrier: str) -> _MoKey:
        """What makes two deliveries the same MO (or fragment): everything the handset
        sent, not the SMSC's per-session sequence number."""
        pdu = inb.pdu
        short = b"" if isinstance(pdu, P.DataSm) else bytes(pdu.short_message)
        payload = P.message_payload(pdu)
        return (carrier, pdu.source_addr, pdu.destination_addr, int(pdu.data_coding),
                int(pdu.esm_class) & 0x40, short, bytes(payload) if payload else b"",
                P.sar_info(pdu))

    def _is_duplicate_mo(self, key: _MoKey, now: float) -> bool:
        sender = (key[0], key[1])
        latest = self._batch_mo.get(sender)
        if latest is not None:  # the sender's latest MO is in this batch
            return key in latest
        seen = self._recent_mo.get(sender)
        return seen is not None and key in seen[0] and now - seen[1] <= self._dedup_s

    def _remember_mo(self, now: float) -> None:
        """After a successful commit: the batch's MO are the senders' latest; old ones go."""
        recent = self._recent_mo
        for sender, keys in self._batch_mo.items():
            recent.pop(sender, None)  # re-insert: the dict stays in time order
            recent[sender] = (keys, now)
        self._batch_mo = {}
        limit = now - self._dedup_s
        while recent:
            sender = next(iter(recent))
            if recent[sender][1] >= limit:
                break
            del recent[sender]

    def _mo(self, batch: WriteBatch, inb: Inbound, carrier: str, *, now: float,
            acks: list[Inbound], phones: set[str]) -> None:
        pdu = inb.pdu
        cfg = self._cfg.get(carrier)
        phone = self._phone(pdu)
        key = self._mo_key(inb, carrier)
        if self._is_duplicate_mo(key, now):
            # A re-sent copy of what is committed (or about to be, in this batch): ack it
            # with the batch, change nothing.
            self._n["mo_duplicates"] += 1
            acks.append(inb)
            return
        if isinstance(pdu, P.DataSm):
            short, payload = b"", P.message_payload(pdu)
        else:
            short, payload = pdu.short_message, P.message_payload(pdu)
        try:
            frag = parse_mo(short, int(pdu.esm_class), pdu.data_coding,
                            packed=cfg is not None and cfg.encoding.gsm_packing == "packed",
                            dcs0=cfg.encoding.dcs0 if cfg is not None else "gsm",
                            sar=P.sar_info(pdu), message_payload=payload)
        except (UdhError, UnsupportedDataCoding) as e:
            log.info("inbound: MO from carrier %s not readable as text: %s", carrier, e)
            batch.append_event(mo_event(now, phone, MoData(carrier=carrier,
                                                           to=pdu.destination_addr, text="")))
            self._n["mo"] += 1
            acks.append(inb)
            return
        text = self._reassembler(carrier).add(phone, frag, now=now)
        c = frag.concat
        if text is None:
            if c is not None:
                held = self._fragments.setdefault((carrier, phone, c.ref, c.total), {})
                old = held.get(c.seq)
                if old is not None:
                    # A re-sent copy (the SMSC timed the first one out): only the newest
                    # sequence number is still answerable; the old ack is harmless.
                    acks.append(old[0])
                held[c.seq] = (inb, old[1] if old is not None else now)
            else:  # cannot happen (a single part is complete); never leave it unacked
                acks.append(inb)
            return
        keys = {key}
        if c is not None and c.total > 1:
            for i, _ in self._fragments.pop((carrier, phone, c.ref, c.total), {}).values():
                acks.append(i)
                # a late copy of a fragment of a completed MO must not start a new one
                keys.add(self._mo_key(i, carrier))
        acks.append(inb)
        self._batch_mo[(key[0], key[1])] = frozenset(keys)
        self._handle_text(batch, carrier, phone, to=pdu.destination_addr, text=text, now=now,
                          phones=phones)

    def _expire_fragments(self, batch: WriteBatch, now: float, acks: list[Inbound]) -> None:
        # Fragments are held unacked only briefly: SMSCs re-send a deliver_sm left
        # unanswered past their response timeout (often 10-30 s), so holding longer would
        # only make them repeat it. A straggler is acked after ``fragment_hold_s``; its
        # text waits in memory for the rest (lost on a crash: the incomplete-MO gap).
        limit = now - self._hold
        for held in self._fragments.values():
            for inb, since in held.values():
                if since <= limit and not inb.acked:
                    acks.append(inb)
        for carrier, r in self._reassemblers.items():
            for x in r.expire(now):
                copies = [i for i, _ in self._fragments.pop(
                    (carrier, x.source, x.ref, x.total), {}).values()]
                acks.extend(copies)
                self._n["mo_incomplete"] += 1
                self._n["mo"] += 1
                batch.append_event(mo_event(now, x.source, MoData(
                    carrier=carrier, to=copies[0].pdu.destination_addr if copies else "",
                    text=x.partial_text, keyword_kind="incomplete")))

    def _handle_text(self, batch: WriteBatch, carrier: str, phone: str, *, to: str, text: str,
                     now: float, phones: set[str]) -> None:
        self._n["mo"] += 1
        rc = self._recipients
        policy = self._policy
        if not rc.is_valid(phone):
            self._by_keyword["none"] += 1
            batch.append_event(mo_event(now, phone, MoData(carrier=carrier, to=to, text=text)))
            return
        facts = rc.facts(phone)
        prev = rc.get(phone)
        country = facts.number.region if facts.number is not None else ""
        match = classify(text, country, self._keyword_sets, policy)
        now_dt = datetime.fromtimestamp(now, UTC)
        outcome = handle_mo(match, facts, policy, now_dt)
        self._by_keyword[match.kind.value] += 1
        new_facts = apply_mo(facts, outcome, now_dt) if outcome.change is not \
            ConsentChange.NONE else None
        keyword = None
        if outcome.record is not None:
            keyword = KeywordEntry(at=now, keyword=outcome.record.keyword,
                                   kind=outcome.record.kind.value,
                                   language=outcome.record.language)
        if new_facts is not None or keyword is not None:
            rc.update(phone, _ApplyMo(new_facts, keyword, now), batch,
                      facts=new_facts)
            phones.add(phone)
        if new_facts is not None and (new_facts.consent is not facts.consent
                                      or new_facts.double_opt_in is not facts.double_opt_in):
            batch.append_event(consent_event(now, phone, new_facts.consent.value, ConsentData(
                action=_CONSENT_ACTION.get(outcome.change, outcome.change.value),
                source="keyword", previous=facts.consent.value,
                double_opt_in=new_facts.double_opt_in.value)))
        reply_id: str | None = None
        if outcome.reply is not None and outcome.record is not None \
                and self._repeated_keyword(prev, outcome.record.keyword,
                                           outcome.record.kind.value, now):
            # The same keyword again within the window: most likely the SMSC re-sending
            # an MO whose ack was lost (crash between commit and ack); one reply is enough.
            self._n["replies_suppressed"] += 1
        elif outcome.reply is not None and outcome.reply_kind is not None \
                and self._accepter is not None:
            results = self._accepter.build_replies(batch, [ReplyRequest(
                phone=phone, text=outcome.reply, reply_to=outcome.reply_kind,
                carrier=carrier if carrier in self._cfg else None, sender=to or None)], now)
            if results:
                reply_id = getattr(results[0], "id", None)
                self._n["replies"] += 1
                phones.add(phone)
        batch.append_event(mo_event(now, phone, MoData(
            carrier=carrier, to=to, text=text, keyword=match.keyword,
            keyword_kind=match.kind.value,
            consent_change=outcome.change.value if outcome.change is not ConsentChange.NONE
            else None, reply_message_id=reply_id)))

    def _repeated_keyword(self, rec: RecipientRecord | None, keyword: str, kind: str,
                          now: float) -> bool:
        """Whether the recipient's latest keyword is ``keyword``/``kind``, within the window."""
        if rec is None or not rec.keywords:
            return False
        last = max(rec.keywords, key=lambda k: k.at)
        return last.keyword == keyword and last.kind == kind and now - last.at <= self._dedup_s

    # -- helpers ------------------------------------------------------------------------

    def _carrier(self, inb: Inbound) -> str:
        name = getattr(inb, "carrier", None)
        if isinstance(name, str):
            return name
        bind = inb.bind
        hit = self._carrier_of_bind.get(bind)
        if hit is None:
            # Bind names are "<carrier>#<n>[tx|rx]" (gateway.carriers).
            hit = bind.rsplit("#", 1)[0] if "#" in bind else bind
            if hit not in self._cfg and len(self._cfg) == 1:
                hit = next(iter(self._cfg))
            self._carrier_of_bind[bind] = hit
        return hit

    def statistics(self) -> InboundStats:
        """A snapshot (read at scrape time)."""
        n = self._n
        return InboundStats(
            batches=n["batches"], receipts=n["receipts"],
            receipts_by_stat=dict(self._by_stat), errors_by_class=dict(self._by_class),
            unmatched=n["unmatched"], duplicates=n["duplicates"], deferred=len(self._held),
            mo=n["mo"], mo_by_keyword=dict(self._by_keyword),
            mo_fragments_pending=sum(1 for v in self._fragments.values()
                                     for i, _ in v.values() if not i.acked),
            mo_incomplete=n["mo_incomplete"], replies=n["replies"],
            commit_failures=n["commit_failures"], acked=n["acked"],
            mo_duplicates=n["mo_duplicates"], replies_suppressed=n["replies_suppressed"],
            reconciled=n["reconciled"], reconcile_ambiguous=n["reconcile_ambiguous"],
            ack_latency_buckets=tuple(zip((*ACK_LATENCY_BUCKETS, float("inf")),
                                          itertools.accumulate(self._ack_counts), strict=True)),
            ack_latency_sum=self._ack_seconds, ack_latency_count=sum(self._ack_counts))
