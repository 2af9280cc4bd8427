"""Prometheus metrics: the only module that imports ``prometheus_client``.

Observability is data (STYLE.md §4.10): components keep plain counters and expose them
through ``statistics()``; this module reads them **at scrape time** through one custom
:class:`GatewayCollector` on its own ``CollectorRegistry`` (nothing global, so two
gateways in one test process never share series). A component is registered as a
*provider*, a zero-argument callable returning its statistics; a component that is not
running (no sandbox, no carriers yet, a pipeline piece not wired) is simply not registered
and its series are absent. A provider that raises is skipped for that scrape and counted
in ``smsgw_scrape_errors_total{component}``: a broken reader never fails the whole scrape.

Only what ``statistics()`` cannot give is measured on the hot path (:class:`Instruments`):
submit -> submit_sm_resp and submit -> receipt latency histograms per carrier, and store
commit latency / batch size histograms. They are plain bucket counts
(:class:`LocalHistogram`: a ``bisect`` and two additions, ~0.2 us, where a
``prometheus_client.Histogram.observe`` took ~1.5 us with its locks), folded into the
same Prometheus families at scrape time: same names, labels, buckets, ``_created``
series and values as the ``Histogram`` objects they replace (tests/app/test_metrics.py
compares the two expositions). They are only touched on the trio thread (the scrape too),
so they need no lock.

Labels come only from the configuration (carrier names, route keys of the API's fixed
route table) and from enums (outcomes, reason codes, receipt stats, error classes,
keyword kinds). Never a phone number, a message text, a message id or a carrier message
id: those would be personal data in a time-series database and an unbounded label set.

``GET /metrics`` is served by the project's own HTTP server (:func:`serve_metrics`).
"""

from __future__ import annotations

import logging
import math
import re
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import msgspec
import trio
from prometheus_client import CollectorRegistry
from prometheus_client import metrics as _prometheus_metrics
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    SummaryMetricFamily,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

from gateway.http import Limits, Request, Response, Server, serve

__all__ = [
    "COMMIT_BUCKETS",
    "LATENCY_BUCKETS",
    "RECEIPT_BUCKETS",
    "GatewayCollector",
    "HistogramFamily",
    "Instruments",
    "LocalHistogram",
    "Metrics",
    "MetricsApp",
    "Provider",
    "serve_metrics",
]

log = logging.getLogger("smsgw.metrics")

#: A zero-argument callable returning a component's ``statistics()`` value.
Provider = Callable[[], Any]

#: submit_sm -> submit_sm_resp: a healthy SMSC answers in a few ms to a few hundred ms;
#: ``response_timeout_s`` (10 s default) bounds it.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                   10.0, 30.0)
#: submit -> delivery receipt: seconds to hours (a handset off for a day, domain.md §1.8).
RECEIPT_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
                   4 * 3600.0, 24 * 3600.0, 72 * 3600.0)
#: Store commit (call -> durable): fsync on a local SSD is ~0.2-2 ms, group commit waits more.
COMMIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
#: Operations (puts, deletes, events) per committed batch.
BATCH_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 10000)


# ---------------------------------------------------------------------------- helpers

def _get(stats: object, name: str, default: Any = 0) -> Any:
    """Attribute or key ``name`` of a statistics value (Struct, object or mapping)."""
    if isinstance(stats, Mapping):
        return stats.get(name, default)
    return getattr(stats, name, default)


def _num(value: object) -> float:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        return float(value)
    return 0.0


def _items(value: object) -> Iterable[tuple[str, Any]]:
    """``(label, count)`` pairs of a mapping-like statistics field (dict or Struct)."""
    if isinstance(value, Mapping):
        return [(str(k), v) for k, v in value.items()]
    if isinstance(value, msgspec.Struct):
        return [(f, getattr(value, f)) for f in value.__struct_fields__]
    return []


class _Families:
    """Families of one scrape, created on first use so absent components add nothing."""

    def __init__(self) -> None:
        self._by_name: dict[str, Metric] = {}

    def counter(self, name: str, doc: str, labels: Iterable[str] = ()) -> CounterMetricFamily:
        fam = self._by_name.get(name)
        if fam is None:
            fam = CounterMetricFamily(name, doc, labels=list(labels))
            self._by_name[name] = fam
        assert isinstance(fam, CounterMetricFamily)
        return fam

    def gauge(self, name: str, doc: str, labels: Iterable[str] = ()) -> GaugeMetricFamily:
        fam = self._by_name.get(name)
        if fam is None:
            fam = GaugeMetricFamily(name, doc, labels=list(labels))
            self._by_name[name] = fam
        assert isinstance(fam, GaugeMetricFamily)
        return fam

    def summary(self, name: str, doc: str, labels: Iterable[str] = ()) -> SummaryMetricFamily:
        fam = self._by_name.get(name)
        if fam is None:
            fam = SummaryMetricFamily(name, doc, labels=list(labels))
            self._by_name[name] = fam
        assert isinstance(fam, SummaryMetricFamily)
        return fam

    def histogram(self, name: str, doc: str, labels: Iterable[str] = ()) -> HistogramMetricFamily:
        fam = self._by_name.get(name)
        if fam is None:
            fam = HistogramMetricFamily(name, doc, labels=list(labels))
            self._by_name[name] = fam
        assert isinstance(fam, HistogramMetricFamily)
        return fam

    def add(self, fam: Metric) -> None:
        self._by_name[fam.name] = fam

    def __iter__(self) -> Iterator[Metric]:
        return iter(self._by_name.values())


