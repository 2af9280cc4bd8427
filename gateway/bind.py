"""One SMPP bind on trio: a socket stream around one sans-IO ``Session`` (ESME role).

The I/O adapter of STYLE.md ("the seam between Session and trio"), in the trio-websocket
shape: per bind, one nursery holding

- a **reader** that feeds ``Session.receive_data`` and dispatches its events
  (submit_sm_resp -> outcomes, deliver_sm/data_sm -> ``Inbound`` batches on a bounded
  channel, so a slow consumer back-pressures the socket);
- a **writer**, the only task that calls ``send_all``. It takes parts from the carrier's
  shared ``WorkQueue`` as far as the window and the token bucket allow, puts them into the
  Session, and sends everything the Session has queued (submits, deliver_sm_resp,
  enquire_link, unbind) in one ``send_all``: measured 25k PDU/s with one send per PDU vs
  220k+ coalesced (DESIGN.md, performance table);
- a **ticker** that runs ``Session.tick(now)`` at ``Session.next_deadline()`` (enquire_link,
  response timeouts, dead-link detection). It is its own task so that a peer that stops
  reading (``send_all`` blocked) is still detected.

Work hand-off without a task per message: the caller wraps parts in a ``SubmitBatch`` and
puts it on the carrier's ``WorkQueue``; bind writers pull from it (work stealing, so the
least loaded bind takes the most); outcomes are written into the batch as responses
arrive (``await batch.wait()``, or an ``on_outcome`` callback run synchronously in the
reader). Nothing is fire-and-forget: every task lives in the bind's nursery.

Outcome rules (issue §3):
- ``ACCEPTED``: submit_sm_resp with status 0 and the carrier's message_id.
- ``REJECTED``: an error status, with its ``RetryClass`` (domain.md §1.6).
- ESME_RTHROTTLED / ESME_RMSGQFUL are **not** reported: the part goes back to the front of
  the queue and the carrier pauses (capped jittered backoff). That is safe, since the SMSC
  explicitly refused the part. Only if a part is still refused after
  ``throttle_retry_for`` seconds is it reported as REJECTED (retry class THROTTLED) so the
  caller can keep it in its outbox for later. Never dropped, never a hot loop.
- ``UNKNOWN``: the part was handed to the Session but no response came (response timeout,
  link lost, shutdown). The bind never re-sends it by itself: the caller decides.
- ``NOT_SENT``: the part never left the gateway (carrier shut down): safe to retry.
"""

from __future__ import annotations

import enum
import logging
import math
import os
import random
import ssl
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Literal

import msgspec
import trio

from gateway.backoff import Backoff, FailureLog
from gateway.smpp import events as ev
from gateway.smpp import pdu as P
from gateway.smpp.constants import GENERIC_NACK, CommandStatus, RetryClass, retry_class
from gateway.smpp.errors import EncodeError, LocalProtocolError
from gateway.smpp.session import Role, Session, SessionConfig, SessionState, SessionStats
from gateway.throttle import RECEIVE_BOUND_S, TokenBucket

__all__ = [
    "Bind",
    "BindError",
    "BindKind",
    "BindRefused",
    "BindSettings",
    "BindStats",
    "ConnectFailed",
    "Connector",
    "Inbound",
    "LinkLost",
    "OutcomeKind",
    "PeerUnbound",
    "SubmitBatch",
    "SubmitOutcome",
    "WorkQueue",
    "ack_all",
    "ssl_context",
]

log = logging.getLogger("smsgw.bind")

RECEIVE_SIZE = 256 * 1024
_CAN_SUBMIT = frozenset({SessionState.BOUND_TX, SessionState.BOUND_TRX})
PEER_UNBIND_GRACE = 1.0  # seconds we wait for the SMSC to close after our unbind_resp
THROTTLE_QUIET = 10.0  # seconds without a throttled response that end a throttling episode
ADAPT_CUT = 0.9  # first throttle: 90 % of the rate the SMSC accepted until then
ADAPT_DECREASE = 0.75  # later ones: 75 % of the current adaptive rate
ADAPT_GROW = 0.1  # then grow 10 % per second (at least 1/s) ...
ADAPT_UNLIMITED = 1e6  # ... until the configured tps, or "unlimited" again


class BindKind(enum.StrEnum):
    """What one SMPP session is bound as (SMPP 3.4 §4.1)."""

    TRANSCEIVER = "transceiver"
    TRANSMITTER = "transmitter"
    RECEIVER = "receiver"

    @property
    def can_submit(self) -> bool:
        return self is not BindKind.RECEIVER

    @property
    def can_receive(self) -> bool:
        return self is not BindKind.TRANSMITTER


class BindSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Everything one carrier's binds need; built from the TOML carrier section later.

    Times are seconds. ``mode`` and ``binds`` are used by ``gateway.carriers.Carrier``:
    ``binds`` transceivers, or ``binds`` transmitter + receiver pairs.
    """

    name: str = "carrier"
    host: str = "127.0.0.1"
    port: int = 2775
    system_id: str = ""
    password: str = ""
    system_type: str = ""
    addr_ton: int = 0
    addr_npi: int = 0
    address_range: str = ""
    mode: Literal["transceiver", "transmitter+receiver"] = "transceiver"
    binds: int = 1
    window: int = 64
    tps: float = 0.0  # max submit_sm per second for the whole carrier; 0 = no limit
    enquire_link: float = 30.0
    response_timeout: float = 10.0
    bind_timeout: float = 10.0
    connect_timeout: float = 10.0
    inactivity_timeout: float = 0.0
    backoff_initial: float = 1.0
    backoff_max: float = 60.0
    throttle_pause: float = 0.5
    throttle_pause_max: float = 30.0
    throttle_retry_for: float = 600.0
    shutdown_timeout: float = 5.0
    log_interval: float = 60.0
    queue_capacity: int = 100_000
    max_batch: int = 1024
    inbound_buffer: int = 64
    tls: bool = False
    ca_file: str | None = None
    tls_server_hostname: str | None = None
    tls_verify: bool = True  # False: encrypt without checking the certificate (test SMSCs)
    max_pdu_length: int = 65536


def ssl_context(settings: BindSettings) -> ssl.SSLContext:
    """A client TLS context verifying the carrier against ``ca_file`` (or system CAs)."""
    ctx = ssl.create_default_context(cafile=settings.ca_file)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if not settings.tls_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


# --- outcomes -------------------------------------------------------------------------


class OutcomeKind(enum.StrEnum):
    """What became of one submitted part (stable strings, usable as metric labels)."""

    ACCEPTED = "accepted"
    REJECTED = "rejected"
    UNKNOWN = "unknown"
    NOT_SENT = "not_sent"


class SubmitOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """The answer for one part: a message_id, or a status with its retry class, or unknown."""

    kind: OutcomeKind
    message_id: str = ""
    status: int = 0
    retry: RetryClass | None = None
    bind: str = ""
    reason: str = ""
    #: Seconds from handing the part to the Session to its submit_sm_resp (0 if none).
    latency: float = 0.0


_ACCEPTED = OutcomeKind.ACCEPTED
_NOT_SENT_SHUTDOWN = SubmitOutcome(kind=OutcomeKind.NOT_SENT, reason="carrier shut down")
_NOT_SENT_WITHDRAWN = SubmitOutcome(kind=OutcomeKind.NOT_SENT, reason="withdrawn")


class SubmitBatch:
    """Parts handed to a carrier together; ``outcomes[i]`` is filled as answers arrive.

    ``on_outcome(index, outcome)`` (optional) runs synchronously in the bind's reader task
    for each part as it resolves: it must be quick and must not block (e.g. append to a
    list, ``send_nowait`` on a channel). ``await wait()`` returns all outcomes in order.
    """

    __slots__ = ("_done", "_throttled_since", "on_outcome", "outcomes", "parts", "remaining")

    def __init__(
        self,
        parts: Sequence[P.SubmitSm],
        on_outcome: Callable[[int, SubmitOutcome], None] | None = None,
    ) -> None:
        self.parts = parts
        self.outcomes: list[SubmitOutcome | None] = [None] * len(parts)
        self.remaining = len(parts)
        self.on_outcome = on_outcome
        self._done = trio.Event()
        self._throttled_since: dict[int, float] | None = None
        if not parts:
            self._done.set()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def resolve(self, index: int, outcome: SubmitOutcome) -> None:
        """Record the outcome of part ``index`` (the first answer wins)."""
        if self.outcomes[index] is not None:
            return
        self.outcomes[index] = outcome
        self.remaining -= 1
        if self.on_outcome is not None:
            self.on_outcome(index, outcome)
        if self.remaining == 0:
            self._done.set()

    async def wait(self) -> list[SubmitOutcome]:
        """Wait until every part has an outcome; return them in part order."""
        await self._done.wait()
        return [o for o in self.outcomes if o is not None]


Item = tuple[SubmitBatch, int]
Sent = tuple[SubmitBatch, int, float]  # (batch, index, sent_at)
Connector = Callable[["BindSettings"], Awaitable[trio.abc.Stream]]
"""Opens the stream for a bind instead of TCP (tests: ``SimServer.connect_memory``)."""


class WorkQueue:
    """Parts waiting for a bind: shared by one carrier's transmitter-capable binds.

    Holds the carrier's token bucket (``tps``) and its throttle pause, so every bind of a
    carrier honours the same limit. Batches are kept whole (a cursor into the front batch),
    so queueing costs O(1) per batch, not per part.
    """

    def __init__(
        self,
        *,
        tps: float = 0.0,
        capacity: int = 100_000,
        throttle_pause: float = 0.5,
        throttle_pause_max: float = 30.0,
        throttle_retry_for: float = 600.0,
        log_interval: float = 60.0,
        name: str = "carrier",
        rng: random.Random | None = None,
        receive_bound: float = RECEIVE_BOUND_S,
    ) -> None:
        self.name = name
        # now=0: the bucket starts full whatever trio's clock origin is. Its window ledger
        # counts a part until 1 s after its answer (``answered``): gateway.throttle.
        self.bucket = TokenBucket(tps, now=0.0, receive_bound=receive_bound)
        self.capacity = capacity
        self.throttle_retry_for = throttle_retry_for
        self._throttle_backoff = Backoff(throttle_pause, max(throttle_pause, throttle_pause_max))
        self._throttle_log = FailureLog(log_interval)
        self._rng = rng or random.Random()
        self._retry: deque[Item] = deque()
        self._batches: deque[SubmitBatch] = deque()
        self._cursor = 0
        self._queued = 0
        self._wakers: list[Callable[[], None]] = []
        self._space = trio.Event()
        self._closed = False
        self.throttled = 0
        self.pauses = 0
        self._last_throttled = -math.inf
        # AIMD on the submit rate while the SMSC throttles (domain.md §1.6: "cut TPS").
        self._tps = tps
        self.adaptive_tps: float | None = None
        self._cut_at: float | None = None
        self._accepted_since_cut = 0
        self._grown_at = 0.0

    def __len__(self) -> int:
        return self._queued

    @property
    def closed(self) -> bool:
        return self._closed

    def subscribe(self, wake: Callable[[], None]) -> Callable[[], None]:
        """Call ``wake()`` whenever work arrives; returns the function to unsubscribe."""
        self._wakers.append(wake)

        def unsubscribe() -> None:
            if wake in self._wakers:
                self._wakers.remove(wake)

        return unsubscribe

    def _wake_all(self) -> None:
        for wake in self._wakers:
            wake()

    def put_nowait(self, batch: SubmitBatch) -> None:
        """Queue a batch regardless of capacity (resolves it NOT_SENT if closed)."""
        if self._closed:
            for i in range(len(batch.parts)):
                batch.resolve(i, _NOT_SENT_SHUTDOWN)
            return
        if not batch.parts:
            return
        self._batches.append(batch)
        self._queued += len(batch.parts)
        self._wake_all()

    async def put(self, batch: SubmitBatch) -> None:
        """Queue a batch, waiting while ``capacity`` parts are already queued."""
        while self._queued >= self.capacity and not self._closed:
            if self._space.is_set():
                self._space = trio.Event()
            await self._space.wait()
        await trio.lowlevel.checkpoint()
        self.put_nowait(batch)

    def take(self, n: int, now: float) -> list[Item]:
        """Up to ``n`` parts that the token bucket allows at ``now`` (retries first)."""
        if n <= 0 or self._queued == 0:
            return []
        if self._cut_at is None:
            self._cut_at = now  # sending starts: the first acceptance-rate sample
        elif self.adaptive_tps is not None and now - self._grown_at >= 0.25:
            self._grow(now)
        n = min(n, self._queued)
        # A rate-limited carrier's parts go in steps of the bucket's quantum while that
        # many wait (``gateway.throttle.GRANT_QUANTUM_S``): same rate, fewer wake-ups and
        # commits per part.
        n = self.bucket.take(n, now, at_least=self.bucket.quantum)
        if n == 0:
            return []
        out: list[Item] = []
        retry = self._retry
        while retry and len(out) < n:
            out.append(retry.popleft())
        while len(out) < n:
            batch = self._batches[0]
            start = self._cursor
            stop = min(len(batch.parts), start + n - len(out))
            out.extend((batch, i) for i in range(start, stop))
            if stop == len(batch.parts):
                self._batches.popleft()
                self._cursor = 0
            else:
                self._cursor = stop
        self._queued -= len(out)
        if self._queued < self.capacity:
            self._space.set()
        return out

    def withdraw(self, batch: SubmitBatch,
                 outcome: SubmitOutcome = _NOT_SENT_WITHDRAWN) -> int:
        """Take back ``batch``'s parts that no bind has taken yet; they resolve ``outcome``.

        For failover: a caller that gives up waiting on this carrier withdraws the batch
        and sends the NOT_SENT parts elsewhere. Parts already sent keep their outcome.
        Returns how many parts were withdrawn.
        """
        n = 0
        if self._retry:
            keep = deque(item for item in self._retry if item[0] is not batch)
            gone = [item for item in self._retry if item[0] is batch]
            self._retry = keep
            for _, i in gone:
                batch.resolve(i, outcome)
            n += len(gone)
        for pos, queued in enumerate(self._batches):
            if queued is batch:
                start = self._cursor if pos == 0 else 0
                for i in range(start, len(batch.parts)):
                    batch.resolve(i, outcome)
                n += len(batch.parts) - start
                del self._batches[pos]
                if pos == 0:
                    self._cursor = 0
                break
        self._queued -= n
        if n:
            self._space.set()
        return n

    def ready_at(self, now: float, room: int | None = None) -> float:
        """When ``take(room, ...)`` can next grant (inf when nothing is queued): the
        bucket's quantum, or fewer when fewer parts wait or ``room`` is smaller."""
        if self._queued == 0:
            return math.inf
        want = min(self.bucket.quantum, self._queued)
        if room is not None:
            want = min(want, room)
        return self.bucket.ready_at(now, want)

    def answered(self, taken_at: float, now: float) -> None:
        """The SMSC answered (any status) a part ``take`` granted at ``taken_at``: it has
        received it by ``now``, which is what the token bucket's window ledger needs."""
        self.bucket.answered(taken_at, now)

    def answered_all(self, taken_at: list[float], now: float) -> None:
        """``answered`` for each of ``taken_at`` (the answers of one read, in one call)."""
        self.bucket.answered_all(taken_at, now)

    def ended(self, taken_at: Sequence[float], now: float) -> None:
        """Parts that ended without an answer (response timeout, lost link, not encodable):
        the ledger counts them as received by ``now``. Wakes every bind, since the window
        may have room now and the bind that saw them end may not be able to take it."""
        for t in taken_at:
            self.bucket.answered(t, now)
        if taken_at:
            self._wake_all()

    def give_back(self, items: list[Item]) -> None:
        """Return parts taken but not sent (front of the queue, order kept)."""
        self._retry.extendleft(reversed(items))
        self._queued += len(items)
        self.bucket.give_back(len(items))
        if items:
            self._wake_all()

    def throttled_part(self, item: Item, status: int, now: float, bind: str) -> bool:
        """The SMSC refused ``item`` with RTHROTTLED/RMSGQFUL: requeue it and pause.

        Returns False (and does not requeue) once the part has been refused for longer
        than ``throttle_retry_for``: the caller then reports it as REJECTED.
        """
        batch, index = item
        self.throttled += 1
        self._last_throttled = now
        since = batch._throttled_since
        if since is None:
            since = batch._throttled_since = {}
        first = since.setdefault(index, now)
        if now - first > self.throttle_retry_for or self._closed:
            return False
        # One pause per burst: the other refusals of the same burst land inside it and
        # must not escalate the backoff (that would jump to the cap after one window).
        if now >= self.bucket.paused_until:
            # At most one cut per second: carriers count over a sliding second, so the
            # refusals right after a cut still reflect the traffic before it.
            if self._cut_at is None or now - self._cut_at >= 1.0 or self.adaptive_tps is None:
                self._cut(now)
            delay = self._throttle_backoff.next_delay(self._rng)
            self.bucket.pause(now + delay, now)
            self.pauses += 1
            line = self._throttle_log.failure(
                f"carrier {self.name}: SMSC throttling ({_status_name(status)}), "
                "pausing submits", now)
            if line is not None:
                log.warning("%s for %.2f s (bind %s)", line, delay, bind)
        self._retry.append(item)
        self._queued += 1
        self._wake_all()
        return True

    def _cut(self, now: float) -> None:
        """Multiplicative decrease: just under the rate the SMSC accepted lately."""
        if self.adaptive_tps is not None:
            # Classic AIMD: a fixed fraction of the rate that just proved too high.
            rate = self.adaptive_tps * ADAPT_DECREASE
        else:
            # First refusal: start just under what the SMSC accepted so far.
            start = self._cut_at if self._cut_at is not None else now
            observed = self._accepted_since_cut / max(1.0, now - start)
            rate = observed * ADAPT_CUT if observed > 0 else 1.0
        if self._tps:
            rate = min(rate, self._tps)
        self.adaptive_tps = max(1.0, rate)
        self.bucket.set_tps(self.adaptive_tps, now)
        self._cut_at = now
        self._grown_at = now
        self._accepted_since_cut = 0

    def _grow(self, now: float) -> None:
        """Additive-ish increase (10 %/s, at least 1/s) back towards the configured rate."""
        assert self.adaptive_tps is not None
        dt = now - self._grown_at
        self._grown_at = now
        rate = self.adaptive_tps + max(1.0, self.adaptive_tps * ADAPT_GROW) * dt
        if (self._tps and rate >= self._tps) or rate >= ADAPT_UNLIMITED:
            self.adaptive_tps = None
            self.bucket.set_tps(self._tps, now)
        else:
            self.adaptive_tps = rate
            self.bucket.set_tps(rate, now)

    def accepted(self, now: float, n: int = 1) -> None:
        """``n`` submits were accepted (after a pause: keep the next pause short)."""
        self._accepted_since_cut += n
        if self._throttle_backoff.failures and now >= self.bucket.paused_until:
            # The SMSC takes parts again: we are at its rate, not over it. Resetting keeps
            # pauses short (throughput near the carrier's limit) instead of growing them
            # to the cap during a long campaign.
            self._throttle_backoff.reset()
        if (self._throttle_log.cause is not None
                and now - self._last_throttled >= THROTTLE_QUIET):
            # Only a throttling-free stretch ends the episode (one log line, not one per
            # pause).
            line = self._throttle_log.recovered(now)
            if line is not None:
                log.info("carrier %s: throttling %s", self.name, line)

    def close(self, outcome: SubmitOutcome = _NOT_SENT_SHUTDOWN) -> None:
        """Stop taking work; everything still queued resolves as ``outcome`` (NOT_SENT)."""
        self._closed = True
        items = list(self._retry)
        self._retry.clear()
        for batch, i in items:
            batch.resolve(i, outcome)
        first = True
        for batch in self._batches:
            start = self._cursor if first else 0
            first = False
            for i in range(start, len(batch.parts)):
                batch.resolve(i, outcome)
        self._batches.clear()
        self._cursor = 0
        self._queued = 0
        self._space.set()
        self._wake_all()


