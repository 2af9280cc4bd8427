"""The gateway service: ``smsgw run`` = :func:`main` / :func:`run`.

One nursery owns everything (STYLE.md §4.8), started in dependency order, each step
awaited with ``nursery.start`` so the next one only begins once the previous one is
ready:

1. logging (``main`` configures it; ``smsgw run`` already did), the rules' data files;
2. the store (``open_store``; its writer thread belongs to the store's own nursery);
3. the sandbox SMSC when ``[sandbox] enabled``, first, so the default carrier can bind;
4. the carriers (``CarrierSet`` of ``[[carriers]]``; binds come up in the background);
5. the pipeline: ``RecipientCache``, ``Accepter``, ``Router``, ``Dispatcher`` (outbox ->
   carriers) and ``InboundProcessor`` (receipts and MO -> store); then the webhook
   senders (``gateway.webhooks``, one per enabled ``[[webhooks]]``, readers of the feed)
   and the retention sweep (``gateway.retention``, unless every ``[store]
   *retention_days`` is 0);
6. the HTTP API (``Api(GatewayBackend(...))`` on ``[api] listen``);
7. the metrics listener (``GET /metrics`` on ``[metrics] listen``).

Then :class:`Ready` (bound ports, URLs) goes to ``task_status.started`` and, when the
``SMSGW_READY_FILE`` environment variable names a file, is written there as JSON (so a
script that starts the gateway on port 0 can find it).

Shutdown, on SIGINT/SIGTERM or :meth:`Gateway.stop`, in the reverse order of need: stop
accepting (the API stops listening and finishes the requests in progress: a 202 is
only sent after its commit), let the dispatcher hand over what it took and the binds
answer their in-flight submits (bounded), unbind the carriers, stop the inbound
processor, then leave the store's context, which commits everything queued and closes
LMDB. A second signal skips the grace periods. Nothing accepted is lost either way:
whatever was not answered stays in the outbox for the next start.
"""

from __future__ import annotations

import functools
import gc
import os
import re
import signal
import socket
import time
from bisect import bisect_left
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import msgspec
import trio

import gateway
from gateway.api_types import Backend, MessageIn, MessageResult
from gateway.bind import SubmitBatch, SubmitOutcome
from gateway.carriers import Carrier, CarrierSet
from gateway.config import GatewayConfig, parse_listen
from gateway.http import Limits, Server, serve
from gateway.logging import configure_logging, get_logger
from gateway.metrics import LocalHistogram, Metrics, outbox_provider, serve_metrics
from gateway.store import CommitResult, Store, WriteBatch
from rules.keywords import KeywordSets, load_keyword_sets
from rules.policy import Policy, with_quiet_hours
from rules.quiet_hours import load_quiet_hours

__all__ = [
    "CONFIG_DIR_ENV",
    "GC_ENV",
    "READY_FILE_ENV",
    "RECIPIENT_CACHE_ENV",
    "Gateway",
    "Ready",
    "RulesData",
    "load_rules_data",
    "main",
    "ready_from_file",
    "recipient_cache_size",
    "run",
    "tune_gc",
]

log = get_logger("smsgw.app")

#: Environment variable: when set, the :class:`Ready` JSON is written to this file.
READY_FILE_ENV = "SMSGW_READY_FILE"
#: Environment variable: the directory holding ``keywords.toml`` / ``quiet_hours.toml``.
CONFIG_DIR_ENV = "SMSGW_CONFIG_DIR"
#: Environment variable: garbage-collector tuning of ``smsgw run`` (:func:`tune_gc`):
#: unset = :data:`GC_THRESHOLDS` and ``gc.freeze()`` after start-up; ``off`` = Python's
#: defaults; ``G0,G1,G2`` = those thresholds (and the freeze).
GC_ENV = "SMSGW_GC"
#: ``gc.set_threshold`` of ``smsgw run``. Python's default (700, 10, 10) runs a young
#: collection every 700 net allocations: under load that is thousands of passes a second
#: over requests, trio tasks and dispatcher state (bench/RESULTS.md: 196 -> 177 us of
#: CPU per message end to end, accept 9k -> 14.6k msg/s). Hot-path records are already
#: untracked (``gc=False``), so a bigger generation 0 costs little memory.
GC_THRESHOLDS: tuple[int, int, int] = (100_000, 50, 100)
#: Environment variable: entries kept by the ``RecipientCache`` (default
#: ``gateway.pipeline.recipients.DEFAULT_MAX_SIZE``, ~1.2 KB each); ``NNNmb`` sizes it by
#: memory instead (``ENTRY_BYTES`` per entry).
RECIPIENT_CACHE_ENV = "SMSGW_RECIPIENT_CACHE"
#: Bound on the whole graceful shutdown; past it everything left is cancelled.
SHUTDOWN_TIMEOUT = 20.0
#: The dispatcher's share of it: handing over what it took, in-flight submits answered.
DRAIN_TIMEOUT = 10.0