# -------------------------------------------------------------------- the readers
# One function per component: (families, statistics) -> None. They read plain numbers
# and never raise on a missing field (a component may be older or newer than this file).

def _read_store(f: _Families, s: object) -> None:
    f.counter("smsgw_store_commits", "Store batches committed.").add_metric(
        [], _num(_get(s, "commits")))
    f.counter("smsgw_store_commit_failures",
              "Store batches whose commit failed (disk full, I/O error).").add_metric(
        [], _num(_get(s, "failed")))
    f.counter("smsgw_store_write_txns",
              "Write transactions (one per commit group).").add_metric([], _num(_get(s, "txns")))
    f.counter("smsgw_store_ops", "Operations written (puts, deletes, events).").add_metric(
        [], _num(_get(s, "ops")))
    f.counter("smsgw_store_events", "Events appended to the event feed.").add_metric(
        [], _num(_get(s, "events")))
    f.gauge("smsgw_store_commit_latency_last_seconds",
            "Commit latency (call -> durable) of the slowest batch of the last group.").add_metric(
        [], _num(_get(s, "last_commit_latency")))
    f.gauge("smsgw_store_txn_last_seconds",
            "Duration of the last write transaction, fsync included.").add_metric(
        [], _num(_get(s, "last_txn_seconds")))
    f.gauge("smsgw_store_batch_ops_avg", "Average operations per committed batch.").add_metric(
        [], _num(_get(s, "avg_batch_ops")))
    f.gauge("smsgw_store_group_size_avg",
            "Average batches per write transaction (group commit).").add_metric(
        [], _num(_get(s, "avg_group_size")))
    f.gauge("smsgw_store_group_size_max", "Largest commit group so far.").add_metric(
        [], _num(_get(s, "max_group_size")))
    f.gauge("smsgw_store_queue_depth", "Batches waiting for the writer thread.").add_metric(
        [], _num(_get(s, "queue_depth")))
    f.gauge("smsgw_store_map_size_bytes", "LMDB map size.").add_metric(
        [], _num(_get(s, "map_size")))
    f.gauge("smsgw_store_map_used_bytes", "LMDB map bytes in use.").add_metric(
        [], _num(_get(s, "map_used")))
    f.counter("smsgw_store_map_grows", "Times the LMDB map was grown.").add_metric(
        [], _num(_get(s, "map_grows")))


def _read_outbox(f: _Families, s: object) -> None:
    f.gauge("smsgw_outbox_depth", "Messages in the outbox (queued or scheduled).").add_metric(
        [], _num(_get(s, "depth")))
    f.gauge("smsgw_outbox_oldest_age_seconds",
            "How long the oldest due outbox entry has been due (0 when none is due).").add_metric(
        [], _num(_get(s, "oldest_age")))