# --- inbound --------------------------------------------------------------------------


class Inbound:
    """A deliver_sm or data_sm from the carrier (a receipt or an MO).

    Store it, then call ``ack()``: the deliver_sm_resp goes out through the bind's writer.
    If the link died in between, ``ack`` does nothing and the SMSC re-delivers later (SMPP
    delivery is at-least-once: consumers must de-duplicate).
    """

    __slots__ = ("_link", "acked", "bind", "carrier", "pdu", "received_at", "seq")

    def __init__(self, link: _Link, seq: int, pdu: P.DeliverSm | P.DataSm, now: float) -> None:
        self._link = link
        self.bind = link.name
        #: The carrier's name (``BindSettings.name``, the ``[[carriers]] name``): consumers
        #: key receipts and MO by it instead of parsing the bind's name.
        self.carrier = link.carrier
        self.seq = seq
        self.pdu = pdu
        self.received_at = now
        self.acked = False

    @property
    def is_receipt(self) -> bool:
        """True for a delivery receipt (esm_class type bits 0x04, domain.md §1.3)."""
        return (int(self.pdu.esm_class) & 0x3C) == 0x04

    def ack(self, status: int = 0) -> bool:
        """Queue the response (``status`` 0 = stored). Returns False if the link is gone."""
        if self.acked:
            return False
        self.acked = True
        return self._link.respond(self.seq, status)

    def __repr__(self) -> str:
        return f"<Inbound {self.bind} seq={self.seq} {type(self.pdu).__name__}>"


