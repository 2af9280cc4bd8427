"""The hot-path histograms (``Instruments``: plain bucket counts folded at scrape time)
against ``prometheus_client.Histogram``, which they replace: for the same observations,
through every path that feeds them (``observe``, ``observe_receipts``, the inlined
``ObservedCarrier`` outcome hook), the exposition is the same text, ``_created`` values
aside (they are creation times).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client import metrics as prometheus_metrics
from prometheus_client.exposition import generate_latest

from gateway.app import ObservedCarrier
from gateway.bind import OutcomeKind, SubmitBatch, SubmitOutcome
from gateway.metrics import (
    BATCH_BUCKETS,
    COMMIT_BUCKETS,
    LATENCY_BUCKETS,
    RECEIPT_BUCKETS,
    GatewayCollector,
    HistogramFamily,
    Metrics,
)

CARRIERS = ("acme", "backup")


class ReferenceInstruments:
    """What ``gateway.metrics.Instruments`` was: ``prometheus_client`` Histograms, with
    children bound once (the code before the local histograms, kept as the oracle)."""

    def __init__(self, registry: CollectorRegistry, carriers: Iterable[str]) -> None:
        self.submit_latency = Histogram(
            "smsgw_submit_resp_latency_seconds",
            "submit_sm -> submit_sm_resp, by carrier.", ["carrier"],
            buckets=LATENCY_BUCKETS, registry=registry)
        self.receipt_latency = Histogram(
            "smsgw_submit_receipt_latency_seconds",
            "submit_sm -> delivery receipt, by carrier.", ["carrier"],
            buckets=RECEIPT_BUCKETS, registry=registry)
        self.commit_latency = Histogram(
            "smsgw_store_commit_seconds", "Store commit latency (call -> durable).",
            buckets=COMMIT_BUCKETS, registry=registry)
        self.commit_ops = Histogram(
            "smsgw_store_commit_batch_ops", "Operations per committed store batch.",
            buckets=BATCH_BUCKETS, registry=registry)
        self._submit = {c: self.submit_latency.labels(c).observe for c in carriers}
        self._receipt = {c: self.receipt_latency.labels(c).observe for c in self._submit}
        for carrier in self._submit:
            self.submit_latency.labels(carrier)

    def submit_observer(self, carrier: str) -> Callable[[float], None]:
        observe = self._submit.get(carrier)
        if observe is None:
            observe = self._submit[carrier] = self.submit_latency.labels(carrier).observe
        return observe

    def receipt_observer(self, carrier: str) -> Callable[[float], None]:
        observe = self._receipt.get(carrier)
        if observe is None:
            observe = self._receipt[carrier] = self.receipt_latency.labels(carrier).observe
        return observe

    def observe_commit(self, seconds: float, ops: int) -> None:
        self.commit_latency.observe(seconds)
        self.commit_ops.observe(ops)


def reference_exposition_of(carriers: Iterable[str]) -> tuple[ReferenceInstruments,
                                                              Callable[[], bytes]]:
    """The old ``Metrics``: the collector, then the Histograms, on one registry."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(GatewayCollector())
    ref = ReferenceInstruments(registry, carriers)
    return ref, lambda: generate_latest(registry)


_CREATED = re.compile(rb"^(smsgw_[a-z_]+_created(?:\{[^}]*\})?) \S+$", re.MULTILINE)


def same_but_created(new: bytes, old: bytes) -> None:
    """The two expositions are the same text once ``_created`` values are blanked."""
    assert _CREATED.sub(rb"\1 T", new).decode() == _CREATED.sub(rb"\1 T", old).decode()


def edge_values(buckets: Iterable[float]) -> list[float]:
    """Every bound, just below and above it, and the odd ones."""
    out = [0.0, -0.0, -1.0, math.inf, -math.inf, 1e-12, 1e12]
    for b in buckets:
        out += [b, math.nextafter(b, -math.inf), math.nextafter(b, math.inf)]
    return out


values = st.one_of(st.floats(allow_nan=False, allow_infinity=True),
                   st.sampled_from(edge_values((*LATENCY_BUCKETS, *RECEIPT_BUCKETS,
                                                *COMMIT_BUCKETS, *BATCH_BUCKETS))),
                   st.floats(min_value=0.0, max_value=100_000.0))
carriers = st.sampled_from((*CARRIERS, "late"))  # "late": a series made on first use
ops = st.lists(st.one_of(
    st.tuples(st.just("submit"), carriers, values),
    st.tuples(st.just("receipt"), carriers, values),
    st.tuples(st.just("receipts"), st.lists(st.tuples(carriers, values), max_size=8)),
    st.tuples(st.just("commit"), values, st.integers(min_value=0, max_value=20_000))),
    max_size=40)