def _read_carriers(f: _Families, stats: object) -> None:
    if not isinstance(stats, Mapping):
        return
    for name, s in stats.items():
        c = [str(name)]
        live = _num(_get(s, "live_binds"))
        f.gauge("smsgw_carrier_up", "1 when at least one bind to the carrier is bound.",
                ["carrier"]).add_metric(c, 1.0 if live > 0 else 0.0)
        f.gauge("smsgw_carrier_binds_live", "Binds currently bound.", ["carrier"]).add_metric(
            c, live)
        f.gauge("smsgw_carrier_queued", "Submit parts waiting for a bind.",
                ["carrier"]).add_metric(c, _num(_get(s, "queued")))
        f.gauge("smsgw_carrier_inflight", "Submits sent and not yet answered (window use).",
                ["carrier"]).add_metric(c, _num(_get(s, "inflight")))
        f.counter("smsgw_carrier_bind_attempts", "Bind attempts (connect + bind).",
                  ["carrier"]).add_metric(c, _num(_get(s, "attempts")))
        f.counter("smsgw_carrier_bind_failures",
                  "Bind attempts or bound links that ended abnormally.",
                  ["carrier"]).add_metric(c, _num(_get(s, "failures")))
        f.counter("smsgw_carrier_submit_sm", "submit_sm PDUs sent.", ["carrier"]).add_metric(
            c, _num(_get(s, "submitted")))
        resp = f.counter("smsgw_carrier_submit_resp",
                         "submit_sm outcomes seen by the binds, by outcome.",
                         ["carrier", "outcome"])
        for outcome in ("accepted", "rejected", "unknown"):
            resp.add_metric([*c, outcome], _num(_get(s, outcome)))
        f.counter("smsgw_carrier_throttled", "ESME_RTHROTTLED answers from the carrier.",
                  ["carrier"]).add_metric(c, _num(_get(s, "throttled")))
        f.counter("smsgw_carrier_throttle_pauses",
                  "Times the carrier queue paused after throttling.",
                  ["carrier"]).add_metric(c, _num(_get(s, "throttle_pauses")))
        f.counter("smsgw_carrier_inbound",
                  "deliver_sm/data_sm received (receipts and MO).",
                  ["carrier"]).add_metric(c, _num(_get(s, "inbound")))
        f.counter("smsgw_carrier_protocol_errors",
                  "Protocol errors from the peer (garbage, bad lengths, unknown commands).",
                  ["carrier"]).add_metric(c, _num(_get(s, "protocol_errors")))
        for b in _get(s, "binds", ()) or ():
            labels = [*c, str(_get(b, "name", "")), str(_get(b, "kind", ""))]
            f.gauge("smsgw_bind_up", "1 for each bound bind (absent when not bound).",
                    ["carrier", "bind", "kind"]).add_metric(
                labels, 1.0 if _get(b, "bound", False) else 0.0)
            f.gauge("smsgw_bind_inflight", "Unanswered requests on the bind.",
                    ["carrier", "bind", "kind"]).add_metric(labels, _num(_get(b, "inflight")))


def _carrier_capacity(config: Mapping[str, tuple[int, int]]) -> Callable[[_Families, object],
                                                                          None]:
    """Configured binds and window per carrier (static, from the config)."""

    def read(f: _Families, _stats: object) -> None:
        for name, (binds, window) in config.items():
            f.gauge("smsgw_carrier_binds_configured", "Binds configured (a tx+rx pair is 2).",
                    ["carrier"]).add_metric([name], float(binds))
            f.gauge("smsgw_carrier_window", "Configured window per submit-capable bind.",
                    ["carrier"]).add_metric([name], float(window))

    return read


def _read_api(f: _Families, stats: object) -> None:
    if not isinstance(stats, Mapping):
        return
    req = f.counter("smsgw_api_requests", "API requests by route and HTTP status.",
                    ["route", "status"])
    dur = f.summary("smsgw_api_request_duration_seconds",
                    "API handler time by route (until the handler returned).", ["route"])
    mx = f.gauge("smsgw_api_request_duration_max_seconds",
                 "Slowest API request since start, by route.", ["route"])
    for route, s in stats.items():
        for status, count in _items(_get(s, "statuses", {})):
            req.add_metric([str(route), str(status)], _num(count))
        dur.add_metric([str(route)], count_value=int(_num(_get(s, "requests"))),
                       sum_value=_num(_get(s, "seconds_total")))
        mx.add_metric([str(route)], _num(_get(s, "seconds_max")))


def _http_server_reader(server_label: str) -> Callable[[_Families, object], None]:
    def read(f: _Families, s: object) -> None:
        lab = [server_label]
        f.gauge("smsgw_http_connections_open", "Open HTTP connections.",
                ["server"]).add_metric(lab, _num(_get(s, "connections_open")))
        f.counter("smsgw_http_connections", "HTTP connections accepted.",
                  ["server"]).add_metric(lab, _num(_get(s, "connections_total")))
        errors = f.counter("smsgw_http_errors", "HTTP server-side errors by kind.",
                           ["server", "kind"])
        for kind in ("handler_errors", "protocol_errors", "header_timeouts", "body_timeouts",
                     "write_timeouts", "bodies_too_large"):
            errors.add_metric([server_label, kind.removesuffix("s")], _num(_get(s, kind)))

    return read


def _read_sandbox(f: _Families, s: object) -> None:
    for field, doc in (("submits", "submit_sm received"), ("submits_ok", "submit_sm accepted"),
                       ("throttled", "submit_sm answered ESME_RTHROTTLED"),
                       ("dlrs_sent", "receipts sent"), ("mo_sent", "MO messages sent")):
        f.counter(f"smsgw_sandbox_{field}", f"Sandbox SMSC: {doc}.").add_metric(
            [], _num(_get(s, field)))
    f.gauge("smsgw_sandbox_bound_sessions", "Sandbox SMSC: bound sessions.").add_metric(
        [], _num(_get(s, "bound_sessions")))


