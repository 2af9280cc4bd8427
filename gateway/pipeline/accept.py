"""Accept: the durability point of a message (docs/pipeline.md "Accept").

``Accepter.accept(messages, now)``: normalise numbers -> idempotency -> backpressure ->
(in one synchronous step) recipient facts -> ``rules.evaluate`` per message in request
order, ``rules.apply_send`` after each SEND -> ``encoding.plan`` with the route's first
carrier's options -> ONE ``WriteBatch`` (message records, outbox entries, recipient
updates, idempotency claims, ``message.status`` events) -> ``await store.commit(batch)``
(concurrent requests share a group commit) -> results in request order. Nothing is
answered before the commit returned.

Why the check-and-set is exact (smart sending, flow limit, state caps): building a batch is
synchronous code (no ``await`` in it: trio runs no other task meanwhile, so it needs no
lock), reading and then updating the ``RecipientCache`` (which is write-through), so the
next batch sees this one's sends even before its commit landed; entries with a commit in
flight are pinned in the cache. (A ``trio.Lock`` here cost a schedule point per accept:
an uncontended ``acquire`` yields, and under load the accept then waited a whole round
of the run queue, ~1 ms, before building.) A failed commit invalidates the
entries it touched (reloaded from the store, which has none of that batch).

Idempotency: a key already in the store returns the first result and stores nothing. A
key claimed by a batch whose commit is still in flight is followed: the second request
waits for that commit and returns the same result (or fails like it). Keys are claimed in
the batch (``claim_idempotency``), so even a bug here could not create two messages.

``reevaluate(records, now)``: due ``scheduled`` messages, re-checked (consent may have
changed) and COMMITTED here; the dispatcher gets what to do (``ReevalOutcome``).
``build_replies(batch, replies, now)``: keyword replies (kind ``reply``) written into the
caller's batch, so the inbound processor commits them with the MO.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Final, Literal, Protocol, TypeAlias

import msgspec
import phonenumbers
import trio

from gateway.api_types import (
    MAX_TEXT_CHARS,
    Backpressure,
    MessageIn,
    MessageResult,
    StoreFull,
    StoreUnavailable,
)
from gateway.config import GatewayConfig
from gateway.encoding import DEFAULT_OPTIONS, EncodingOptions, PlanRejected, SegmentPlan, plan
from gateway.marketing.store import TokenTakenError
from gateway.marketing.templates import TemplateError
from gateway.marketing.textprep import TextPreparer
from gateway.pipeline.events import StatusData, status_event
from gateway.pipeline.ids import IdGenerator
from gateway.pipeline.recipients import RecipientCache
from gateway.pipeline.routing import NO_ROUTE, Router
from gateway.store import (
    HistoryEntry,
    IdempotencyConflictError,
    IdempotencyRecord,
    MessageRecord,
    PartRecord,
    RecipientRecord,
    SendEntry,
    Store,
    StoreError,
    StoreFullError,
    WriteBatch,
)
from gateway.store.marketing import StoreMarketing
from rules import content
from rules.engine import apply_send, evaluate
from rules.model import (
    Action,
    Bypass,
    Decision,
    Message,
    MessageKind,
    RecipientFacts,
    ReplyKind,
)

__all__ = [
    "AcceptStats",
    "Accepter",
    "FollowFailed",
    "Handed",
    "HandoffSink",
    "ReevalOutcome",
    "ReplyRequest",
    "normalise_number",
]

_replace = msgspec.structs.replace
_fromts = datetime.fromtimestamp
_json = msgspec.json.Encoder().encode

QUEUED: Final = "queued"
SCHEDULED: Final = "scheduled"
REJECTED: Final = "rejected"
INVALID_NUMBER: Final = "invalid_number"
#: The rendered text is longer than the API's text limit.
TEXT_TOO_LONG: Final = "text_too_long"

#: Messages kept in ``RecipientRecord.recent`` (``GET /v1/recipients/{phone}``).
RECENT_SENDS: Final = 10
#: How often the cached outbox depth is re-read from the store (seconds, ``clock``).
DEPTH_REFRESH_S: Final = 0.25
#: Retry-After for a 429 while the outbox is over ``pipeline.outbox_max``.
BACKPRESSURE_RETRY_S: Final = 1.0

_KINDS: Final = {k.value: k for k in MessageKind}
_NO_BYPASS: frozenset[Bypass] = frozenset()
_MARKETING: Final = frozenset({MessageKind.CAMPAIGN, MessageKind.FLOW})
# Enum members as globals (``EnumClass.MEMBER`` costs ~50 ns on 3.11; used per message).
_SEND: Final = Action.SEND
_REJECT: Final = Action.REJECT
_PARTS: list[tuple[PartRecord, ...]] = [tuple(PartRecord(i) for i in range(n))
                                        for n in range(256)]

#: The field order the accept path builds ``MessageRecord``s in, positionally: keyword
#: matching over the record's 30 fields costs ~0.9 us per record, positions ~0.1 us
#: (bench/RESULTS.md, session 3). Records are ``array_like`` and only ever grow at the
#: end, so the order is fixed; the check below fails at import if it ever changes.
_RECORD_FIELDS: Final = (
    "id", "created_at", "to", "text", "kind", "sender", "campaign_id", "flow_id",
    "flow_type", "trigger_id", "trigger_at", "metadata", "smart_encoding", "bypass",
    "status", "reason", "defer_until", "encoding", "data_coding", "segments", "carrier",
    "route", "attempts", "next_attempt_at", "outbox_due", "parts", "history",
    "idempotency_key", "updated_at", "ref")
if MessageRecord.__struct_fields__[:len(_RECORD_FIELDS)] != _RECORD_FIELDS:  # pragma: no cover
    raise ImportError("MessageRecord fields changed: update the positional records in "
                      "gateway/pipeline/accept.py")
#: Plans kept per (text, carrier, region, smart) when they do not depend on the reference
#: number (one part, or rejected): a campaign plans one text for many recipients.
PLAN_MEMO: Final = 1024
#: Routes kept per number prefix (see ``Accepter._route``).
ROUTE_MEMO: Final = 4096


#: A new ``queued`` record about to be committed, with the encoding plan made for it:
#: (record, plan, the carrier's encoding options it was planned with, the country it was
#: planned for or None).
Handed: TypeAlias = tuple[MessageRecord, SegmentPlan, EncodingOptions, str | None]
_Planned: TypeAlias = tuple[SegmentPlan | PlanRejected, EncodingOptions, str | None]


class HandoffSink(Protocol):
    """Who takes new ``queued`` records straight from the accepter (the dispatcher,
    ``Dispatcher.accepted``): told BEFORE their commit, and told again with
    ``not_accepted`` if that commit failed (nothing of the batch is stored)."""

    def accepted(self, items: Sequence[Handed]) -> None: ...

    def not_accepted(self, message_ids: Iterable[str]) -> None: ...


class ReplyRequest(msgspec.Struct, frozen=True, kw_only=True):
    """A keyword reply to send (built by the inbound processor from ``rules.handle_mo``)."""

    #: The recipient (the MO's sender), E.164.
    phone: str
    text: str
    reply_to: ReplyKind
    #: Answer through the carrier the MO came from; None = the route's first carrier.
    carrier: str | None = None
    #: Our number the MO was sent to (the reply's sender id); None = carrier default.
    sender: str | None = None


class ReevalOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """What the dispatcher does with a re-evaluated scheduled message.

    ``send``: dispatch it now (its outbox entry is unchanged: ``record.outbox_due``).
    ``defer``: it was moved to ``due`` in the outbox (already committed); drop it.
    ``reject``: it is ``rejected`` and out of the outbox (committed); drop it.
    ``record`` is the record as committed.
    """

    message_id: str
    action: Literal["send", "defer", "reject"]
    record: MessageRecord
    due: float | None = None
    reason: str | None = None


class AcceptStats(msgspec.Struct, kw_only=True):
    """Counters for metrics (``Accepter.statistics()``); times are seconds."""

    batches: int = 0
    messages: int = 0
    queued: int = 0
    scheduled: int = 0
    rejected: int = 0
    duplicates: int = 0
    backpressure: int = 0
    commit_failures: int = 0
    reevaluated: int = 0
    replies: int = 0
    #: Rejections by reason code: new messages (API, replies) and re-evaluated ones.
    rejected_by_reason: dict[str, int] = msgspec.field(default_factory=dict)
    outbox_depth: int = 0
    #: Per-stage time, only measured when ``Accepter(profile=True)`` (bench/accept.py).
    t_rules: float = 0.0
    t_encoding: float = 0.0
    t_build: float = 0.0
    t_commit: float = 0.0


def normalise_number(to: str, country: str | None) -> str | None:
    """E.164 of ``to`` (already E.164, or national with ``country``); None if invalid.

    Only the shape is checked for E.164 input (validity is a number fact, cached per
    recipient); a national number is parsed with phonenumbers (cached by the caller).
    """
    if to.startswith("+"):
        return to
    if country is None:
        return None
    try:
        num = phonenumbers.parse(to, country)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(num):
        return None
    return phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164)


class FollowFailed(StoreUnavailable):
    """An idempotency key's first use (another request's accept) failed: the messages at
    ``failed`` have no result; the rest of this accept was committed (``results``), so a
    coalescer answers the requests without such a message (``AcceptCoalescer``)."""

    def __init__(self, message: str, failed: list[int], results: list[MessageResult],
                 ) -> None:
        super().__init__(message)
        self.failed = failed
        self.results = results


class _Pending:
    """An idempotency key whose first use is being committed."""

    __slots__ = ("done", "ok", "result")

    def __init__(self, result: MessageResult) -> None:
        self.result = result
        self.done = trio.Event()
        self.ok = False


class _Delta:
    """A batch's bookkeeping for one recipient: a pure ``record -> record`` function."""

    __slots__ = ("confirmed", "keep_s", "marks", "now", "now_dt", "recent", "sends")

    def __init__(self, now: float, keep_s: float, now_dt: datetime | None = None) -> None:
        self.now = now
        #: ``now`` as the datetime the rules were given: marks carrying it are ``now``
        #: (no per-message datetime -> epoch conversion).
        self.now_dt = now_dt
        self.keep_s = keep_s
        self.sends: list[float] = []
        self.marks: dict[str, float] = {}
        self.confirmed = False
        self.recent: list[SendEntry] = []

    def add(self, decision: Decision, now: float, rec: MessageRecord | None = None) -> None:
        if rec is not None:
            self.recent.append(SendEntry(now, rec.id, rec.kind, rec.campaign_id, rec.flow_id))
        marks = decision.marks
        at = marks.marketing_send_at
        if at is not None:
            self.sends.append(now if at is self.now_dt else at.timestamp())
        if marks.flow_mark is not None:
            self.marks[marks.flow_mark] = now
        if marks.opt_out_confirmation:
            self.confirmed = True

    def __call__(self, rec: RecipientRecord) -> RecipientRecord:
        sends = rec.marketing_sends
        if self.sends:
            new = tuple(self.sends)
            sends = sends + new if not sends or sends[-1] <= new[0] else tuple(sorted(sends + new))
        if sends:
            since = self.now - self.keep_s
            if sends[0] < since:
                sends = tuple(t for t in sends if t >= since)
        flow_marks = rec.flow_marks
        if self.marks:
            flow_marks = {**flow_marks, **self.marks}
        recent = rec.recent
        if self.recent:
            recent = (*recent, *self.recent)[-RECENT_SENDS:]
        return _replace(rec, marketing_sends=sends, flow_marks=flow_marks,
                        opt_out_confirmed=rec.opt_out_confirmed or self.confirmed,
                        recent=recent, updated_at=self.now)


