"""Data retention: a background task that bounds the store (docs/operations.md "Retention").

Without it the event feed, finished message records, carrier ids, idempotency claims and
the error history grow until LMDB's ``max_map_size``, after which every write fails.

**What goes** (each kind switched off by its ``[store]`` key set to 0):

* *finished messages* (``retention_days`` after their last change), with the carrier ids
  and the idempotency claim that point at them, in the same transaction;
* carrier ids whose message is gone (``retention_days`` after they were written: ids of
  earlier submit attempts, ids stored under another normalisation);
* *idempotency claims* older than ``idempotency_retention_days`` (0: as long as their
  message);
* *events* older than ``events_retention_days``, but never one after the smallest
  position of a cursor that still counts (:func:`holding_cursors`), nor the newest one
  (the feed is never emptied);
* *error history* entries older than ``errors_retention_days``, except those that still
  decide the error segment (:func:`error_entries_to_prune`);
* *short links* and their *clicks* older than ``links_retention_days``, and a message's
  click summary once its message is gone and its last click is that old;
* *opt-in challenges* a day after they expired (a verify answers ``expired`` for that
  day, then ``unknown_challenge``) and opt-in *start-log* entries older than the rate
  limit's window (``[optin] window_s``, at least ``gateway.store.marketing.START_LOG_KEEP_S``),
  whenever the task runs.

**What never goes:** a message that is not final (:func:`message_verdict`), anything an
outbox entry refers to, recipient records (consent, opt-outs, flow marks, caps and the
all-time error summary are compliance state, never pruned by age), the cursors
themselves and the ``meta`` database.

**How:** decisions are pure functions of records and ``now`` (table-driven tests in
tests/test_retention.py); the task reads one bounded chunk per short read transaction,
decides, and commits the deletions as one normal-lane ``WriteBatch`` of at most
``CHUNK_KEYS`` keys, re-checked inside the write transaction
(``gateway.store.retention``), then pauses, so the writer and the accept path never wait
behind a long prune.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from functools import partial
from typing import Any, Final, Protocol

import msgspec
import trio

from gateway.logging import get_logger
from gateway.marketing.optin import Challenge
from gateway.marketing.store import Click, LinkTarget, MessageClicks
from gateway.pipeline.dispatch import (
    ACCEPTED,
    MESSAGE_FINAL,
    PENDING,
    SENDING,
    SUBMITTED,
    UNKNOWN,
    UNKNOWN_RECEIPT,
)
from gateway.pipeline.ids import ID_LENGTH, time_prefix
from gateway.receipts import normalise_message_id
from gateway.store import ErrorEntry, MessageRecord, StoreError, WriteBatch
from gateway.store.cursors import list_cursors
from gateway.store.kv import Db
from gateway.store.logic import IDEMPOTENCY, MESSAGE
from gateway.store.marketing import CHALLENGE, LINK, MESSAGE_CLICKS, START_LOG_KEEP_S
from gateway.store.records import CarrierIdRecord, IdempotencyRecord
from gateway.store.retention import (
    CLICK,
    PruneCarrierIds,
    PruneErrors,
    PruneIdempotency,
    PruneMessages,
    PruneRecords,
    PruneStarts,
    carrier_id_chunk,
    error_chunk,
    event_head,
    event_newest,
    message_chunk,
    outbox_chunk,
    record_chunk,
    start_chunk,
)
from gateway.store.unknown_parts import PruneUnknownParts, dest_of, unknown_part_chunk
from rules.delivery_errors import SEGMENT_CLASSES
from rules.model import ErrorClass

__all__ = [
    "CHUNK_KEYS",
    "KINDS",
    "PRUNE",
    "Retention",
    "RetentionSettings",
    "RetentionStats",
    "carrier_id_prunable",
    "carrier_ids_of",
    "challenge_check",
    "challenge_prunable",
    "claim_prunable",
    "click_check",
    "click_prunable",
    "error_entries_to_prune",
    "events_prune_through",
    "holding_cursors",
    "last_activity",
    "link_check",
    "link_needed",
    "link_prunable",
    "message_clicks_check",
    "message_clicks_prunable",
    "message_unsent",
    "message_verdict",
    "start_prunable",
    "unknown_parts_of",
    "young_id_prefix",
]

log = get_logger("smsgw.retention")

DAY: Final = 86_400.0
#: Most keys one prune batch deletes (the writer holds every other commit meanwhile:
#: ~1-3 ms for a full chunk).
CHUNK_KEYS: Final = 1000
#: Message records read per chunk: each deletes the record, its carrier ids and its claim.
MESSAGE_CHUNK: Final = 200
#: After a chunk that deleted something the task pauses ``PAUSE_FACTOR`` times as long
#: as its commit took (call to durable, queueing included), within ``PAUSE_MIN_S`` ..
#: ``PAUSE_MAX_S``: it keeps at most ~1/10 of the writer's time, and backs off by itself
#: when the writer is busy (commits wait longer). ~2 ms a full chunk on an idle writer:
#: ~8,000 messages or ~45,000 events pruned a second at most.
PAUSE_FACTOR: Final = 10.0
PAUSE_MIN_S: Final = 0.02
PAUSE_MAX_S: Final = 1.0
#: Pause after a chunk that only read (the trio thread's other tasks go first).
READ_PAUSE_S: Final = 0.01
#: The first sweep starts this long after start-up (not in the middle of it).
FIRST_SWEEP_DELAY_S: Final = 60.0
#: The scan for orphan carrier ids visits every carrier id: it runs once a day, not
#: every sweep (carrier ids normally go with their message).
ORPHAN_SCAN_EVERY_S: Final = DAY
#: The outbox snapshot keeps ids made up to this long after the message cutoff
#: (``Retention._outbox_ids``): the cutoff's millisecond, and clock steps back.
ID_TIME_MARGIN_S: Final = 3600.0
#: Cursor names of webhook endpoints (``gateway.webhooks``).
WEBHOOK_CURSOR_PREFIX: Final = "webhook:"

#: Pruned-key kinds (metric label ``kind``).
KINDS: Final = ("messages", "carrier_ids", "idempotency", "events", "errors", "links",
                 "clicks", "message_clicks", "optin_challenges", "optin_starts",
                 "unknown_parts")
#: An expired opt-in challenge stays this long (a late verify answers ``expired``, not
#: ``unknown_challenge``; docs/marketing.md proposed ``expires_at`` + 1 day).
CHALLENGE_GRACE_S: Final = 86_400.0

#: :func:`message_verdict`'s answer when the message may go; anything else says why not.
PRUNE: Final = "prune"
_IN_FLIGHT: Final = frozenset({PENDING, SENDING})
#: Part statuses a receipt may still change: accepted, or a receipt that said UNKNOWN
#: (gateway.pipeline.inbound refines those).
_AWAITING_RECEIPT: Final = frozenset({ACCEPTED, UNKNOWN_RECEIPT})
_ERROR_CLASSES: Final = {c.value: c for c in ErrorClass}


class RetentionSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Lifetimes in seconds (0 = keep forever) and the sweep's pace."""

    messages_s: float = 30 * DAY
    events_s: float = 7 * DAY
    #: Idempotency claims; 0 = as long as their message.
    idempotency_s: float = 0.0
    errors_s: float = 30 * DAY
    #: ``pipeline.carrier_id_ttl_s``: how long a receipt may still match a submitted part.
    receipt_window_s: float = 72 * 3600.0
    #: ``rules.error_segment.sticky_count`` (all-time failures that keep a phone in).
    sticky_count: int = 2
    interval_s: float = 3600.0
    #: Webhook endpoints in the config (enabled or not): only their cursors hold events.
    webhooks: tuple[str, ...] = ()
    #: Short links and clicks (``links_retention_days``); 0 = keep forever.
    links_s: float = 90 * DAY
    #: Opt-in start-log entries are kept this long: the start rate limit's window
    #: (``[optin] window_s``, any length) when it is longer than ``START_LOG_KEEP_S``.
    starts_s: float = START_LOG_KEEP_S

    @property
    def enabled(self) -> bool:
        """Whether the task runs at all (it then also prunes expired opt-in challenges
        and old opt-in start-log entries, which have no setting)."""
        return bool(self.messages_s or self.events_s or self.idempotency_s or self.errors_s
                    or self.links_s)

    @classmethod
    def from_config(cls, cfg: Any) -> RetentionSettings:
        """From a ``gateway.config.GatewayConfig``."""
        s = cfg.store
        return cls(messages_s=s.retention_days * DAY, events_s=s.events_retention_days * DAY,
                   idempotency_s=s.idempotency_retention_days * DAY,
                   # never shorter than the segment's window (its entries feed it)
                   errors_s=max(s.errors_retention_days, cfg.rules.error_segment.days) * DAY
                   if s.errors_retention_days else 0.0,
                   receipt_window_s=cfg.pipeline.carrier_id_ttl_s,
                   sticky_count=cfg.rules.error_segment.sticky_count,
                   interval_s=s.retention_interval_s,
                   webhooks=tuple(h.name for h in cfg.webhooks),
                   links_s=s.links_retention_days * DAY,
                   starts_s=max(START_LOG_KEEP_S, cfg.optin.window_s)
                   if getattr(cfg, "optin", None) is not None else START_LOG_KEEP_S)