def _labelled_counts(f: _Families, name: str, doc: str, label: str, value: object) -> None:
    fam = f.counter(name, doc, [label])
    for key, count in _items(value):
        fam.add_metric([key], _num(count))


def _read_accepter(f: _Families, s: object) -> None:
    f.counter("smsgw_messages_accepted", "Messages accepted for sending now (queued).").add_metric(
        [], _num(_get(s, "queued", _get(s, "accepted"))))
    f.counter("smsgw_messages_deferred",
              "Messages scheduled for later (quiet hours).").add_metric(
        [], _num(_get(s, "scheduled", _get(s, "deferred"))))
    f.counter("smsgw_messages_duplicate",
              "Messages answered from an idempotency key (nothing new stored).").add_metric(
        [], _num(_get(s, "duplicates")))
    f.counter("smsgw_accept_backpressure",
              "Requests refused because the outbox was full (429).").add_metric(
        [], _num(_get(s, "backpressure")))
    f.counter("smsgw_accept_commit_failures",
              "Accept batches whose store commit failed (503/507).").add_metric(
        [], _num(_get(s, "commit_failures")))
    f.counter("smsgw_messages_reevaluated",
              "Scheduled messages evaluated again when due.").add_metric(
        [], _num(_get(s, "reevaluated")))
    f.counter("smsgw_replies", "Automatic keyword replies (opt-out confirmations, HELP)."
              ).add_metric([], _num(_get(s, "replies")))
    # Every rejection the accepter recorded: at the API, of keyword replies, and when a
    # scheduled message is re-evaluated (consent revoked meanwhile ...). The API-side
    # count (``decisions``) is a subset of it, so it is not exported as well.
    rejected = f.counter("smsgw_messages_rejected", "Messages refused, by reason code.",
                         ["reason"])
    by_reason: dict[str, float] = {}
    for reason, count in _items(_get(s, "rejected_by_reason", {})):
        key = reason if _REASON.match(reason) else "other"
        by_reason[key] = by_reason.get(key, 0.0) + _num(count)
    for reason, total in by_reason.items():
        rejected.add_metric([reason], total)


#: Reason codes are the rules' lower_snake_case codes; anything else is labelled ``other``.
_REASON = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


def _read_decisions(f: _Families, s: object) -> None:
    # Rejections come from the accepter's statistics (``_read_accepter``), which also
    # counts those of re-evaluation; counting the API's here too would count them twice.
    _labelled_counts(f, "smsgw_messages_scheduled", "Messages scheduled, by reason code.",
                     "reason", _get(s, "scheduled_by_reason", {}))


def _read_webhooks(f: _Families, stats: object) -> None:
    if not isinstance(stats, Iterable):
        return
    for s in stats:
        w = [str(_get(s, "name", ""))]
        f.counter("smsgw_webhook_delivered_events", "Events delivered (receiver answered 2xx).",
                  ["webhook"]).add_metric(w, _num(_get(s, "delivered_events")))
        f.counter("smsgw_webhook_delivered_batches", "POSTs answered 2xx.",
                  ["webhook"]).add_metric(w, _num(_get(s, "delivered_batches")))
        f.counter("smsgw_webhook_attempts", "POSTs tried.", ["webhook"]).add_metric(
            w, _num(_get(s, "attempts")))
        failures = f.counter("smsgw_webhook_failures",
                             "Failed POSTs by kind (timeout, connect, protocol, http_5xx, "
                             "http_429, http_408, http_4xx, http_3xx).", ["webhook", "kind"])
        for kind, count in _items(_get(s, "failures", {})):
            failures.add_metric([*w, kind], _num(count))
        f.counter("smsgw_webhook_dead_lettered_events",
                  "Events skipped after repeated refusals (webhook.dead_letter).",
                  ["webhook"]).add_metric(w, _num(_get(s, "dead_lettered_events")))
        f.counter("smsgw_webhook_cursor_commit_failures",
                  "Delivered positions that could not be stored.", ["webhook"]).add_metric(
            w, _num(_get(s, "cursor_commit_failures")))
        f.gauge("smsgw_webhook_lag_events", "Events in the feed after the endpoint's cursor.",
                ["webhook"]).add_metric(w, _num(_get(s, "lag_events")))
        f.gauge("smsgw_webhook_lag_seconds",
                "Age of the oldest event not yet delivered (0 when caught up).",
                ["webhook"]).add_metric(w, _num(_get(s, "lag_seconds")))
        f.gauge("smsgw_webhook_consecutive_failures", "Failed POSTs since the last success.",
                ["webhook"]).add_metric(w, _num(_get(s, "consecutive_failures")))
        last = _get(s, "last_success_at", None)
        if last is not None:
            f.gauge("smsgw_webhook_last_success_timestamp_seconds",
                    "When a POST last succeeded (unix time).", ["webhook"]).add_metric(
                w, _num(last))


