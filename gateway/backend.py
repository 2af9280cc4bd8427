"""``GatewayBackend``: the ``gateway.api_types.Backend`` the HTTP API calls, on the pipeline.

Writes go through the same pieces as everything else: ``submit`` is ``Accepter.accept``;
``consent`` changes the recipient through the ``RecipientCache`` (write-through) and
appends a ``consent`` event in the same commit. Reads are short store reads. Store faults
become the API's faults (``StoreFull`` 507, ``StoreUnavailable`` 503).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec
import trio

from gateway.api_types import (
    ConsentIn,
    ConsentOut,
    ErrorSegmentLine,
    ErrorSummary,
    EventOut,
    EventsOut,
    HistoryEntry,
    InvalidRequest,
    MessageIn,
    MessageResult,
    MessageStatusOut,
    PartOut,
    PreviewIn,
    PreviewOut,
    RecentSend,
    RecipientConsent,
    RecipientOut,
    Replacement,
    StoreFull,
    StoreUnavailable,
)
from gateway.config import GatewayConfig
from gateway.encoding import DEFAULT_OPTIONS, EncodingOptions, preview
from gateway.marketing.service import MarketingService, with_language
from gateway.marketing.templates import TemplateError
from gateway.marketing.textprep import TextPreparer
from gateway.pipeline.accept import Accepter, FollowFailed, ReplyRequest, normalise_number
from gateway.pipeline.events import ConsentData, consent_event, split_data
from gateway.pipeline.recipients import RecipientCache, facts_from_record, to_dt
from gateway.pipeline.routing import Router
from gateway.store import (
    Event,
    MessageRecord,
    PhoneErrors,
    RecipientRecord,
    Store,
    StoreError,
    StoreFullError,
    WriteBatch,
    logic,
)
from gateway.store.marketing import StoreMarketing
from rules.delivery_errors import record_error
from rules.error_segment import in_error_segment
from rules.model import ErrorClass, RecipientFacts, ReplyKind
from rules.model import ErrorSummary as RulesErrors

__all__ = ["AcceptCoalescer", "GatewayBackend", "ReadyProbe"]

T = TypeVar("T")

ReadyProbe = Callable[[str], bool]
"""``probe(carrier name) -> has a live bind`` (the carriers' supervisor answers)."""

_replace = msgspec.structs.replace
_decode_metadata = msgspec.json.Decoder(dict[str, Any]).decode
_CLASSES = {c.value: c for c in ErrorClass}
_STATUSES = frozenset({"queued", "scheduled", "submitted", "delivered", "partially_delivered",
                       "undelivered", "expired", "failed", "rejected", "unknown"})


def _dt(t: float | None) -> datetime | None:
    return None if t is None else datetime.fromtimestamp(t, UTC)


def _consent_state(rec: RecipientRecord) -> str:
    if rec.consent == "unsubscribed":
        return "unsubscribed"
    if rec.consent == "subscribed":
        return "subscribed"
    if rec.double_opt_in == "pending":
        return "pending"
    return "unknown"


def _part_out(p: Any, attempts: int) -> PartOut:
    err = p.receipt_err
    if err is None and p.submit_status:
        err = f"0x{p.submit_status:08x}"
    return PartOut(part=p.index + 1, carrier=p.carrier, carrier_message_id=p.carrier_msg_id,
                   status=p.status, submitted_at=_dt(p.submitted_at), done_at=_dt(p.done_at),
                   receipt_stat=p.receipt_stat, error_code=err, error_class=p.error_class,
                   attempts=attempts)


def message_status_out(rec: MessageRecord) -> MessageStatusOut:
    """``GET /v1/messages/{id}`` for a stored record."""
    status = rec.status if rec.status in _STATUSES else "unknown"
    return MessageStatusOut(
        id=rec.id, status=status,  # type: ignore[arg-type]
        to=rec.to, kind=rec.kind, reason=rec.reason, defer_until=_dt(rec.defer_until),
        segments=rec.segments or None, encoding=rec.encoding, created_at=_dt(rec.created_at),
        updated_at=_dt(rec.updated_at),
        parts=[_part_out(p, rec.attempts) for p in rec.parts],
        history=[HistoryEntry(at=datetime.fromtimestamp(h.at, UTC), status=h.status,
                              detail=h.detail or h.reason) for h in rec.history],
        metadata=_decode_metadata(rec.metadata) if rec.metadata else None)


def event_out(ev: Event) -> EventOut:
    """One stored event as the API shows it."""
    reason, metadata, data = split_data(ev.data)
    return EventOut(id=str(ev.seq), type=ev.type, at=datetime.fromtimestamp(ev.at, UTC),
                    message_id=ev.message_id, phone=ev.phone, status=ev.status, reason=reason,
                    metadata=metadata, data=data)


class _SetConsent:
    """The consent change of ``POST /v1/consent`` (pure; runs in the writer too)."""

    __slots__ = ("action", "at", "double_opt_in", "now", "source")

    def __init__(self, action: str, source: str | None, double_opt_in: bool, at: float,
                 now: float) -> None:
        self.action = action
        self.source = source
        self.double_opt_in = double_opt_in
        self.at = at
        self.now = now

    def __call__(self, rec: RecipientRecord) -> RecipientRecord:
        a = self.action
        src = self.source if self.source is not None else rec.consent_source
        if a == "unsubscribe":
            if rec.consent == "unsubscribed":
                return rec
            return _replace(rec, consent="unsubscribed", consent_source=src, consent_at=self.at,
                            double_opt_in="none", double_opt_in_at=self.at,
                            opt_out_confirmed=False, updated_at=self.now)
        if a == "confirm":
            return _replace(rec, consent="subscribed", consent_source=src, consent_at=self.at,
                            double_opt_in="confirmed", double_opt_in_at=self.at,
                            opt_out_confirmed=False, updated_at=self.now)
        if self.double_opt_in and rec.double_opt_in != "confirmed":
            # Marketing waits for the confirmation (rules.consent / the cart's DOI rule).
            return _replace(rec, double_opt_in="pending", double_opt_in_at=self.at,
                            consent_source=src, updated_at=self.now)
        return _replace(rec, consent="subscribed", consent_source=src, consent_at=self.at,
                        opt_out_confirmed=False, updated_at=self.now)


#: Requests of at most this many messages are coalesced (:class:`AcceptCoalescer`).
COALESCE_MAX_REQUEST = 100
#: At most this many messages per coalesced accept (a bigger request is never split).
COALESCE_MAX_BATCH = 1000
#: Coalesced accepts under way at once (and worker tasks): one builds while the other's
#: commit is in flight.
COALESCE_INFLIGHT = 2
#: A request of at least this many messages runs its accept in its own task when a slot is
#: free and nobody waits (see :class:`AcceptCoalescer`).
COALESCE_LEAD_MIN = 10

AcceptFn = Callable[[list[MessageIn], float], Awaitable[list[MessageResult]]]


class _Waiter:
    """One request waiting in the :class:`AcceptCoalescer`."""

    __slots__ = ("error", "messages", "results", "wake")

    def __init__(self, messages: list[MessageIn]) -> None:
        self.messages = messages
        self.wake = trio.Event()
        self.results: list[MessageResult] | None = None
        self.error: BaseException | None = None


class AcceptCoalescer:
    """Concurrent small ``POST /v1/messages`` requests share one ``Accepter.accept``.

    One accept per request costs a batch, a commit wait and its wake-up per
    request; with many keep-alive connections sending one message each, that overhead is
    most of the work. Here a request of at most ``max_request`` messages joins a queue,
    and worker tasks run the accepts, at most ``max_inflight`` at once: a worker takes
    what is queued (up to ``max_batch`` messages) into one accept and, once it is
    committed, answers its requests and takes the next group at once, in the same step.
    So under load the next accept is built and queued for the store's writer without
    waiting for a round of trio's run queue (~0.5-1 ms then: when the requests led the
    accepts themselves, a finished accept handed its slot to a waiting request, which
    built a round later); an idle worker is woken by the first request queued, and the
    round until it runs gathers the requests that come meanwhile (single-message
    requests: ~25 % fewer write transactions). A request of ``lead_min`` messages or more
    is a batch of its own: with a slot free and nobody waiting it runs its accept in its
    own task at once (no worker's round to wait for). Every request
    still gets its own results, in its own order, only after the durable commit of the
    accept that carried it; if that accept fails (backpressure, store full/unavailable),
    every request in it gets the error, and nothing of it is stored. Idempotency keys
    behave as with separate requests (a key twice in one accept answers the first result;
    a key whose first use, another accept's, failed fails only the request that sent it
    again: ``FollowFailed``).
    A request's cancellation (client gone) never reaches an accept: a request still queued
    leaves the queue (nothing of it is stored), one taken into an accept is committed with
    it.

    The workers run in :meth:`run`'s nursery (the app starts it with the pipeline, before
    the API listens; structured: they end when it is cancelled, after the API's
    shutdown). Without it running (a backend used on its own), every request runs its own
    accept in its own task, uncoalesced. Requests over ``max_request`` messages always run
    their own accept in the caller's task.
    """

    __slots__ = ("_accept", "_busy", "_clock", "_idle", "_lead_min", "_max_batch",
                 "_max_inflight", "_max_request", "_queue", "_running", "batches",
                 "coalesced")

    def __init__(self, accept: AcceptFn, clock: Callable[[], float] = time.time, *,
                 max_request: int = COALESCE_MAX_REQUEST,
                 max_batch: int = COALESCE_MAX_BATCH,
                 max_inflight: int = COALESCE_INFLIGHT,
                 lead_min: int = COALESCE_LEAD_MIN) -> None:
        if max_inflight < 1:
            raise ValueError("max_inflight must be >= 1")
        self._accept = accept
        self._lead_min = lead_min
        self._clock = clock
        self._max_request = max_request
        self._max_batch = max_batch
        self._max_inflight = max_inflight
        self._queue: deque[_Waiter] = deque()
        #: Whether :meth:`run`'s workers serve the queue.
        self._running = False
        #: Idle workers' wake-up events; accepts running (of ``max_inflight``).
        self._idle: list[trio.Event] = []
        self._busy = 0
        #: Accepts run for coalesced requests, and the requests they carried.
        self.batches = 0
        self.coalesced = 0

    async def submit(self, messages: list[MessageIn]) -> list[MessageResult]:
        """Accept ``messages`` (alone if big, else with concurrent small requests)."""
        if len(messages) > self._max_request or not self._running:
            return await self._accept(messages, self._clock())
        w = _Waiter(messages)
        if (len(messages) >= self._lead_min and not self._queue
                and self._busy < self._max_inflight):
            # A batch of its own, a free slot, nobody waiting: run it here and now.
            self._busy += 1
            try:
                await self._run([w])
            finally:
                self._busy -= 1
                self._kick()
        else:
            self._queue.append(w)
            self._kick()
            try:
                await w.wake.wait()
            except BaseException:
                if w.results is None and w.error is None and w in self._queue:
                    self._queue.remove(w)  # gone before its accept ran: nothing stored
                raise
        if w.error is not None:
            raise w.error
        assert w.results is not None
        return w.results

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
                  ) -> None:
        """Run the ``max_inflight`` workers until cancelled. Requests still queued then
        get ``StoreUnavailable`` (nothing of them was stored); an accept under way is
        shielded and answers its requests first."""
        if self._running:
            raise RuntimeError("AcceptCoalescer.run is already running")
        self._idle = []  # (``_busy`` is not reset: a lead accept may outlive a run)
        try:
            async with trio.open_nursery() as nursery:
                for i in range(self._max_inflight):
                    nursery.start_soon(self._worker, name=f"accept-coalescer-{i}")
                self._running = True
                task_status.started()
        finally:
            self._running = False
            while self._queue:
                w = self._queue.popleft()
                w.error = StoreUnavailable("the gateway is stopping: not accepted")
                w.wake.set()

    def _kick(self) -> None:
        """Wake an idle worker if requests wait and a slot is free."""
        if self._queue and self._idle and self._busy < self._max_inflight:
            self._idle.pop().set()

    async def _worker(self) -> None:
        q = self._queue
        while True:
            if not q or self._busy >= self._max_inflight:
                wake = trio.Event()
                self._idle.append(wake)
                await wake.wait()  # cancelled when run() is: the worker ends with it
                continue
            take: list[_Waiter] = []
            n = 0
            while q and (not take or n + len(q[0].messages) <= self._max_batch):
                w = q.popleft()
                take.append(w)
                n += len(w.messages)
            self._busy += 1
            self._kick()  # more than one accept's worth waiting
            try:
                await self._run(take)
            finally:
                self._busy -= 1
            # run() cancelled meanwhile (the accept was shielded): stop here, what is
            # still queued gets StoreUnavailable; else no schedule point (next group now).
            await trio.lowlevel.checkpoint_if_cancelled()

    async def _run(self, take: list[_Waiter]) -> None:
        """One accept for the requests in ``take``; each gets its results or the error."""
        msgs = take[0].messages if len(take) == 1 else \
            [m for w in take for m in w.messages]
        self.batches += 1
        self.coalesced += len(take)
        try:
            # Shielded: the end of the run does not cut an accept in half (its commit may
            # land anyway; its requests must hear how it went).
            with trio.CancelScope(shield=True):
                results = await self._accept(msgs, self._clock())
        except FollowFailed as e:
            # Only messages following another request's failed key have no result: the
            # requests with one get the error, the others' messages were committed.
            bad = set(e.failed)
            i = 0
            for w in take:
                k = len(w.messages)
                if bad.intersection(range(i, i + k)):
                    w.error = e
                else:
                    w.results = e.results[i:i + k]
                i += k
                w.wake.set()
            return
        except BaseException as e:
            for w in take:
                w.error = e
                w.wake.set()
            if not isinstance(e, Exception):
                raise
            return
        i = 0
        for w in take:
            k = len(w.messages)
            w.results = results[i:i + k]
            i += k
            w.wake.set()

    def statistics(self) -> dict[str, int]:
        """Counters (coalesced accepts and the requests they carried)."""
        return {"batches": self.batches, "requests": self.coalesced,
                "queued": len(self._queue), "inflight": self._busy}


