"""Carrier supervision on trio: N binds per carrier, restarted with jittered backoff.

A ``Carrier`` owns one ``WorkQueue`` (its submit queue, token bucket and throttle pause)
and a nursery of bind *slots*: ``binds`` transceivers, or ``binds`` transmitter +
receiver pairs. Each slot runs ``Bind.run()`` in a loop; when it ends abnormally (connect
refused, bind refused, link lost, SMSC unbind, dead link) the slot logs the cause and
waits a capped, jittered exponential backoff before the next attempt.

Logging never storms: per carrier, the first occurrence of a cause is logged, the same
cause repeating is summarised at most every ``log_interval`` seconds, and a success after
failures logs one "recovered" line (``gateway.backoff.FailureLog``).

Routing among a carrier's binds is work stealing: every bound transmitter-capable bind
pulls from the shared queue as far as its window allows, so the bind with the most room
(least inflight) takes the most and a dead bind takes nothing.

Shutdown (``await carrier.shutdown()``): stop accepting submits (queued parts resolve
NOT_SENT), let each bind wait (bounded by ``shutdown_timeout``) for its outstanding
responses and unbind, then cancel what is left. Cancellation alone is also safe: every
part resolves (UNKNOWN if it reached a Session, NOT_SENT otherwise).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterator, Sequence

import msgspec
import trio

from gateway.backoff import Backoff, FailureLog
from gateway.bind import (
    Bind,
    BindError,
    BindKind,
    BindSettings,
    BindStats,
    Connector,
    Inbound,
    SubmitBatch,
    SubmitOutcome,
    WorkQueue,
)
from gateway.smpp import pdu as P

__all__ = ["Carrier", "CarrierSet", "CarrierStats"]

log = logging.getLogger("smsgw.carriers")


class CarrierStats(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot of one carrier (``Carrier.statistics()``)."""

    name: str
    live_binds: int
    queued: int
    inflight: int
    attempts: int
    failures: int
    #: Totals since start, over every bind that ever ran (live ones included).
    submitted: int
    accepted: int
    rejected: int
    unknown: int
    inbound: int
    last_failure: str | None
    throttled: int
    throttle_pauses: int
    binds: tuple[BindStats, ...]
    #: Peer protocol errors (garbage, bad lengths, unknown commands, undecodable bodies)
    #: seen by every bind since start: a carrier sending garbage shows in metrics too.
    protocol_errors: int = 0


def _protocol_errors(stats: BindStats) -> int:
    return stats.session.protocol_errors if stats.session is not None else 0


