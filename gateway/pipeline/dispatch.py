"""The dispatcher: the only consumer of the outbox (docs/pipeline.md "Dispatch").

Two tasks and one watcher per carrier, in the dispatcher's nursery:

* the **feed** reads due outbox entries in batches (``due_outbox``), re-evaluates the
  scheduled ones through the accepter, routes each message (longest prefix, failover to
  the next carrier with a live bind), plans its parts for that carrier and builds the
  ``submit_sm`` PDUs, then commits "parts ``sending``" for the whole batch in ONE write
  and only then hands the parts to the carriers (``Carrier.enqueue(SubmitBatch)``).
  New ``queued`` records come with the accepter's hand-off (``accepted``: the record as
  committed and its plan, bounded, taken at the first sight of the entry); anything not
  in it (restart, scheduled, retries, parked, beyond the bound) is read from the store;
* the **committer** collects the outcomes (``SubmitBatch.on_outcome`` appends to a list,
  synchronously in the bind's reader) and commits whatever arrived meanwhile in one
  write: carrier id mapping, part statuses, message roll-up, history, ``message.status``
  events, outbox removal or retry;
* **watchers** notice a carrier getting a live bind again and wake the feed, which puts
  the messages parked for it back to their due time (``_unpark_round``).

Outbox entries of in-flight messages are *leased*: the same write that marks the parts
``sending`` moves the entry to ``now + lease_s``, so a batch read never sees messages
already taken (no re-scan of a growing in-flight set), and after a crash every message
that was in flight is still in the outbox: at start-up its ``sending`` parts become
``unknown`` (never a blind resend: "never sent twice because of our own failure") or
``pending`` again with ``[pipeline] unknown_outcome = "retry"``. A part that becomes
``unknown`` (there, or no submit_sm_resp) is indexed in ``unknown_parts`` by carrier,
destination and sending time, for the inbound processor's receipt reconciliation.

Waiting without spinning: with nothing due, the feed sleeps until the next due time or a
``wakeup()`` (the accepter calls it after each commit). A message whose route has no live
carrier is *parked* ONCE: its entry moves out of the due range to the park key of the
carriers it waits for (``park_due``: ``PARK_BASE_MS`` + a 40-bit hash of that carrier
tuple, far beyond any real due time; the value keeps the due time it returns to) and
stays there, untouched and not tracked per message in memory (a count per route,
``_ParkState``), until one of those carriers is live again; then bounded chunks of that
key range go back to their due times, one chunk per feed round (``_unpark_round``). At
start-up the park range is counted again (``_load_parked``), so a restart finds them.

Retries: retryable rejections (throttled, temporary, session; ambiguous up to
``ambiguous_retries`` attempts) put only the failed parts back, with capped exponential
backoff (``retry_backoff_min_s`` doubling to ``retry_backoff_max_s``) until
``retry_max_age_s`` after acceptance, then the message fails (``retries_exhausted``).
Parts the carrier never saw (NOT_SENT: shut down, withdrawn) go back unchanged.

The inbound processor uses :meth:`Dispatcher.pending_carrier_id` and
:meth:`Dispatcher.wait_committed` for receipts that arrive between a submit_sm_resp and
the commit of its carrier id.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import struct
import time
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from typing import Any, Final, Protocol, TypeAlias

import msgspec
import trio

from gateway.api_types import StoreFull, StoreUnavailable
from gateway.bind import OutcomeKind, SubmitBatch, SubmitOutcome
from gateway.config import GatewayConfig
from gateway.encoding import EncodingOptions, PlanRejected, SegmentPlan, plan
from gateway.pipeline.accept import Handed, ReevalOutcome
from gateway.pipeline.events import (
    MESSAGE_STATUS,
    StatusData,
    encode_data,
    metadata_raw,
    status_event,
)
from gateway.pipeline.routing import NO_ROUTE, Router
from gateway.pipeline.submit_pdus import SubmitBuilder
from gateway.receipts import normalise_message_id
from gateway.smpp import pdu as P
from gateway.smpp.constants import CommandStatus, RetryClass, retry_class
from gateway.store import (
    Event,
    HistoryEntry,
    Lease,
    MessageRecord,
    OutboxEntry,
    PartRecord,
    Store,
    StoreError,
    WriteBatch,
)
from gateway.store.batch import DELETE, PUT
from gateway.store.kv import Db, KvTxn
from gateway.store.records import UnknownPart
from gateway.store.unknown_parts import dest_of

__all__ = [
    "MESSAGE_FINAL",
    "PART_FINAL",
    "CarrierLike",
    "Dispatcher",
    "DispatcherStats",
    "Reevaluator",
    "rollup",
    "rollup_one",
]

log = logging.getLogger("smsgw.dispatch")

# Part statuses (docs/pipeline.md "Statuses").
PENDING: Final = "pending"
SENDING: Final = "sending"
ACCEPTED: Final = "accepted"
FAILED: Final = "failed"
UNKNOWN: Final = "unknown"
DELIVERED: Final = "delivered"
UNDELIVERED: Final = "undelivered"
EXPIRED: Final = "expired"
REJECTED: Final = "rejected"
DELETED: Final = "deleted"
UNKNOWN_RECEIPT: Final = "unknown_receipt"
# Message statuses beyond those.
QUEUED: Final = "queued"
SCHEDULED: Final = "scheduled"
SUBMITTED: Final = "submitted"
PARTIALLY_DELIVERED: Final = "partially_delivered"

#: A receipt said how it ended.
RECEIPT_FINAL: Final = frozenset({DELIVERED, UNDELIVERED, EXPIRED, REJECTED, DELETED,
                                  UNKNOWN_RECEIPT})
#: Nothing more will change a part by itself (a late receipt may still refine unknowns).
PART_FINAL: Final = RECEIPT_FINAL | {FAILED, UNKNOWN}
#: Message statuses with no outbox entry and no submit to come.
MESSAGE_FINAL: Final = frozenset({SUBMITTED, DELIVERED, PARTIALLY_DELIVERED, UNDELIVERED,
                                  EXPIRED, FAILED, REJECTED, UNKNOWN})

# Reason codes of dispatch failures (message ``reason``; stable strings).
REASON_CARRIER_REJECTED: Final = "carrier_rejected"
REASON_RETRIES_EXHAUSTED: Final = "retries_exhausted"
REASON_NO_RESPONSE: Final = "no_response"

#: A NOT_SENT part (the carrier is going away) comes back after this pause.
PARK_MIN_S: Final = 0.5
#: Parked outbox entries live at ``PARK_BASE_MS + tag`` ms (``park_due``): year ~19800,
#: beyond any real due time (``now + _FAR_FUTURE_S`` included), below 2**50 ms so that
#: the float seconds of ``OutboxEntry.due`` give the exact key back. ``tag`` is a 40-bit
#: hash of the carriers the message waits for (``park_tag``), so one route's parked
#: entries are one contiguous key range (then by message id).
PARK_BASE_MS: Final = 1 << 49
_PARK_TAG_BYTES: Final = 5
#: Entries put back to due per feed round while unparking (one read txn, one commit).
UNPARK_CHUNK: Final = 1000
#: Parked entries counted per read transaction at start-up (``_load_parked``).
_PARK_CENSUS_CHUNK: Final = 10_000
IDLE_MAX_S: Final = 60.0  # re-read the outbox at least this often (wall-clock steps)
COMMIT_RETRY_MIN_S: Final = 0.1
COMMIT_RETRY_MAX_S: Final = 5.0
_FAR_FUTURE_S: Final = 100 * 365 * 86400.0
#: Parts handed to a carrier and not answered yet: what its binds can put on the wire now
#: (``window * binds``) plus a headroom of this many windows. The ``sending`` mark is
#: committed before the hand-over, so whatever waits in the carrier's queue when the
#: process dies becomes ``unknown`` without ever having been sent: this cap bounds that
#: exposure to the headroom (plus the window on the wire, legitimately unknown). The
#: dispatcher's commits are urgent in the store (ahead of accept groups), so a small
#: headroom keeps the binds fed (was 4 windows; tests/e2e/test_e2e.py -k sigkill,
#: tests/reliability/test_crash.py, docs/reliability.md).
INFLIGHT_HEADROOM: Final = 0.5
#: The feed refills when this fraction of a window (per bind) is free again.
REFILL_AT: Final = 0.25
_RETRYABLE: Final = frozenset({RetryClass.THROTTLED, RetryClass.TEMPORARY, RetryClass.SESSION,
                               RetryClass.BIND, RetryClass.OK})

#: The accepter's hand-off (``Dispatcher.accepted``) holds at most this many records: a
#: backlog beyond it is read from the store as before (a campaign of 1,000,000 queued
#: messages must not stay in memory; ~0.75-1 KB per entry with its plan, so <= ~20 MB).
HANDOFF_MAX: Final = 20_000
#: Hand-off entries older than this are dropped when it is full: nothing should be left
#: unclaimed that long (each is taken at the dispatcher's first sight of its entry).
HANDOFF_STALE_S: Final = 60.0
#: Outbox entries keep their due time in ms: a hand-off record matches its entry when
#: the record's ``outbox_due`` is within this of the entry's.
_DUE_EPS: Final = 0.001

_replace = msgspec.structs.replace
_ACCEPTED: Final = OutcomeKind.ACCEPTED
_REJECTED: Final = OutcomeKind.REJECTED
_KIND_VALUE: Final = {k: k.value for k in OutcomeKind}
_LEASE: Final = msgspec.msgpack.Decoder(Lease)
_SENDING_ONLY: Final = frozenset({SENDING})
_IN_FLIGHT: Final = frozenset({PENDING, SENDING})
#: Plans kept per carrier (``Dispatcher._plan``): distinct texts of messages read back
#: from the store; at ~0.5 KB each, <= ~1 MB per carrier.
_PLANS_MAX: Final = 2048
#: Distinct ``message.status`` payloads of submitted messages kept encoded (per kind,
#: campaign, flow and carrier: a handful in practice).
_STATUS_DATA_MAX: Final = 4096
#: Counters ``_complete`` moves (taken back when a batch is decided again).
_COMPLETE_COUNTERS: Final = ("submitted", "retries", "failed", "unknown")
#: While receipts wait for their commit (``ReceiptGate``), a dispatch round takes at most
#: this many entries, after waiting (at most ``RECEIPT_YIELD_MAX_S``) for that batch to be
#: acked: the SMSC sends the next receipts only when those are acked (its deliver_sm
#: window), and a full round (~400 entries, ~10-15 ms of the trio thread in one step, and
#: its lease commit) held them for as long, every round, while a backlog was submitted.
RECEIPT_SHARE_ROUND: Final = 256
RECEIPT_YIELD_MAX_S: Final = 0.02


class ReceiptGate:
    """Receipts the SMSC waits for: the inbound processor ``enter``s with each batch and
    ``leave``s once it is acked; the dispatcher's feed yields to them (``wait``) before
    each round and keeps its rounds short while they come."""

    __slots__ = ("_idle", "busy")

    def __init__(self) -> None:
        self.busy = 0
        self._idle: trio.Event | None = None

    def enter(self) -> None:
        """A batch of deliveries is being built and committed."""
        self.busy += 1

    def leave(self) -> None:
        """That batch is acked (or failed)."""
        self.busy -= 1
        if not self.busy and self._idle is not None:
            self._idle.set()
            self._idle = None

    async def wait(self, limit: float) -> None:
        """Until no batch is in progress, at most ``limit`` seconds."""
        if self.busy:
            if self._idle is None:
                self._idle = trio.Event()
            with trio.move_on_after(limit):
                await self._idle.wait()


def rollup(parts: Sequence[PartRecord]) -> str | None:
    """A message's status from its parts; None while a part still waits to be submitted.

    While some parts await a receipt: ``failed`` / ``unknown`` if a part failed or got no
    answer, else ``submitted``. When every part is final: all delivered -> ``delivered``;
    some -> ``partially_delivered``; none -> ``failed`` (a submit failed), else
    ``undelivered`` (UNDELIV, REJECTD, DELETED), else ``expired``, else ``unknown``.
    """
    if len(parts) == 1:  # most messages: the roll-up of one status, remembered
        return rollup_one(parts[0].status)
    if not parts:
        return None
    return _rollup([p.status for p in parts])


#: ``_rollup([status])`` by status (``rollup_one``): statuses are a handful of constants,
#: but a stored record may hold any string, so the table is bounded.
_ROLLUP_ONE: dict[str, str | None] = {}


def rollup_one(status: str) -> str | None:
    """:func:`rollup` of a message of one part whose status is ``status``."""
    try:
        return _ROLLUP_ONE[status]
    except KeyError:
        pass
    st = _rollup([status])
    if len(_ROLLUP_ONE) < 64:
        _ROLLUP_ONE[status] = st
    return st


def _rollup(statuses: list[str]) -> str | None:
    """:func:`rollup` of the part statuses (not empty)."""
    if PENDING in statuses or SENDING in statuses:
        return None
    if ACCEPTED in statuses:
        if FAILED in statuses:
            return FAILED
        if UNKNOWN in statuses:
            return UNKNOWN
        return SUBMITTED
    delivered = statuses.count(DELIVERED)
    if delivered == len(statuses):
        return DELIVERED
    if delivered:
        return PARTIALLY_DELIVERED
    if FAILED in statuses:
        return FAILED
    if UNDELIVERED in statuses or REJECTED in statuses or DELETED in statuses:
        return UNDELIVERED
    if EXPIRED in statuses:
        return EXPIRED
    return UNKNOWN


def status_name(status: int) -> str:
    """``ESME_RTHROTTLED``-style name of a command_status (hex for unknown codes)."""
    try:
        return f"ESME_{CommandStatus(status).name}"
    except ValueError:
        return f"0x{status:08X}"


# --- what the dispatcher needs of its neighbours -----------------------------------------


class CarrierLike(Protocol):
    """What the dispatcher uses of ``gateway.carriers.Carrier``."""

    @property
    def can_submit(self) -> bool: ...

    async def enqueue(self, batch: SubmitBatch) -> None: ...

    async def wait_until(self, predicate: Callable[[Any], bool]) -> None: ...


class Reevaluator(Protocol):
    """What the dispatcher uses of ``gateway.pipeline.accept.Accepter``.

    ``reevaluate`` decides due scheduled messages again and commits what changed
    (deferred again: new outbox due; rejected: out of the outbox; send: ``queued`` plus
    the rules' marks), one ``ReevalOutcome`` per record in order. ``outbox_removed``
    keeps the accepter's backpressure depth current.
    """

    async def reevaluate(self, records: Sequence[MessageRecord],
                         now: float | None = None) -> Sequence[ReevalOutcome]: ...

    def outbox_removed(self, n: int = 1) -> None: ...


class DispatcherStats(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot for metrics (``Dispatcher.statistics()``)."""

    #: Messages handed to carriers whose outcomes are not all committed.
    inflight: int
    inflight_parts: int
    #: Parts accepted by a carrier (submit_sm_resp OK).
    submitted: int
    retries: int
    failed: int
    unknown: int
    no_route: int
    parked: int
    reevaluated: int
    dispatched: int
    commits: int
    commit_failures: int
    outbox_depth: int
    oldest_due: float | None
    by_carrier: dict[str, dict[str, int]]
    rejected_by_status: dict[str, dict[str, int]]
    #: Fresh outbox entries dispatched from the accepter's hand-off / read from the store.
    handoff_used: int = 0
    handoff_missed: int = 0
    #: Parked messages per carrier tuple they wait for ("a,b"; ``parked`` is the sum).
    parked_by_route: dict[str, int] = msgspec.field(default_factory=dict)


# --- in-memory state of a message in flight ----------------------------------------------


class _Flight:
    __slots__ = ("applied", "carrier", "fast", "lease", "lease_due", "mark_at", "message_id",
                 "outcomes", "parts", "record", "route", "sent_at")

    def __init__(self, record: MessageRecord, carrier: str, parts: list[int],
                 lease_due: float, now: float) -> None:
        self.message_id = record.id
        self.record = record
        self.carrier = carrier
        self.parts = parts
        self.lease_due = lease_due
        self.sent_at = now
        self.outcomes: dict[int, SubmitOutcome] = {}
        self.applied: set[int] = set()
        #: ``record`` is the stored record as of the dispatch commit (no re-plan of the
        #: parts, not scheduled): the outcome commit may decide from it instead of
        #: re-reading the store, checking that the stored ``updated_at`` is still
        #: ``mark_at``. See ``_commit_outcomes``.
        self.fast = False
        self.mark_at: float | None = now
        #: The in-flight mark when it lives in the outbox entry only (``Lease``; the
        #: record is not rewritten at dispatch): the outcome commit then also sets the
        #: record's ``carrier`` and ``route``.
        self.lease: Lease | None = None
        self.route: str | None = None


#: (flight, part, outcome, the carrier message id as normalised for the carrier's
#: ``message_id_format`` when accepted, else None): computed once, in ``_enqueue``'s
#: ``on_outcome``.
_Outcome: TypeAlias = tuple[_Flight, int, SubmitOutcome, str | None]


class _StaleRecord(Exception):
    """The stored record changed since the dispatcher's copy: decide again from a read."""


class _MarkSending:
    """In the write txn: parts -> sending on ``carrier``, outbox lease (pure)."""

    __slots__ = ("carrier", "idx", "lease", "new_parts", "now", "route")

    def __init__(self, idx: list[int], carrier: str, route: str | None, *, lease: float,
                 now: float, new_parts: tuple[PartRecord, ...] | None) -> None:
        self.idx = idx
        self.carrier = carrier
        self.route = route
        self.lease = lease
        self.now = now
        self.new_parts = new_parts

    def __call__(self, old: MessageRecord | None) -> MessageRecord | None:
        if old is None:
            return None
        parts = list(self.new_parts if self.new_parts is not None else old.parts)
        for i in self.idx:
            if i < len(parts) and parts[i].status == PENDING:
                parts[i] = _replace(parts[i], status=SENDING, carrier=self.carrier)
        status = QUEUED if old.status == SCHEDULED else old.status
        return _replace(old, parts=tuple(parts), carrier=self.carrier, route=self.route,
                        outbox_due=self.lease, status=status, updated_at=self.now)


#: ``_ApplyAccepted.route`` when the record's ``carrier``/``route`` stay as they are.
_KEEP: Final = "\0keep"


class _ApplyAccepted:
    """In the write txn: every part of a flight accepted by the carrier (pure).

    The same record as ``_Apply(changes, fields, history, roll=True, expect=expect)``
    with, per ``(part, carrier message id)`` of ``accepted``, the change
    ``_accepted_change`` makes, and ``fields`` = ``updated_at``, ``outbox_due = None``
    (plus ``carrier`` and ``route`` unless ``route`` is ``_KEEP``), built without the
    per-part change dicts and keyword unpacking (tests/pipeline/test_dispatch_fast.py).
    """

    __slots__ = ("accepted", "carrier", "expect", "history", "now", "route", "status")

    def __init__(self, accepted: list[tuple[int, str]], carrier: str, route: str | None,
                 now: float, history: HistoryEntry | None, *,
                 expect: tuple[float | None] | None, status: str | None = None) -> None:
        self.accepted = accepted
        self.carrier = carrier
        self.route = route
        self.now = now
        self.history = history
        self.expect = expect
        #: The roll-up the dispatcher decided from its copy of the record: with
        #: ``expect`` checked, the stored record is that copy, so the writer need not
        #: roll the parts up again.
        self.status = status

    def __call__(self, old: MessageRecord | None) -> MessageRecord | None:
        if old is None:
            return None
        expect = self.expect
        if expect is not None and old.updated_at != expect[0]:
            raise _StaleRecord(old.id)
        parts = list(old.parts)
        n = len(parts)
        carrier = self.carrier
        now = self.now
        for i, mid in self.accepted:
            if i < n:
                p = parts[i]
                # A receipt got there first (or the part is final): keep its status.
                parts[i] = _replace(p, status=ACCEPTED if p.status in _IN_FLIGHT else p.status,
                                    carrier=carrier, carrier_msg_id=mid, submit_status=0,
                                    submitted_at=now)
        st = self.status
        if st is None or expect is None:
            st = (_rollup([p.status for p in parts]) if parts else None) or QUEUED
        history = old.history if self.history is None else (*old.history, self.history)
        keep = self.route == _KEEP
        return _replace(old, parts=tuple(parts), status=st, updated_at=now, outbox_due=None,
                        carrier=old.carrier if keep else carrier,
                        route=old.route if keep else self.route, history=history)


class _Apply:
    """In the write txn: part changes, message fields, history, roll-up (pure)."""

    __slots__ = ("expect", "fields", "guard", "history", "part_changes", "roll")
    expect: tuple[float | None] | None

    def __init__(self, part_changes: dict[int, dict[str, Any]], fields: dict[str, Any],
                 history: HistoryEntry | None, roll: bool, *,
                 guard: frozenset[str] = frozenset({PENDING, SENDING}),
                 expect: tuple[float | None] | None = None) -> None:
        self.part_changes = part_changes
        self.fields = fields
        self.history = history
        self.roll = roll
        self.guard = guard
        #: Decided from the dispatcher's copy: the record must still carry the
        #: ``updated_at`` of its ``sending`` mark, else the batch fails (``_StaleRecord``).
        self.expect = expect

    def __call__(self, old: MessageRecord | None) -> MessageRecord | None:
        if old is None:
            return None
        if self.expect is not None and old.updated_at != self.expect[0]:
            raise _StaleRecord(old.id)
        parts = list(old.parts)
        for i, ch in self.part_changes.items():
            if i >= len(parts):
                continue
            p = parts[i]
            if "status" in ch and p.status not in self.guard:
                # A receipt got there first (or the part is final): keep its status.
                parts[i] = _replace(p, **{k: v for k, v in ch.items() if k != "status"})
            else:
                parts[i] = _replace(p, **ch)
        fields = dict(self.fields)
        fields["parts"] = tuple(parts)
        if self.roll:
            st = rollup(parts)
            fields["status"] = QUEUED if st is None else st
        if self.history is not None:
            fields["history"] = (*old.history, self.history)
        return _replace(old, **fields)


# --- parking (docs/pipeline.md "Dispatch", docs/reliability.md) ---------------------------


class Parked(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """The value of a parked outbox entry (stored: only append fields, with defaults).

    The key is ``outbox_key(park_due(tag), message id)``; ``due`` is the due time the
    entry had (and the record's ``outbox_due`` still says), restored at unparking.
    """

    due: float


_PARKED: Final = msgspec.msgpack.Decoder(Parked)
_U64: Final = struct.Struct(">Q")


def park_tag(carriers: Sequence[str], prefix: str | None = None) -> int:
    """The 40-bit tag of the parking range of messages waiting for any of ``carriers``
    (stable across processes: blake2b of the names); with ``prefix`` (``route_sig``),
    of the messages that the route of that prefix sends to them (a range per route, so
    that a restart with that prefix's numbers routed otherwise puts them back). Two
    ranges with one tag (odds ~n**2 / 2**41) would share a range: unparked together,
    harmless."""
    name = "\x1f".join(carriers)
    if prefix is not None:
        name = f"{prefix}\x1e{name}"
    h = hashlib.blake2b(name.encode(), digest_size=_PARK_TAG_BYTES)
    return int.from_bytes(h.digest(), "big")


def route_sigs(prefixes: Iterable[str]) -> dict[str, str]:
    """Per route prefix, what decides which numbers its route gets: the prefix and the
    longer prefixes that take some of its numbers away (a parking range's ``park_tag``
    prefix: adding or removing such a route, or routing the prefix to other carriers,
    makes the ranges parked under the old routing unknown at start-up: routed again)."""
    ps = sorted(set(prefixes))
    out: dict[str, str] = {}
    for i, p in enumerate(ps):
        longer = [p]
        for j in range(i + 1, len(ps)):  # those starting with p follow it in order
            q = ps[j]
            if not q.startswith(p):
                break
            longer.append(q)
        out[p] = "\x1d".join(longer)
    return out


def park_due(tag: int) -> float:
    """The outbox due time (epoch seconds) of the parking range ``tag``."""
    return (PARK_BASE_MS + tag) / 1000


def is_parked_due(due: float) -> bool:
    """An outbox due time in the parking ranges (not a real due time)."""
    return due * 1000 >= PARK_BASE_MS


def parked_chunk(tx: KvTxn, tag: int, after: str | None, limit: int,
                 ) -> list[tuple[str, bytes]]:
    """(message id, value) of up to ``limit`` entries parked under ``tag``, in id order,
    after the id ``after`` (None: from the start of the range)."""
    prefix = _U64.pack(PARK_BASE_MS + tag)
    start = prefix if after is None else prefix + after.encode() + b"\0"
    out: list[tuple[str, bytes]] = []
    if limit <= 0:
        return out
    for key, value in tx.scan(Db.OUTBOX, start):
        if key[:8] != prefix:
            break
        out.append((bytes(key[8:]).decode(), bytes(value)))
        if len(out) >= limit:
            break
    return out


def park_census(tx: KvTxn, start: bytes | None, limit: int,
                ) -> tuple[dict[int, int], bytes | None]:
    """Parked entries per tag among the next ``limit`` keys of the parking ranges from
    ``start`` (None: their beginning); the key to resume at, None at the end."""
    counts: dict[int, int] = {}
    first = _U64.pack(PARK_BASE_MS) if start is None else start
    for n, (key, _) in enumerate(tx.scan(Db.OUTBOX, first)):
        if n >= limit:
            return counts, bytes(key)
        tag = _U64.unpack_from(key)[0] - PARK_BASE_MS
        counts[tag] = counts.get(tag, 0) + 1
    return counts, None


class _ParkState:
    """One parking range: the carriers its messages wait for, how many are parked, and
    where unparking stands. No per-message state."""

    __slots__ = ("carriers", "count", "cursor", "down", "unparking")

    def __init__(self, carriers: tuple[str, ...], *, down: bool = True,
                 unparking: bool = False) -> None:
        self.carriers = carriers
        self.count = 0
        #: None of ``carriers`` was live at the last look (or a park under a round whose
        #: snapshot had none live): the next look that finds one live starts unparking.
        self.down = down
        self.unparking = unparking
        #: The last message id put back in this unparking pass (the range is in id order:
        #: entries parked again meanwhile are behind it, never visited twice per pass).
        self.cursor: str | None = None


# --- the dispatcher ----------------------------------------------------------------------


class Dispatcher:
    """Outbox -> carriers -> outcomes -> store (see the module docstring).

    ``carriers`` maps carrier names to ``Carrier``s (a ``CarrierSet`` works too);
    ``accepter`` re-evaluates scheduled messages (``Reevaluator``); ``recipients`` (a
    ``RecipientCache``, optional) gives the destination country for national shift
    tables. ``clock`` returns epoch seconds (tests pass one driven by trio's clock).
    """

    def __init__(
        self,
        store: Store,
        config: GatewayConfig,
        carriers: Mapping[str, CarrierLike] | Any,
        router: Router,
        accepter: Reevaluator | None = None,
        *,
        clock: Callable[[], float] = time.time,
        recipients: Any = None,
        batch_size: int = 1000,
        lease_s: float = 3600.0,
        ambiguous_retries: int = 3,
        handoff_max: int = HANDOFF_MAX,
    ) -> None:
        self._store = store
        self._config = config
        self._pipe = config.pipeline
        mapping = getattr(carriers, "carriers", carriers)
        self._carriers: dict[str, CarrierLike] = dict(mapping)
        self._router = router
        #: ``route_sigs`` of the configured routes (a parking range's prefix part).
        self._route_sigs = route_sigs(r.prefix for r in config.routes)
        self._accepter = accepter
        self._clock = clock
        self._recipients = recipients
        self._batch_size = batch_size
        self._lease_s = lease_s
        self._ambiguous_retries = ambiguous_retries
        #: What ``_route_one`` needs of a carrier (encoding options, PDU builder), in one
        #: lookup.
        self._settings: dict[str, tuple[EncodingOptions, SubmitBuilder]] = {
            c.name: (c.encoding, SubmitBuilder(c)) for c in config.carriers}
        #: Plans without a concatenation reference, per carrier (``_plan``).
        self._plans: dict[str, dict[tuple[str, str | None, bool], SegmentPlan]] = {
            c.name: {} for c in config.carriers}
        self._id_format = {c.name: c.message_id_format for c in config.carriers}
        self._cap = {c.name: c.window * c.binds + max(1, int(INFLIGHT_HEADROOM * c.window))
                     * c.binds for c in config.carriers}
        self._refill_at = {c.name: max(1, int(REFILL_AT * c.window)) * c.binds
                           for c in config.carriers}
        self._room_waiting = False
        self._flights: dict[str, _Flight] = {}
        #: (flight, part, outcome, normalised carrier message id or None), in arrival order.
        self._outcomes: list[_Outcome] = []
        self._outcome_evt = trio.Event()
        self._committed_evt = trio.Event()
        self._idle_evt = trio.Event()
        self._wake = trio.Event()
        #: While the feed sleeps in ``_idle``: the event seq it read before its round
        #: (``_watch_events`` wakes it on a newer one); None while it works.
        self._idle_seq: int | None = None
        self._went_idle = trio.Event()
        self._uncommitted: dict[tuple[str, str], tuple[str, int]] = {}
        self._outstanding: dict[str, int] = defaultdict(int)
        #: Parking ranges by tag (``_ParkState``): counts, never message ids.
        self._parks: dict[int, _ParkState] = {}
        #: Messages parked by the dispatch round under way, per carrier tuple waited for.
        #: (route prefix or None, carriers waited for) -> count / tag (``_park``).
        self._park_pending: dict[tuple[str | None, tuple[str, ...]], int] = {}
        self._park_tags: dict[tuple[str | None, tuple[str, ...]], int] = {}
        #: Records the accepter handed over (``accepted``), by message id; each is taken
        #: (popped) at the first sight of its outbox entry, whatever is done with it.
        self._handoff: dict[str, Handed] = {}
        self._handoff_max = handoff_max
        #: Encoded ``message.status`` payloads of submitted messages (``_submitted_event``).
        self._status_data: dict[tuple[str, str | None, str | None, str], bytes] = {}
        self._stopping = False
        self._committing = False
        #: Receipts in progress (the inbound processor's ``ReceiptGate``), if any.
        self._receipts: ReceiptGate | None = None
        # Dispatch rounds under way: a round commits "sending" *before* its flights are
        # registered, so drain() must also wait for rounds, or a stop right after an
        # accept leaves committed-"sending" parts that were never handed to a bind (and
        # become "unknown" at the next start although nothing was sent).
        self._dispatching = 0
        # counters
        self._by_carrier: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self._rejected_by_status: dict[str, dict[str, int]] = defaultdict(
            lambda: defaultdict(int))
        self._n = dict.fromkeys(("submitted", "retries", "failed", "unknown", "no_route",
                                 "reevaluated", "dispatched", "commits", "commit_failures",
                                 "handoff_used", "handoff_missed"),
                                0)

    # -- the interface for the accepter, the inbound processor, metrics, app ------------

    def wakeup(self) -> None:
        """New work may be due (the accepter calls this after committing messages)."""
        self._wake.set()

    def accepted(self, items: Sequence[Handed]) -> None:
        """The accepter is about to commit these new ``queued`` records (and their outbox
        entries): keep them, so that ``_dispatch`` needs neither a store read nor a
        second ``plan`` for them.

        Called BEFORE the commit: once an entry is in the store the feed may read it at
        any moment, and a record handed over after that first sight could be taken for a
        later sight (a retry) with stale content. Each record is used at most once, at
        the dispatcher's first sight of its entry, and only while that entry is still the
        one accepted (no lease, same due time); anything else, and anything dropped here
        (full, no carrier can submit), is read from the store as before. Nothing but the
        dispatcher writes a ``queued`` record before its first dispatch (receipts need a
        committed carrier id, re-evaluation is for ``scheduled`` ones; there is no cancel
        API), so the record is the stored one. ``not_accepted`` takes back what a failed
        commit did not store.
        """
        if self._stopping or not items:
            return
        ho = self._handoff
        if not any(c.can_submit for c in self._carriers.values()):
            # Nothing will be dispatched soon (a carrier outage can last hours and a
            # campaign can queue a million messages): keep nothing in memory.
            ho.clear()
            return
        room = self._handoff_max - len(ho)
        if room < len(items) and ho:
            stale = self._clock() - HANDOFF_STALE_S
            old: list[str] = []
            for mid, h in ho.items():  # oldest first (insertion order)
                if h[0].created_at >= stale:
                    break
                old.append(mid)
            for mid in old:
                del ho[mid]
            room = self._handoff_max - len(ho)
        for h in items[:room] if room < len(items) else items:
            ho[h[0].id] = h

    def not_accepted(self, message_ids: Iterable[str]) -> None:
        """Take back records handed over with ``accepted`` whose commit failed."""
        ho = self._handoff
        if ho:
            for mid in message_ids:
                ho.pop(mid, None)

    def pending_carrier_id(self, carrier: str, keys: Iterable[str]) -> tuple[str, int] | None:
        """(message id, part) of a carrier id answered but not committed yet, or None."""
        for k in keys:
            hit = self._uncommitted.get((carrier, k))
            if hit is not None:
                return hit
        return None

    def in_flight(self, message_id: str) -> tuple[str, tuple[int, ...]] | None:
        """(carrier, part indexes) of a message whose parts are handed to a carrier and
        whose ``sending`` mark lives in its outbox entry only (the record still says
        ``pending`` for them); None otherwise. ``GET /v1/messages/{id}`` shows them as
        ``sending``."""
        fl = self._flights.get(message_id)
        if fl is None or fl.lease is None:
            return None
        return fl.carrier, tuple(i for i in fl.parts if i not in fl.applied)

    def share_with(self, gate: ReceiptGate) -> None:
        """Yield to the receipts ``gate`` tracks (the inbound processor registers it)."""
        self._receipts = gate

    def awaiting_response(self, carrier: str | None = None) -> int:
        """Parts handed to ``carrier`` (or any) with no outcome yet."""
        if carrier is None:
            return sum(self._outstanding.values())
        return self._outstanding.get(carrier, 0)

    def unanswered_dests(self) -> set[tuple[str, str]]:
        """``(carrier, destination)`` (the destination as
        ``gateway.store.unknown_parts.dest_of`` keys it) of every part handed to a carrier
        with no committed outcome yet: a receipt for such a destination may be that
        part's, so the inbound processor does not reconcile it with an ``unknown`` part.
        A scan of the flights (bounded by the in-flight cap), made only when a receipt no
        carrier id matched is about to be reconciled (at most once per inbound batch)."""
        return {(fl.carrier, dest_of(fl.record.to)) for fl in self._flights.values()
                if len(fl.outcomes) < len(fl.parts)}

    async def wait_committed(self) -> None:
        """Wait for the next commit of outcomes."""
        await self._committed_evt.wait()

    async def drain(self, grace: float) -> bool:
        """Stop taking outbox entries; wait (bounded) until every message taken has its
        outcomes committed. True when nothing is left in flight."""
        self._stopping = True
        self._handoff.clear()
        self._wake.set()
        with trio.move_on_after(grace):
            while self._flights or self._outcomes or self._committing or self._dispatching:
                await self._idle_evt.wait()
        return not self._flights and not self._dispatching

    async def flush(self) -> None:
        """Wait until every outcome received so far is committed."""
        while self._outcomes or self._committing:
            await self._committed_evt.wait()

    def statistics(self) -> DispatcherStats:
        """A snapshot (read at scrape time)."""
        oldest = self._store.outbox_oldest()
        n = self._n
        return DispatcherStats(
            inflight=len(self._flights),
            inflight_parts=self.awaiting_response(),
            submitted=n["submitted"], retries=n["retries"], failed=n["failed"],
            unknown=n["unknown"], no_route=n["no_route"],
            parked=sum(st.count for st in self._parks.values()),
            reevaluated=n["reevaluated"], dispatched=n["dispatched"], commits=n["commits"],
            commit_failures=n["commit_failures"],
            outbox_depth=self._store.outbox_depth(),
            oldest_due=None if oldest is None or is_parked_due(oldest.due) else oldest.due,
            by_carrier={c: dict(v) for c, v in self._by_carrier.items()},
            rejected_by_status={c: dict(v) for c, v in self._rejected_by_status.items()},
            handoff_used=n["handoff_used"], handoff_missed=n["handoff_missed"],
            parked_by_route=self._parked_by_route(),
        )

    def _parked_by_route(self) -> dict[str, int]:
        """Parked messages per carrier tuple waited for (the ranges of routes with the
        same carriers summed)."""
        out: dict[str, int] = {}
        for st in self._parks.values():
            if st.count:
                name = ",".join(st.carriers)
                out[name] = out.get(name, 0) + st.count
        return out

    async def _commit(self, batch: WriteBatch) -> None:
        """Commit, then tell the accepter how many outbox entries went (backpressure)."""
        await self._store.commit(batch)
        net = 0
        outbox = Db.OUTBOX
        for op in batch.ops:
            if op[1] is outbox:
                kind = op[0]
                if kind == DELETE:
                    net += 1
                elif kind == PUT:
                    net -= 1
        if net > 0 and self._accepter is not None:
            self._accepter.outbox_removed(net)

    # -- running ------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[Dispatcher] = trio.TASK_STATUS_IGNORED,
                  ) -> None:
        """Recover what a crash left ``sending``, then dispatch until cancelled."""
        await self.recover()
        await self._load_parked()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._commit_loop)
            nursery.start_soon(self._watch_events)
            for name, carrier in self._carriers.items():
                nursery.start_soon(self._watch_carrier, name, carrier)
            task_status.started(self)
            await self._feed_loop()
            # drained: keep committing outcomes until cancelled
            await trio.sleep_forever()

    async def recover(self) -> int:
        """Parts left ``sending`` by a previous process -> ``unknown`` (or ``pending`` with
        ``unknown_outcome = "retry"``). Returns the number of messages changed."""
        now = self._clock()
        depth = self._store.outbox_depth()
        if not depth:
            return 0
        entries = self._store.due_outbox(now + _FAR_FUTURE_S, depth + 1)
        retry = self._pipe.unknown_outcome == "retry"
        changed = 0
        for start in range(0, len(entries), 1000):
            chunk = entries[start:start + 1000]
            records = self._store.get_messages([e.message_id for e in chunk])
            batch = WriteBatch()
            for e in chunk:
                rec = records.get(e.message_id)
                if rec is None:
                    continue
                # In flight: parts marked ``sending`` in the record (a re-planned or
                # scheduled message, or a store written before leases), or listed in the
                # entry's ``Lease`` and still ``pending`` in the record.
                leased = _LEASE.decode(e.lease) if e.lease else None
                guard = _SENDING_ONLY
                idx: dict[int, dict[str, Any]] = {}
                if leased is not None:
                    guard = _IN_FLIGHT
                    for i in leased.parts:
                        if i < len(rec.parts) and rec.parts[i].status in _IN_FLIGHT:
                            idx[i] = {"status": PENDING if retry else UNKNOWN,
                                      "carrier": leased.carrier}
                for i, p in enumerate(rec.parts):
                    if p.status == SENDING:
                        idx[i] = {"status": PENDING if retry else UNKNOWN}
                if not idx:
                    if leased is not None:  # nothing left in flight: drop the mark
                        batch.outbox_remove(e.due, rec.id)
                        batch.outbox_add(e.due, rec.id)
                    continue
                changed += 1
                parts = [_replace(p, **idx[i]) if i in idx else p
                         for i, p in enumerate(rec.parts)]
                pending = any(p.status == PENDING for p in parts)
                detail = ("process stopped before the carrier answered; "
                          + ("sending again" if retry else "not sent again (unknown)"))
                batch.outbox_remove(e.due, rec.id)
                if pending:
                    batch.outbox_add(now, rec.id)
                new_status = rollup(parts) or QUEUED
                fields: dict[str, Any] = {"outbox_due": now if pending else None,
                                          "updated_at": now}
                if not retry:
                    fields["reason"] = REASON_NO_RESPONSE
                    # Their receipts may still come: index them for reconciliation
                    # (``_index_unknown``), handed out at the mark (the lease's time, or
                    # the record's ``updated_at`` written with the ``sending`` mark).
                    sent_at = leased.at if leased is not None else (
                        rec.updated_at if rec.updated_at is not None else rec.created_at)
                    for i, ch in idx.items():
                        carrier = leased.carrier if leased is not None \
                            and "carrier" in ch else rec.parts[i].carrier
                        if carrier:
                            self._index_unknown(batch, rec, i, carrier, sent_at, now=now)
                batch.update_message(rec.id, _Apply(
                    idx, fields,
                    HistoryEntry(now, new_status, REASON_NO_RESPONSE, detail), roll=True,
                    guard=guard))
                if new_status != rec.status:
                    self._status_event(batch, rec, new_status, now, reason=REASON_NO_RESPONSE,
                                       detail=detail)
                    if new_status == UNKNOWN:
                        self._n["unknown"] += 1
            if batch:
                await self._commit(batch)
        if changed:
            log.warning("recovered %d message(s) left in flight by the previous run (%s)",
                        changed, "retrying" if retry else "marked unknown")
        return changed

    # -- feed ---------------------------------------------------------------------------

    async def _feed_loop(self) -> None:
        failures = 0
        yielded = False  # this round waited for receipts (``ReceiptGate``) already
        while not self._stopping:
            self._wake = trio.Event()
            seq = self._store.last_event_seq()
            now = self._clock()
            try:
                if self._parks:
                    await self._unpark_round(now)
                if self._carriers and not any(
                        c.can_submit for c in self._carriers.values()):
                    # No carrier can submit at all (the common "carrier down" case):
                    # reading the outbox now would only park every due entry, rewriting
                    # each one every <= PARK_MAX_S and tracking it in memory (measured
                    # +245 B/message and ~33 commits/s with 1,000,000 waiting). Leave the
                    # outbox alone until a bind comes up (the carrier watchers set _wake);
                    # memory and disk stay flat however long the outage.
                    self._handoff.clear()
                    with trio.move_on_after(IDLE_MAX_S):
                        await self._wake.wait()
                    continue
                room = self._room()
                if room is not None and room <= 0:
                    # Every live carrier has its in-flight cap handed over: wait for
                    # answers (an outcome, a carrier change or a stop sets _wake).
                    self._room_waiting = True
                    with trio.move_on_after(IDLE_MAX_S):
                        await self._wake.wait()
                    self._room_waiting = False
                    continue
                limit = self._batch_size if room is None else min(self._batch_size, room)
                gate = self._receipts
                if gate is not None and (yielded or gate.busy):
                    # Receipts wait for their commit, and the SMSC for their acks: let
                    # that batch finish first (once per round: then look again, a stop
                    # or a carrier change may have come meanwhile), and keep this round
                    # short.
                    if not yielded:
                        yielded = True
                        await gate.wait(RECEIPT_YIELD_MAX_S)
                        continue
                    limit = min(limit, RECEIPT_SHARE_ROUND)
                yielded = False
                entries = self._store.due_outbox(now, limit)
                if entries:
                    self._dispatching += 1
                    try:
                        await self._dispatch(entries, now)
                    finally:
                        self._dispatching -= 1
                        if not self._flights and not self._outcomes:
                            self._idle_evt.set()
                            self._idle_evt = trio.Event()
                    failures = 0
                    await trio.lowlevel.checkpoint()
                    continue
                if self._unparking():
                    await trio.lowlevel.checkpoint()  # more to put back: no sleep
                    continue
            except (StoreError, StoreFull, StoreUnavailable) as e:
                failures += 1
                delay = min(COMMIT_RETRY_MIN_S * 2 ** (failures - 1), COMMIT_RETRY_MAX_S)
                log.warning("dispatch: store error (%s); retrying in %.1f s", e, delay)
                await trio.sleep(delay)
                continue
            await self._idle(now, seq)

    def _room(self) -> int | None:
        """Parts the live carriers can still take under their in-flight cap; None when
        no carrier can submit (what is due is parked, not sent) or a carrier has no cap."""
        room = 0
        live = False
        for name, carrier in self._carriers.items():
            if not carrier.can_submit:
                continue
            cap = self._cap.get(name)
            if cap is None:
                return None
            live = True
            room += max(0, cap - self._outstanding.get(name, 0))
        return room if live else None

    async def _idle(self, now: float, seq: int) -> None:
        """Sleep until the next due time, a ``wakeup()``, or any new event in the store.

        Every accept commits a ``message.status`` event, so the event feed wakes the
        feed even when nobody calls ``wakeup()``; our own commits wake it once more, for
        one cheap read, never in a loop (``seq`` was read before the outbox).
        """
        oldest = self._store.outbox_oldest()
        delay = IDLE_MAX_S
        if oldest is not None:
            delay = min(max(oldest.due - now, 0.002), IDLE_MAX_S)
        # One wait on ``_wake``: the store's events set it through ``_watch_events`` (a
        # nursery with a task for each of the two waits cost ~46 us more per sleep, and
        # the feed sleeps about once per 100 messages).
        self._idle_seq = seq
        self._went_idle.set()
        try:
            with trio.move_on_after(delay):
                await self._wake.wait()
        finally:
            self._idle_seq = None

    async def _watch_events(self) -> None:
        """For ``_idle``: while the feed sleeps, wake it when the store has an event newer
        than the one it read before its round (any commit that may have made something
        due: every accept commits a ``message.status`` event)."""
        store = self._store
        while True:
            await self._went_idle.wait()
            self._went_idle = trio.Event()
            seq = self._idle_seq
            if seq is None:
                continue  # the feed is up again already
            await store.wait_for_events(seq)
            if self._idle_seq is not None:
                self._wake.set()

    async def _dispatch(self, entries: list[OutboxEntry], now: float) -> None:
        batch = WriteBatch(urgent=True)  # the binds wait for it: ahead of accept groups
        self._park_pending = {}
        flights = self._flights
        ho = self._handoff
        fresh: list[tuple[OutboxEntry, Handed | None]] = []
        unread: list[str] = []
        for e in entries:
            mid = e.message_id
            fl = flights.get(mid)
            if fl is not None:  # lease ran out while still in flight: extend it
                if fl.lease is not None:  # the mark lives in the entry: carry it over
                    batch.outbox_remove(e.due, mid)
                    batch.outbox_add(now + self._lease_s, mid, fl.lease)
                else:
                    self._move(batch, e.due, mid, now + self._lease_s)
                fl.lease_due = now + self._lease_s
                continue
            # The accepter's hand-off: taken at this first sight whatever happens next
            # (see ``accepted``), used only while the entry is still the one accepted.
            h = ho.pop(mid, None) if ho else None
            if h is not None:
                due = h[0].outbox_due
                if e.lease or due is None or not -_DUE_EPS < due - e.due < _DUE_EPS:
                    h = None
            if h is None:
                unread.append(mid)
            fresh.append((e, h))
        self._n["handoff_used"] += len(fresh) - len(unread)
        self._n["handoff_missed"] += len(unread)
        records = self._store.get_messages(unread) if unread else {}
        ready: list[tuple[OutboxEntry, MessageRecord, Handed | None]] = []
        scheduled: list[tuple[OutboxEntry, MessageRecord]] = []
        for e, h in fresh:
            rec = records.get(e.message_id) if h is None else h[0]
            if rec is None:
                batch.outbox_remove(e.due, e.message_id)  # an orphan entry
            elif rec.status == SCHEDULED:
                scheduled.append((e, rec))
            elif rec.status in MESSAGE_FINAL and not any(
                    p.status == PENDING for p in rec.parts):
                batch.outbox_remove(e.due, e.message_id)
            else:
                ready.append((e, rec, h))
        if scheduled:
            ready += [(e, rec, None) for e, rec in await self._reevaluate(scheduled, now)]
        per_carrier: dict[str, tuple[list[tuple[_Flight, int]], list[P.SubmitSm]]] = {}
        new_flights: list[_Flight] = []
        # Liveness as of this round (nothing below awaits until the commit), and the
        # carrier each route's prefix goes to in this round (the first live one).
        live = {n for n, c in self._carriers.items() if c.can_submit}
        picks: dict[str, str | None] = {}
        for e, rec, h in ready:
            fl = self._route_one(batch, e, rec, now, per_carrier=per_carrier,
                                 live=live, handed=h,
                                 picks=picks)
            if fl is not None:
                new_flights.append(fl)
        if batch:
            await self._commit(batch)
        if self._park_pending:
            self._note_parked(self._park_pending, live)
            self._park_pending = {}
        for fl in new_flights:
            self._flights[fl.message_id] = fl
        self._n["dispatched"] += len(new_flights)
        for name, (metas, pdus) in per_carrier.items():
            await self._enqueue(name, metas, pdus)

    async def _reevaluate(self, scheduled: list[tuple[OutboxEntry, MessageRecord]],
                          now: float) -> list[tuple[OutboxEntry, MessageRecord]]:
        self._n["reevaluated"] += len(scheduled)
        if self._accepter is None:
            return scheduled  # nothing to ask: send as queued
        outcomes = await self._accepter.reevaluate([rec for _, rec in scheduled], now)
        # The accepter committed every outcome (deferred: moved in the outbox; rejected:
        # out of it). A message to send kept its outbox entry.
        out: list[tuple[OutboxEntry, MessageRecord]] = []
        for (e, _), o in zip(scheduled, outcomes, strict=True):
            if o.action == "send":
                r = o.record
                due = r.outbox_due if r.outbox_due is not None else e.due
                out.append((OutboxEntry(due, r.id), r))
        return out

    def _route_one(self, batch: WriteBatch, e: OutboxEntry, rec: MessageRecord, now: float, *,
                   per_carrier: dict[str, tuple[list[tuple[_Flight, int]], list[P.SubmitSm]]],
                   live: set[str],
                   handed: Handed | None = None,
                   picks: dict[str, str | None] | None = None) -> _Flight | None:
        hit = self._router.lookup(rec.to)  # route and matched prefix in one probe
        if hit is None or not hit[1]:
            self._n["no_route"] += 1
            self._fail_all(batch, e, rec, now, reason=NO_ROUTE,
                           detail=f"no route for {rec.to[:4]}...")
            return None
        prefix, route = hit
        parts = rec.parts
        taken = False
        for pt in parts:
            if pt.status not in _IN_FLIGHT:
                taken = True
                break
        name: str | None
        if taken and rec.carrier is not None and rec.carrier in live:
            name = rec.carrier  # the rest of a message goes where its first parts went
        elif picks is not None and prefix in picks:
            name = picks[prefix]  # this round's pick for the same route
        else:
            name = None
            for c in route:  # Router.pick: the first carrier of the route that is live
                if c in live:
                    name = c
                    break
            if picks is not None:
                picks[prefix] = name
        settings = self._settings.get(name) if name is not None else None
        if name is None or settings is None:
            self._park(batch, e, rec, route, now, prefix=prefix)
            return None
        opts, builder = settings
        country = None
        if opts.national_languages and self._recipients is not None:
            r = self._recipients.get(rec.to)
            country = r.region if r is not None else None
        p: SegmentPlan | PlanRejected
        if (handed is not None and name == rec.carrier and handed[2] is opts
                and (not opts.national_languages or handed[3] == country)):
            # The accepter's own plan for this carrier: the one computed below.
            p = handed[1]
        else:
            # The accepter stored the resolved smart-encoding flag and the concatenation
            # reference it planned with: the same plan again (unless the carrier differs).
            p = self._plan(name, opts, rec, country)
        if isinstance(p, PlanRejected):
            self._fail_all(batch, e, rec, now, reason=p.reason, detail=p.message)
            return None
        new_parts: tuple[PartRecord, ...] | None = None
        if len(parts) != p.segments:
            if taken:
                # Some parts went out with another layout: the rest must match them, so
                # wait for the carrier they went to.
                wait = (rec.carrier,) if rec.carrier is not None else route
                self._park(batch, e, rec, wait, now,
                           prefix=None if rec.carrier is not None else prefix)
                return None
            parts = new_parts = tuple(PartRecord(index=i) for i in range(p.segments))
        if len(parts) == 1:  # the common case, without a comprehension's frame
            idx = [0] if parts[0].status == PENDING else []
        else:
            idx = [i for i, pt in enumerate(parts) if pt.status == PENDING]
        if not idx:
            # Nothing left to send (an entry that outlived its message's last part).
            batch.outbox_remove(e.due, rec.id)
            st = rollup(parts) or QUEUED
            batch.update_message(rec.id, _Apply({}, {"outbox_due": None}, None, roll=True))
            if st != rec.status:
                self._status_event(batch, rec, st, now)
            return None
        pdus = builder.build(
            rec.to, rec.sender, p.data_coding,
            p.parts if len(idx) == len(p.parts) else [p.parts[i] for i in idx])
        lease = now + self._lease_s
        fl = _Flight(rec, name, idx, lease, now)
        fl.fast = new_parts is None and rec.status != SCHEDULED
        batch.outbox_remove(e.due, rec.id)
        if fl.fast:
            # The in-flight mark goes into the outbox entry only (durable in this commit,
            # before any part reaches a bind); the record is written once, at the outcome.
            fl.lease = Lease(name, tuple(idx), now)
            fl.route = prefix
            fl.mark_at = rec.updated_at
            batch.outbox_add(lease, rec.id, fl.lease)
        else:
            batch.outbox_add(lease, rec.id)
            batch.update_message(rec.id, _MarkSending(idx, name, prefix, lease=lease, now=now,
                                                      new_parts=new_parts))
        slot = per_carrier.get(name)
        if slot is None:
            slot = per_carrier[name] = ([], [])
        metas = slot[0]
        for i in idx:
            metas.append((fl, i))
        slot[1].extend(pdus)
        return fl

    def _plan(self, carrier: str, opts: EncodingOptions, rec: MessageRecord,
              country: str | None) -> SegmentPlan | PlanRejected:
        """``plan(rec.text, opts, ref=self._ref(rec), country=country,
        smart=rec.smart_encoding)`` for ``carrier`` (whose options ``opts`` are).

        A plan that uses no concatenation reference (one part, or payload mode: its
        ``ref`` is None) depends on the text, options, country and smart flag only, and a
        campaign sends one text to many numbers: such plans are kept per carrier (bounded)
        and shared (they are immutable), so a message read back from the store (restart,
        retry, beyond the hand-off's bound) is not planned again.
        """
        text = rec.text
        smart = rec.smart_encoding
        cache = self._plans.get(carrier)
        key = (text, country, smart)
        if cache is not None:
            hit = cache.get(key)
            if hit is not None:
                return hit
        p = plan(text, opts, ref=self._ref(rec), country=country, smart=smart)
        if cache is not None and isinstance(p, SegmentPlan) and p.ref is None:
            if len(cache) >= _PLANS_MAX:
                cache.clear()
            cache[key] = p
        return p

    @staticmethod
    def _ref(rec: MessageRecord) -> int:
        ref = getattr(rec, "ref", None)
        if ref is not None:
            return int(ref)
        # Derived from the id, so a retried part is byte-identical to its siblings.
        return zlib.crc32(rec.id.encode()) & 0xFFFF

    def _park(self, batch: WriteBatch, e: OutboxEntry, rec: MessageRecord,
              wait: tuple[str, ...], now: float, *, prefix: str | None = None) -> None:
        """Move the entry to the parking range of ``wait`` (the carriers it waits for;
        with ``prefix``, as the route of that prefix), once: it stays there, unread and
        unwritten, until one of them is live. The record is not written: its
        ``outbox_due`` is the due time the entry returns to."""
        if prefix is not None:
            prefix = self._route_sigs.get(prefix, prefix)
        key = (prefix, wait)
        tag = self._park_tags.get(key)
        if tag is None:
            tag = self._park_tags[key] = park_tag(wait, prefix)
        batch.outbox_remove(e.due, rec.id)
        batch.outbox_add(park_due(tag), rec.id, Parked(e.due))
        pending = self._park_pending
        pending[key] = pending.get(key, 0) + 1

    def _note_parked(self, pending: dict[tuple[str | None, tuple[str, ...]], int],
                     live: set[str]) -> None:
        """After the commit of a round that parked ``pending`` (count per carrier tuple):
        count them; a range none of whose carriers was live in that round (``live``) is
        down, so the next look that finds one live unparks it (none is missed however
        liveness changed meanwhile)."""
        parks = self._parks
        for key, n in pending.items():
            tag = self._park_tags[key]
            wait = key[1]
            st = parks.get(tag)
            if st is None:
                st = parks[tag] = _ParkState(wait, down=False)
            st.count += n
            for c in wait:
                if c in live:
                    break
            else:
                st.down = True
                st.unparking = False
                st.cursor = None

    def _move(self, batch: WriteBatch, old_due: float, message_id: str, due: float) -> None:
        batch.outbox_remove(old_due, message_id)
        batch.outbox_add(due, message_id)
        batch.update_message(message_id, _Apply({}, {"outbox_due": due}, None, roll=False))

    def _unparking(self) -> bool:
        return any(st.unparking for st in self._parks.values())

    async def _unpark_round(self, now: float) -> None:
        """Look at each parking range: one found down whose carriers include a live one
        starts unparking; then put back one chunk (at most ``UNPARK_CHUNK`` entries, one
        read txn, one commit through the writer) to the due times they had."""
        carriers = self._carriers
        work: list[tuple[int, _ParkState]] = []
        for tag, st in self._parks.items():
            if not st.unparking:
                up = False
                for c in st.carriers:
                    carrier = carriers.get(c)
                    if carrier is not None and carrier.can_submit:
                        up = True
                        break
                if not up:
                    st.down = True
                    continue
                if not st.down:
                    continue
                st.down = False
                st.unparking = True
                st.cursor = None
            work.append((tag, st))
        if not work:
            return
        budget = UNPARK_CHUNK
        batch = WriteBatch()
        moved: list[tuple[_ParkState, int, str | None, bool]] = []
        read = self._store.read
        for tag, st in work:
            if budget <= 0:
                break
            rows = read(partial(parked_chunk, tag=tag, after=st.cursor, limit=budget))
            pdue = park_due(tag)
            for mid, value in rows:
                try:
                    due = _PARKED.decode(value).due
                except (msgspec.DecodeError, msgspec.ValidationError):
                    due = now
                batch.outbox_remove(pdue, mid)
                batch.outbox_add(due, mid)
            moved.append((st, len(rows), rows[-1][0] if rows else st.cursor,
                          len(rows) < budget))
            budget -= len(rows)
        if batch:
            await self._commit(batch)
        for st, n, cursor, done in moved:
            st.count = max(0, st.count - n)
            st.cursor = cursor
            if done:
                st.unparking = False
                st.cursor = None
                if not st.carriers:  # a range of an old config: emptied
                    st.count = 0
        for tag, st in list(self._parks.items()):
            if not st.count and not st.unparking:
                del self._parks[tag]

    async def _load_parked(self) -> None:
        """At start-up: count what a previous run parked, per range. A range whose tag is
        not one of this config's routes (prefix and carriers: a prefix routed elsewhere
        now is routed again) or carriers (the config changed) is unparked at once, to be
        routed again."""
        known: dict[int, tuple[str | None, tuple[str, ...]]] = {}
        sigs = self._route_sigs
        for r in self._config.routes:
            route = tuple(r.carriers)
            sig = sigs[r.prefix]
            known[park_tag(route, sig)] = (sig, route)
        for c in self._config.carriers:
            known.setdefault(park_tag((c.name,)), (None, (c.name,)))
        counts: dict[int, int] = {}
        start: bytes | None = None
        while True:
            got, start = self._store.read(
                partial(park_census, start=start, limit=_PARK_CENSUS_CHUNK))
            for tag, n in got.items():
                counts[tag] = counts.get(tag, 0) + n
            if start is None:
                break
            await trio.lowlevel.checkpoint()
        for tag, n in counts.items():
            key = known.get(tag)
            st = self._parks[tag] = (_ParkState(key[1]) if key is not None
                                     else _ParkState((), down=False, unparking=True))
            st.count = n
            if key is not None:
                self._park_tags[key] = tag
        if counts:
            log.info("%d message(s) parked by the previous run, waiting for %d route(s)",
                     sum(counts.values()), len(counts))

    def _fail_all(self, batch: WriteBatch, e: OutboxEntry, rec: MessageRecord, now: float, *,
                  reason: str, detail: str) -> None:
        self._n["failed"] += 1
        changes = {i: {"status": FAILED} for i, p in enumerate(rec.parts)
                   if p.status in (PENDING, SENDING)}
        batch.outbox_remove(e.due, rec.id)
        batch.update_message(rec.id, _Apply(
            changes, {"status": FAILED, "reason": reason, "outbox_due": None,
                      "updated_at": now},
            HistoryEntry(now, FAILED, reason, detail), roll=False))
        self._status_event(batch, rec, FAILED, now, reason=reason, detail=detail)

    async def _enqueue(self, name: str, metas: list[tuple[_Flight, int]],
                       pdus: list[P.SubmitSm]) -> None:
        # What every outcome of this batch needs, looked up once per batch, not per part.
        carrier = name
        outstanding = self._outstanding
        counts = self._by_carrier[carrier]
        fmt = self._id_format.get(carrier, "auto")
        uncommitted = self._uncommitted
        cap = self._cap.get(carrier, 0)
        refill_at = self._refill_at.get(carrier, 1)

        def on_outcome(index: int, o: SubmitOutcome) -> None:
            # Runs synchronously in the bind's reader: append and wake, nothing more.
            fl, part = metas[index]
            left = outstanding[carrier] - 1
            outstanding[carrier] = left
            kind = o.kind
            counts[_KIND_VALUE[kind]] += 1
            key: str | None = None
            if kind is _ACCEPTED:
                # Normalised once here; the commit and its clean-up use the same key.
                key = normalise_message_id(o.message_id, fmt)
                uncommitted[(carrier, key)] = (fl.message_id, part)
            elif kind is _REJECTED:
                self._rejected_by_status[carrier][status_name(o.status)] += 1
            self._outcomes.append((fl, part, o, key))
            self._outcome_evt.set()
            if self._room_waiting and cap - left >= refill_at:
                self._wake.set()  # some window room again: the feed refills it

        outstanding[name] += len(pdus)
        await self._carriers[name].enqueue(SubmitBatch(pdus, on_outcome))

    # -- carrier watchers ---------------------------------------------------------------

    async def _watch_carrier(self, name: str, carrier: CarrierLike) -> None:
        # The feed may have found this carrier down before this first look: a bind that
        # came up in between would change nothing this watcher waits for, and the feed
        # would sleep up to IDLE_MAX_S. Wake it once so it looks again.
        self._wake.set()
        while True:
            await carrier.wait_until(_changed_from(carrier.can_submit))
            # Up: the feed unparks its messages. Down: its in-flight cap no longer holds
            # the feed.
            self._wake.set()

    # -- committing outcomes ------------------------------------------------------------

    async def _commit_loop(self) -> None:
        failures = 0
        while True:
            if not self._outcomes:
                if not self._flights:
                    self._idle_evt.set()
                    self._idle_evt = trio.Event()
                await self._outcome_evt.wait()
            self._outcome_evt = trio.Event()
            items = self._outcomes
            self._outcomes = []
            self._committing = True
            try:
                await self._commit_outcomes(items, self._clock())
            except StoreError as e:
                failures += 1
                self._n["commit_failures"] += 1
                self._outcomes[:0] = items
                for fl, part, _, _ in items:
                    fl.outcomes.pop(part, None)
                delay = min(COMMIT_RETRY_MIN_S * 2 ** (failures - 1), COMMIT_RETRY_MAX_S)
                log.warning("dispatch: committing %d outcome(s) failed (%s); retrying in "
                            "%.1f s", len(items), e, delay)
                self._committing = False
                await trio.sleep(delay)
                self._outcome_evt.set()
                continue
            finally:
                self._committing = False
            failures = 0
            self._n["commits"] += 1
            uncommitted = self._uncommitted
            for fl, _part, _o, key in items:
                if key is not None:
                    uncommitted.pop((fl.carrier, key), None)
            self._committed_evt.set()
            self._committed_evt = trio.Event()
            if not self._flights and not self._outcomes:
                self._idle_evt.set()
                self._idle_evt = trio.Event()

    async def _commit_outcomes(self, items: list[_Outcome], now: float, *,
                               reread: bool = False) -> None:
        batch = WriteBatch(urgent=True)  # receipts may wait for these carrier ids
        touched: dict[str, _Flight] = {}
        put_carrier_id = batch.put_carrier_id
        for fl, part, o, key in items:
            fl.outcomes[part] = o
            touched[fl.message_id] = fl
            if key is not None:
                put_carrier_id(fl.carrier, key, fl.message_id, part, now)
        # A flight answered in one go (none of its outcomes committed before) is decided
        # from the dispatcher's own copy of the record: nothing but its ``sending`` mark
        # can have changed it (no receipt without a committed carrier id); the update
        # verifies that in the write txn (``updated_at`` of the mark) and otherwise the
        # whole batch is decided again from a fresh read.
        done: list[_Flight] = []
        partial: list[_Flight] = []
        unread: list[str] = []
        for fl in touched.values():
            if len(fl.outcomes) >= len(fl.parts):
                done.append(fl)
                if reread or not fl.fast or fl.applied:
                    unread.append(fl.message_id)
            else:
                partial.append(fl)
        current = self._store.get_messages(unread) if unread else {}
        counted = {k: self._n[k] for k in _COMPLETE_COUNTERS}
        for fl in done:  # every part answered: decide parts, message status and outbox
            rec = current.get(fl.message_id) if current else None
            expect: tuple[float | None] | None = None
            if rec is None:
                rec = fl.record
                if fl.fast and not fl.applied and not reread:
                    expect = (fl.mark_at,)
            outs = fl.outcomes
            for part in fl.parts:
                if outs[part].kind is not _ACCEPTED:
                    break
            else:
                for pt in rec.parts:
                    if pt.status == FAILED:
                        break
                else:
                    self._complete_accepted(batch, fl, rec, now, expect)
                    continue
            self._complete_general(batch, fl, rec, now, expect=expect)
        for fl in partial:
            changes = {}
            for part, o in fl.outcomes.items():
                if part not in fl.applied and o.kind is OutcomeKind.ACCEPTED:
                    changes[part] = self._accepted_change(fl, o, now)
            if changes:
                batch.update_message(fl.message_id, _Apply(
                    changes, {} if fl.lease is None else
                    {"carrier": fl.carrier, "route": fl.route}, None, roll=False))
        counted = {k: self._n[k] - v for k, v in counted.items()}
        try:
            await self._commit(batch)
        except _StaleRecord:
            for k, v in counted.items():
                self._n[k] -= v
            await self._commit_outcomes(items, now, reread=True)
            return
        # Done flights leave now: only those still waiting for parts need ``applied``.
        for fl in partial:
            for part, o in fl.outcomes.items():
                if o.kind is OutcomeKind.ACCEPTED:
                    fl.applied.add(part)
        flights = self._flights
        for fl in done:
            flights.pop(fl.message_id, None)
        if done:
            self._wake.set()  # retries may be due soon, and NOT_SENT ones now

    @staticmethod
    def _accepted_change(fl: _Flight, o: SubmitOutcome, now: float) -> dict[str, Any]:
        return {"status": ACCEPTED, "carrier": fl.carrier, "carrier_msg_id": o.message_id,
                "submit_status": 0, "submitted_at": now}

    def _complete_general(self, batch: WriteBatch, fl: _Flight, rec: MessageRecord,
                          now: float, *, expect: tuple[float | None] | None = None) -> None:
        """Every part of a flight answered, any mix of outcomes (retries, failures,
        unknowns, not sent): decide parts, message status and outbox."""
        changes: dict[int, dict[str, Any]] = {}
        retry: list[int] = []
        not_sent: list[int] = []
        failed_detail: str | None = None
        unknown_detail: str | None = None
        retry_detail: str | None = None
        retry_unknown = self._pipe.unknown_outcome == "retry"
        for part in fl.parts:
            o = fl.outcomes[part]
            if o.kind is OutcomeKind.ACCEPTED:
                if part not in fl.applied:
                    changes[part] = self._accepted_change(fl, o, now)
                self._n["submitted"] += 1
            elif o.kind is OutcomeKind.REJECTED:
                rc = o.retry if o.retry is not None else retry_class(o.status)
                name = status_name(o.status)
                permanent = rc is RetryClass.PERMANENT or (
                    rc is RetryClass.AMBIGUOUS and rec.attempts + 1 >= self._ambiguous_retries)
                if rc not in _RETRYABLE and rc is not RetryClass.AMBIGUOUS:
                    permanent = True
                if permanent:
                    changes[part] = {"status": FAILED, "submit_status": o.status,
                                     "carrier": fl.carrier}
                    failed_detail = f"part {part + 1}: {name}"
                else:
                    changes[part] = {"submit_status": o.status, "carrier": fl.carrier}
                    retry.append(part)
                    retry_detail = f"part {part + 1}: {name}"
            elif o.kind is OutcomeKind.UNKNOWN:
                if retry_unknown:
                    retry.append(part)
                    retry_detail = f"part {part + 1}: no response ({o.reason})"
                else:
                    changes[part] = {"status": UNKNOWN, "carrier": fl.carrier}
                    unknown_detail = f"part {part + 1}: no response ({o.reason or 'unknown'})"
            else:  # NOT_SENT: the carrier never saw it
                not_sent.append(part)
        any_failed = failed_detail is not None or any(p.status == FAILED for p in rec.parts)
        parts_after = list(rec.parts)
        fields: dict[str, Any] = {"updated_at": now}
        if fl.lease is not None:  # what the ``sending`` mark would have set
            fields["carrier"] = fl.carrier
            fields["route"] = fl.route
        reason: str | None = None
        detail: str | None = None
        back = retry + not_sent
        if back and not any_failed and retry and (
                now - rec.created_at >= self._pipe.retry_max_age_s):
            any_failed = True
            reason, detail = REASON_RETRIES_EXHAUSTED, retry_detail
        elif any_failed:
            reason, detail = REASON_CARRIER_REJECTED, failed_detail
        if any_failed:
            for i in back:
                changes.setdefault(i, {})["status"] = FAILED
            batch.outbox_remove(fl.lease_due, rec.id)
            fields["outbox_due"] = None
            fields["reason"] = reason
        elif back:
            for i in back:
                changes.setdefault(i, {})["status"] = PENDING
            # NOT_SENT alone: the carrier is going away; a short pause avoids a hot loop
            # while its binds still look live.
            due = now + PARK_MIN_S
            if retry:
                attempts = rec.attempts + 1
                fields["attempts"] = attempts
                delay = backoff_delay(attempts, self._pipe.retry_backoff_min_s,
                                      self._pipe.retry_backoff_max_s)
                due = now + delay
                fields["next_attempt_at"] = due
                self._n["retries"] += len(retry)
                detail = f"retry in {delay:g} s: {retry_detail}"
            else:
                detail = "carrier did not take it; queued again"
            self._move_from_lease(batch, fl, rec.id, due)
            fields["outbox_due"] = due
        else:
            batch.outbox_remove(fl.lease_due, rec.id)
            fields["outbox_due"] = None
            if unknown_detail is not None:
                reason, detail = REASON_NO_RESPONSE, unknown_detail
                fields["reason"] = reason
        for i, ch in changes.items():
            if "status" in ch and i < len(parts_after) and parts_after[i].status in (
                    PENDING, SENDING):
                parts_after[i] = _replace(parts_after[i], status=ch["status"])
                if ch["status"] == UNKNOWN:
                    # handed to the bind at the flight's mark, no answer by now
                    self._index_unknown(batch, rec, i, fl.carrier, fl.sent_at, now=now)
        new_status = rollup(parts_after) or QUEUED
        history = None
        if new_status != rec.status or detail is not None:
            history = HistoryEntry(now, new_status, reason, detail)
        batch.update_message(rec.id, _Apply(changes, fields, history, roll=True,
                                            expect=expect))
        if new_status != rec.status:
            if new_status == FAILED:
                self._n["failed"] += 1
            elif new_status == UNKNOWN:
                self._n["unknown"] += 1
            self._status_event(batch, rec, new_status, now, reason=reason, detail=detail,
                               carrier=fl.carrier)

    @staticmethod
    def _index_unknown(batch: WriteBatch, rec: MessageRecord, part: int, carrier: str,
                       sent_at: float, *, now: float) -> None:
        """A part becoming ``unknown``: index it so that its receipt, which no committed
        carrier id matches, can still find it (``gateway.store.unknown_parts``; the
        inbound processor's reconciliation). The SMSC got it, if at all, between its
        hand-over (``sent_at``) and ``now``."""
        with contextlib.suppress(ValueError):  # a NUL in the address: not indexed
            batch.put_unknown_part(carrier, dest_of(rec.to), UnknownPart(
                rec.id, part, sent_at, max(now, sent_at), now))

    def _complete_accepted(self, batch: WriteBatch, fl: _Flight, rec: MessageRecord,
                           now: float, expect: tuple[float | None] | None) -> None:
        """Every part of the flight accepted by the carrier and no part of the message
        failed before (the common case): the decision of
        ``_complete_general``, made directly (tests/pipeline/test_dispatch_fast.py holds
        them equal), written with ``_ApplyAccepted`` instead of a general ``_Apply``."""
        outs = fl.outcomes
        applied = fl.applied
        parts = rec.parts
        accepted: list[tuple[int, str]] = []
        if len(parts) == 1 and fl.parts == [0]:  # one part: no list of statuses to roll up
            st = parts[0].status
            if not applied:
                accepted.append((0, outs[0].message_id))
                if st in _IN_FLIGHT:
                    st = ACCEPTED
            new_status = SUBMITTED if st == ACCEPTED else (_rollup([st]) or QUEUED)
        else:
            statuses = [p.status for p in parts]
            n = len(statuses)
            for part in fl.parts:
                if part not in applied:
                    accepted.append((part, outs[part].message_id))
                    if part < n and statuses[part] in _IN_FLIGHT:
                        statuses[part] = ACCEPTED
            new_status = (_rollup(statuses) if statuses else None) or QUEUED
        self._n["submitted"] += len(fl.parts)
        batch.outbox_remove(fl.lease_due, rec.id)
        changed = new_status != rec.status
        batch.update_message(rec.id, _ApplyAccepted(
            accepted, fl.carrier, fl.route if fl.lease is not None else _KEEP, now,
            HistoryEntry(now, new_status, None, None) if changed else None, expect=expect,
            status=new_status))
        if changed:
            if new_status == UNKNOWN:
                self._n["unknown"] += 1
            self._submitted_event(batch, rec, new_status, now, fl.carrier)

    def _submitted_event(self, batch: WriteBatch, rec: MessageRecord, status: str,
                         now: float, carrier: str) -> None:
        """``_status_event(batch, rec, status, now, carrier=carrier)`` without a reason or
        detail: the payload (kind, campaign, flow, carrier; no metadata) is the same for
        a whole campaign, so its JSON is encoded once and reused."""
        if rec.metadata:
            self._status_event(batch, rec, status, now, carrier=carrier)
            return
        key = (rec.kind, rec.campaign_id, rec.flow_id, carrier)
        cache = self._status_data
        data = cache.get(key)
        if data is None:
            if len(cache) >= _STATUS_DATA_MAX:
                cache.clear()
            data = cache[key] = encode_data(StatusData(
                kind=rec.kind, campaign_id=rec.campaign_id, flow_id=rec.flow_id,
                carrier=carrier))
        batch.append_event(Event(0, now, MESSAGE_STATUS, rec.id, rec.to, status, data))

    def _move_from_lease(self, batch: WriteBatch, fl: _Flight, message_id: str,
                         due: float) -> None:
        batch.outbox_remove(fl.lease_due, message_id)
        batch.outbox_add(due, message_id)

    @staticmethod
    def _status_event(batch: WriteBatch, rec: MessageRecord, status: str, now: float, *,
                      reason: str | None = None, detail: str | None = None,
                      carrier: str | None = None) -> None:
        batch.append_event(status_event(now, rec.id, rec.to, status, StatusData(
            reason=reason, detail=detail, kind=rec.kind, campaign_id=rec.campaign_id,
            flow_id=rec.flow_id, carrier=carrier or rec.carrier,
            metadata=metadata_raw(rec.metadata))))


def _changed_from(live: bool) -> Callable[[Any], bool]:
    return lambda c: bool(c.can_submit) != live


def backoff_delay(attempts: int, lo: float, hi: float) -> float:
    """Capped exponential backoff: ``lo * 2**(attempts-1)`` up to ``hi``."""
    if attempts <= 0:
        return 0.0
    return min(lo * math.pow(2, attempts - 1), hi)