@settings(max_examples=200, deadline=None)
@given(ops)
def test_exposition_is_the_prometheus_histograms(script: list[tuple]) -> None:  # type: ignore[type-arg]
    m = Metrics(carriers=CARRIERS)
    ref, ref_exposition = reference_exposition_of(CARRIERS)
    same_but_created(m.exposition(), ref_exposition())  # series at 0 before traffic
    for op in script:
        if op[0] == "submit":
            m.instruments.submit_observer(op[1])(op[2])
            ref.submit_observer(op[1])(op[2])
        elif op[0] == "receipt":
            m.instruments.receipt_observer(op[1])(op[2])
            ref.receipt_observer(op[1])(op[2])
        elif op[0] == "receipts":  # the inbound processor's per-batch call
            m.instruments.observe_receipts(list(op[1]))
            for carrier, seconds in op[1]:
                ref.receipt_observer(carrier)(seconds)
        else:
            m.instruments.observe_commit(op[1], op[2])
            ref.observe_commit(op[1], op[2])
    same_but_created(m.exposition(), ref_exposition())


def test_nan_is_summed_but_in_no_bucket_as_in_prometheus() -> None:
    m = Metrics(carriers=CARRIERS)
    ref, ref_exposition = reference_exposition_of(CARRIERS)
    for seconds in (0.5, math.nan, 2.0):
        m.instruments.receipt_observer("acme")(seconds)
        ref.receipt_observer("acme")(seconds)
    m.instruments.observe_receipts([("backup", math.nan), ("backup", 1.0)])
    for seconds in (math.nan, 1.0):
        ref.receipt_observer("backup")(seconds)
    m.instruments.observe_commit(math.nan, 3)
    ref.observe_commit(math.nan, 3)
    text = m.exposition()
    assert b'smsgw_submit_receipt_latency_seconds_count{carrier="acme"} 2.0' in text
    assert b'smsgw_submit_receipt_latency_seconds_sum{carrier="acme"} NaN' in text
    same_but_created(text, ref_exposition())


def test_created_series_follow_prometheus_client_switch() -> None:
    m = Metrics(carriers=CARRIERS)
    _, ref_exposition = reference_exposition_of(CARRIERS)
    assert b"smsgw_store_commit_seconds_created " in m.exposition()
    prometheus_metrics.disable_created_metrics()  # type: ignore[no-untyped-call]
    try:
        text = m.exposition()
        assert b"_created" not in text
        assert text == ref_exposition()  # nothing left to blank: byte for byte
    finally:
        prometheus_metrics.enable_created_metrics()  # type: ignore[no-untyped-call]


def test_created_is_the_series_creation_time() -> None:
    fam = HistogramFamily("smsgw_x_seconds", "x", ["carrier"], buckets=(1.0, 2.0))
    series = fam.labels("a")
    [created] = [s for s in fam.metric(True).samples if s.name.endswith("_created")]
    assert created.value == series.created and created.labels == {"carrier": "a"}


def test_family_rejects_what_histogram_rejects() -> None:
    with pytest.raises(ValueError, match="sorted"):
        HistogramFamily("smsgw_x", "x", buckets=(2.0, 1.0))
    fam = HistogramFamily("smsgw_x", "x", ["carrier"], buckets=(1.0, math.inf))
    assert fam.bounds == (1.0,)  # +Inf is implied, as there
    with pytest.raises(ValueError, match="label count"):
        fam.labels()


class FakeCarrier:
    """Records the batches handed over (a stand-in for ``gateway.carriers.Carrier``)."""

    can_submit = True

    def __init__(self) -> None:
        self.batches: list[SubmitBatch] = []

    async def enqueue(self, batch: SubmitBatch) -> None:
        self.batches.append(batch)


@settings(max_examples=50, deadline=None)
@given(st.lists(values, max_size=30), st.booleans())
def test_observed_carrier_hook_is_the_old_observe(latencies: list[float],
                                                  with_inner: bool) -> None:
    """The outcome hook inlines ``observe`` for latency > 0, as the wrapper called it."""
    m = Metrics(carriers=CARRIERS)
    ref, ref_exposition = reference_exposition_of(CARRIERS)
    fake = FakeCarrier()
    observed = ObservedCarrier(fake, m.instruments.submit_series("acme"))  # type: ignore[arg-type]
    seen: list[int] = []
    batch = SubmitBatch([object()] * len(latencies),  # type: ignore[list-item]
                        (lambda i, _o: seen.append(i)) if with_inner else None)
    trio.run(observed.enqueue, batch)
    assert fake.batches == [batch]
    for i, latency in enumerate(latencies):
        batch.resolve(i, SubmitOutcome(kind=OutcomeKind.ACCEPTED, latency=latency))
        if latency > 0:  # the old wrapper's rule (0 = no measurement)
            ref.submit_observer("acme")(latency)
    assert seen == (list(range(len(latencies))) if with_inner else [])
    same_but_created(m.exposition(), ref_exposition())