def _read_dispatcher(f: _Families, s: object) -> None:
    by = _get(s, "by_carrier", None)
    if isinstance(by, Mapping):
        fam = f.counter("smsgw_submits", "Message parts submitted, by carrier and outcome.",
                        ["carrier", "outcome"])
        for carrier, outcomes in by.items():
            for outcome, count in _items(outcomes):
                fam.add_metric([str(carrier), outcome], _num(count))
    status = _get(s, "rejected_by_status", None)
    if isinstance(status, Mapping):
        fam = f.counter("smsgw_submit_rejections",
                        "submit_sm rejections by carrier and SMPP command_status.",
                        ["carrier", "status"])
        for carrier, statuses in status.items():
            for st, count in _items(statuses):
                fam.add_metric([str(carrier), st], _num(count))
    for field, doc in (("retries", "Parts put back in the outbox to retry."),
                       ("failed", "Messages failed (permanent error or retries exhausted)."),
                       ("unknown", "Parts whose submit outcome is unknown (link lost)."),
                       ("no_route", "Messages with no route."),
                       ("dispatched", "Messages handed to carriers."),
                       ("commit_failures", "Outcome commits that failed.")):
        f.counter(f"smsgw_dispatch_{field}", doc).add_metric([], _num(_get(s, field)))
    f.gauge("smsgw_dispatch_inflight", "Messages handed to carriers and not yet answered."
            ).add_metric([], _num(_get(s, "inflight")))
    f.gauge("smsgw_dispatch_parked",
            "Messages parked because no carrier of their route has a live bind.").add_metric(
        [], _num(_get(s, "parked")))


def _read_inbound(f: _Families, s: object) -> None:
    _labelled_counts(f, "smsgw_receipts", "Delivery receipts by receipt stat.",
                     "stat", _get(s, "receipts_by_stat", {}))
    _labelled_counts(f, "smsgw_receipt_errors", "Failed deliveries by error class.",
                     "error_class", _get(s, "errors_by_class", {}))
    _labelled_counts(f, "smsgw_mo", "MO messages by keyword class.",
                     "keyword", _get(s, "mo_by_keyword", {}))
    f.counter("smsgw_receipts_unmatched",
              "Receipts that matched no submitted part.").add_metric(
        [], _num(_get(s, "unmatched")))
    f.counter("smsgw_receipts_reconciled",
              "Receipts no carrier id matched, adopted by the one part left unknown for "
              "them (same carrier and destination, submit time).").add_metric(
        [], _num(_get(s, "reconciled")))
    f.counter("smsgw_receipts_reconcile_ambiguous",
              "Receipts left unmatched because several messages could be theirs.").add_metric(
        [], _num(_get(s, "reconcile_ambiguous")))
    f.counter("smsgw_inbound_duplicates",
              "Receipts or MO re-delivered by the carrier and recognised.").add_metric(
        [], _num(_get(s, "duplicates")))
    f.counter("smsgw_inbound_commit_failures",
              "Inbound batches whose commit failed (left unacked: the SMSC re-sends)."
              ).add_metric([], _num(_get(s, "commit_failures")))
    buckets = _get(s, "ack_latency_buckets", ())
    if buckets:
        # Cumulative (le, count) pairs from the InboundProcessor: the SMSC holds further
        # deliver_sm once its window of unanswered ones is full, so receipts/s per bind is
        # bounded by window / this latency (e.g. 64 / 10 ms = 6,400/s).
        f.histogram("smsgw_inbound_ack_latency_seconds",
                    "deliver_sm arrival at the bind -> deliver_sm_resp (after the commit)."
                    ).add_metric([], buckets=[("+Inf" if math.isinf(le) else repr(float(le)),
                                               int(n)) for le, n in buckets],
                                 sum_value=_num(_get(s, "ack_latency_sum")))
    f.gauge("smsgw_mo_fragments_pending",
            "Parts of concatenated MO messages waiting for the rest.").add_metric(
        [], _num(_get(s, "mo_fragments_pending")))