class Carrier:
    """One carrier: its binds, its submit queue, and the inbound deliveries of its binds.

    ``inbound`` is where inbound deliveries go, as lists of ``Inbound``; without one the
    carrier makes its own bounded channel, readable as ``carrier.inbound``.
    """

    def __init__(
        self,
        settings: BindSettings,
        *,
        inbound: trio.MemorySendChannel[list[Inbound]] | None = None,
        rng: random.Random | None = None,
        connect: Connector | None = None,
    ) -> None:
        self.settings = settings
        self.name = settings.name
        self._connect = connect
        self._rng = rng or random.Random()
        self.queue = WorkQueue(
            tps=settings.tps,
            capacity=settings.queue_capacity,
            throttle_pause=settings.throttle_pause,
            throttle_pause_max=settings.throttle_pause_max,
            throttle_retry_for=settings.throttle_retry_for,
            log_interval=settings.log_interval,
            name=settings.name,
            rng=self._rng,
        )
        self.inbound: trio.MemoryReceiveChannel[list[Inbound]] | None = None
        if inbound is None:
            inbound, self.inbound = trio.open_memory_channel[list[Inbound]](
                settings.inbound_buffer)
        self._inbound_send = inbound
        self._live: list[Bind] = []
        self._changed = trio.Event()
        self._faillog = FailureLog(settings.log_interval)
        self._closing = False
        self._cancel: trio.CancelScope | None = None
        self._done = trio.Event()
        self.attempts = 0
        self.failures = 0
        self.last_failure: str | None = None
        self._totals = dict.fromkeys(
            ("submitted", "accepted", "rejected", "unknown", "inbound", "protocol_errors"), 0)

    # -- the interface the pipeline uses ----------------------------------------------------

    async def submit(
        self,
        parts: Sequence[P.SubmitSm],
        *,
        on_outcome: Callable[[int, SubmitOutcome], None] | None = None,
    ) -> list[SubmitOutcome]:
        """Submit ``parts`` and wait for one outcome per part, in order."""
        batch = SubmitBatch(parts, on_outcome)
        await self.queue.put(batch)
        return await batch.wait()

    def withdraw(self, batch: SubmitBatch) -> int:
        """Take back the parts of ``batch`` no bind has sent yet (they resolve NOT_SENT)."""
        return self.queue.withdraw(batch)

    async def enqueue(self, batch: SubmitBatch) -> None:
        """Queue a batch and return at once (waits only while the queue is full).

        Outcomes arrive later through ``batch.on_outcome`` / ``await batch.wait()``.
        """
        await self.queue.put(batch)

    @property
    def live_binds(self) -> list[Bind]:
        """The binds currently bound."""
        return list(self._live)

    @property
    def can_submit(self) -> bool:
        """True when at least one bound bind can submit."""
        return any(b.kind.can_submit for b in self._live)

    async def wait_bound(self, n: int = 1) -> None:
        """Wait until at least ``n`` binds are bound."""
        await self.wait_until(lambda c: len(c.live_binds) >= n)

    async def wait_until(self, predicate: Callable[[Carrier], bool]) -> None:
        """Wait until ``predicate(carrier)`` holds; re-checked when a bind comes, goes or fails."""
        while not predicate(self):
            await self._changed.wait()

    def _retire(self, bind: Bind) -> None:
        t = self._totals
        t["submitted"] += bind.submitted
        t["accepted"] += bind.accepted
        t["rejected"] += bind.rejected
        t["unknown"] += bind.unknown
        t["inbound"] += bind.inbound_count
        t["protocol_errors"] += _protocol_errors(bind.statistics())

    def statistics(self) -> CarrierStats:
        """An immutable snapshot (read it at scrape time)."""
        stats = tuple(b.statistics() for b in self._live)
        t = self._totals
        return CarrierStats(
            submitted=t["submitted"] + sum(b.submitted for b in stats),
            accepted=t["accepted"] + sum(b.accepted for b in stats),
            rejected=t["rejected"] + sum(b.rejected for b in stats),
            unknown=t["unknown"] + sum(b.unknown for b in stats),
            inbound=t["inbound"] + sum(b.inbound for b in stats),
            name=self.name,
            live_binds=len(self._live),
            queued=len(self.queue),
            inflight=sum(b.inflight for b in self._live),
            attempts=self.attempts,
            failures=self.failures,
            last_failure=self.last_failure,
            throttled=self.queue.throttled,
            throttle_pauses=self.queue.pauses,
            binds=stats,
            protocol_errors=t["protocol_errors"] + sum(_protocol_errors(b) for b in stats),
        )

    # -- running ----------------------------------------------------------------------------

    def _slots(self) -> list[tuple[BindKind, str]]:
        s = self.settings
        out: list[tuple[BindKind, str]] = []
        for i in range(s.binds):
            if s.mode == "transceiver":
                out.append((BindKind.TRANSCEIVER, f"{s.name}#{i}"))
            else:
                out.append((BindKind.TRANSMITTER, f"{s.name}#{i}tx"))
                out.append((BindKind.RECEIVER, f"{s.name}#{i}rx"))
        return out

    async def run(self, *, task_status: trio.TaskStatus[Carrier] = trio.TASK_STATUS_IGNORED,
                  ) -> None:
        """Supervise the binds until cancelled or ``shutdown()``; starts at once (not bound)."""
        try:
            async with trio.open_nursery() as nursery:
                self._cancel = nursery.cancel_scope
                for kind, name in self._slots():
                    nursery.start_soon(self._slot, kind, name)
                task_status.started(self)
        finally:
            self.queue.close()
            self._done.set()

    async def shutdown(self, grace: float | None = None) -> None:
        """Stop taking work, let binds finish their inflight submits and unbind, stop."""
        self._closing = True
        self.queue.close()
        for b in list(self._live):
            b.close()
        limit = self.settings.shutdown_timeout + 1.0 if grace is None else grace
        with trio.move_on_after(limit):
            while self._live:
                await self._changed.wait()
        if self._cancel is not None:
            self._cancel.cancel()
        if self._cancel is not None:
            await self._done.wait()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def _on_bound(self, bind: Bind) -> None:
        self._live.append(bind)
        self._notify()
        line = self._faillog.recovered(trio.current_time())
        if line is not None:
            log.info("carrier %s: %s", self.name, line)
        log.info("carrier %s: %s bound as %s to %s:%d", self.name, bind.name, bind.kind.value,
                 self.settings.host, self.settings.port)
        if self._closing:
            bind.close()

    async def _slot(self, kind: BindKind, name: str) -> None:
        s = self.settings
        backoff = Backoff(s.backoff_initial, max(s.backoff_initial, s.backoff_max))
        while not self._closing:
            bind = Bind(s, kind=kind, queue=self.queue, inbound=self._inbound_send, name=name,
                        on_bound=self._on_bound, connect=self._connect)
            self.attempts += 1
            cause = f"{name} closed"
            try:
                await bind.run()
            except BindError as e:
                cause = e.cause
            except Exception as e:  # a bug of ours must not take the gateway down
                cause = f"{name} crashed: {type(e).__name__}: {e}"
                if self._faillog.cause != cause:
                    log.exception("carrier %s: bind %s crashed", self.name, name)
            finally:
                if bind in self._live:
                    self._live.remove(bind)
                    self._notify()
                self._retire(bind)
            if self._closing:
                return
            now = trio.current_time()
            if bind.ever_bound:
                backoff.reset()
            self.failures += 1
            self.last_failure = cause
            self._notify()
            delay = backoff.next_delay(self._rng)
            line = self._faillog.failure(cause, now)
            if line is not None:
                log.warning("carrier %s: %s; reconnecting in %.1f s", self.name, line, delay)
            await trio.sleep(delay)


