"""Webhooks (issue 6): POST the durable event feed to configured URLs, signed, at least once.

One :class:`WebhookSender` task per enabled ``[[webhooks]]`` endpoint, in the app's
nursery. Each reads the event feed (``Store.events_after``) from its own cursor, which
it keeps in the store (``gateway.store.cursors``, key ``webhook:<name>``), and never
writes anything else. So a slow or dead receiver holds up only its own endpoint: the
pipeline appends events regardless, and the endpoint catches up later (its lag is a
metric).

**Delivery.** Up to ``batch_max`` events (those whose type starts with one of the
``events`` prefixes; all when empty) as one JSON array, each event in the shape of
``GET /v1/events``. The cursor moves past a batch only after the receiver answered 2xx
and the new cursor is committed; a crash or a stop in between means the batch is sent
again: **at least once**. Receivers de-duplicate by the event ``id`` (a strictly
increasing integer as a string), or by the ``X-Smsgw-Delivery`` header (``first-last``
ids of the batch, identical on every retry of that batch).

**Failures.** A timeout, a connection error, a broken response, 408, 429 and 5xx are
retried with capped, jittered exponential backoff (``backoff_min_s`` .. ``backoff_max_s``;
``Retry-After`` is honoured up to the cap) until they succeed: the sender waits at its
cursor and never drops anything. 413 splits the batch in halves. Any other answer (3xx,
4xx) means the receiver refuses the batch: it is retried the same way, and when
``dead_letter_after`` > 0 a batch refused that many times in a row is skipped and a
``webhook.dead_letter`` event (endpoint, first/last id, count, HTTP status) is appended
to the feed in the same transaction as the cursor move, so the skip itself is durable
and visible (``GET /v1/events``, other endpoints). The default (0) never skips: a
misconfigured receiver (401 bad secret, 404 wrong path) would otherwise dead-letter the
whole backlog. An endpoint is never sent its own dead-letter events.

**Signature.** ``X-Smsgw-Signature: t=<unix seconds>,v1=<hex>`` where ``v1`` is
HMAC-SHA256 with the endpoint's secret over ``f"{t}.".encode() + body``; a retry is
signed again with a new ``t``. Receivers check it with :func:`verify_signature` (or the
few lines in docs/operations.md), within a replay window (300 s by default).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import random
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, Final, Literal, Protocol

import msgspec
import trio

import gateway
from gateway.backend import event_out
from gateway.backoff import Backoff, FailureLog
from gateway.config import WebhookConfig
from gateway.http import (
    ClientResponse,
    HttpClient,
    HttpConnectError,
    HttpProtocolError,
    HttpTimeout,
)
from gateway.store import Event, StoreError, WriteBatch
from gateway.store.cursors import get_cursor, set_cursor
from gateway.store.kv import KvTxn
from gateway.store.logic import events_or_head

__all__ = [
    "DEAD_LETTER",
    "DELIVERY_HEADER",
    "SIGNATURE_HEADER",
    "WebhookSender",
    "WebhookStats",
    "sign",
    "start_webhooks",
    "verify_signature",
]

log = logging.getLogger("smsgw.webhooks")

SIGNATURE_HEADER: Final = "X-Smsgw-Signature"
DELIVERY_HEADER: Final = "X-Smsgw-Delivery"
#: Event type appended when a refused batch is skipped (``dead_letter_after``).
DEAD_LETTER: Final = "webhook.dead_letter"
#: Default replay window of :func:`verify_signature`.
DEFAULT_TOLERANCE_S: Final = 300.0

_encode = msgspec.json.Encoder().encode


class _Feed(Protocol):
    """What a sender uses of the store (``Store`` plus ``read``, as LMDB and memory have)."""

    async def commit(self, batch: WriteBatch) -> Any: ...

    async def wait_for_events(self, after_seq: int) -> None: ...

    def events_after(self, seq: int, limit: int) -> list[Event]: ...

    def last_event_seq(self) -> int: ...

    def read(self, fn: Callable[[KvTxn], Any]) -> Any: ...


# ------------------------------------------------------------------------- signatures

def sign(secret: bytes, body: bytes, t: int) -> str:
    """The ``X-Smsgw-Signature`` value for ``body`` sent at unix time ``t``."""
    mac = hmac.new(secret, f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify_signature(secret: bytes, header: str | bytes | None, body: bytes, *, now: float,
                     tolerance_s: float = DEFAULT_TOLERANCE_S) -> bool:
    """Whether ``header`` signs ``body`` with ``secret`` and ``t`` is within ``tolerance_s``
    of ``now`` (either side: clocks drift). Several ``v1=`` values may be present (a
    secret rotation signs with both); one match is enough. Constant-time comparison."""
    if header is None:
        return False
    text = header.decode("ascii", "replace") if isinstance(header, bytes) else header
    t: int | None = None
    candidates: list[str] = []
    for item in text.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t" and value.isdigit():
            t = int(value)
        elif key == "v1":
            candidates.append(value)
    if t is None or not candidates or abs(now - t) > tolerance_s:
        return False
    expected = sign(secret, body, t).rpartition("v1=")[2]
    return any(hmac.compare_digest(expected, c) for c in candidates)


# -------------------------------------------------------------------------- statistics

class WebhookStats(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot of one endpoint (``WebhookSender.statistics()``, read by metrics)."""

    name: str
    #: The last event id the endpoint is done with (delivered, filtered out or skipped).
    cursor: int
    #: The feed's last event id.
    head: int
    #: Events in the feed after the cursor (those the filter skips included).
    lag_events: int
    #: Age of the oldest event after the cursor (0 when caught up).
    lag_seconds: float
    delivered_events: int
    delivered_batches: int
    attempts: int
    #: Failed attempts by kind: ``timeout``, ``connect``, ``protocol``, ``http_5xx``,
    #: ``http_429``, ``http_408``, ``http_4xx`` (refused), ``http_3xx`` (refused).
    failures: dict[str, int]
    dead_lettered_events: int
    consecutive_failures: int
    cursor_commit_failures: int
    last_status: int | None
    last_success_at: float | None
    state: Literal["starting", "idle", "sending", "backoff"]