def _read_retention(f: _Families, s: object) -> None:
    _labelled_counts(f, "smsgw_retention_pruned", "Keys deleted by data retention, by kind "
                     "(messages, carrier_ids, idempotency, events, errors, links, clicks, "
                     "message_clicks, optin_challenges, optin_starts).", "kind",
                     _get(s, "pruned", {}))
    f.counter("smsgw_retention_sweeps", "Retention sweeps completed.").add_metric(
        [], _num(_get(s, "sweeps")))
    f.counter("smsgw_retention_sweep_failures", "Retention sweeps that failed (store error), "
              "and kinds a sweep skipped (a record it could not read).").add_metric(
        [], _num(_get(s, "failures")))
    f.gauge("smsgw_retention_last_sweep_seconds", "Duration of the last retention sweep."
            ).add_metric([], _num(_get(s, "last_sweep_seconds")))
    f.gauge("smsgw_retention_events_held", "Events past their retention kept because a "
            "cursor (webhook) has not passed them (counted up to 1000).").add_metric(
        [], _num(_get(s, "events_held")))
    last = _get(s, "last_sweep_at", None)
    if last is not None:
        f.gauge("smsgw_retention_last_sweep_timestamp_seconds",
                "When the last retention sweep started (unix time).").add_metric([], _num(last))


_READERS: dict[str, Callable[[_Families, object], None]] = {
    "store": _read_store,
    "outbox": _read_outbox,
    "carriers": _read_carriers,
    "api": _read_api,
    "api_server": _http_server_reader("api"),
    "metrics_server": _http_server_reader("metrics"),
    "sandbox": _read_sandbox,
    "accepter": _read_accepter,
    "decisions": _read_decisions,
    "dispatcher": _read_dispatcher,
    "inbound": _read_inbound,
    "webhooks": _read_webhooks,
    "retention": _read_retention,
}


# ------------------------------------------------------------------------- collector

class GatewayCollector(Collector):
    """Reads every registered provider at scrape time and renders ``smsgw_*`` families.

    ``register(component, provider)``: ``component`` picks the reader (``store``,
    ``outbox``, ``carriers``, ``api``, ``api_server``, ``metrics_server``, ``sandbox``,
    ``accepter``, ``dispatcher``, ``inbound``); ``provider()`` returns the statistics.
    """

    def __init__(self) -> None:
        self._providers: dict[str, tuple[Provider, Callable[[_Families, object], None]]] = {}
        self._errors: dict[str, int] = {}
        self._info: dict[str, str] = {}

    def register(self, component: str, provider: Provider,
                 reader: Callable[[_Families, object], None] | None = None) -> None:
        """Read ``provider()`` at every scrape with the reader for ``component``."""
        chosen = reader or _READERS.get(component)
        if chosen is None:
            raise ValueError(f"no metrics reader for component {component!r}")
        self._providers[component] = (provider, chosen)

    def unregister(self, component: str) -> None:
        """Stop reading ``component`` (a stopped server, a closed store)."""
        self._providers.pop(component, None)

    def set_carriers(self, config: Mapping[str, tuple[int, int]]) -> None:
        """Configured ``{carrier: (binds, window)}`` for the capacity gauges."""
        self.register("carrier_config", lambda: None, _carrier_capacity(dict(config)))

    def set_info(self, **info: str) -> None:
        """Constant labels of ``smsgw_build_info`` (version, durability ...)."""
        self._info = dict(info)

    @property
    def components(self) -> list[str]:
        """The registered component names."""
        return list(self._providers)

    def describe(self) -> list[Metric]:
        # Returning [] keeps the registry from calling collect() at registration time
        # (the providers may not exist yet) and skips its duplicate-name check.
        return []

    def collect(self) -> Iterator[Metric]:
        families = _Families()
        for component, (provider, reader) in list(self._providers.items()):
            try:
                reader(families, provider())
            except Exception:
                self._errors[component] = self._errors.get(component, 0) + 1
                log.exception("metrics: reading %s failed", component)
        errors = families.counter("smsgw_scrape_errors",
                                  "Providers whose statistics could not be read, by component.",
                                  ["component"])
        for component in {**dict.fromkeys(self._providers), **dict.fromkeys(self._errors)}:
            errors.add_metric([component], float(self._errors.get(component, 0)))
        if self._info:
            info = InfoMetricFamily("smsgw_build", "Version and start-up settings.")
            info.add_metric([], self._info)
            families.add(info)
        yield from families


# ----------------------------------------------------------------------- instruments

_INF = math.inf
#: How ``prometheus_client`` writes a bucket bound into its ``le`` label.
_go_float: Callable[[float], str] = floatToGoString