_PACKAGE_CONFIG = Path(gateway.__file__).resolve().parent.parent / "config"


class Ready(msgspec.Struct, frozen=True, kw_only=True):
    """What a started gateway listens on (ports are the bound ones, also after port 0)."""

    api_url: str
    api_port: int
    metrics_url: str | None = None
    metrics_port: int | None = None
    sandbox_port: int | None = None
    sandbox_control_url: str | None = None
    pid: int = 0
    #: The short-link listener (``[links] listen``), when on.
    links_url: str | None = None
    links_port: int | None = None


class RulesData(msgspec.Struct, frozen=True, kw_only=True):
    """The rules' inputs read from files: the policy (with quiet hours) and keyword sets."""

    policy: Policy
    keyword_sets: KeywordSets
    keywords_file: str | None = None
    quiet_hours_file: str | None = None


def _find(name: str, config_dir: str | os.PathLike[str] | None) -> Path | None:
    candidates: list[Path] = []
    if config_dir is not None:
        candidates.append(Path(config_dir))
    if os.environ.get(CONFIG_DIR_ENV):
        candidates.append(Path(os.environ[CONFIG_DIR_ENV]))
    if os.environ.get("SMSGW_CONFIG"):
        candidates.append(Path(os.environ["SMSGW_CONFIG"]).parent)
    candidates += [Path("config"), _PACKAGE_CONFIG]
    for directory in candidates:
        path = directory / name
        if path.is_file():
            return path
    return None


def load_rules_data(config: GatewayConfig,
                    config_dir: str | os.PathLike[str] | None = None) -> RulesData:
    """Read ``keywords.toml`` and ``quiet_hours.toml`` (rules are pure: the app reads files).

    Looked up in ``config_dir`` (the config file's directory), ``$SMSGW_CONFIG_DIR``, the
    directory of ``$SMSGW_CONFIG``, ``./config``, then the source checkout's ``config/``.
    Without ``quiet_hours.toml`` the policy keeps its built-in table (the same data);
    without ``keywords.toml`` the keyword sets are empty and the start is logged as such.
    Invalid files raise ``ValueError`` naming the file and the field.
    """
    policy = config.rules
    qh_path = _find("quiet_hours.toml", config_dir)
    if qh_path is not None:
        try:
            policy = with_quiet_hours(policy, load_quiet_hours(qh_path.read_bytes()))
        except ValueError as e:
            raise ValueError(f"{qh_path}: {e}") from None
    kw_path = _find("keywords.toml", config_dir)
    if kw_path is not None:
        try:
            sets = load_keyword_sets(kw_path.read_bytes())
        except ValueError as e:
            raise ValueError(f"{kw_path}: {e}") from None
    else:
        sets = KeywordSets()
    return RulesData(policy=policy, keyword_sets=sets,
                     keywords_file=str(kw_path) if kw_path else None,
                     quiet_hours_file=str(qh_path) if qh_path else None)


def _url(host: str, port: int) -> str:
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def _write_ready(ready: Ready) -> None:
    path = os.environ.get(READY_FILE_ENV)
    if not path:
        return
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        f.write(msgspec.json.encode(ready))
    os.replace(tmp, path)  # readers never see half a file