# ------------------------------------------------------------------ pure decisions


def last_activity(rec: MessageRecord) -> float:
    """When the message last changed: creation, last update or last history entry."""
    t = rec.created_at
    if rec.updated_at is not None and rec.updated_at > t:
        t = rec.updated_at
    if rec.history and rec.history[-1].at > t:
        t = rec.history[-1].at
    return t


def message_verdict(rec: MessageRecord, now: float, *, retention_s: float,
                    receipt_window_s: float, outbox_ids: frozenset[str] | set[str]) -> str:
    """:data:`PRUNE`, or why the message stays.

    Final for pruning = a status in ``MESSAGE_FINAL`` (submitted, delivered,
    partially_delivered, undelivered, expired, failed, rejected, unknown: no outbox
    entry and no submit to come), no part pending or sending, no outbox entry (neither
    the record's ``outbox_due`` nor an entry seen in the outbox), and no change for
    ``retention_s``; a message whose parts may still get a receipt (``submitted``, a
    part ``accepted`` or ``unknown_receipt``) also waits out the receipt window.
    Reasons: ``off``, ``not_final``, ``in_flight``, ``in_outbox``, ``young``,
    ``awaiting_receipt``.
    """
    if retention_s <= 0:
        return "off"
    if rec.status not in MESSAGE_FINAL:
        return "not_final"
    if any(p.status in _IN_FLIGHT for p in rec.parts):
        return "in_flight"
    if rec.outbox_due is not None or rec.id in outbox_ids:
        return "in_outbox"
    age = now - last_activity(rec)
    if age < retention_s:
        return "young"
    if age < receipt_window_s and (rec.status == SUBMITTED or any(
            p.status in _AWAITING_RECEIPT for p in rec.parts)):
        return "awaiting_receipt"
    return PRUNE