class LocalHistogram:
    """One histogram series as plain numbers: ``counts[i]`` observations in bucket ``i``.

    Bucket ``i`` holds the values ``<= bounds[i]`` and ``> bounds[i - 1]``; the last one
    (``counts[len(bounds)]``) is ``+Inf``. That is ``prometheus_client.Histogram``'s rule
    (``amount <= bound``), and ``bisect_left`` computes it in C. Hot paths may inline
    :meth:`observe` (``counts[bisect_left(bounds, v)] += 1``, ``sum += v``) when their
    values cannot be NaN.
    """

    __slots__ = ("bounds", "counts", "created", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        #: The finite upper bounds, sorted (``+Inf`` is implied).
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0
        #: The ``_created`` sample (unix time), as ``prometheus_client`` sets it.
        self.created = time.time()

    def observe(self, amount: float) -> None:
        """One observation (seconds, operations ...)."""
        if amount <= _INF:  # not NaN: NaN is in no bucket, only in the sum (as there)
            self.counts[bisect_left(self.bounds, amount)] += 1
        self.sum += amount


class HistogramFamily:
    """A histogram's series by label values (the subset of ``prometheus_client.Histogram``
    the gateway uses: ``labels(...)`` and ``observe``), rendered by :meth:`metric`."""

    def __init__(self, name: str, documentation: str, labelnames: Iterable[str] = (), *,
                 buckets: Iterable[float]) -> None:
        bounds = [float(b) for b in buckets]
        if bounds != sorted(bounds):
            raise ValueError("Buckets not in sorted order")
        if bounds and math.isinf(bounds[-1]):
            bounds.pop()
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self.bounds = tuple(bounds)
        self._les = (*(_go_float(b) for b in bounds), "+Inf")
        self._series: dict[tuple[str, ...], LocalHistogram] = {}
        if not self.labelnames:
            self._series[()] = LocalHistogram(self.bounds)

    def labels(self, *values: str) -> LocalHistogram:
        """The series of these label values (created, at 0, on first use)."""
        if len(values) != len(self.labelnames):
            raise ValueError("Incorrect label count")
        key = tuple(str(v) for v in values)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = LocalHistogram(self.bounds)
        return series

    def observe(self, amount: float) -> None:
        """One observation of the unlabelled histogram."""
        self.labels().observe(amount)

    def metric(self, created: bool) -> HistogramMetricFamily:
        """The family as ``prometheus_client.Histogram.collect`` renders it: per series
        (in creation order) the cumulative buckets, ``_count``, ``_sum`` and, when
        ``created``, ``_created``."""
        fam = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        les = self._les
        for key, series in self._series.items():
            acc = 0.0
            buckets: list[tuple[str, float]] = []
            for le, n in zip(les, series.counts, strict=True):
                acc += n
                buckets.append((le, acc))
            fam.add_metric(key, buckets, series.sum)
            if created:
                fam.samples.append(Sample(self.name + "_created",
                                          dict(zip(self.labelnames, key, strict=True)),
                                          series.created))
        return fam


class Instruments(Collector):
    """Hot-path histograms (what no ``statistics()`` can give), as :class:`LocalHistogram`
    series registered as one collector (rendered at scrape time).

    ``submit_observer(carrier)`` returns a function ``(seconds)`` for the bind outcome
    callbacks (``submit_series(carrier)`` the series itself, for callers that inline
    the observation); ``observe_receipts(items)`` takes a committed batch's
    ``(carrier, seconds)`` receipt latencies (``receipt_observer(carrier)`` one at a
    time); store commits go through ``observe_commit(seconds, ops)``.
    """

    def __init__(self, registry: CollectorRegistry, carriers: Iterable[str]) -> None:
        self.submit_latency = HistogramFamily(
            "smsgw_submit_resp_latency_seconds",
            "submit_sm -> submit_sm_resp, by carrier.", ["carrier"],
            buckets=LATENCY_BUCKETS)
        self.receipt_latency = HistogramFamily(
            "smsgw_submit_receipt_latency_seconds",
            "submit_sm -> delivery receipt, by carrier.", ["carrier"],
            buckets=RECEIPT_BUCKETS)
        self.commit_latency = HistogramFamily(
            "smsgw_store_commit_seconds", "Store commit latency (call -> durable).",
            buckets=COMMIT_BUCKETS)
        self.commit_ops = HistogramFamily(
            "smsgw_store_commit_batch_ops", "Operations per committed store batch.",
            buckets=BATCH_BUCKETS)
        # Series exist at 0 before traffic, submit then receipt, per carrier.
        self._submit = {c: self.submit_latency.labels(c) for c in carriers}
        self._receipt = {c: self.receipt_latency.labels(c) for c in self._submit}
        self._commit_latency = self.commit_latency.labels()
        self._commit_ops = self.commit_ops.labels()
        registry.register(self)

    def submit_series(self, carrier: str) -> LocalHistogram:
        """The submit->resp series of ``carrier``."""
        series = self._submit.get(carrier)
        if series is None:
            series = self._submit[carrier] = self.submit_latency.labels(carrier)
        return series

    def submit_observer(self, carrier: str) -> Callable[[float], None]:
        """The ``observe`` of the submit->resp series of ``carrier``."""
        return self.submit_series(carrier).observe

    def receipt_observer(self, carrier: str) -> Callable[[float], None]:
        """The ``observe`` of the submit->receipt series of ``carrier``."""
        series = self._receipt.get(carrier)
        if series is None:
            series = self._receipt[carrier] = self.receipt_latency.labels(carrier)
        return series.observe

    def observe_receipts(self, items: Iterable[tuple[str, float]]) -> None:
        """``(carrier, seconds)`` submit->receipt latencies, in order: one call per batch
        of receipts instead of one per receipt, with the same counts and sums (each value
        is added to its series' sum in turn, as ``observe`` would)."""
        series: LocalHistogram | None = None
        last: str | None = None
        counts: list[int] = []
        bounds: tuple[float, ...] = ()
        total = 0.0
        for carrier, seconds in items:
            if carrier != last:
                if series is not None:
                    series.sum = total
                series = self._receipt.get(carrier)
                if series is None:
                    series = self._receipt[carrier] = self.receipt_latency.labels(carrier)
                counts, bounds, total, last = series.counts, series.bounds, series.sum, carrier
            if seconds <= _INF:  # not NaN (see LocalHistogram.observe)
                counts[bisect_left(bounds, seconds)] += 1
            total += seconds
        if series is not None:
            series.sum = total

    def observe_commit(self, seconds: float, ops: int) -> None:
        """One committed store batch."""
        self._commit_latency.observe(seconds)
        self._commit_ops.observe(ops)

    def describe(self) -> list[Metric]:
        return []  # as GatewayCollector: no collect() at registration

    def collect(self) -> Iterator[Metric]:
        # ``PROMETHEUS_DISABLE_CREATED_SERIES`` / ``disable_created_metrics()`` apply, as
        # they did to the Histogram objects these replace.
        created = bool(getattr(_prometheus_metrics, "_use_created", True))
        for fam in (self.submit_latency, self.receipt_latency, self.commit_latency,
                    self.commit_ops):
            yield fam.metric(created)


class Metrics:
    """The gateway's registry, its collector and its instruments."""

    def __init__(self, carriers: Iterable[str] = ()) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.collector = GatewayCollector()
        self.registry.register(self.collector)
        self.instruments = Instruments(self.registry, carriers)

    def register(self, component: str, provider: Provider) -> None:
        """Shortcut for ``collector.register``."""
        self.collector.register(component, provider)

    def exposition(self) -> bytes:
        """The Prometheus text exposition of every series, read now."""
        return generate_latest(self.registry)


def outbox_provider(depth: Callable[[], int], oldest_due: Callable[[], float | None],
                    clock: Callable[[], float] = time.time) -> Provider:
    """A provider for the ``outbox`` reader from two store reads (run at scrape time)."""

    def read() -> dict[str, float]:
        due = oldest_due()
        age = max(0.0, clock() - due) if due is not None else 0.0
        return {"depth": float(depth()), "oldest_age": age}

    return read


# --------------------------------------------------------------------------- serving

class MetricsApp:
    """The ``gateway.http`` handler of the metrics listener: ``GET /metrics`` (and ``/``)."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    async def __call__(self, request: Request) -> Response:
        if request.path not in ("/metrics", "/"):
            return Response(404, b"not found: try /metrics\n",
                            headers=[(b"content-type", b"text/plain; charset=utf-8")])
        if request.method not in ("GET", "HEAD"):
            return Response(405, b"method not allowed\n",
                            headers=[(b"allow", b"GET, HEAD"),
                                     (b"content-type", b"text/plain; charset=utf-8")])
        if request.path == "/":
            return Response(200, b'<a href="/metrics">/metrics</a>\n',
                            headers=[(b"content-type", b"text/html; charset=utf-8")])
        # Reading statistics is synchronous and cheap (plain counters, one short LMDB
        # read txn for the outbox): it runs on the trio thread, so components are read
        # between their own steps, never while they mutate.
        body = self._metrics.exposition()
        return Response(200, body, headers=[(b"content-type", CONTENT_TYPE_LATEST.encode()),
                                            (b"cache-control", b"no-store")])


async def serve_metrics(
    metrics: Metrics,
    *,
    host: str,
    port: int,
    task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``GET /metrics`` on ``host:port`` until cancelled; ``started(server)``."""
    limits = Limits(max_body_bytes=64 * 1024, max_connections=64, shutdown_grace=1.0)
    await serve(MetricsApp(metrics), host=host, port=port, limits=limits,
                task_status=task_status)