async def _run_until_done(
    fn: Callable[..., Awaitable[Any]], done: trio.Event, *,
    task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run ``fn(task_status=...)``; set ``done`` when it returns (graceful stops wait on it)."""
    try:
        await fn(task_status=task_status)
    finally:
        done.set()


class Gateway:
    """A running gateway (tests: ``gw = await nursery.start(Gateway(config).run)``)."""

    def __init__(self, config: GatewayConfig, *,
                 config_dir: str | os.PathLike[str] | None = None,
                 handle_signals: bool = True, tune_gc: bool = False) -> None:
        self.config = config
        self.config_dir = config_dir
        self.handle_signals = handle_signals
        #: Apply :func:`tune_gc` once ready (``smsgw run``; not in tests' processes,
        #: where a freeze would keep every earlier test's garbage forever).
        self.tune_gc = tune_gc
        self.metrics = Metrics(carriers=[c.name for c in config.carriers])
        self.ready: Ready | None = None
        self._stop = trio.Event()
        self._stopping = False
        self._hurry = False
        self.components: dict[str, Any] = {}

    def stop(self) -> None:
        """Start the graceful shutdown (idempotent; a second call hurries it)."""
        if self._stop.is_set():
            self._hurry = True
        self._stop.set()

    async def _signals(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
                       ) -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            task_status.started()
            async for signum in signals:
                name = signal.Signals(signum).name
                if self._stop.is_set():
                    log.warning("second signal: stopping now", signal=name)
                    self._hurry = True
                    self._stop.set()
                    if self._cancel_all is not None:
                        self._cancel_all()
                else:
                    log.info("signal received: shutting down", signal=name)
                    self._stop.set()

    _cancel_all: Callable[[], None] | None = None

    async def run(self, *, task_status: trio.TaskStatus[Ready] = trio.TASK_STATUS_IGNORED,
                  ) -> None:
        """Start everything, report :class:`Ready`, serve until stopped, shut down."""
        from gateway.store import open_store

        cfg = self.config
        started = time.monotonic()
        log.info("starting", version=gateway.__version__, pid=os.getpid(),
                 carriers=len(cfg.carriers), sandbox=cfg.sandbox.enabled)
        rules_data = load_rules_data(cfg, self.config_dir)
        log.info("rules loaded", keywords=rules_data.keywords_file or "built-in (none)",
                 quiet_hours=rules_data.quiet_hours_file or "built-in")
        self.metrics.collector.set_info(version=gateway.__version__,
                                        durability=cfg.store.durability)
        self.metrics.collector.set_carriers(
            {c.name: (c.binds * (2 if c.bind == "transmitter+receiver" else 1), c.window)
             for c in cfg.carriers})

        async with trio.open_nursery() as outer:
            self._cancel_all = outer.cancel_scope.cancel
            if self.handle_signals:
                await outer.start(self._signals)
            async with open_store(cfg.store.path, durability=cfg.store.durability,
                                  map_size=cfg.store.map_size,
                                  max_map_size=cfg.store.max_map_size) as store:
                log.info("store open", path=cfg.store.path, durability=cfg.store.durability)
                self.components["store"] = store
                self.metrics.register("store", store.statistics)
                self.metrics.register("outbox", outbox_provider(
                    store.outbox_depth, lambda: _oldest_due(store)))
                async with trio.open_nursery() as nursery:
                    ready = await self._start(nursery, store, rules_data)
                    self.ready = ready
                    _write_ready(ready)
                    log.info("ready", api=ready.api_url, metrics=ready.metrics_url or "off",
                             sandbox=ready.sandbox_port or "off",
                             startup_ms=round((time.monotonic() - started) * 1000))
                    if self.tune_gc:
                        log.info("gc tuned", thresholds=tune_gc())
                    task_status.started(ready)
                    await self._stop.wait()
                    await self._shutdown(nursery)
                log.info("store flushed and closed")
            outer.cancel_scope.cancel()
        log.info("stopped", uptime_s=round(time.monotonic() - started, 1))

    # -- start ---------------------------------------------------------------------------

    async def _start(self, nursery: trio.Nursery, store: Store, rules_data: RulesData,
                     ) -> Ready:
        cfg = self.config
        c = self.components

        sandbox_port: int | None = None
        control_url: str | None = None
        if cfg.sandbox.enabled:
            from gateway.sim import SimServer

            settings = cfg.sandbox.sim_settings()
            host, port = cfg.sandbox.address
            # The control endpoint (MO injection, fault injection) sits next to the SMPP
            # port: 2775 -> 2776; an ephemeral SMPP port gets an ephemeral control port.
            # ``[sandbox] control_listen`` names it instead (its host must be the SMPP one).
            if cfg.sandbox.control_listen is not None:
                control = parse_listen(cfg.sandbox.control_listen)[1]
            else:
                control = port + 1 if 0 < port < 65535 else 0
                if control and not _port_free(host, control):
                    log.warning("sandbox control port busy, using an ephemeral one",
                                port=control)
                    control = 0
            settings = msgspec.structs.replace(settings, control_port=control)
            sim = SimServer(settings)
            await nursery.start(sim.run)
            c["sandbox"] = sim
            sandbox_port = sim.port
            if sim.control_port is not None:
                control_url = _url(host, sim.control_port)
            self.metrics.register("sandbox", lambda: sim.stats)
            log.info("sandbox SMSC started", listen=f"{host}:{sim.port}",
                     control=control_url or "off")

        carrier_set = CarrierSet([cc.bind_settings() for cc in cfg.carriers],
                                 inbound_buffer=64)
        await nursery.start(carrier_set.run)
        c["carriers"] = carrier_set
        self.metrics.register("carriers", carrier_set.statistics)
        log.info("carriers started", carriers=",".join(cc.name for cc in cfg.carriers) or "none")

        backend = await self._start_pipeline(nursery, store, carrier_set, rules_data)
        await self._start_webhooks(nursery, store)
        await self._start_retention(nursery, store)

        from gateway.api import Api

        api = Api(backend, tokens=cfg.api.token_values(), max_batch=cfg.api.max_batch,
                  version=gateway.__version__)
        limits = Limits(max_body_bytes=cfg.api.max_body_bytes,
                        header_timeout=cfg.api.header_timeout_s,
                        body_timeout=cfg.api.body_timeout_s)
        api_host, api_port = cfg.api.address
        api_done = trio.Event()
        api_server: Server = await nursery.start(
            _run_until_done, functools.partial(serve, api, host=api_host, port=api_port,
                                               limits=limits), api_done)
        c["api"] = api
        c["api_server"] = api_server
        c["api_done"] = api_done
        self.metrics.register("api", api.statistics)
        self.metrics.register("api_server", api_server.statistics)
        log.info("API listening", url=_url(api_host, api_server.port),
                 auth="token" if cfg.api.tokens else "none (loopback only)")

        metrics_url: str | None = None
        metrics_port: int | None = None
        if cfg.metrics.enabled:
            m_host, m_port = cfg.metrics.address
            m_server: Server = await nursery.start(functools.partial(
                serve_metrics, self.metrics, host=m_host, port=m_port))
            c["metrics_server"] = m_server
            self.metrics.register("metrics_server", m_server.statistics)
            metrics_port = m_server.port
            metrics_url = _url(m_host, metrics_port) + "/metrics"
            log.info("metrics listening", url=metrics_url)

        from gateway.marketing.app_hook import start_links

        # 8. the short-link listener (docs/marketing.md), when [links] listen is set
        links = await start_links(nursery, store, cfg.links, self.metrics)
        links_url = links_port = None
        if links is not None:
            c["links"] = links
            links_port = links.port
            links_url = _url(cfg.links.address[0] if cfg.links.address else "", links_port)
            log.info("short-link listener", url=links_url)

        return Ready(links_url=links_url, links_port=links_port,
                     api_url=_url(api_host, api_server.port), api_port=api_server.port,
                     metrics_url=metrics_url, metrics_port=metrics_port,
                     sandbox_port=sandbox_port, sandbox_control_url=control_url,
                     pid=os.getpid())

    async def _start_pipeline(self, nursery: trio.Nursery, store: Store,
                              carrier_set: CarrierSet, rules_data: RulesData) -> Backend:
        from gateway.backend import GatewayBackend
        from gateway.pipeline import Accepter, RecipientCache, Router
        from gateway.pipeline.dispatch import Dispatcher
        from gateway.pipeline.inbound import InboundProcessor

        # The pipeline reads its policy from the config: give it the one with the
        # quiet-hours table read from the data file.
        cfg = msgspec.structs.replace(self.config, rules=rules_data.policy)
        instruments = self.metrics.instruments
        timed = cast(Store, TimedStore(store, instruments.observe_commit))
        recipients = RecipientCache(timed, policy=cfg.rules,
                                    max_size=recipient_cache_size())
        accepter = Accepter(timed, cfg, recipients)
        observed = {c.name: ObservedCarrier(c, instruments.submit_series(c.name))
                    for c in carrier_set}
        dispatcher = Dispatcher(timed, cfg, observed, Router(cfg.routes), accepter,
                                recipients=recipients)
        # New queued records go to the dispatcher straight from the accept (no re-read).
        accepter.handoff = dispatcher
        dispatcher_done = trio.Event()
        await nursery.start(_run_until_done, dispatcher.run, dispatcher_done)
        inbound = InboundProcessor(timed, cfg, recipients, accepter, dispatcher,
                                   inbound=carrier_set.inbound,
                                   keyword_sets=rules_data.keyword_sets)
        inbound.on_receipt_latencies = instruments.observe_receipts
        await nursery.start(inbound.run)

        def live(name: str) -> bool:
            carrier = carrier_set.carriers.get(name)
            return carrier is not None and bool(carrier.live_binds)

        inner = GatewayBackend(cfg, timed, accepter, recipients, ready_probe=live,
                               in_flight=dispatcher.in_flight)
        # The accept workers small requests are coalesced into (before the API listens;
        # cancelled with the rest of the nursery, after the API's shutdown).
        await nursery.start(inner.coalescer.run)
        backend = CountingBackend(inner)
        self.components.update(recipients=recipients, accepter=accepter,
                               dispatcher=dispatcher, inbound=inbound, backend=backend)
        self.metrics.register("accepter", accepter.statistics)
        self.metrics.register("decisions", backend.statistics)
        self.metrics.register("dispatcher", dispatcher.statistics)
        self.metrics.register("inbound", inbound.statistics)
        log.info("pipeline started", routes=len(cfg.routes),
                 keyword_sets="loaded" if rules_data.keywords_file else "empty")
        return cast(Backend, backend)

    async def _start_webhooks(self, nursery: trio.Nursery, store: Store) -> None:
        # Readers of the event feed only: a slow receiver never holds up the pipeline.
        # Stopped by the nursery's cancellation; an unanswered batch goes again next start.
        hooks = [h for h in self.config.webhooks if h.enabled]
        if not hooks:
            return
        from gateway.webhooks import start_webhooks

        senders = await start_webhooks(nursery, cast(Any, store), hooks)
        self.components["webhooks"] = senders
        self.metrics.register("webhooks", lambda: [s.statistics() for s in senders])
        log.info("webhooks started", endpoints=",".join(s.name for s in senders))

    async def _start_retention(self, nursery: trio.Nursery, store: Store) -> None:
        # After the webhooks: a new endpoint has stored its cursor before the first sweep
        # looks at the cursors (and the first sweep waits FIRST_SWEEP_DELAY_S anyway).
        from gateway.retention import Retention, RetentionSettings

        settings = RetentionSettings.from_config(self.config)
        if not settings.enabled:
            log.info("retention off (every [store] *retention_days = 0)")
            return
        retention = Retention(store, settings)
        await nursery.start(retention.run)
        self.components["retention"] = retention
        self.metrics.register("retention", retention.statistics)
        s = self.config.store
        log.info("retention started", messages_days=s.retention_days,
                 events_days=s.events_retention_days,
                 idempotency_days=s.idempotency_retention_days,
                 errors_days=round(settings.errors_s / 86400), links_days=s.links_retention_days,
                 interval_s=s.retention_interval_s)

    # -- stop ----------------------------------------------------------------------------

    async def _shutdown(self, nursery: trio.Nursery) -> None:
        c = self.components
        with trio.move_on_after(0 if self._hurry else SHUTDOWN_TIMEOUT) as scope:
            api_server: Server | None = c.get("api_server")
            if api_server is not None:
                log.info("shutdown: API stops accepting")
                api_server.shutdown()
                await c["api_done"].wait()
            await self._stop_pipeline_outbound()
            carriers = c.get("carriers")
            if carriers is not None:
                log.info("shutdown: unbinding carriers")
                await carriers.shutdown()
            await self._stop_pipeline_inbound()
        if scope.cancelled_caught:
            log.warning("shutdown: grace period over, cancelling what is left")
        nursery.cancel_scope.cancel()

    async def _stop_pipeline_outbound(self) -> None:
        dispatcher = self.components.get("dispatcher")
        if dispatcher is not None:
            left = await dispatcher.drain(0 if self._hurry else DRAIN_TIMEOUT)
            log.info("shutdown: dispatcher drained" if left
                     else "shutdown: dispatcher drain timed out (in-flight parts stay in the "
                          "outbox)", awaiting=dispatcher.awaiting_response())

    async def _stop_pipeline_inbound(self) -> None:
        dispatcher = self.components.get("dispatcher")
        if dispatcher is not None:
            # Outcomes of the last responses and of parts the carriers gave back
            # (NOT_SENT at unbind) are committed before the store closes.
            with trio.move_on_after(0 if self._hurry else 5.0):
                await dispatcher.flush()


class TimedStore:
    """The store as the pipeline sees it: every method delegated, ``commit`` timed.

    The store's own ``statistics()`` has only the last commit's latency; the histogram of
    commit latency and batch size is measured here, at the one call every write goes
    through (~1 us per commit, not per message).
    """

    def __init__(self, store: Store, observe: Callable[[float, int], None]) -> None:
        self._store = store
        self._observe = observe

    async def commit(self, batch: WriteBatch) -> CommitResult:
        t0 = time.perf_counter()
        result = await self._store.commit(batch)
        self._observe(time.perf_counter() - t0, len(batch))
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


class ObservedCarrier:
    """A carrier as the dispatcher sees it: outcomes also feed the submit->resp histogram.

    ``SubmitOutcome.latency`` (Session hand-over to submit_sm_resp) is measured by the
    bind; the dispatcher's ``on_outcome`` callback is wrapped, one extra call per part,
    which adds the latency to ``series`` (a ``gateway.metrics.LocalHistogram``) inline:
    a ``bisect`` and two additions, no Prometheus call on the hot path.
    """

    def __init__(self, carrier: Carrier, series: LocalHistogram) -> None:
        self._carrier = carrier
        self._series = series

    @property
    def can_submit(self) -> bool:
        return self._carrier.can_submit

    async def enqueue(self, batch: SubmitBatch) -> None:
        inner = batch.on_outcome
        series = self._series
        counts = series.counts
        bounds = series.bounds

        # ``LocalHistogram.observe`` inlined; ``latency > 0`` also keeps NaN out.
        if inner is None:
            def on_outcome(index: int, outcome: SubmitOutcome) -> None:
                latency = outcome.latency
                if latency > 0:
                    counts[bisect_left(bounds, latency)] += 1
                    series.sum += latency
        else:
            def on_outcome(index: int, outcome: SubmitOutcome) -> None:
                latency = outcome.latency
                if latency > 0:
                    counts[bisect_left(bounds, latency)] += 1
                    series.sum += latency
                inner(index, outcome)

        batch.on_outcome = on_outcome
        await self._carrier.enqueue(batch)

    async def wait_until(self, predicate: Callable[[Any], bool]) -> None:
        await self._carrier.wait_until(lambda _c: predicate(self))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._carrier, name)


_REASON = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


class CountingBackend:
    """The API's backend with decisions counted by status and reason code.

    Reason codes are the rules' stable lower_snake_case codes (an enum in all but type),
    so they are safe metric labels; anything else is counted as ``other``.
    """

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self._rejected: dict[str, int] = {}
        self._scheduled: dict[str, int] = {}

    async def submit(self, messages: list[MessageIn]) -> list[MessageResult]:
        results = await self._backend.submit(messages)
        for r in results:
            if r.status == "queued":
                continue
            counts = self._rejected if r.status == "rejected" else self._scheduled
            reason = r.reason if r.reason and _REASON.match(r.reason) else "other"
            counts[reason] = counts.get(reason, 0) + 1
        return results

    def statistics(self) -> dict[str, dict[str, int]]:
        """``{"rejected_by_reason": {...}, "scheduled_by_reason": {...}}`` since start."""
        return {"rejected_by_reason": dict(self._rejected),
                "scheduled_by_reason": dict(self._scheduled)}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)


def tune_gc(setting: str | None = None) -> tuple[int, int, int] | None:
    """Garbage-collector tuning for a long-running gateway process (``smsgw run``).

    ``setting`` (default: ``$SMSGW_GC``): None/empty = :data:`GC_THRESHOLDS`; ``off`` =
    leave Python's defaults; ``G0,G1,G2`` = those thresholds. Unless ``off``, the heap as
    of now (modules, config, rules data, the store's start-up objects) is moved to the
    permanent generation (``gc.freeze()``): no later collection walks it again. Call it
    once, after start-up. Returns the thresholds set (None for ``off``).
    """
    value = (os.environ.get(GC_ENV, "") if setting is None else setting).strip()
    if value.lower() == "off":
        return None
    thresholds = GC_THRESHOLDS
    if value:
        try:
            parts = tuple(int(x) for x in value.split(","))
        except ValueError:
            parts = ()
        if len(parts) != 3 or min(parts) < 0:
            raise ValueError(f"{GC_ENV}: expected off or G0,G1,G2, got {value!r}")
        thresholds = (parts[0], parts[1], parts[2])
    gc.collect()
    gc.freeze()
    gc.set_threshold(*thresholds)
    return thresholds


def recipient_cache_size(setting: str | None = None) -> int:
    """Entries of the ``RecipientCache`` from ``setting`` (default ``$SMSGW_RECIPIENT_CACHE``):
    empty = the default; ``N`` entries; ``NNNmb`` = that much memory at ~1.2 KB/entry."""
    from gateway.pipeline.recipients import DEFAULT_MAX_SIZE, ENTRY_BYTES

    value = (os.environ.get(RECIPIENT_CACHE_ENV, "") if setting is None
             else setting).strip().lower()
    if not value:
        return DEFAULT_MAX_SIZE
    try:
        n = (int(value[:-2]) * 1_000_000 // ENTRY_BYTES if value.endswith("mb")
             else int(value))
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"{RECIPIENT_CACHE_ENV}: expected entries (N) or NNNmb, got {value!r}")
    return n


def _port_free(host: str, port: int) -> bool:
    """Whether ``host:port`` can be listened on now (a probe; the real bind may still race)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _oldest_due(store: Any) -> float | None:
    entry = store.outbox_oldest()
    return None if entry is None else float(entry.due)


async def run(config: GatewayConfig, *,
              config_dir: str | os.PathLike[str] | None = None,
              task_status: trio.TaskStatus[Ready] = trio.TASK_STATUS_IGNORED) -> None:
    """Run the gateway until SIGINT/SIGTERM (``smsgw run``); ``started(Ready)`` when up."""
    await Gateway(config, config_dir=config_dir, tune_gc=True).run(task_status=task_status)


def main(config: GatewayConfig, *, config_dir: str | os.PathLike[str] | None = None) -> int:
    """Synchronous entry: configure logging, ``trio.run(run)``; returns the exit code."""
    configure_logging(config.logging.level, json=config.logging.json,
                      mask_phones=config.logging.mask_phones)
    trio.run(functools.partial(run, config, config_dir=config_dir))
    return 0


def ready_from_file(path: str | os.PathLike[str]) -> Ready | None:
    """The :class:`Ready` a gateway wrote to ``$SMSGW_READY_FILE`` (None if not yet)."""
    try:
        return msgspec.json.decode(Path(path).read_bytes(), type=Ready)
    except (FileNotFoundError, msgspec.DecodeError):
        return None