class CarrierSet:
    """Several carriers sharing one inbound stream (``carrier_set.inbound``)."""

    def __init__(
        self,
        settings: Sequence[BindSettings],
        *,
        inbound_buffer: int = 64,
        rng: random.Random | None = None,
    ) -> None:
        send, self.inbound = trio.open_memory_channel[list[Inbound]](inbound_buffer)
        rng = rng or random.Random()
        self.carriers: dict[str, Carrier] = {}
        for s in settings:
            if s.name in self.carriers:
                raise ValueError(f"duplicate carrier name {s.name!r}")
            self.carriers[s.name] = Carrier(s, inbound=send, rng=random.Random(rng.random()))

    def __getitem__(self, name: str) -> Carrier:
        return self.carriers[name]

    def __iter__(self) -> Iterator[Carrier]:
        return iter(self.carriers.values())

    async def run(self, *, task_status: trio.TaskStatus[CarrierSet] = trio.TASK_STATUS_IGNORED,
                  ) -> None:
        async with trio.open_nursery() as nursery:
            for c in self.carriers.values():
                await nursery.start(c.run)
            task_status.started(self)

    async def shutdown(self) -> None:
        async with trio.open_nursery() as nursery:
            for c in self.carriers.values():
                nursery.start_soon(c.shutdown)

    def statistics(self) -> dict[str, CarrierStats]:
        return {name: c.statistics() for name, c in self.carriers.items()}