def young_id_prefix(t: float) -> str:
    """The smallest message id (``gateway.pipeline.ids``) made at or after ``t``: those ids
    are all ``>=`` it (its alphabet sorts like its values), ids of an earlier millisecond
    are all ``<`` it (an id made earlier in ``t``'s millisecond is ``>=`` it too)."""
    return time_prefix(t)


def carrier_ids_of(rec: MessageRecord) -> list[tuple[str, str]]:
    """The ``carrier_ids`` keys the parts of ``rec`` may be stored under: the dispatcher
    stores ``normalise_message_id(id, fmt)``, which is one of these two whatever ``fmt``."""
    out: list[tuple[str, str]] = []
    for p in rec.parts:
        if p.carrier and p.carrier_msg_id:
            for fmt in ("auto", "raw"):
                cid = normalise_message_id(p.carrier_msg_id, fmt)
                if cid and (p.carrier, cid) not in out:
                    out.append((p.carrier, cid))
    return out


def unknown_parts_of(rec: MessageRecord) -> list[tuple[str, str]]:
    """The ``(carrier, destination)`` pairs the ``unknown_parts`` entries of ``rec`` may be
    under (``gateway.store.unknown_parts``): one per carrier of its parts still
    ``unknown`` (an adopted part's entry went with its adoption)."""
    return sorted({(p.carrier, dest_of(rec.to)) for p in rec.parts
                   if p.status == UNKNOWN and p.carrier})