# ------------------------------------------------------------------------------ sender

class _Refused(Exception):
    def __init__(self, status: int) -> None:
        self.status = status


class WebhookSender:
    """Delivers the event feed to one endpoint (see the module docstring).

    ``await nursery.start(sender.run)`` returns once the cursor is known (and stored, for
    a new endpoint). ``clock`` gives epoch seconds (signatures, lag); ``rng`` draws the
    backoff jitter; ``client`` replaces the HTTP client (tests).
    """

    def __init__(self, config: WebhookConfig, store: _Feed, *,
                 clock: Callable[[], float] = time.time,
                 rng: random.Random | None = None,
                 client: HttpClient | None = None) -> None:
        if config.secret is None:
            raise ValueError(f"webhook {config.name!r} has no resolved secret")
        self.config = config
        self.name = config.name
        self._store = store
        self._secret = config.secret.reveal().encode()
        self._clock = clock
        self._rng = rng or random.Random()
        self._client = client or HttpClient(
            config.url, timeout=config.timeout_s, ca_file=config.tls_ca_file,
            user_agent=f"smsgw/{gateway.__version__}")
        self._prefixes = tuple(config.events)
        self._cursor_name = f"webhook:{config.name}"
        self._cursor = 0
        self._state: Literal["starting", "idle", "sending", "backoff"] = "starting"
        self._delivered_events = 0
        self._delivered_batches = 0
        self._attempts = 0
        self._failures: dict[str, int] = {}
        self._dead = 0
        self._consecutive = 0
        self._cursor_failures = 0
        self._last_status: int | None = None
        self._last_success: float | None = None
        self._flog = FailureLog(interval=60.0)
        self._persisted = -1

    # -- running ------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[WebhookSender] = trio.TASK_STATUS_IGNORED,
                  ) -> None:
        """Deliver until cancelled."""
        store = self._store
        stored = get_cursor(store, self._cursor_name)
        if stored is None:
            start = 0 if self.config.start_from == "beginning" else store.last_event_seq()
            # Stored at once: "end" means the end as of the endpoint's first start.
            await self._save_cursor(start)
            self._cursor = start
            log.info("webhook %s: new endpoint, starting after event %d", self.name, start)
        else:
            self._cursor = stored
            self._persisted = stored
        task_status.started(self)
        async with self._client:
            while True:
                events, last = store.read(partial(
                    events_or_head, after=self._cursor, limit=self.config.batch_max))
                if not events:
                    if last > self._cursor:
                        # Nothing after the cursor, yet the feed went past it: those
                        # events were pruned (retention). Move on, or wait_for_events
                        # returns at once and this loop spins without a checkpoint.
                        log.warning("webhook %s: events %d..%d are no longer in the feed "
                                    "(pruned) and were not delivered", self.name,
                                    self._cursor + 1, last)
                        await self._save_cursor(last)
                        self._cursor = last
                        continue
                    self._state = "idle"
                    await store.wait_for_events(self._cursor)
                    continue
                if events[0].seq > self._cursor + 1:
                    log.warning("webhook %s: events %d..%d are no longer in the feed "
                                "(pruned) and were not delivered", self.name,
                                self._cursor + 1, events[0].seq - 1)
                wanted = [e for e in events if self._wanted(e)]
                through = events[-1].seq
                if wanted:
                    await self._deliver(wanted, through)
                else:
                    await self._save_cursor(through)
                self._cursor = through

    def _wanted(self, e: Event) -> bool:
        if e.type == DEAD_LETTER and self._own_dead_letter(e):
            return False
        return not self._prefixes or e.type.startswith(self._prefixes)

    def _own_dead_letter(self, e: Event) -> bool:
        try:
            data = msgspec.json.decode(e.data) if e.data else {}
        except msgspec.DecodeError:
            return False
        return isinstance(data, dict) and data.get("webhook") == self.name

    async def _deliver(self, batch: Sequence[Event], through: int) -> None:
        """Deliver ``batch``, then store ``through`` as the cursor (retries until done)."""
        body = _encode([event_out(e) for e in batch])
        backoff = Backoff(self.config.backoff_min_s, self.config.backoff_max_s)
        refused = 0
        delivery = f"{batch[0].seq}-{batch[-1].seq}"
        while True:
            self._state = "sending"
            self._attempts += 1
            now = self._clock()
            headers = [("content-type", "application/json"),
                       (SIGNATURE_HEADER, sign(self._secret, body, int(now))),
                       ("x-smsgw-webhook", self.name),
                       (DELIVERY_HEADER, delivery)]
            retry_after: float | None = None
            try:
                resp = await self._client.post(body, headers)
            except HttpTimeout:
                kind, detail = "timeout", f"no answer within {self.config.timeout_s:g} s"
            except HttpConnectError as e:
                kind, detail = "connect", str(e)
            except HttpProtocolError as e:
                kind, detail = "protocol", str(e)
            else:
                self._last_status = resp.status
                if 200 <= resp.status < 300:
                    self._succeeded(len(batch))
                    await self._save_cursor(through)
                    return
                if resp.status == 413 and len(batch) > 1:
                    mid = len(batch) // 2
                    log.info("webhook %s: 413 for %d events, sending them in halves",
                             self.name, len(batch))
                    await self._deliver(batch[:mid], batch[mid - 1].seq)
                    await self._deliver(batch[mid:], through)
                    return
                kind, detail, retry_after = self._classify(resp)
                if kind in ("http_4xx", "http_3xx"):
                    refused += 1
                    limit = self.config.dead_letter_after
                    if limit and refused >= limit:
                        await self._dead_letter(batch, through, resp.status, refused)
                        return
            self._failures[kind] = self._failures.get(kind, 0) + 1
            self._consecutive += 1
            line = self._flog.failure(f"{kind}: {detail}", self._clock())
            if line is not None:
                log.warning("webhook %s: delivery of events %s failed: %s (retrying)",
                            self.name, delivery, line)
            delay = backoff.next_delay(self._rng)
            if retry_after is not None:
                delay = min(max(delay, retry_after), self.config.backoff_max_s)
            self._state = "backoff"
            await trio.sleep(delay)

    @staticmethod
    def _classify(resp: ClientResponse) -> tuple[str, str, float | None]:
        status = resp.status
        retry_after: float | None = None
        raw = resp.header(b"retry-after")
        if raw is not None and raw.strip().isdigit():
            retry_after = float(int(raw.strip()))
        snippet = resp.body[:200].decode("utf-8", "replace").strip()
        detail = f"HTTP {status}" + (f": {snippet}" if snippet else "")
        if status >= 500:
            return "http_5xx", detail, retry_after
        if status in (408, 429):
            return f"http_{status}", detail, retry_after
        if 300 <= status < 400:
            return "http_3xx", detail + " (redirects are not followed)", None
        return "http_4xx", detail, None

    def _succeeded(self, n: int) -> None:
        now = self._clock()
        line = self._flog.recovered(now)
        if line is not None:
            log.info("webhook %s: %s", self.name, line)
        self._delivered_events += n
        self._delivered_batches += 1
        self._consecutive = 0
        self._last_success = now

    async def _dead_letter(self, batch: Sequence[Event], through: int, status: int,
                           attempts: int) -> None:
        data = _encode({"webhook": self.name, "first_id": str(batch[0].seq),
                        "last_id": str(batch[-1].seq), "events": len(batch),
                        "http_status": status, "attempts": attempts})
        event = Event(0, self._clock(), DEAD_LETTER, None, None, "dead_letter", data)
        log.error("webhook %s: events %d..%d refused %d times (HTTP %d): skipped, recorded "
                  "as a %s event", self.name, batch[0].seq, batch[-1].seq, attempts, status,
                  DEAD_LETTER)
        while True:
            wb = WriteBatch()
            set_cursor(wb, self._cursor_name, through, [event])
            try:
                await self._store.commit(wb)
            except StoreError as e:
                # Skipping must be durable together with its record: wait for the store.
                self._cursor_failures += 1
                log.warning("webhook %s: cannot record the dead letter (%s); retrying",
                            self.name, e)
                await trio.sleep(self.config.backoff_min_s)
                continue
            break
        self._persisted = through
        self._dead += len(batch)
        self._consecutive = 0

    async def _save_cursor(self, seq: int) -> None:
        if seq <= self._persisted:
            return
        wb = WriteBatch()
        set_cursor(wb, self._cursor_name, seq)
        try:
            await self._store.commit(wb)
        except StoreError as e:
            # Delivered but not recorded: after a restart these events go again (at
            # least once); the next save records the newer position.
            self._cursor_failures += 1
            log.warning("webhook %s: cursor %d not saved (%s)", self.name, seq, e)
            return
        self._persisted = seq

    # -- statistics ---------------------------------------------------------------------

    def statistics(self) -> WebhookStats:
        """Counters and lag (two short store reads)."""
        store = self._store
        head = store.last_event_seq()
        lag_s = 0.0
        if head > self._cursor:
            first = store.events_after(self._cursor, 1)
            if first:
                lag_s = max(0.0, self._clock() - first[0].at)
        return WebhookStats(
            name=self.name, cursor=self._cursor, head=head,
            lag_events=max(0, head - self._cursor), lag_seconds=lag_s,
            delivered_events=self._delivered_events,
            delivered_batches=self._delivered_batches, attempts=self._attempts,
            failures=dict(self._failures), dead_lettered_events=self._dead,
            consecutive_failures=self._consecutive,
            cursor_commit_failures=self._cursor_failures, last_status=self._last_status,
            last_success_at=self._last_success, state=self._state)


async def start_webhooks(nursery: trio.Nursery, store: _Feed,
                         configs: Sequence[WebhookConfig]) -> list[WebhookSender]:
    """Start one sender per enabled endpoint in ``nursery``; returns them once each is
    ready (its cursor known)."""
    senders: list[WebhookSender] = []
    for cfg in configs:
        if not cfg.enabled:
            continue
        sender = WebhookSender(cfg, store)
        await nursery.start(sender.run)
        senders.append(sender)
    return senders