def ack_all(items: Iterable[Inbound]) -> None:
    """``item.ack()`` for each of ``items``, in order: the responses of a batch of
    deliveries committed together (``InboundProcessor``), queued per link in one call
    (``Session.acknowledge_all``) with its writer woken once. Anything that is not an
    ``Inbound`` (a consumer's own stand-in) gets its ``ack()`` called."""
    link: _Link | None = None
    seqs: list[int] = []
    for item in items:
        if type(item) is not Inbound:
            item.ack()
            continue
        if item.acked:
            continue
        item.acked = True
        if item._link is not link:
            if link is not None:
                link.respond_all(seqs)
            link = item._link
            seqs = []
        seqs.append(item.seq)
    if link is not None:
        link.respond_all(seqs)


# --- errors ---------------------------------------------------------------------------


class BindError(Exception):
    """A bind attempt or a bound link ended abnormally; ``cause`` is one stable log line."""

    def __init__(self, cause: str) -> None:
        super().__init__(cause)
        self.cause = cause


class ConnectFailed(BindError):
    """TCP connect or TLS handshake failed."""


class BindRefused(BindError):
    """The SMSC answered the bind with an error status (RBINDFAIL, RINVPASWD, ...)."""

    def __init__(self, cause: str, status: int) -> None:
        super().__init__(cause)
        self.status = status