def _result_from_record(rec: MessageRecord) -> MessageResult:
    """The answer the first request got, rebuilt from the stored record."""
    first = rec.history[0] if rec.history else None
    status = first.status if first is not None else rec.status
    if status not in (QUEUED, SCHEDULED, REJECTED):
        status = QUEUED
    reason = first.reason if first is not None else rec.reason
    defer = rec.defer_until if status == SCHEDULED else None
    return MessageResult(id=rec.id, status=status,  # type: ignore[arg-type]
                         reason=reason, defer_until=_fromts(defer, UTC) if defer else None,
                         segments=rec.segments or None, encoding=rec.encoding)


class Accepter:
    """Accept path, scheduled re-evaluation and keyword replies (see module doc).

    ``clock`` (monotonic seconds) paces the outbox-depth re-read; ``now`` arguments are
    epoch seconds (record times). ``profile=True`` measures per-stage times
    (``statistics()``; costs ~0.2 us/message).
    """

    def __init__(self, store: Store, config: GatewayConfig, recipients: RecipientCache, *,
                 clock: Callable[[], float] = time.monotonic,
                 ids: IdGenerator | None = None, profile: bool = False) -> None:
        self._store = store
        self._config = config
        self._policy = config.rules
        self._recipients = recipients
        self._clock = clock
        self._ids = ids if ids is not None else IdGenerator()
        self._router = Router(config.routes)
        #: (carriers, matched prefix) per number prefix of the longest route's length:
        #: longest-prefix routing looks at no more of the number than that.
        self._routes: dict[str, tuple[tuple[str, ...], str | None]] = {}
        self._route_len = max((len(r.prefix) for r in config.routes), default=0)
        self._options: dict[str, EncodingOptions] = {}
        self._senders: dict[str, str | None] = {}
        for c in config.carriers:
            self._options[c.name] = c.encoding
            self._senders[c.name] = c.default_sender
        self._refs: dict[str, int] = {}
        self._plans: dict[tuple[str, str, str | None, bool | None], tuple[_Planned, bool]] = {}
        #: Templates and short links (docs/marketing.md): render -> shorten -> rules.
        self._prep = TextPreparer(config.links, StoreMarketing(store))
        self._pending: dict[str, _Pending] = {}
        self._national: dict[tuple[str, str | None], str | None] = {}
        self._outbox_max = config.pipeline.outbox_max
        self._depth = -1
        self._depth_at = 0.0
        self._profile = profile
        self._t_plan = 0.0
        #: What the last ``_plan`` call planned with: (plan, options, country).
        self._last_plan: _Planned | None = None
        #: Set by the app: new ``queued`` records are handed to it before their commit, so
        #: the dispatcher needs no store read and no second plan for them.
        self.handoff: HandoffSink | None = None
        self.stats = AcceptStats()

    # --- outbox depth (backpressure) ------------------------------------------------

    @property
    def outbox_depth(self) -> int:
        """The outbox depth as last known (re-read at most every ``DEPTH_REFRESH_S``)."""
        now = self._clock()
        if self._depth < 0 or now - self._depth_at >= DEPTH_REFRESH_S:
            self._depth = self._store.outbox_depth()
            self._depth_at = now
        return self._depth

    def outbox_removed(self, n: int = 1) -> None:
        """The dispatcher committed the removal of ``n`` outbox entries."""
        if self._depth >= 0:
            self._depth = max(0, self._depth - n)

    def _check_backpressure(self) -> None:
        if self.outbox_depth >= self._outbox_max:
            self.stats.backpressure += 1
            raise Backpressure(BACKPRESSURE_RETRY_S,
                               f"outbox holds {self._depth} messages (max {self._outbox_max})")

    # --- helpers --------------------------------------------------------------------

    def _e164(self, m: MessageIn) -> str | None:
        to = m.to
        if to[0] == "+":
            return to
        key = (to, m.country)
        hit = self._national.get(key, "")
        if hit == "":
            hit = normalise_number(to, m.country)
            if len(self._national) > 100_000:
                self._national.clear()
            self._national[key] = hit
        return hit

    def _route(self, e164: str) -> tuple[tuple[str, ...], str | None]:
        key = e164[:self._route_len]
        hit = self._routes.get(key)
        if hit is None:
            found = self._router.lookup(e164)
            hit = ((), None) if found is None else (found[1], found[0])
            if len(self._routes) >= ROUTE_MEMO:
                self._routes.clear()
            self._routes[key] = hit
        return hit

    def _plan(self, text: str, carrier: str, region: str | None, smart: bool | None,
              ) -> tuple[SegmentPlan | PlanRejected, bool]:
        key = (text, carrier, region, smart)
        hit = self._plans.get(key)
        if hit is not None:
            self._last_plan = hit[0]
            return hit[0][0], hit[1]
        opts = self._options.get(carrier, DEFAULT_OPTIONS)
        ref = self._refs.get(carrier, 0)
        p = plan(text, opts, ref=ref, country=region or None, smart=smart)
        planned = (p, opts, region or None)
        self._last_plan = planned
        used = opts.smart_encoding if smart is None else smart
        if isinstance(p, PlanRejected) or p.ref is None:
            # No reference number in it (one part, or rejected): every message with this
            # text gets the same plan, so keep it (plans are immutable values).
            plans = self._plans
            if len(plans) >= PLAN_MEMO:
                plans.clear()
            plans[key] = (planned, used)
        else:
            self._refs[carrier] = (ref + 1) & 0xFFFF
        return p, used

    # --- accept ---------------------------------------------------------------------

    async def accept(self, messages: Sequence[MessageIn], now: float | None = None,
                     ) -> list[MessageResult]:
        """Evaluate, encode and durably store ``messages``; results in request order.

        Raises ``Backpressure`` (nothing stored), ``StoreFull`` / ``StoreUnavailable``
        (the commit failed: nothing stored).
        """
        if now is None:
            now = time.time()
        self._check_backpressure()
        sink = self.handoff
        for attempt in range(3):
            # No yield before the build (see the module docstring); cancelled already ->
            # nothing is built or stored.
            await trio.lowlevel.checkpoint_if_cancelled()
            claimed: dict[str, int] = {}
            try:
                batch, results, follow, phones, added, handed = self._build(messages, now,
                                                                            claimed)
            except BaseException:
                # Failed half-way (a store read): the keys it claimed are not being
                # committed; their followers must not wait for them forever.
                for k in claimed:
                    p = self._pending.pop(k, None)
                    if p is not None:
                        p.done.set()
                raise
            mine = [k for k, p in follow if k is not None and p is None]
            if handed and sink is not None:
                # Before the commit: the dispatcher may read the outbox entries as soon
                # as they are committed, and must find these first (Dispatcher.accepted).
                sink.accepted(handed)
            try:
                if batch:
                    await self._commit(batch, phones)
            except IdempotencyConflictError:
                # A key used by a writer we did not know of: the retry finds it in the
                # store and answers with its first result.
                self._failed(mine, phones, added, handed)
                if attempt == 2:
                    raise StoreUnavailable("idempotency key conflict") from None
                continue
            except TokenTakenError:
                # A short-link token drawn twice between the check and the commit (~never
                # with 47-bit tokens): the rebuild draws new ones.
                self._failed(mine, phones, added, handed)
                if attempt == 2:
                    raise StoreUnavailable("short-link token conflict") from None
                continue
            except BaseException:
                self._failed(mine, phones, added, handed)
                raise
            self._succeeded(mine)
            break
        # Keys another request was committing: answer what it answers, once it did.
        # Every one is waited for: which messages failed must be known, as this accept
        # may carry other requests, committed (AcceptCoalescer).
        failed: list[int] = []
        for i, (_key, p) in enumerate(follow):
            if p is None:
                continue
            await p.done.wait()
            if not p.ok:
                failed.append(i)
                continue
            results[i] = p.result
        if failed:
            key = follow[failed[0]][0]
            raise FollowFailed(f"the request that used idempotency key {key!r} failed",
                               failed, results)
        return results

    def _failed(self, keys: Iterable[str], phones: list[str], added: int,
                handed: Sequence[Handed] = ()) -> None:
        self.stats.commit_failures += 1
        if handed and self.handoff is not None:
            self.handoff.not_accepted(h[0].id for h in handed)
        self._recipients.invalidate(phones)
        self._depth = max(0, self._depth - added) if self._depth >= 0 else self._depth
        for k in keys:
            p = self._pending.pop(k, None)
            if p is not None:
                p.done.set()

    def _succeeded(self, keys: Iterable[str]) -> None:
        for k in keys:
            p = self._pending.pop(k, None)
            if p is not None:
                p.ok = True
                p.done.set()

    async def _commit_or_forget(self, batch: WriteBatch, phones: list[str]) -> None:
        """Commit ``batch`` (if any); on failure count it and drop the cached recipients
        it changed in memory (nothing of it is stored), then re-raise."""
        if not batch:
            return
        try:
            await self._commit(batch, phones)
        except BaseException:
            self.stats.commit_failures += 1
            self._recipients.invalidate(phones)
            raise

    async def _commit(self, batch: WriteBatch, phones: list[str]) -> None:
        rc = self._recipients
        rc.pin(phones)
        t0 = time.perf_counter()
        try:
            # Shielded: once handed over, the batch may commit anyway; knowing the outcome
            # keeps the cache and the idempotency followers right. Commits are bounded.
            with trio.CancelScope(shield=True):
                await self._store.commit(batch)
        except StoreFullError as e:
            raise StoreFull(f"store full: {e}") from e
        except IdempotencyConflictError:
            raise
        except StoreError as e:
            raise StoreUnavailable(f"store unavailable: {e}") from e
        finally:
            rc.unpin(phones)
            if self._profile:
                self.stats.t_commit += time.perf_counter() - t0

    def _build(self, messages: Sequence[MessageIn], now: float,
               in_batch: dict[str, int] | None = None) -> tuple[
            WriteBatch, list[MessageResult],
            list[tuple[str | None, _Pending | None]], list[str], int, list[Handed]]:
        """Everything of an accept up to the commit (synchronous: atomic under trio);
        last, the new ``queued`` records with their plans for ``handoff``. ``in_batch``
        gets the idempotency keys claimed (-> their message's index), as they are."""
        store = self._store
        rc = self._recipients
        policy = self._policy
        stats = self.stats
        profile = self._profile
        perf = time.perf_counter
        n = len(messages)
        ids = self._ids.many(n, now)
        now_dt = _fromts(now, UTC)
        batch = WriteBatch()
        results: list[MessageResult] = []
        #: per message: (key to follow, pending of another request) or (key, None) = mine
        follow: list[tuple[str | None, _Pending | None]] = []
        e164s = [self._e164(m) for m in messages]
        rc.load({e for e in e164s if e is not None})
        cur: dict[str, RecipientFacts] = {}
        deltas: dict[str, _Delta] = {}
        touched: dict[str, None] = {}
        keep_s = rc.keep_sends_s
        added = 0
        if in_batch is None:
            in_batch = {}
        handed: list[Handed] | None = [] if self.handoff is not None else None
        t_rules = t_enc = 0.0
        t_start = perf()
        for i, m in enumerate(messages):
            key = m.idempotency_key
            if key is not None:
                j = in_batch.get(key)
                if j is not None:  # same key earlier in this batch: same answer
                    results.append(results[j])
                    follow.append((None, None))
                    stats.duplicates += 1
                    continue
                p = self._pending.get(key)
                if p is not None:  # another request is committing this key
                    results.append(p.result)
                    follow.append((key, p))
                    stats.duplicates += 1
                    continue
                known = store.get_idempotency(key)
                if known is not None:
                    rec0 = store.get_message(known.message_id)
                    if rec0 is not None:
                        results.append(_result_from_record(rec0))
                        follow.append((None, None))
                        stats.duplicates += 1
                        continue
            mid = ids[i]
            e164 = e164s[i]
            # render the template, shorten the links: rules and encoding see the result
            text = m.text
            prepared = self._prep.prepare(text, m.vars, m.shorten_links, m.from_)
            if isinstance(prepared, TemplateError):
                rec = self._rejected(mid, now, m, to=m.to if e164 is None else e164,
                                     text=text, reason=prepared.reason,
                                     detail=f"{prepared.field}: {prepared.detail}")
            # (an unchanged text may come back as an equal object: keep the client's)
            elif prepared.text != text and len(text := prepared.text) > MAX_TEXT_CHARS:
                rec = self._rejected(mid, now, m, to=m.to if e164 is None else e164,
                                     text=text, reason=TEXT_TOO_LONG,
                                     detail=f"longer than {MAX_TEXT_CHARS} characters "
                                            "once rendered")
            elif e164 is None or (fs := rc.facts_stored(e164)) is None:
                rec = self._rejected(mid, now, m, to=m.to if e164 is None else e164,
                                     text=text, reason=INVALID_NUMBER,
                                     detail="not a valid phone number")
            else:
                carriers, prefix = self._route(e164)
                if not carriers:
                    rec = self._rejected(mid, now, m, to=e164, text=text, reason=NO_ROUTE,
                                         detail="no route matches the number")
                else:
                    facts = cur.get(e164)
                    if facts is None:
                        facts = fs[0]
                    msg = Message(kind=_KINDS[m.kind], to_e164=e164, text=text,
                                  campaign_id=m.campaign_id, flow_id=m.flow_id,
                                  flow_type=m.flow_type, trigger_id=m.trigger_id,
                                  trigger_at=m.trigger_at,
                                  bypass=frozenset(map(Bypass, m.bypass)) if m.bypass
                                  else _NO_BYPASS)
                    if profile:
                        t0 = perf()
                        decision = evaluate(msg, facts, policy, now_dt)
                        t_rules += perf() - t0
                    else:
                        decision = evaluate(msg, facts, policy, now_dt)
                    if not fs[1]:
                        touched[e164] = None  # a new recipient: store its number facts
                    self._last_plan = None
                    rec = self._decided(mid, now, m, msg=msg, e164=e164, facts=facts,
                                        decision=decision, carriers=carriers,
                                        prefix=prefix, profile=profile)
                    if profile:
                        t_enc += self._t_plan
                    if rec.status == QUEUED:
                        # the next message to them in this batch sees this send
                        cur[e164] = apply_send(facts, msg, decision, now_dt)
                        d = deltas.get(e164)
                        if d is None:
                            d = deltas[e164] = _Delta(now, keep_s, now_dt)
                        d.add(decision, now, rec)
                        touched[e164] = None
                        lp = self._last_plan
                        if handed is not None and lp is not None \
                                and not isinstance(lp[0], PlanRejected):
                            # ``_decided`` planned it last (a queued record has a plan).
                            handed.append((rec, lp[0], lp[1], lp[2]))
            res = self._emit(batch, rec, now)
            if rec.status != REJECTED and not isinstance(prepared, TemplateError) \
                    and prepared.links:
                self._prep.add_links(batch, prepared, message_id=mid, phone=rec.to, now=now,
                                     campaign_id=m.campaign_id, flow_id=m.flow_id)
            results.append(res)
            if rec.status != REJECTED:
                added += 1
            if key is not None:
                batch.claim_idempotency(key, IdempotencyRecord(message_id=mid, at=now))
                in_batch[key] = i
                self._pending[key] = _Pending(res)
                follow.append((key, None))
            else:
                follow.append((None, None))
        try:
            for phone in touched:
                d = deltas.get(phone)
                if d is None:
                    d = _Delta(now, keep_s)
                rc.update(phone, d, batch, facts=cur.get(phone))
        except BaseException:
            # The cache is write-through: what it took of this batch is not going to be
            # committed; reload those recipients from the store (as after a failed commit).
            rc.invalidate(list(touched))
            raise
        if self._depth >= 0:
            self._depth += added
        stats.batches += 1
        stats.messages += n
        if profile:
            stats.t_rules += t_rules
            stats.t_encoding += t_enc
            stats.t_build += perf() - t_start - t_rules - t_enc
        # follow entries for keys we claimed are (key, None); only those of other
        # requests carry their _Pending.
        return batch, results, follow, list(touched), added, handed or []

    def _emit(self, batch: WriteBatch, rec: MessageRecord, now: float) -> MessageResult:
        """Message record, outbox entry and ``message.status`` event of a new message."""
        batch.put_message(rec)
        status = rec.status
        du = rec.defer_until
        stats = self.stats
        if status == REJECTED:
            stats.rejected += 1
            r = rec.reason or "other"
            stats.rejected_by_reason[r] = stats.rejected_by_reason.get(r, 0) + 1
        else:
            batch.outbox_add(rec.outbox_due if rec.outbox_due is not None else now, rec.id)
            if status == QUEUED:
                stats.queued += 1
            else:
                stats.scheduled += 1
        batch.append_event(status_event(
            now, rec.id, rec.to, status,
            StatusData(reason=rec.reason, detail=rec.history[0].detail,
                       defer_until=du, segments=rec.segments or None,
                       encoding=rec.encoding, kind=rec.kind,
                       campaign_id=rec.campaign_id, flow_id=rec.flow_id,
                       metadata=msgspec.Raw(rec.metadata) if rec.metadata else None)))
        return MessageResult(id=rec.id, status=status,  # type: ignore[arg-type]
                             reason=rec.reason if status != QUEUED else None,
                             defer_until=_fromts(du, UTC) if du is not None else None,
                             segments=rec.segments or None, encoding=rec.encoding)

    def _rejected(self, mid: str, now: float, m: MessageIn, *, to: str, text: str,
                  reason: str, detail: str, kind: str | None = None) -> MessageRecord:
        # Positional, in _RECORD_FIELDS order (see there).
        return MessageRecord(
            mid, now, to, text, kind or m.kind, m.from_, m.campaign_id, m.flow_id,
            m.flow_type, m.trigger_id,
            m.trigger_at.timestamp() if m.trigger_at is not None else None,
            _json(m.metadata) if m.metadata else b"", bool(m.smart_encoding),
            tuple(m.bypass), REJECTED, reason, None, None, 0, 0, None, None, 0, None, None,
            (), (HistoryEntry(now, REJECTED, reason, detail),), m.idempotency_key, now)

    def _decided(self, mid: str, now: float, m: MessageIn, *, msg: Message,
                 e164: str, facts: RecipientFacts, decision: Decision,
                 carriers: tuple[str, ...], prefix: str | None, profile: bool,
                 ) -> MessageRecord:
        """The record of an evaluated message (``queued`` only for a SEND that encoded:
        the caller then applies the SEND to the recipient's facts)."""
        action = decision.action
        kind = msg.kind.value
        if action is _REJECT:
            return self._rejected(mid, now, m, to=e164, text=msg.text, kind=kind,
                                  reason=decision.reason.value, detail=decision.detail)
        if action is _SEND:
            text = decision.text if decision.text is not None else msg.text
        else:  # DEFER: the text it will be sent with (re-checked when it wakes)
            text = content.final_text(msg, facts, self._policy) \
                if msg.kind in _MARKETING else msg.text
        carrier = carriers[0]
        region = facts.number.region if facts.number is not None else None
        if profile:
            t0 = time.perf_counter()
            p, smart = self._plan(text, carrier, region, m.smart_encoding)
            self._t_plan = time.perf_counter() - t0
        else:
            p, smart = self._plan(text, carrier, region, m.smart_encoding)
        if isinstance(p, PlanRejected):
            return self._rejected(mid, now, m, to=e164, text=text, reason=p.reason,
                                  detail=p.message, kind=kind)
        if action is _SEND:
            status, reason, due, until = QUEUED, None, now, None
        else:
            du = decision.defer_until
            until = du.timestamp() if du is not None else now
            status, reason, due = SCHEDULED, decision.reason.value, until
        segs = p.segments
        # Positional, in _RECORD_FIELDS order (see there).
        rec = MessageRecord(
            mid, now, e164, text, kind,
            m.from_ if m.from_ is not None else self._senders.get(carrier),
            m.campaign_id, m.flow_id, m.flow_type, m.trigger_id,
            m.trigger_at.timestamp() if m.trigger_at is not None else None,
            _json(m.metadata) if m.metadata else b"", smart,
            tuple(m.bypass) if m.bypass else (), status, reason, until, p.encoding,
            p.data_coding, segs, carrier, prefix, 0, None, due,
            _PARTS[segs] if segs < 256 else tuple(PartRecord(i) for i in range(segs)),
            (HistoryEntry(now, status, reason, decision.detail or None),),
            m.idempotency_key, now, p.ref)
        return rec

    # --- scheduled messages -----------------------------------------------------------

    async def reevaluate(self, records: Sequence[MessageRecord], now: float | None = None,
                         ) -> list[ReevalOutcome]:
        """Re-check due ``scheduled`` messages and COMMIT the result (one batch).

        Outcomes are in the order of ``records``. Records not ``scheduled`` come back as
        ``send`` unchanged. A ``send`` keeps its outbox entry (``record.outbox_due``); the
        record is ``queued`` with the text to send (re-encoded if the rules changed it).
        Raises ``StoreFull`` / ``StoreUnavailable`` when the commit fails: nothing changed,
        the messages stay scheduled and due; retry later.
        """
        if now is None:
            now = time.time()
        await trio.lowlevel.checkpoint_if_cancelled()
        batch, outcomes, phones, removed = self._build_reeval(records, now)  # synchronous
        await self._commit_or_forget(batch, phones)
        self.outbox_removed(removed)
        self.stats.reevaluated += len(records)
        by_reason = self.stats.rejected_by_reason
        for o in outcomes:  # counted once committed (a failed commit is re-evaluated)
            if o.action == "reject":
                by_reason[o.reason or "other"] = by_reason.get(o.reason or "other", 0) + 1
        return outcomes

    def _build_reeval(self, records: Sequence[MessageRecord], now: float,
                      ) -> tuple[WriteBatch, list[ReevalOutcome], list[str], int]:
        rc = self._recipients
        policy = self._policy
        now_dt = _fromts(now, UTC)
        batch = WriteBatch()
        outcomes: list[ReevalOutcome] = []
        rc.load({r.to for r in records if r.status == SCHEDULED})
        cur: dict[str, RecipientFacts] = {}
        deltas: dict[str, _Delta] = {}
        removed = 0
        for r in records:
            if r.status != SCHEDULED:
                outcomes.append(ReevalOutcome(message_id=r.id, action="send", record=r))
                continue
            phone = r.to
            decision: Decision | None = None
            facts: RecipientFacts | None = None
            reason = detail = ""
            carrier = r.carrier
            if carrier is None:
                carriers, _ = self._route(phone)
                carrier = carriers[0] if carriers else None
            if not rc.is_valid(phone):
                reason, detail = INVALID_NUMBER, "not a valid phone number"
            elif carrier is None:
                reason, detail = NO_ROUTE, "no route matches the number"
            else:
                facts = cur.get(phone)
                if facts is None:
                    facts = rc.facts(phone)
                msg = Message(kind=_KINDS.get(r.kind, MessageKind.CAMPAIGN), to_e164=phone,
                              text=r.text, campaign_id=r.campaign_id, flow_id=r.flow_id,
                              flow_type=r.flow_type, trigger_id=r.trigger_id,
                              trigger_at=_fromts(r.trigger_at, UTC)
                              if r.trigger_at is not None else None,
                              bypass=frozenset(map(Bypass, r.bypass)) if r.bypass
                              else _NO_BYPASS)
                decision = evaluate(msg, facts, policy, now_dt)
                if decision.action is Action.REJECT:
                    reason, detail = decision.reason.value, decision.detail
            history = r.history
            if decision is not None and decision.action is Action.SEND:
                assert facts is not None and carrier is not None
                new = r
                text = decision.text if decision.text is not None else r.text
                if text != r.text:
                    region = facts.number.region if facts.number is not None else None
                    p, _ = self._plan(text, carrier, region, r.smart_encoding)
                    if isinstance(p, PlanRejected):
                        reason, detail = p.reason, p.message
                    else:
                        new = _replace(r, text=text, encoding=p.encoding,
                                       data_coding=p.data_coding, segments=p.segments,
                                       parts=_PARTS[p.segments], ref=p.ref)
                if not reason:
                    new = _replace(new, status=QUEUED, reason=None, defer_until=None,
                                   updated_at=now,
                                   history=(*history, HistoryEntry(now, QUEUED, None, None)))
                    cur[phone] = apply_send(facts, msg, decision, now_dt)
                    d = deltas.get(phone)
                    if d is None:
                        d = deltas[phone] = _Delta(now, rc.keep_sends_s)
                    d.add(decision, now, new)
                    outcomes.append(ReevalOutcome(message_id=r.id, action="send", record=new))
                    self._reeval_event(batch, new, now)
                    continue
            if decision is not None and decision.action is Action.DEFER:
                du = decision.defer_until
                until = du.timestamp() if du is not None else now
                new = _replace(r, status=SCHEDULED, reason=decision.reason.value,
                               defer_until=until, outbox_due=until, updated_at=now,
                               history=(*history, HistoryEntry(
                                   now, SCHEDULED, decision.reason.value,
                                   decision.detail or None)))
                if r.outbox_due is not None:
                    batch.outbox_remove(r.outbox_due, r.id)
                batch.outbox_add(until, r.id)
                outcomes.append(ReevalOutcome(message_id=r.id, action="defer", record=new,
                                              due=until, reason=new.reason))
                self._reeval_event(batch, new, now)
                continue
            new = _replace(r, status=REJECTED, reason=reason, defer_until=None,
                           outbox_due=None, updated_at=now,
                           history=(*history, HistoryEntry(now, REJECTED, reason,
                                                           detail or None)))
            if r.outbox_due is not None:
                batch.outbox_remove(r.outbox_due, r.id)
                removed += 1
            outcomes.append(ReevalOutcome(message_id=r.id, action="reject", record=new,
                                          reason=reason))
            self._reeval_event(batch, new, now)
        for phone, d in deltas.items():
            rc.update(phone, d, batch, facts=cur.get(phone))
        return batch, outcomes, list(deltas), removed

    def _reeval_event(self, batch: WriteBatch, rec: MessageRecord, now: float) -> None:
        batch.put_message(rec)
        batch.append_event(status_event(
            now, rec.id, rec.to, rec.status,
            StatusData(reason=rec.reason, detail=rec.history[-1].detail,
                       defer_until=rec.defer_until, kind=rec.kind,
                       campaign_id=rec.campaign_id, flow_id=rec.flow_id,
                       metadata=msgspec.Raw(rec.metadata) if rec.metadata else None)))

    # --- keyword replies --------------------------------------------------------------

    def build_replies(self, batch: WriteBatch, replies: Sequence[ReplyRequest],
                      now: float) -> list[MessageResult]:
        """Evaluate and encode keyword replies (kind ``reply``) into the caller's ``batch``.

        Synchronous, hence atomic with the accept path (which builds its batches in
        synchronous code too). Writes the reply records, outbox entries, events and the
        recipients' marks (opt-out confirmation) into ``batch``; the caller commits it with
        the MO. If that commit fails, the caller must ``recipients.invalidate`` the reply
        phones (the cache already holds the marks). Results in the order of ``replies``.
        """
        rc = self._recipients
        policy = self._policy
        now_dt = _fromts(now, UTC)
        ids = self._ids.many(len(replies), now)
        rc.load({r.phone for r in replies})
        cur: dict[str, RecipientFacts] = {}
        deltas: dict[str, _Delta] = {}
        results: list[MessageResult] = []
        for i, r in enumerate(replies):
            mid = ids[i]
            phone = r.phone
            m = MessageIn(to=phone, text=r.text, from_=r.sender)
            if not rc.is_valid(phone):
                rec = self._rejected(mid, now, m, to=phone, text=r.text, kind="reply",
                                     reason=INVALID_NUMBER, detail="not a valid phone number")
                results.append(self._emit(batch, rec, now))
                continue
            if r.carrier is not None:
                carriers: tuple[str, ...] = (r.carrier,)
                prefix = self._router.matched_prefix(phone)
            else:
                carriers, prefix = self._route(phone)
            if not carriers:
                rec = self._rejected(mid, now, m, to=phone, text=r.text, kind="reply",
                                     reason=NO_ROUTE, detail="no route matches the number")
                results.append(self._emit(batch, rec, now))
                continue
            facts = cur.get(phone)
            if facts is None:
                facts = rc.facts(phone)
            msg = Message(kind=MessageKind.REPLY, to_e164=phone, text=r.text,
                          reply_to=r.reply_to)
            decision = evaluate(msg, facts, policy, now_dt)
            rec = self._decided(mid, now, m, msg=msg, e164=phone, facts=facts,
                                decision=decision, carriers=carriers, prefix=prefix,
                                profile=False)
            if rec.status == QUEUED:
                cur[phone] = apply_send(facts, msg, decision, now_dt)
                d = deltas.get(phone)
                if d is None:
                    d = deltas[phone] = _Delta(now, rc.keep_sends_s)
                d.add(decision, now, rec)
            results.append(self._emit(batch, rec, now))
        for phone, d in deltas.items():
            rc.update(phone, d, batch, facts=cur.get(phone))
        self.stats.replies += len(replies)
        return results

    async def accept_replies(self, replies: Sequence[ReplyRequest], now: float | None = None,
                             ) -> list[MessageResult]:
        """:meth:`build_replies` in a batch of its own, committed before returning."""
        if now is None:
            now = time.time()
        batch = WriteBatch()
        await trio.lowlevel.checkpoint_if_cancelled()
        results = self.build_replies(batch, replies, now)  # synchronous
        phones = list({r.phone for r in replies})
        await self._commit_or_forget(batch, phones)
        return results

    def statistics(self) -> AcceptStats:
        """Counters for metrics."""
        self.stats.outbox_depth = max(self._depth, 0)
        return self.stats