def carrier_id_prunable(rec: CarrierIdRecord, message_exists: bool, now: float,
                        retention_s: float) -> bool:
    """A carrier id goes with its message; alone (message gone) once it is older than
    ``retention_s``."""
    return retention_s > 0 and not message_exists and now - rec.at >= retention_s


def claim_prunable(rec: IdempotencyRecord, now: float, lifetime_s: float) -> bool:
    """An idempotency claim older than its own lifetime (0: it goes with its message)."""
    return lifetime_s > 0 and now - rec.at >= lifetime_s


def link_prunable(rec: LinkTarget, now: float, retention_s: float,
                  message: MessageRecord | None = None) -> bool:
    """Whether a short link is old enough to go (its token then answers 404): created
    before the retention, and its message (None: gone) not one to keep it for
    (:func:`link_needed`)."""
    cutoff = now - retention_s
    return rec.created_at < cutoff and (message is None or not link_needed(message, cutoff))


def link_needed(message: MessageRecord, cutoff: float) -> bool:
    """A link of ``message`` stays while the message may still be sent
    (:func:`message_unsent`: a long deferral or outage) and for the retention after its
    last change (a message sent long after its link was made: counted from the sending,
    as long as the message is stored)."""
    return message_unsent(message) or last_activity(message) >= cutoff


def message_unsent(rec: MessageRecord) -> bool:
    """Whether the message may still be sent (queued, scheduled, parts to submit): its
    links must keep working however old they are (a long deferral or outage)."""
    return rec.status not in MESSAGE_FINAL


#: ``check(tx, key, record)``: whether a record read in the txn ``tx`` may go; the task's
#: read filter and the write transaction's re-check (``PruneRecords``) call the same one.
RecordCheck = Callable[[Any, bytes, Any], bool]


def link_check(now: float, retention_s: float) -> RecordCheck:
    """:func:`link_prunable` with the link's message looked up (only for an old link)."""
    cutoff = now - retention_s

    def check(tx: Any, key: bytes, rec: LinkTarget) -> bool:
        if rec.created_at >= cutoff:
            return False  # young: no message lookup
        raw = tx.get(Db.MESSAGES, rec.message_id.encode())
        return link_prunable(rec, now, retention_s, None if raw is None else MESSAGE.decode(raw))
    return check


def click_check(now: float, retention_s: float) -> RecordCheck:
    """:func:`click_prunable`."""
    return lambda tx, key, rec: click_prunable(rec, now, retention_s)


def message_clicks_check(now: float, retention_s: float) -> RecordCheck:
    """:func:`message_clicks_prunable`, the summary's key being its message id."""
    return lambda tx, key, rec: message_clicks_prunable(
        rec, tx.get(Db.MESSAGES, key) is not None, now, retention_s)


def challenge_check(now: float) -> RecordCheck:
    """:func:`challenge_prunable`."""
    return lambda tx, key, rec: challenge_prunable(rec, now)


def click_prunable(rec: Click, now: float, retention_s: float) -> bool:
    """Whether a recorded click is old enough to go (its event stays in the feed until the
    feed's own retention)."""
    return rec.at < now - retention_s


def message_clicks_prunable(rec: MessageClicks, message_exists: bool, now: float,
                            retention_s: float) -> bool:
    """A message's click summary goes with its message, once its links cannot be clicked
    any more either (its last click older than the links' retention)."""
    return not message_exists and (rec.last_at is None or rec.last_at < now - retention_s)


def challenge_prunable(rec: Challenge, now: float, grace_s: float = CHALLENGE_GRACE_S) -> bool:
    """Whether an opt-in challenge expired more than ``grace_s`` ago (verified or not: a
    verified one's consent is on the recipient record)."""
    return rec.expires_at < now - grace_s


def start_prunable(at: float, now: float, keep_s: float = START_LOG_KEEP_S) -> bool:
    """Whether an opt-in start-log entry is older than the rate limit's window looks back
    (``keep_s``: ``RetentionSettings.starts_s``)."""
    return at < now - keep_s


def events_prune_through(head: Sequence[tuple[int, float]], now: float, retention_s: float,
                         hold: int | None) -> int | None:
    """The last sequence number to prune among ``head`` (``(seq, at)``, oldest first), or
    None: events from the start while older than ``retention_s`` and not after ``hold``
    (the smallest cursor that counts). Stops at the first event to keep, so an event is
    never pruned while an older one stays (the feed has no holes)."""
    if retention_s <= 0:
        return None
    through = None
    for seq, at in head:
        if now - at < retention_s or (hold is not None and seq > hold):
            break
        through = seq
    return through