class GatewayBackend:
    """``Backend`` over the store, the ``Accepter`` and the ``RecipientCache``.

    ``ready_probe(carrier)`` tells whether a carrier has a live bind (None: assume yes);
    ``clock`` is epoch seconds (``time.time``), for consent times and the error segment.
    """

    def __init__(self, config: GatewayConfig, store: Store, accepter: Accepter,
                 recipients: RecipientCache, *, ready_probe: ReadyProbe | None = None,
                 clock: Callable[[], float] = time.time,
                 in_flight: Callable[[str], tuple[str, tuple[int, ...]] | None] | None = None,
                 ) -> None:
        self._config = config
        self._store = store
        #: ``Dispatcher.in_flight``: parts handed to a carrier whose ``sending`` mark is
        #: in the outbox entry only, shown as ``sending`` by ``get_message``.
        self._in_flight = in_flight
        self._accepter = accepter
        self._recipients = recipients
        self._probe = ready_probe
        self._clock = clock
        self._router = Router(config.routes)
        self._options = self._default_options(config)
        #: Small concurrent ``POST /v1/messages`` requests share accepts (group commit).
        self.coalescer = AcceptCoalescer(accepter.accept, clock)
        # Marketing (docs/marketing.md): templates and short links in the preview, click
        # summaries, opt-in codes and the keyword/subscriber segments.
        self.marketing_store = StoreMarketing(store)
        self._prep = TextPreparer(config.links, self.marketing_store)
        self.marketing = MarketingService(
            self.marketing_store, config.links, config.optin, accepter=accepter,
            recipients=recipients, phone=self._phone, commit=self._commit, clock=clock)
        self.optin_start = self.marketing.optin_start
        self.optin_verify = self.marketing.optin_verify
        self.keyword_segment = self.marketing.keyword_segment
        self.subscriber_segment = self.marketing.subscriber_segment

    @staticmethod
    def _default_options(config: GatewayConfig) -> EncodingOptions:
        """The default carrier's encoding: the catch-all route's first, else the first."""
        names = [r.carriers[0] for r in config.routes if r.prefix == "+" and r.carriers]
        names += [c.name for c in config.carriers]
        for name in names:
            try:
                return config.carrier(name).encoding
            except KeyError:
                continue
        return DEFAULT_OPTIONS

    # --- messages ---------------------------------------------------------------------

    async def submit(self, messages: list[MessageIn]) -> list[MessageResult]:
        """``POST /v1/messages``: ``Accepter.accept`` (answers after the commit); small
        concurrent requests share one accept (:class:`AcceptCoalescer`)."""
        return await self.coalescer.submit(messages)

    async def get_message(self, message_id: str) -> MessageStatusOut | None:
        """``GET /v1/messages/{id}``."""
        rec = self._read(lambda: self._store.get_message(message_id))
        if rec is None:
            return None
        flying = self._in_flight(rec.id) if self._in_flight is not None else None
        if flying is not None:
            carrier, idx = flying
            parts = list(rec.parts)
            for i in idx:
                if i < len(parts) and parts[i].status == "pending":
                    parts[i] = msgspec.structs.replace(parts[i], status="sending",
                                                       carrier=carrier)
            rec = msgspec.structs.replace(rec, parts=tuple(parts))
        out = message_status_out(rec)
        out.clicks = self._read(lambda: self.marketing.clicks(rec.id, rec.text))
        return out

    async def preview(self, request: PreviewIn) -> PreviewOut:
        """``POST /v1/messages/preview`` with the default carrier's encoding options."""
        prepared, links = self._prep.preview(request.text, request.vars,
                                             request.shorten_links, request.from_)
        if isinstance(prepared, TemplateError):
            raise InvalidRequest(prepared.detail, field=prepared.field, code=prepared.reason)
        p = preview(prepared.text, self._options, smart=request.smart_encoding)
        return PreviewOut(encoding=p.encoding, segments=p.segments, characters=p.characters,
                          per_segment=p.per_segment,
                          replaced=[Replacement(char=r.from_, replacement=r.to, count=r.count)
                                    for r in p.replaced],
                          rendered_text=prepared.rendered, text=prepared.text, links=links)

    # --- recipients -------------------------------------------------------------------

    def _phone(self, phone: str, country: str | None) -> str:
        e164 = normalise_number(phone, country)
        if e164 is None or not self._recipients.is_valid(e164):
            raise InvalidRequest(f"{phone!r} is not a valid phone number", field="phone",
                                 code="invalid_number")
        return e164

    async def consent(self, request: ConsentIn) -> ConsentOut:
        """``POST /v1/consent``: recipient record + ``consent`` event, one commit.

        A ``subscribe`` with ``double_opt_in`` sets a pending double opt-in and queues the
        confirmation request (a ``reply`` message, same commit).
        """
        now = self._clock()
        phone = self._phone(request.phone, request.country)
        at = request.at.timestamp() if request.at is not None else now
        rc = self._recipients
        before = rc.get(phone)
        prev_state = _consent_state(before) if before is not None else "unknown"
        batch = WriteBatch()
        fn = with_language(_SetConsent(request.action, request.source,
                                       request.double_opt_in, at, now), request.language)
        new = rc.update(phone, fn, batch)
        state = _consent_state(new)
        changed = before is None or (new.consent, new.double_opt_in) != (
            before.consent, before.double_opt_in)
        batch.append_event(consent_event(now, phone, state, ConsentData(
            action=request.action, source=request.source, previous=prev_state,
            double_opt_in=new.double_opt_in)))
        if request.action == "subscribe" and request.double_opt_in and state == "pending" \
                and changed:
            self._accepter.build_replies(batch, [ReplyRequest(
                phone=phone, text=self._confirm_request_text(),
                reply_to=ReplyKind.CONFIRM_REQUEST)], now)
        await self._commit(batch, (phone,))
        return ConsentOut(phone=phone, state=state, changed=changed,
                          source=new.consent_source,
                          double_opt_in=new.double_opt_in in ("pending", "confirmed"),
                          updated_at=_dt(new.updated_at))

    def _confirm_request_text(self) -> str:
        kp = self._config.rules.keywords
        tpl = kp.replies.get(kp.default_language) or next(iter(kp.replies.values()))
        return tpl.confirm_request.replace("{brand}", kp.brand).replace(
            "{help_contact}", kp.help_contact)

    async def get_recipient(self, phone: str) -> RecipientOut | None:
        """``GET /v1/recipients/{phone}``; None when the store knows nothing of it."""
        rc = self._recipients
        rec = rc.get(phone) if rc.is_stored(phone) else None
        if rec is None:
            rec = self._read(lambda: self._store.get_recipient(phone))
        if rec is None:
            return None
        now = self._clock()
        facts = facts_from_record(rec)
        e = rec.errors
        return RecipientOut(
            phone=rec.phone,
            consent=RecipientConsent(state=_consent_state(rec), source=rec.consent_source,
                                     double_opt_in=rec.double_opt_in in ("pending",
                                                                          "confirmed"),
                                     updated_at=_dt(rec.consent_at)),
            zones=list(rec.zones),
            recent_sends=[RecentSend(message_id=s.message_id, at=datetime.fromtimestamp(
                s.at, UTC), kind=s.kind, campaign_id=s.campaign_id, flow_id=s.flow_id)
                for s in reversed(rec.recent)],
            delivery_errors=ErrorSummary(
                errors=sum(e.counts.values()), last_error_at=_dt(e.last_error_at),
                error_class=e.last_error_class,
                in_segment=in_error_segment(facts, self._config.rules,
                                            datetime.fromtimestamp(now, UTC))))

    # --- error segment ------------------------------------------------------------------

    async def error_segment(self, days: int) -> AsyncIterator[ErrorSegmentLine]:
        """Members of the SMS error segment (rules.error_segment.in_error_segment with
        ``days``), chunk by chunk: one read txn per chunk, a checkpoint between chunks.

        The membership is computed from the error history (``errors`` database) of each
        phone, so sticky-count members with only old errors are listed too.
        """
        policy = self._config.rules
        policy = _replace(policy, error_segment=_replace(policy.error_segment, days=days))
        now = self._clock()
        now_dt = datetime.fromtimestamp(now, UTC)
        since = 0.0 if policy.error_segment.sticky_count else now - days * 86400.0
        chunks = self._read(lambda: self._store.iter_error_segment(since, 500))
        while True:
            chunk = self._read(lambda: next(chunks, None))
            if chunk is None:
                return
            delivered = self._last_delivered(chunk) if policy.error_segment.clear_on_delivery \
                else {}
            for pe in chunk:
                line = _segment_line(pe, policy, now_dt, delivered.get(pe.phone))
                if line is not None:
                    yield line
            await trio.lowlevel.checkpoint()

    def _last_delivered(self, chunk: list[PhoneErrors]) -> dict[str, float]:
        recs = self._read(lambda: self._store.get_recipients(pe.phone for pe in chunk))
        return {p: r.errors.last_delivered_at for p, r in recs.items()
                if r.errors.last_delivered_at is not None}

    # --- events -------------------------------------------------------------------------

    async def events(self, after: str | None, limit: int, wait: float) -> EventsOut:
        """``GET /v1/events``: long-polls up to ``wait`` seconds when nothing is there."""
        if after is None or after == "":
            seq = 0
        else:
            try:
                seq = int(after)
            except ValueError:
                raise InvalidRequest("`after` must be a cursor from `next`",
                                     field="after", code="invalid_cursor") from None
            if seq < 0:
                raise InvalidRequest("`after` must be a cursor from `next`",
                                     field="after", code="invalid_cursor")
        evs, head = self._read(lambda: self._store.read(
            partial(logic.events_or_head, after=seq, limit=limit)))
        # ``head`` > ``seq`` with no event after ``seq``: retention removed every event
        # after the cursor (an idle week). Wait and answer from ``head``: waiting from
        # ``seq`` would return at once (``wait_for_events`` looks at the last assigned
        # number), and the consumer would poll in a loop without being told.
        start = max(seq, head)
        if not evs and wait > 0:
            with trio.move_on_after(wait):
                await self._store.wait_for_events(start)
            evs = self._read(lambda: self._store.events_after(start, limit))
        nxt = str(evs[-1].seq) if evs else (str(start) if start > seq else (after or "0"))
        # Sequence numbers have no holes (a failed batch's events roll back with it), so
        # a first event beyond seq + 1 (or a head beyond seq with no event) means
        # retention removed the ones in between. ``after=0`` is a cursor too (``next`` of
        # an empty feed); a call without ``after`` asks for the oldest events kept.
        last_gone = evs[0].seq - 1 if evs else start
        pruned = last_gone - seq if after and last_gone > seq else 0
        return EventsOut(events=[event_out(e) for e in evs], next=nxt, pruned=pruned)

    # --- health -------------------------------------------------------------------------

    async def health(self) -> bool:
        """The process works: the event loop runs this, and the store answers."""
        try:
            self._store.statistics()
        except StoreError:
            return False
        return True

    async def ready(self) -> tuple[bool, str]:
        """Store readable and a live bind for every routed carrier."""
        try:
            self._store.last_event_seq()
        except StoreError as e:
            return False, f"store unavailable: {e}"
        if self._probe is not None:
            down = sorted(c for c in self._router.carriers if not self._probe(c))
            if down:
                return False, "no live bind for carrier " + ", ".join(down)
        return True, "ok"

    # --- helpers ------------------------------------------------------------------------

    @staticmethod
    def _read(fn: Callable[[], T]) -> T:
        try:
            return fn()
        except StoreError as e:
            raise StoreUnavailable(f"store unavailable: {e}") from e

    async def _commit(self, batch: WriteBatch, phones: Iterable[str]) -> None:
        rc = self._recipients
        phones = list(phones)
        rc.pin(phones)
        try:
            with trio.CancelScope(shield=True):
                await self._store.commit(batch)
        except StoreFullError as e:
            rc.invalidate(phones)
            raise StoreFull(f"store full: {e}") from e
        except StoreError as e:
            rc.invalidate(phones)
            raise StoreUnavailable(f"store unavailable: {e}") from e
        finally:
            rc.unpin(phones)


def _segment_line(pe: PhoneErrors, policy: Any, now: datetime,
                  last_delivered: float | None) -> ErrorSegmentLine | None:
    """The NDJSON line of a phone when its error history puts it in the segment."""
    summary = RulesErrors(last_delivered_at=to_dt(last_delivered))
    last = None
    for entry in pe.entries:
        cls = _CLASSES.get(entry.error_class, ErrorClass.UNKNOWN)
        summary = record_error(summary, cls, datetime.fromtimestamp(entry.at, UTC))
        last = entry
    if last is None:
        return None
    if not in_error_segment(RecipientFacts(phone=pe.phone, errors=summary), policy, now):
        return None
    return ErrorSegmentLine(phone=pe.phone, last_error_at=datetime.fromtimestamp(last.at, UTC),
                            error_class=last.error_class, errors=len(pe.entries))


if TYPE_CHECKING:  # GatewayBackend must satisfy the API's Backend protocol (mypy checks)
    from gateway.api_types import Backend

    def _conforms(b: GatewayBackend) -> Backend:
        return b
