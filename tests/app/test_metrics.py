"""The metrics collector: fake statistics providers in, Prometheus text out.

No network except the last test, which serves ``/metrics`` on 127.0.0.1:0.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from gateway.api import RouteStats
from gateway.bind import BindKind, BindStats
from gateway.carriers import CarrierStats
from gateway.metrics import Metrics, outbox_provider, serve_metrics
from gateway.retention import RetentionStats
from gateway.store import StoreStats
from tests.api.client import request

PHONE = "+33612345678"


def samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(text.decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(text: bytes, name: str, **labels: str) -> float:
    return samples(text)[(name, tuple(sorted(labels.items())))]


def carrier_stats(name: str = "acme", live: int = 1) -> CarrierStats:
    bind = BindStats(name=f"{name}#0", kind=BindKind.TRANSCEIVER, bound=True, inflight=3,
                     submitted=10, accepted=8, rejected=1, throttled=1, unknown=1, inbound=7,
                     writes=4)
    return CarrierStats(name=name, live_binds=live, queued=5, inflight=3, attempts=2,
                        failures=1, submitted=10, accepted=8, rejected=1, unknown=1,
                        inbound=7, last_failure=f"{name}#0 closed", throttled=4,
                        throttle_pauses=2, binds=(bind,) if live else (), protocol_errors=6)


class Accepter:
    """A pipeline component's statistics as plain values (msgspec-free on purpose)."""

    def __init__(self) -> None:
        self.queued = 12
        self.scheduled = 3
        self.backpressure = 0
        # API rejections and those of re-evaluation (a consent revoked while scheduled)
        self.rejected_by_reason = {"opted_out": 2, "no_consent": 4, "Not A Code!": 1}


def full_metrics() -> Metrics:
    m = Metrics(carriers=["acme"])
    m.register("store", lambda: StoreStats(commits=5, failed=1, ops=40, txns=4,
                                           last_commit_latency=0.002, avg_batch_ops=8.0,
                                           durability="fsync"))
    m.register("carriers", lambda: {"acme": carrier_stats(), "backup": carrier_stats("backup", 0)})
    m.collector.set_carriers({"acme": (1, 64), "backup": (2, 10)})
    m.register("api", lambda: {
        "POST /v1/messages": RouteStats(requests=3, statuses={202: 2, 400: 1},
                                        seconds_total=0.03, seconds_max=0.02),
        "GET /v1/messages/{id}": RouteStats(requests=0, statuses={}, seconds_total=0.0,
                                            seconds_max=0.0)})
    m.register("accepter", Accepter)
    m.register("decisions", lambda: {"rejected_by_reason": {"opted_out": 2, "no_consent": 4},
                                     "scheduled_by_reason": {"quiet_hours": 3}})
    m.register("dispatcher", lambda: {"by_carrier": {"acme": {"accepted": 8, "rejected": 1}},
                                      "rejected_by_status": {"acme": {"ESME_RTHROTTLED": 1}},
                                      "retries": 1, "inflight": 2})
    m.register("inbound", lambda: {"receipts_by_stat": {"DELIVRD": 7, "UNDELIV": 1},
                                   "errors_by_class": {"permanent": 1},
                                   "mo_by_keyword": {"opt_out": 1, "none": 2},
                                   "ack_latency_buckets": ((0.005, 3), (0.05, 9),
                                                           (float("inf"), 10)),
                                   "ack_latency_sum": 0.25, "ack_latency_count": 10})
    m.register("outbox", outbox_provider(lambda: 4, lambda: 990.0, clock=lambda: 1000.0))
    m.register("webhooks", lambda: [{"name": "crm", "delivered_events": 9, "lag_events": 3,
                                     "lag_seconds": 1.5, "failures": {"http_5xx": 2},
                                     "dead_lettered_events": 1, "last_success_at": 990.0}])
    m.register("retention", lambda: RetentionStats(
        pruned={"messages": 3, "carrier_ids": 3, "idempotency": 0, "events": 9, "errors": 1},
        sweeps=2, failures=0, last_sweep_at=900.0, last_sweep_seconds=0.5, events_held=0))
    return m