class LinkLost(BindError):
    """A bound link broke: peer closed, reset, dead (no enquire_link_resp), or garbage."""


class PeerUnbound(BindError):
    """The SMSC sent unbind (we answered unbind_resp): reconnect."""


def _os_reason(e: OSError) -> str:
    """The root cause of a connect failure ("Connection refused"), not trio's summary."""
    cause: BaseException | None = e.__cause__
    while isinstance(cause, BaseExceptionGroup):
        cause = cause.exceptions[0]
    if isinstance(cause, OSError) and cause.errno:
        return os.strerror(cause.errno)
    return e.strerror or str(e)


def _status_name(status: int) -> str:
    try:
        return f"ESME_{CommandStatus(status).name}"
    except ValueError:
        return f"0x{status:08X}"


# --- the bind ---------------------------------------------------------------------------


class _Link:
    """State of one connected Session (one generation of a Bind)."""

    __slots__ = ("alive", "carrier", "name", "session", "wake_writer")

    def __init__(self, name: str, session: Session, wake_writer: Callable[[], None],
                 carrier: str = "") -> None:
        self.name = name
        self.carrier = carrier or name
        self.session = session
        self.wake_writer = wake_writer
        self.alive = True

    def respond(self, seq: int, status: int) -> bool:
        if not self.alive:
            return False
        try:
            # deliver_sm_resp / data_sm_resp, body empty (a template for status 0).
            self.session.acknowledge(seq, status)
        except LocalProtocolError:
            return False  # the session closed or unbound meanwhile: the SMSC re-delivers
        self.wake_writer()
        return True

    def respond_all(self, seqs: list[int]) -> None:
        """``respond(seq, 0)`` for each of ``seqs``, the writer woken once."""
        if self.alive and self.session.acknowledge_all(seqs):
            self.wake_writer()