def holding_cursors(cursors: dict[str, int], webhooks: Iterable[str]) -> dict[str, int]:
    """The cursors that hold events: every stored cursor, except the cursor of a webhook
    endpoint that is no longer in the config (renaming or removing an endpoint leaves
    its cursor behind for good; it would hold the feed forever)."""
    names = {WEBHOOK_CURSOR_PREFIX + w for w in webhooks}
    return {n: seq for n, seq in cursors.items()
            if not n.startswith(WEBHOOK_CURSOR_PREFIX) or n in names}


def error_entries_to_prune(entries: Sequence[ErrorEntry], now: float, retention_s: float,
                           sticky_count: int) -> list[int]:
    """Indexes of ``entries`` (one phone's history, oldest first) that may go.

    An entry older than ``retention_s`` goes unless it still decides what
    ``GET /v1/segments/sms-errors`` says for the phone, whatever the look-back asked:
    the newest entry (``last_error_at``, ``error_class``), the newest of a segment class
    (``rules.error_segment``'s last temporary failure) and the newest ``sticky_count``
    ``temporary_unreachable`` and ``disconnected`` ones (the all-time sticky rule).
    Only the line's ``errors`` count shrinks to what is kept.
    """
    if retention_s <= 0 or not entries:
        return []
    keep = {len(entries) - 1}
    seen_segment = False
    sticky = {ErrorClass.TEMPORARY_UNREACHABLE: 0, ErrorClass.DISCONNECTED: 0}
    for i in range(len(entries) - 1, -1, -1):
        cls = _ERROR_CLASSES.get(entries[i].error_class, ErrorClass.UNKNOWN)
        if cls in SEGMENT_CLASSES and not seen_segment:
            seen_segment = True
            keep.add(i)
        if cls in sticky and sticky[cls] < sticky_count:
            sticky[cls] += 1
            keep.add(i)
    return [i for i, e in enumerate(entries) if i not in keep and now - e.at >= retention_s]


# --------------------------------------------------------------------------- the task


class _PruneOp(Protocol):
    """A ``gateway.store.retention`` prune op: run in the write txn, counts what it deleted."""

    deleted: int

    def __call__(self, tx: Any) -> tuple[()]: ...


class RetentionStats(msgspec.Struct, kw_only=True):
    """Counters for metrics (``smsgw_retention_*``)."""

    pruned: dict[str, int] = msgspec.field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    sweeps: int = 0
    failures: int = 0
    last_sweep_at: float | None = None
    last_sweep_seconds: float = 0.0
    #: Events older than the retention that a cursor held back at the last sweep (among
    #: the oldest ``CHUNK_KEYS`` of the feed).
    events_held: int = 0


class _Sweep:
    """Counts of one sweep (the log line)."""

    def __init__(self) -> None:
        self.pruned = dict.fromkeys(KINDS, 0)
        self.kept: dict[str, int] = {}
        self.held_by: str | None = None
        self.events_held = 0