def test_series_and_labels() -> None:
    text = full_metrics().exposition()
    assert value(text, "smsgw_store_commits_total") == 5
    assert value(text, "smsgw_store_commit_failures_total") == 1
    assert value(text, "smsgw_carrier_up", carrier="acme") == 1
    assert value(text, "smsgw_carrier_up", carrier="backup") == 0
    assert value(text, "smsgw_carrier_inflight", carrier="acme") == 3
    assert value(text, "smsgw_carrier_window", carrier="backup") == 10
    assert value(text, "smsgw_carrier_binds_configured", carrier="backup") == 2
    assert value(text, "smsgw_bind_up", carrier="acme", bind="acme#0", kind="transceiver") == 1
    assert value(text, "smsgw_carrier_submit_resp_total", carrier="acme", outcome="rejected") == 1
    assert value(text, "smsgw_carrier_throttled_total", carrier="acme") == 4
    assert value(text, "smsgw_carrier_protocol_errors_total", carrier="acme") == 6
    assert value(text, "smsgw_api_requests_total", route="POST /v1/messages", status="400") == 1
    assert value(text, "smsgw_api_request_duration_seconds_count",
                 route="POST /v1/messages") == 3
    assert value(text, "smsgw_messages_accepted_total") == 12
    assert value(text, "smsgw_messages_deferred_total") == 3
    assert value(text, "smsgw_messages_rejected_total", reason="opted_out") == 2
    assert value(text, "smsgw_messages_rejected_total", reason="other") == 1
    # the API's own count (decisions) is a subset: not exported twice
    assert text.count(b'smsgw_messages_rejected_total{reason="no_consent"}') == 1
    assert value(text, "smsgw_messages_scheduled_total", reason="quiet_hours") == 3
    assert value(text, "smsgw_submits_total", carrier="acme", outcome="accepted") == 8
    assert value(text, "smsgw_submit_rejections_total", carrier="acme",
                 status="ESME_RTHROTTLED") == 1
    assert value(text, "smsgw_receipts_total", stat="DELIVRD") == 7
    assert value(text, "smsgw_receipt_errors_total", error_class="permanent") == 1
    assert value(text, "smsgw_mo_total", keyword="opt_out") == 1
    assert value(text, "smsgw_inbound_ack_latency_seconds_bucket", le="0.005") == 3
    assert value(text, "smsgw_inbound_ack_latency_seconds_bucket", le="+Inf") == 10
    assert value(text, "smsgw_inbound_ack_latency_seconds_count") == 10
    assert value(text, "smsgw_inbound_ack_latency_seconds_sum") == 0.25
    assert value(text, "smsgw_outbox_depth") == 4
    assert value(text, "smsgw_outbox_oldest_age_seconds") == 10
    assert value(text, "smsgw_webhook_delivered_events_total", webhook="crm") == 9
    assert value(text, "smsgw_webhook_failures_total", webhook="crm", kind="http_5xx") == 2
    assert value(text, "smsgw_webhook_lag_seconds", webhook="crm") == 1.5
    # the hot-path histograms exist before any traffic (series at 0 per carrier)
    assert value(text, "smsgw_submit_resp_latency_seconds_count", carrier="acme") == 0


def test_no_personal_data_in_labels() -> None:
    m = full_metrics()
    m.instruments.submit_observer("acme")(0.01)
    text = m.exposition().decode()
    assert PHONE not in text
    assert not re.search(r"\+\d{6,}", text)  # no E.164 anywhere, label or value
    assert "closed" not in text  # last_failure is free text: never a label


def test_missing_components_are_skipped() -> None:
    m = Metrics()
    text = m.exposition()
    names = {name for name, _ in samples(text)}
    assert not any(n.startswith("smsgw_carrier") for n in names)
    assert "smsgw_store_commits_total" not in names


def test_a_failing_provider_does_not_break_the_scrape(caplog: pytest.LogCaptureFixture) -> None:
    m = full_metrics()

    def broken() -> object:
        raise RuntimeError("closed")

    m.register("store", broken)
    text = m.exposition()
    assert value(text, "smsgw_scrape_errors_total", component="store") == 1
    assert value(text, "smsgw_carrier_up", carrier="acme") == 1
    assert "reading store failed" in caplog.text


def test_unknown_component_is_an_error() -> None:
    with pytest.raises(ValueError, match="no metrics reader"):
        Metrics().register("nope", dict)


def test_instruments() -> None:
    m = Metrics(carriers=["acme"])
    m.instruments.submit_observer("acme")(0.004)
    m.instruments.receipt_observer("acme")(2.0)
    m.instruments.observe_commit(0.001, 12)
    text = m.exposition()
    assert value(text, "smsgw_submit_resp_latency_seconds_bucket", carrier="acme",
                 le="0.005") == 1
    assert value(text, "smsgw_submit_receipt_latency_seconds_count", carrier="acme") == 1
    assert value(text, "smsgw_store_commit_seconds_count") == 1
    assert value(text, "smsgw_store_commit_batch_ops_sum") == 12


async def test_serve_metrics() -> None:
    m = full_metrics()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(lambda task_status: serve_metrics(
                m, host="127.0.0.1", port=0, task_status=task_status))
            m.register("metrics_server", server.statistics)
            reply = await request(server.port, "GET", "/metrics")
            assert reply.status == 200
            assert reply.headers["content-type"].startswith("text/plain")
            assert value(reply.body, "smsgw_carrier_up", carrier="acme") == 1
            again = await request(server.port, "GET", "/metrics")
            assert value(again.body, "smsgw_http_connections_total", server="metrics") >= 1
            assert (await request(server.port, "GET", "/nope")).status == 404
            assert (await request(server.port, "POST", "/metrics")).status == 405
            nursery.cancel_scope.cancel()


def referenced_names(text: str) -> set[str]:
    return set(re.findall(r"\bsmsgw_[a-z0-9_]+", text))


@pytest.mark.parametrize("path", ["config/prometheus-alerts.yml", "config/grafana-dashboard.json"])
def test_alerts_and_dashboard_use_real_series(path: str) -> None:
    """Every series an alert or a panel queries is one the gateway exports."""
    root = Path(__file__).resolve().parents[2]
    m = full_metrics()
    m.collector.set_info(version="test", durability="fsync")
    m.register("metrics_server", lambda: {"connections_open": 1})
    m.instruments.receipt_observer("acme")(1.0)
    m.instruments.observe_commit(0.001, 3)
    exported = {name for name, _ in samples(m.exposition())}
    used = referenced_names((root / path).read_text())
    assert used, path
    assert used <= exported, sorted(used - exported)


def test_dashboard_is_valid_json() -> None:
    root = Path(__file__).resolve().parents[2]
    dash = json.loads((root / "config/grafana-dashboard.json").read_text())
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    assert all(t["expr"] for p in dash["panels"] for t in p.get("targets", []))