class BindStats(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot of one bind (``Bind.statistics()``)."""

    name: str
    kind: BindKind
    bound: bool
    inflight: int
    submitted: int
    accepted: int
    rejected: int
    throttled: int
    unknown: int
    inbound: int
    writes: int
    #: The Session's own counters (PDUs per command, enquire_links, timeouts, nacks...).
    session: SessionStats | None = None


class Bind:
    """One SMPP session to a carrier: connect, bind, then reader/writer/ticker until it ends.

    ``run()`` returns normally only after a graceful ``close()`` (unbind); every other end
    raises a ``BindError`` subclass with a one-line ``cause``. A Bind object runs once:
    the carrier supervisor makes a new one for each reconnect.
    """

    def __init__(
        self,
        settings: BindSettings,
        *,
        kind: BindKind = BindKind.TRANSCEIVER,
        queue: WorkQueue | None = None,
        inbound: trio.MemorySendChannel[list[Inbound]] | None = None,
        name: str | None = None,
        on_bound: Callable[[Bind], None] | None = None,
        connect: Connector | None = None,
    ) -> None:
        self.settings = settings
        self._on_bound = on_bound
        self._connector = connect
        self.kind = kind
        self.name = name or f"{settings.name}/{kind.value}"
        self.queue = queue if kind.can_submit else None
        self._inbound = inbound
        self._session: Session | None = None
        self._link: _Link | None = None
        self._stream: trio.abc.Stream | None = None
        self._inflight: dict[int, Sent] = {}
        #: Events decoded in the same read as bind_resp (handled first by the reader).
        self._early: list[ev.Event] = []
        self._protocol_log = FailureLog(settings.log_interval)
        self._writer_wake = trio.Event()
        self._ticker_wake = trio.Event()
        self._ticker_alarm = math.inf
        self._end_reason: BindError | None = None
        self._closing = False
        self._unbind_seq: int | None = None
        self._peer_unbound = False
        self._cancel: trio.CancelScope | None = None
        self.bound = False
        self.ever_bound = False
        self.submitted = 0
        self.accepted = 0
        self.rejected = 0
        self.throttled = 0
        self.unknown = 0
        self.inbound_count = 0
        self.writes = 0

    # -- public --------------------------------------------------------------------------

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    def window_free(self) -> int:
        return self._session.window_free() if self._session is not None and self.bound else 0

    def statistics(self) -> BindStats:
        return BindStats(
            name=self.name, kind=self.kind, bound=self.bound, inflight=len(self._inflight),
            submitted=self.submitted, accepted=self.accepted, rejected=self.rejected,
            throttled=self.throttled, unknown=self.unknown, inbound=self.inbound_count,
            writes=self.writes,
            session=self._session.statistics() if self._session is not None else None,
        )

    def close(self) -> None:
        """Graceful close: stop taking work, wait (bounded) for answers, unbind, return."""
        if not self._closing:
            self._closing = True
            self._wake()

    async def run(self, *, task_status: trio.TaskStatus[Bind] = trio.TASK_STATUS_IGNORED) -> None:
        """Connect, bind, report started (with self), and serve until the link ends."""
        s = self.settings
        stream = await self._connect()
        self._stream = stream
        try:
            now = trio.current_time()
            session = Session(Role.ESME, SessionConfig(
                window=s.window,
                response_timeout=s.response_timeout,
                enquire_link_interval=s.enquire_link,
                inactivity_timeout=s.inactivity_timeout,
                bind_timeout=s.bind_timeout,
                max_pdu_length=s.max_pdu_length,
            ), now=now)
            self._session = session
            self._link = _Link(self.name, session, self._wake, carrier=s.name)
            await self._bind(stream, session)
            self.bound = True
            self.ever_bound = True
            unsubscribe = self.queue.subscribe(self._wake) if self.queue is not None else None
            try:
                if self._on_bound is not None:
                    self._on_bound(self)
                task_status.started(self)
                async with trio.open_nursery() as nursery:
                    self._cancel = nursery.cancel_scope
                    nursery.start_soon(self._reader, stream, session)
                    nursery.start_soon(self._writer, stream, session)
                    nursery.start_soon(self._ticker, session)
            finally:
                if unsubscribe is not None:
                    unsubscribe()
        finally:
            self.bound = False
            if self._link is not None:
                self._link.alive = False
            self._fail_inflight()
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                await trio.aclose_forcefully(stream)
        if self._end_reason is not None:
            raise self._end_reason

    # -- connect and bind ----------------------------------------------------------------

    async def _connect(self) -> trio.abc.Stream:
        s = self.settings
        where = f"{s.host}:{s.port}"
        if self._connector is not None:
            try:
                return await self._connector(s)
            except OSError as e:
                raise ConnectFailed(f"connect to {where} failed: {e.strerror or e}") from None
        try:
            with trio.fail_after(s.connect_timeout):
                tcp = await trio.open_tcp_stream(s.host, s.port)
        except trio.TooSlowError:
            raise ConnectFailed(f"connect to {where} timed out") from None
        except OSError as e:
            raise ConnectFailed(f"connect to {where} failed: {_os_reason(e)}") from None
        if not s.tls:
            return tcp
        tls = trio.SSLStream(tcp, ssl_context(s), server_hostname=s.tls_server_hostname or s.host)
        try:
            with trio.fail_after(s.connect_timeout):
                await tls.do_handshake()
        except trio.TooSlowError:
            await trio.aclose_forcefully(tcp)
            raise ConnectFailed(f"TLS handshake with {where} timed out") from None
        except (trio.BrokenResourceError, ssl.SSLError, OSError) as e:
            await trio.aclose_forcefully(tcp)
            cause = e.__cause__ if e.__cause__ is not None else e
            raise ConnectFailed(f"TLS handshake with {where} failed: {cause}") from None
        return tls

    def _bind_pdu(self) -> P.Pdu:
        s = self.settings
        cls = {
            BindKind.TRANSMITTER: P.BindTransmitter,
            BindKind.RECEIVER: P.BindReceiver,
            BindKind.TRANSCEIVER: P.BindTransceiver,
        }[self.kind]
        pdu = cls(
            system_id=s.system_id, password=s.password, system_type=s.system_type,
            addr_ton=s.addr_ton, addr_npi=s.addr_npi, address_range=s.address_range,
        )
        return pdu  # type: ignore[return-value]  # cls is one of the three bind PDUs

    async def _bind(self, stream: trio.abc.Stream, session: Session) -> None:
        s = self.settings
        where = f"{s.host}:{s.port}"
        session.send_request(self._bind_pdu(), trio.current_time())
        try:
            with trio.fail_after(s.bind_timeout):
                await stream.send_all(session.data_to_send())
                while True:
                    data = await stream.receive_some(RECEIVE_SIZE)
                    session.receive_data(bytes(data), trio.current_time())
                    events = session.events()
                    for n, event in enumerate(events):
                        if isinstance(event, ev.BindSucceeded):
                            # What came in the same read (a receipt backlog the SMSC
                            # sends right behind bind_resp) is the reader's first work:
                            # dropping it left those deliver_sm unanswered for good.
                            self._early = events[n + 1:]
                            return
                        if isinstance(event, ev.BindFailed):
                            raise BindRefused(
                                f"bind {self.kind.value} as {s.system_id!r} to {where} refused: "
                                f"{_status_name(event.status)}", event.status)
                        if isinstance(event, ev.ConnectionClosed | ev.LinkDead):
                            raise LinkLost(f"{where} closed the connection during bind")
                    out = session.data_to_send()
                    if out:
                        await stream.send_all(out)
                    if not data:
                        raise LinkLost(f"{where} closed the connection during bind")
        except trio.TooSlowError:
            raise BindError(f"bind to {where} timed out after {s.bind_timeout:g} s") from None
        except (trio.BrokenResourceError, OSError) as e:
            raise LinkLost(f"{where} broke the connection during bind: {e}") from None

    # -- running -------------------------------------------------------------------------

    def _wake(self) -> None:
        self._writer_wake.set()

    def _stop(self, reason: BindError | None) -> None:
        """End the link: the first reason wins; None = graceful."""
        if self._end_reason is None and reason is not None and not (
            self._closing and self._unbind_seq is not None
        ):
            self._end_reason = reason
        if self._cancel is not None:
            self._cancel.cancel()

    def _where(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"

    async def _reader(self, stream: trio.abc.Stream, session: Session) -> None:
        inbound_out = self._inbound
        early, self._early = self._early, []
        data: bytes | bytearray
        while True:
            if early:
                data = b"\x00"  # not EOF: the events decoded during the bind come first
                events, early = early, []
                now = trio.current_time()
            else:
                try:
                    data = await stream.receive_some(RECEIVE_SIZE)
                except (trio.BrokenResourceError, OSError) as e:
                    self._stop(PeerUnbound(f"{self._where()} unbound {self.name}")
                               if self._peer_unbound else
                               LinkLost(f"link {self.name} to {self._where()} broken: {e}"))
                    return
                now = trio.current_time()
                session.receive_data(bytes(data), now)
                events = session.events()
            batch = self._dispatch(events, now)
            self._poke_ticker(session)
            if batch:
                if inbound_out is None:
                    for item in batch:
                        item.ack()
                else:
                    try:
                        await inbound_out.send(batch)
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        # Nobody consumes deliveries any more (shutting down): leave them
                        # unanswered, the SMSC re-delivers them on the next bind.
                        log.debug("%s: inbound consumer gone; %d deliveries left unacked",
                                  self.name, len(batch))
            self._writer_wake.set()
            if not data:
                if self._peer_unbound:
                    self._stop(PeerUnbound(f"{self._where()} unbound {self.name}"))
                elif self._closing and self._unbind_seq is not None:
                    self._stop(None)
                else:
                    self._stop(LinkLost(f"{self._where()} closed link {self.name}"))
                return

    def _dispatch(self, events: list[ev.Event], now: float) -> list[Inbound]:
        """Apply Session events; returns the inbound deliveries to hand to the consumer.

        Hot path: a submit_sm_resp with status 0 resolves its part here; the carrier's
        queue hears about the accepted parts once per call (``_flush_accepted``: their
        grant times for the window ledger, and how many), and before any other answer
        is handled, so the throttling bookkeeping sees them in order.
        """
        inbound: list[Inbound] = []
        inflight = self._inflight
        freed = False
        taken: list[float] = []  # grant times of the parts accepted, not yet flushed
        name = self.name
        link = self._link
        for event in events:
            if type(event) is ev.ResponseReceived:
                entry = inflight.pop(event.seq, None)
                if entry is None:
                    if event.seq == self._unbind_seq:
                        self._stop(None)
                    continue
                freed = True
                if event.status == 0 and event.command_id != GENERIC_NACK:
                    batch, index, sent_at = entry
                    pdu = event.pdu
                    taken.append(sent_at)
                    batch.resolve(index, SubmitOutcome(
                        kind=_ACCEPTED,
                        message_id=(pdu.message_id if type(pdu) is P.SubmitSmResp
                                    else getattr(pdu, "message_id", "") or ""),
                        bind=name, latency=now - sent_at))
                else:
                    if taken:
                        self._flush_accepted(taken, now)
                        taken = []
                    self._submit_answered(entry, event, now)
            elif type(event) is ev.RequestReceived:
                pdu = event.pdu
                if isinstance(pdu, P.DeliverSm | P.DataSm):
                    assert link is not None
                    inbound.append(Inbound(link, event.seq, pdu, now))
            else:
                if taken:
                    self._flush_accepted(taken, now)
                    taken = []
                freed = self._on_event(event, now) or freed
        if taken:
            self._flush_accepted(taken, now)
        if inbound:
            self.inbound_count += len(inbound)
        if freed:
            self._writer_wake.set()
        return inbound

    def _flush_accepted(self, taken: list[float], now: float) -> None:
        """Parts granted at ``taken`` were accepted by ``now`` (see ``_dispatch``)."""
        self.accepted += len(taken)
        queue = self.queue
        if queue is not None:
            # sent_at is the ``now`` the writer took the part at (``_feed``): the key of
            # its grant in the carrier's window ledger.
            queue.answered_all(taken, now)
            queue.accepted(now, len(taken))

    def _on_event(self, event: ev.Event, now: float) -> bool:
        """The Session's other events (not a response or a request); True if a part left
        the window."""
        if isinstance(event, ev.ResponseTimedOut | ev.RequestAbandoned):
            entry = self._inflight.pop(event.seq, None)
            if entry is not None:
                self.unknown += 1
                if self.queue is not None:
                    # An SMSC silent this long has read the part by now, if ever.
                    self.queue.ended((entry[2],), now)
                reason = (
                    f"no submit_sm_resp within {self.settings.response_timeout:g} s"
                    if isinstance(event, ev.ResponseTimedOut) else
                    "no submit_sm_resp: session closed")
                entry[0].resolve(entry[1], SubmitOutcome(
                    kind=OutcomeKind.UNKNOWN, bind=self.name, reason=reason))
                return True
            if event.seq == self._unbind_seq:
                self._stop(None)
        elif isinstance(event, ev.Unbound):
            if event.by_peer:
                self._peer_unbound = True
                log.info("%s: SMSC %s sent unbind; answered, will reconnect",
                         self.name, self._where())
                self._closing = True
            else:
                self._stop(None)
        elif isinstance(event, ev.LinkDead):
            self._stop(LinkLost(f"link {self.name} to {self._where()} dead: {event.reason}"))
        elif isinstance(event, ev.ConnectionClosed):
            pass  # the reader sees EOF and decides (peer unbind vs lost link)
        elif isinstance(event, ev.PeerProtocolError):
            # The Session already answered (generic_nack / error resp), or a LinkDead
            # follows (lost framing). Say which PDU once per cause, summarised if it
            # repeats (a peer sending garbage must not flood the log), never silently.
            line = self._protocol_log.failure(
                f"peer protocol error from {self._where()}: "
                f"{_status_name(event.status)} ({event.detail})", now)
            if line is not None:
                log.warning("%s: %s", self.name, line)
        return False

    def _submit_answered(self, entry: Sent, event: ev.ResponseReceived, now: float) -> None:
        """A refused submit (non-zero status) or a generic_nack."""
        batch, index, sent_at = entry
        status = event.status
        if self.queue is not None:
            # sent_at is the ``now`` the writer took the part at (``_feed``): the key of
            # its grant in the carrier's window ledger.
            self.queue.answered(sent_at, now)
        if event.command_id == GENERIC_NACK:
            # The SMSC could not even parse our header (SMPP 3.4 §4.3): never blind-retry
            # a nacked PDU (domain.md §1.2) unless the status itself says "slow down".
            status = status or CommandStatus.RSYSERR
            if retry_class(status) is not RetryClass.THROTTLED:
                self.rejected += 1
                batch.resolve(index, SubmitOutcome(
                    kind=OutcomeKind.REJECTED, status=status, retry=RetryClass.PERMANENT,
                    bind=self.name, reason=f"generic_nack {_status_name(status)}",
                    latency=now - sent_at))
                return
        # Accepted answers never come here: ``_dispatch`` resolves them (and a nack with
        # status 0 is RSYSERR above).
        rc = retry_class(status)
        if rc is RetryClass.THROTTLED:
            self.throttled += 1
            if self.queue is not None and self.queue.throttled_part(
                    (batch, index), status, now, self.name):
                return
        self.rejected += 1
        batch.resolve(index, SubmitOutcome(
            kind=OutcomeKind.REJECTED, status=status, retry=rc, bind=self.name,
            reason=_status_name(status), latency=now - sent_at))

    async def _writer(self, stream: trio.abc.Stream, session: Session) -> None:
        queue = self.queue
        s = self.settings
        max_batch = s.max_batch
        inflight = self._inflight
        close_deadline = peer_deadline = math.inf
        try:
            while True:
                now = trio.current_time()
                wait_until = math.inf
                if self._peer_unbound:
                    # The Session queued unbind_resp; flush it and give the SMSC a moment
                    # to close the connection (it should), then close it ourselves.
                    if peer_deadline == math.inf:
                        peer_deadline = now + PEER_UNBIND_GRACE
                    if now >= peer_deadline:
                        self._stop(PeerUnbound(f"{self._where()} unbound {self.name}"))
                        return
                    wait_until = peer_deadline
                elif self._closing:
                    # Graceful close: no new parts; wait (bounded) for the answers to those
                    # in flight, then unbind. The unbind's own response timer bounds the rest.
                    if self._unbind_seq is None:
                        if close_deadline == math.inf:
                            close_deadline = now + s.shutdown_timeout
                        if not inflight or now >= close_deadline:
                            self._unbind_seq = session.send_request(P.Unbind(), now)
                            self._poke_ticker(session)
                        else:
                            wait_until = close_deadline
                elif queue is not None and len(queue) and session.state in _CAN_SUBMIT:
                    room = min(session.window_free(), max_batch)
                    if room > 0:
                        items = queue.take(room, now)
                        if items:
                            self._feed(session, items, now)
                        elif len(queue):
                            wait_until = queue.ready_at(now, room)
                data = session.data_to_send()
                if data:
                    await stream.send_all(data)
                    self.writes += 1
                    continue
                if self._writer_wake.is_set():
                    self._writer_wake = trio.Event()
                    continue
                with trio.move_on_at(wait_until):
                    await self._writer_wake.wait()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as e:
            self._stop(PeerUnbound(f"{self._where()} unbound {self.name}")
                       if self._peer_unbound else
                       LinkLost(f"link {self.name} to {self._where()} broken while sending: {e}"))

    def _feed(self, session: Session, items: list[Item], now: float) -> None:
        """Hand parts to the Session (queued bytes; the writer sends them next)."""
        inflight = self._inflight
        send = session.send_request
        for n, item in enumerate(items):
            try:
                inflight[send(item[0].parts[item[1]], now)] = (item[0], item[1], now)
            except EncodeError as e:
                # This part can't be encoded (a field too long...): the part is wrong,
                # not the link.
                self.rejected += 1
                assert self.queue is not None
                self.queue.ended((now,), now)
                item[0].resolve(item[1], SubmitOutcome(
                    kind=OutcomeKind.REJECTED, status=e.status, retry=RetryClass.PERMANENT,
                    bind=self.name, reason=f"cannot encode: {e}"))
            except LocalProtocolError:
                # Window full or the session left the bound state under us: these parts
                # never left; put them back for another bind.
                assert self.queue is not None
                self.queue.give_back(items[n:])
                break
            else:
                self.submitted += 1
        self._poke_ticker(session)

    def _poke_ticker(self, session: Session) -> None:
        """Wake the ticker if the Session's next deadline moved before its alarm.

        Sending a request can arm an earlier response deadline, and receiving one can
        bring the enquire_link deadline forward (when enquire_link < response_timeout).
        """
        deadline = session.next_deadline()
        if deadline is not None and deadline < self._ticker_alarm:
            self._ticker_wake.set()

    async def _ticker(self, session: Session) -> None:
        while True:
            deadline = session.next_deadline()
            self._ticker_alarm = deadline if deadline is not None else math.inf
            with trio.move_on_at(self._ticker_alarm):
                await self._ticker_wake.wait()
            if self._ticker_wake.is_set():
                self._ticker_wake = trio.Event()
            now = trio.current_time()
            session.tick(now)
            batch = self._dispatch(session.events(), now)
            for item in batch:  # a tick produces no deliveries; never lose one though
                item.ack(CommandStatus.RSYSERR)
            self._writer_wake.set()
            if deadline is not None and deadline <= now:
                # The Session must move its deadline on after a tick; if it did not,
                # don't spin.
                nd = session.next_deadline()
                if nd is not None and nd <= now:
                    await trio.sleep(0.01)

    def _fail_inflight(self) -> None:
        """Everything handed to the Session and not answered: outcome unknown."""
        if not self._inflight:
            return
        reason = self._end_reason.cause if self._end_reason is not None else "bind closed"
        items = list(self._inflight.values())
        self._inflight.clear()
        self.unknown += len(items)
        if self.queue is not None:
            # The link is gone: whatever the SMSC received, it received by now.
            self.queue.ended([sent_at for _, _, sent_at in items], trio.current_time())
        outcome = SubmitOutcome(kind=OutcomeKind.UNKNOWN, bind=self.name,
                                reason=f"no submit_sm_resp: {reason}")
        for batch, index, _ in items:
            batch.resolve(index, outcome)