class Retention:
    """The background task: ``await nursery.start(retention.run)``.

    ``clock`` gives ``now`` in epoch seconds (the records' time base); tests pass a clock
    driven by trio's. ``sleep`` is trio's.
    """

    def __init__(self, store: Any, settings: RetentionSettings, *,
                 clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self.settings = settings
        self._clock = clock
        self.stats = RetentionStats()
        self._last_orphan_scan: float | None = None
        self._last_commit_s = 0.0

    def statistics(self) -> RetentionStats:
        """Counters since start (a copy)."""
        return msgspec.structs.replace(self.stats, pruned=dict(self.stats.pruned))

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
                  ) -> None:
        """Sweep every ``interval_s`` (the first after :data:`FIRST_SWEEP_DELAY_S`) until
        cancelled. A failed sweep (store full or unavailable; or a record it cannot read)
        is logged and tried again at the next interval: pruning is housekeeping, never a
        reason to stop the gateway."""
        task_status.started()
        await trio.sleep(min(FIRST_SWEEP_DELAY_S, self.settings.interval_s))
        while True:
            try:
                await self.sweep()
            except StoreError as exc:
                self.stats.failures += 1
                log.warning("retention sweep failed", error=str(exc))
            except Exception:
                self.stats.failures += 1
                log.exception("retention sweep failed")
            await trio.sleep(self.settings.interval_s)

    async def sweep(self) -> _Sweep:
        """One pass over every kind; returns its counts (also logged and counted)."""
        started = time.monotonic()
        now = self._clock()
        s = self.settings
        sw = _Sweep()
        steps: list[tuple[str, Callable[[float, _Sweep], Awaitable[None]]]] = []
        if s.messages_s > 0:
            steps.append(("messages", self._messages))
            if self._last_orphan_scan is None or now - self._last_orphan_scan >= \
                    ORPHAN_SCAN_EVERY_S:
                steps.append(("carrier_ids", self._orphan_carrier_ids))
        if s.idempotency_s > 0:
            steps.append(("idempotency", self._claims))
        if s.events_s > 0:
            steps.append(("events", self._events))
        if s.errors_s > 0:
            steps.append(("errors", self._errors))
        if s.links_s > 0:
            steps += [("links", self._links), ("clicks", self._clicks),
                      ("message_clicks", self._message_clicks)]
        steps += [("optin_challenges", self._challenges), ("optin_starts", self._starts),
                  ("unknown_parts", self._unknown_parts)]
        failed: list[str] = []
        st = self.stats
        try:
            for kind, step in steps:
                # One kind failing (a record it cannot read) does not stop the others; a
                # store that fails fails them all (the store's errors end the sweep).
                try:
                    await step(now, sw)
                except StoreError:
                    raise
                except Exception:
                    self.stats.failures += 1
                    failed.append(kind)
                    log.exception("retention sweep failed", kind=kind)
                else:
                    if kind == "carrier_ids":
                        self._last_orphan_scan = now
        finally:
            # What was committed is gone, whether or not a later kind fails.
            for kind, n in sw.pruned.items():
                st.pruned[kind] += n
        st.sweeps += 1
        st.last_sweep_at = now
        st.last_sweep_seconds = time.monotonic() - started
        st.events_held = sw.events_held
        log.info("retention sweep", **sw.pruned, kept=",".join(
            f"{k}:{v}" for k, v in sorted(sw.kept.items())) or "-",
            events_held=sw.events_held, events_held_by=sw.held_by or "-",
            failed=",".join(failed) or "-", duration_ms=round(st.last_sweep_seconds * 1000))
        return sw

    async def _commit(self, fn: Callable[[Any], Any]) -> None:
        batch = WriteBatch()  # the normal lane: behind receipts and submits
        batch.run_in_txn(fn)
        await self._commit_batch(batch)

    async def _commit_batch(self, batch: WriteBatch) -> None:
        t0 = time.perf_counter()
        await self._store.commit(batch)
        self._last_commit_s = time.perf_counter() - t0

    async def _pause(self, wrote: bool) -> None:
        if wrote:
            await trio.sleep(min(PAUSE_MAX_S, max(PAUSE_MIN_S,
                                                  PAUSE_FACTOR * self._last_commit_s)))
        else:
            await trio.sleep(READ_PAUSE_S)

    async def _outbox_ids(self, created_before: float) -> frozenset[str]:
        # Only ids that may belong to a message created before the cutoff (the sweep
        # looks at no other): a campaign of 1,000,000 queued messages stays out of memory.
        # ``young_id_prefix`` is the prefix of the cutoff's millisecond: an id made earlier
        # in it is >= the prefix too; and an id may be ahead of its ``created_at`` (the id
        # generator keeps its last millisecond while the clock steps back). Ids made up to
        # ``ID_TIME_MARGIN_S`` after the cutoff are kept as well: a few more ids.
        young = young_id_prefix(created_before + ID_TIME_MARGIN_S)
        ids: set[str] = set()
        pos: bytes | None = b""
        while pos is not None:
            got, pos = self._store.read(partial(outbox_chunk, start=pos, limit=CHUNK_KEYS))
            ids.update(i for i in got if not (len(i) == ID_LENGTH and i >= young))
            if pos is not None:
                await self._pause(False)
        return frozenset(ids)

    async def _messages(self, now: float, sw: _Sweep) -> None:
        s = self.settings
        created_cutoff = now - s.messages_s
        outbox_ids = await self._outbox_ids(created_cutoff)
        prunable = partial(_prunable, now=now, retention_s=s.messages_s,
                           receipt_window_s=s.receipt_window_s, outbox_ids=outbox_ids)
        pos: bytes | None = b""
        while pos is not None:
            recs, pos = self._store.read(partial(message_chunk, start=pos, limit=MESSAGE_CHUNK))
            doomed: list[str] = []
            for rec in recs:
                if rec.created_at >= created_cutoff:
                    # Ids sort by creation time: nothing after this one is old enough.
                    pos = None
                    break
                verdict = message_verdict(rec, now, retention_s=s.messages_s,
                                          receipt_window_s=s.receipt_window_s,
                                          outbox_ids=outbox_ids)
                if verdict == PRUNE:
                    doomed.append(rec.id)
                else:
                    sw.kept[verdict] = sw.kept.get(verdict, 0) + 1
            if doomed:
                op = PruneMessages(doomed, prunable, carrier_ids_of, unknown_parts_of)
                await self._commit(op)
                sw.pruned["messages"] += op.messages
                sw.pruned["unknown_parts"] += op.unknown_parts
                sw.pruned["carrier_ids"] += op.carrier_ids
                sw.pruned["idempotency"] += op.claims
            if pos is not None or doomed:
                await self._pause(bool(doomed))

    async def _orphan_carrier_ids(self, now: float, sw: _Sweep) -> None:
        s = self.settings
        older_than = now - s.messages_s

        def read(start: bytes, tx: Any) -> tuple[list[bytes], bytes | None]:
            found, _, pos = carrier_id_chunk(tx, start, CHUNK_KEYS, older_than)
            return [key for key, rec, exists in found
                    if carrier_id_prunable(rec, exists, now, s.messages_s)], pos

        await self._prune_keys(read, partial(PruneCarrierIds, older_than=older_than),
                               "carrier_ids", sw)

    async def _claims(self, now: float, sw: _Sweep) -> None:
        lifetime_s = self.settings.idempotency_s
        await self._prune_records(
            Db.IDEMPOTENCY, IDEMPOTENCY, lambda tx, key, rec: claim_prunable(rec, now, lifetime_s),
            "idempotency", sw=sw, prune=partial(PruneIdempotency, older_than=now - lifetime_s))

    async def _links(self, now: float, sw: _Sweep) -> None:
        await self._prune_records(Db.LINKS, LINK, link_check(now, self.settings.links_s),
                                  "links", sw=sw)

    async def _clicks(self, now: float, sw: _Sweep) -> None:
        await self._prune_records(Db.CLICKS, CLICK, click_check(now, self.settings.links_s),
                                  "clicks", sw=sw)

    async def _message_clicks(self, now: float, sw: _Sweep) -> None:
        await self._prune_records(Db.MESSAGE_CLICKS, MESSAGE_CLICKS,
                                  message_clicks_check(now, self.settings.links_s),
                                  "message_clicks", sw=sw)

    async def _challenges(self, now: float, sw: _Sweep) -> None:
        await self._prune_records(Db.OPTIN_CHALLENGES, CHALLENGE, challenge_check(now),
                                  "optin_challenges", sw=sw)

    async def _prune_records(self, db: Db, decoder: msgspec.msgpack.Decoder[Any],
                             check: RecordCheck, kind: str, *, sw: _Sweep,
                             prune: Callable[[list[bytes]], _PruneOp] | None = None) -> None:
        """:meth:`_prune_keys` over the records of ``db`` that ``check`` picks, deleted by
        ``prune`` (default: ``PruneRecords``, which re-checks each with ``check``)."""
        def read(start: bytes, tx: Any) -> tuple[list[bytes], bytes | None]:
            found, pos = record_chunk(tx, db, decoder, start, CHUNK_KEYS)
            return [key for key, rec in found if check(tx, key, rec)], pos

        await self._prune_keys(read, prune or partial(PruneRecords, db, decoder, check=check),
                               kind, sw)

    async def _unknown_parts(self, now: float, sw: _Sweep) -> None:
        # The reconciliation index (gateway.store.unknown_parts): an entry older than the
        # receipt window can no longer be a candidate (the inbound processor ignores it).
        older_than = now - self.settings.receipt_window_s

        def read(start: bytes, tx: Any) -> tuple[list[bytes], bytes | None]:
            found, pos = unknown_part_chunk(tx, start, CHUNK_KEYS)
            return [key for key, e in found if e.at < older_than], pos

        await self._prune_keys(read, partial(PruneUnknownParts, older_than=older_than),
                               "unknown_parts", sw)

    async def _starts(self, now: float, sw: _Sweep) -> None:
        keep_s = self.settings.starts_s

        def read(start: bytes, tx: Any) -> tuple[list[bytes], bytes | None]:
            found, pos = start_chunk(tx, start, CHUNK_KEYS)
            return [key for key, at in found if start_prunable(at, now, keep_s)], pos

        await self._prune_keys(read, PruneStarts, "optin_starts", sw)

    async def _prune_keys(self, read: Callable[[bytes, Any], tuple[list[bytes], bytes | None]],
                          prune: Callable[[list[bytes]], _PruneOp],
                          kind: str, sw: _Sweep) -> None:
        """Chunk by chunk: the keys ``read(start, tx)`` picks (and where to resume), deleted by the
        ``prune`` op (which re-checks each in the write transaction), then a pause."""
        pos: bytes | None = b""
        while pos is not None:
            doomed, pos = self._store.read(partial(read, pos))
            if doomed:
                op = prune(doomed)
                await self._commit(op)
                sw.pruned[kind] += op.deleted
            if pos is not None or doomed:
                await self._pause(bool(doomed))

    async def _events(self, now: float, sw: _Sweep) -> None:
        s = self.settings
        cursors = holding_cursors(list_cursors(self._store), s.webhooks)
        hold_name = min(cursors, key=cursors.__getitem__) if cursors else None
        hold = cursors[hold_name] if hold_name is not None else None
        # The newest event always stays: a feed emptied under a cursor that is behind the
        # newest number gives that consumer no event at all, only a ``last_event_seq``
        # ahead of it (a webhook endpoint added back after its cursor stopped holding
        # would loop on that without a checkpoint). Read once: the newest only grows.
        newest = self._store.read(event_newest)
        keep = hold if newest is None else newest - 1 if hold is None else min(hold, newest - 1)
        while True:
            head = self._store.read(partial(event_head, limit=CHUNK_KEYS))
            through = events_prune_through(head, now, s.events_s, keep)
            if through is None:
                break
            batch = WriteBatch()
            batch.delete_events_through(through)
            await self._commit_batch(batch)
            sw.pruned["events"] += sum(1 for seq, _ in head if seq <= through)
            await self._pause(True)
        if hold is not None:
            # Events old enough to go that the slowest cursor still needs.
            head = self._store.read(partial(event_head, limit=CHUNK_KEYS))
            sw.events_held = sum(1 for seq, at in head if now - at >= s.events_s and seq > hold)
            if sw.events_held:
                sw.held_by = hold_name

    async def _errors(self, now: float, sw: _Sweep) -> None:
        s = self.settings
        pos: bytes | None = b""
        while pos is not None:
            phones, pos = self._store.read(partial(error_chunk, start=pos,
                                                   max_entries=CHUNK_KEYS))
            doomed: list[bytes] = []
            for _, entries in phones:
                idx = error_entries_to_prune([e for _, e in entries], now, s.errors_s,
                                             s.sticky_count)
                doomed += [entries[i][0] for i in idx]
            for start in range(0, len(doomed), CHUNK_KEYS):
                op = PruneErrors(doomed[start:start + CHUNK_KEYS])
                await self._commit(op)
                sw.pruned["errors"] += op.deleted
                await self._pause(True)
            if pos is not None and not doomed:
                await self._pause(False)


def _prunable(rec: MessageRecord, *, now: float, retention_s: float, receipt_window_s: float,
              outbox_ids: frozenset[str]) -> bool:
    # The in-transaction re-check of a message read earlier (gateway.store.retention).
    return message_verdict(rec, now, retention_s=retention_s, receipt_window_s=receipt_window_s,
                           outbox_ids=outbox_ids) == PRUNE
