"""gateway.retention: the pure decisions (tables), the sweep task on an autojump clock,
its metrics and its wiring in the app."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import msgspec
import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.app import Gateway
from gateway.backend import _segment_line
from gateway.config import load_config_bytes
from gateway.metrics import Metrics
from gateway.retention import (
    DAY,
    FIRST_SWEEP_DELAY_S,
    PRUNE,
    Retention,
    RetentionSettings,
    carrier_id_prunable,
    carrier_ids_of,
    claim_prunable,
    error_entries_to_prune,
    events_prune_through,
    holding_cursors,
    message_verdict,
    young_id_prefix,
)
from gateway.store import (
    CarrierIdRecord,
    ErrorEntry,
    Event,
    HistoryEntry,
    IdempotencyRecord,
    MemoryStore,
    MessageRecord,
    PartRecord,
    PhoneErrors,
    RecipientRecord,
    WriteBatch,
)
from gateway.store.cursors import set_cursor
from rules.policy import ErrorSegmentPolicy, Policy

T0 = 1_790_000_000.0
NOW = T0 + 40 * DAY
R30 = 30 * DAY
W3 = 3 * DAY


def msg(mid: str = "m1", *, age_days: float = 31.0, status: str = "delivered",
        parts: tuple[str, ...] = ("delivered",), **kw: object) -> MessageRecord:
    at = NOW - age_days * DAY
    return MessageRecord(id=mid, created_at=at, to="+15551230000", text="t", kind="campaign",
                         status=status, parts=tuple(PartRecord(i, status=s)
                                                    for i, s in enumerate(parts)),
                         **kw)  # type: ignore[arg-type]


# ------------------------------------------------------------------ message_verdict

MESSAGE_CASES = [
    # (record, retention_s, window_s, outbox ids, verdict)
    (msg(), R30, W3, set(), PRUNE),
    (msg(status="undelivered", parts=("undelivered",)), R30, W3, set(), PRUNE),
    (msg(status="expired", parts=("expired",)), R30, W3, set(), PRUNE),
    (msg(status="failed", parts=("failed",)), R30, W3, set(), PRUNE),
    (msg(status="rejected", parts=()), R30, W3, set(), PRUNE),
    (msg(status="unknown", parts=("unknown",)), R30, W3, set(), PRUNE),
    (msg(status="partially_delivered", parts=("delivered", "undelivered")), R30, W3, set(),
     PRUNE),
    (msg(age_days=29.9), R30, W3, set(), "young"),
    (msg(), 0.0, W3, set(), "off"),
    # never: not final, in flight, in the outbox
    (msg(status="queued", parts=("pending",), age_days=90), R30, W3, set(), "not_final"),
    (msg(status="scheduled", parts=("pending",), age_days=90), R30, W3, set(), "not_final"),
    (msg(status="failed", parts=("failed", "pending"), age_days=90), R30, W3, set(),
     "in_flight"),
    (msg(status="unknown", parts=("sending",), age_days=90), R30, W3, set(), "in_flight"),
    (msg(status="failed", parts=("failed",), outbox_due=T0), R30, W3, set(), "in_outbox"),
    (msg(status="failed", parts=("failed",)), R30, W3, {"m1"}, "in_outbox"),
    # awaiting a receipt: kept through the receipt window even past the retention
    (msg(status="submitted", parts=("accepted",), age_days=2), DAY, W3, set(),
     "awaiting_receipt"),
    (msg(status="partially_delivered", parts=("delivered", "accepted"), age_days=2), DAY, W3,
     set(), "awaiting_receipt"),
    (msg(status="delivered", parts=("unknown_receipt",), age_days=2), DAY, W3, set(),
     "awaiting_receipt"),
    (msg(status="submitted", parts=("accepted",), age_days=3.5), DAY, W3, set(), PRUNE),
    (msg(status="delivered", parts=("delivered",), age_days=2), DAY, W3, set(), PRUNE),
    # the last change counts, not the creation
    (msg(age_days=40, updated_at=NOW - 10 * DAY), R30, W3, set(), "young"),
    (msg(age_days=40, history=(HistoryEntry(NOW - 5 * DAY, "delivered"),)), R30, W3, set(),
     "young"),
    (msg(age_days=40, updated_at=NOW - 31 * DAY,
         history=(HistoryEntry(NOW - 35 * DAY, "delivered"),)), R30, W3, set(), PRUNE),
]


@pytest.mark.parametrize(("rec", "retention", "window", "outbox", "verdict"), MESSAGE_CASES)
def test_message_verdict(rec: MessageRecord, retention: float, window: float,
                         outbox: set[str], verdict: str) -> None:
    assert message_verdict(rec, NOW, retention_s=retention, receipt_window_s=window,
                           outbox_ids=outbox) == verdict


@pytest.mark.parametrize("t", [T0, T0 + 0.0005, T0 + 0.001, NOW, 0.0, 4e10])
def test_young_id_prefix_splits_ids_by_time(t: float) -> None:
    from gateway.pipeline.ids import IdGenerator

    prefix = young_id_prefix(t)
    gen = IdGenerator(random_part=(1 << 30) - 1)
    assert gen.next(t) >= prefix  # made at t
    assert gen.next(t + 0.001) >= prefix
    if t >= 0.001:
        assert IdGenerator(random_part=(1 << 30) - 1).next(t - 0.001) < prefix


async def test_outbox_snapshot_keeps_only_ids_that_can_be_old() -> None:
    from gateway.pipeline.ids import IdGenerator

    gen = IdGenerator()
    old, young = gen.next(NOW - 40 * DAY), gen.next(NOW - DAY)
    store = MemoryStore()
    b = WriteBatch()
    for mid in (old, young, "foreign"):
        b.outbox_add(NOW, mid)
    await store.commit(b)
    got = await Retention(store, RetentionSettings())._outbox_ids(NOW - R30)
    assert got == {old, "foreign"}


def test_carrier_ids_of_covers_both_normalisations() -> None:
    rec = msg(parts=("delivered", "delivered", "failed"))
    rec = msgspec.structs.replace(rec, parts=(
        PartRecord(0, carrier="c1", carrier_msg_id="00ab", status="delivered"),
        PartRecord(1, carrier="c1", carrier_msg_id="XyZ", status="delivered"),
        PartRecord(2, status="failed")))
    assert carrier_ids_of(rec) == [("c1", "AB"), ("c1", "00ab"), ("c1", "XyZ")]


@pytest.mark.parametrize(("at", "exists", "retention", "expected"), [
    (NOW - 31 * DAY, False, R30, True),
    (NOW - 31 * DAY, True, R30, False),  # goes with its message, not alone
    (NOW - 29 * DAY, False, R30, False),
    (NOW - 31 * DAY, False, 0.0, False),
])
def test_carrier_id_prunable(at: float, exists: bool, retention: float, expected: bool) -> None:
    rec = CarrierIdRecord(message_id="m1", part=0, at=at)
    assert carrier_id_prunable(rec, exists, NOW, retention) is expected


@pytest.mark.parametrize(("at", "lifetime", "expected"), [
    (NOW - 8 * DAY, 7 * DAY, True),
    (NOW - 6 * DAY, 7 * DAY, False),
    (NOW - 800 * DAY, 0.0, False),  # 0: as long as its message
])
def test_claim_prunable(at: float, lifetime: float, expected: bool) -> None:
    assert claim_prunable(IdempotencyRecord(message_id="m1", at=at), NOW, lifetime) is expected


# ------------------------------------------------------------------------ events

OLD = NOW - 8 * DAY
NEW = NOW - 1 * DAY


@pytest.mark.parametrize(("head", "retention", "hold", "expected"), [
    ([(1, OLD), (2, OLD), (3, NEW)], 7 * DAY, None, 2),
    ([(1, OLD), (2, OLD), (3, NEW)], 7 * DAY, 1, 1),  # a cursor at 1 needs 2 and on
    ([(1, OLD), (2, OLD), (3, NEW)], 7 * DAY, 0, None),
    ([(1, OLD), (2, OLD)], 7 * DAY, 5, 2),
    ([(1, OLD), (2, NEW), (3, OLD)], 7 * DAY, None, 1),  # never a hole in the feed
    ([(4, NEW)], 7 * DAY, None, None),
    ([], 7 * DAY, None, None),
    ([(1, OLD)], 0.0, None, None),
])
def test_events_prune_through(head: list[tuple[int, float]], retention: float,
                              hold: int | None, expected: int | None) -> None:
    assert events_prune_through(head, NOW, retention, hold) == expected


def test_holding_cursors_ignore_webhooks_no_longer_configured() -> None:
    cursors = {"webhook:crm": 5, "webhook:old": 1, "export": 3}
    assert holding_cursors(cursors, ["crm", "other"]) == {"webhook:crm": 5, "export": 3}
    assert holding_cursors(cursors, []) == {"export": 3}


# ------------------------------------------------------------------------ errors

def err(days_ago: float, cls: str) -> ErrorEntry:
    return ErrorEntry(at=NOW - days_ago * DAY, error_class=cls)


U, N, D, P, F = ("temporary_unreachable", "temporary_network", "disconnected", "permanent",
                 "filtered")


@pytest.mark.parametrize(("history", "sticky", "retention", "expected"), [
    # newest kept (also the newest temporary); the newest 2 unreachable kept
    ([err(90, U), err(80, U), err(70, U), err(60, N)], 2, R30, [0]),
    ([err(90, U), err(80, U), err(70, U), err(60, N)], 0, R30, [0, 1, 2]),
    ([err(90, U), err(80, U), err(70, U), err(60, N)], 1, R30, [0, 1]),
    # newest overall kept even when not a segment class
    ([err(90, P), err(80, F)], 2, R30, [0]),
    ([err(90, D), err(85, D), err(80, D), err(70, F)], 2, R30, [0]),
    # a class the rules do not know counts as unknown (a segment class)
    ([err(90, "weird"), err(80, P)], 0, R30, []),
    ([err(90, "weird"), err(85, "weird"), err(80, P)], 0, R30, [0]),
    # young entries stay
    ([err(20, U), err(10, U), err(5, U)], 0, R30, []),
    ([err(90, U), err(20, N), err(10, N)], 0, R30, [0]),
    ([err(90, U), err(80, U)], 0, 0.0, []),
    ([], 2, R30, []),
])
def test_error_entries_to_prune(history: list[ErrorEntry], sticky: int, retention: float,
                                expected: list[int]) -> None:
    assert error_entries_to_prune(history, NOW, retention, sticky) == expected


CLASSES = [U, N, D, P, F, "unknown"]


@settings(max_examples=300, deadline=None)
@given(history=st.lists(st.tuples(st.floats(0, 400), st.sampled_from(CLASSES)), max_size=12),
       sticky=st.integers(0, 3), days=st.integers(1, 400), retention_days=st.integers(1, 120),
       clear=st.booleans(), delivered=st.one_of(st.none(), st.floats(0, 400)))
def test_pruning_errors_keeps_the_segment_line(
        history: list[tuple[float, str]], sticky: int, days: int, retention_days: int,
        clear: bool, delivered: float | None) -> None:
    """GET /v1/segments/sms-errors (gateway.backend) says the same for a phone before and
    after its history was pruned, whatever the look-back: membership, last_error_at and
    error_class (the ``errors`` count is what is kept)."""
    entries = sorted((err(ago, cls) for ago, cls in history), key=lambda e: e.at)
    doomed = set(error_entries_to_prune(entries, NOW, retention_days * DAY, sticky))
    kept = [e for i, e in enumerate(entries) if i not in doomed]
    policy = Policy(error_segment=ErrorSegmentPolicy(days=days, sticky_count=sticky,
                                                     clear_on_delivery=clear))
    since = 0.0 if sticky else NOW - days * DAY  # as GatewayBackend.error_segment reads
    now_dt = datetime.fromtimestamp(NOW, UTC)
    last_delivered = None if delivered is None else NOW - delivered * DAY

    def line(es: list[ErrorEntry]) -> tuple[object, ...] | None:
        got = _segment_line(PhoneErrors("+15551230000", tuple(e for e in es if e.at >= since)),
                            policy, now_dt, last_delivered)
        return None if got is None else (got.phone, got.last_error_at, got.error_class)

    assert line(kept) == line(entries)


# ------------------------------------------------------------------------ the task

PHONE = "+15551230000"
SWEEP_TIME_S = 30.0
KEEP_PHONE = "+15559990000"


def old_id(n: int) -> str:
    return f"0a{n:04d}"  # sorts before the young ones, as time-sortable ids do


async def seed(store: MemoryStore, now: float) -> None:
    b = WriteBatch()
    old = now - 40 * DAY
    done = MessageRecord(id=old_id(1), created_at=old, to=PHONE, text="t", kind="campaign",
                         status="delivered", idempotency_key="k1",
                         parts=(PartRecord(0, carrier="c1", carrier_msg_id="00ab",
                                           status="delivered"),))
    b.put_message(done)
    b.put_carrier_id("c1", "AB", done.id, 0, old)
    b.put_idempotency("k1", IdempotencyRecord(message_id=done.id, at=old))
    # old but not final: queued, in the outbox, with its carrier id
    b.put_message(MessageRecord(id=old_id(2), created_at=old, to=PHONE, text="t",
                                kind="campaign", status="queued", outbox_due=old,
                                parts=(PartRecord(0, status="pending"),)))
    b.outbox_add(old, old_id(2))
    b.put_carrier_id("c1", "KEEP", old_id(2), 0, old)
    # final, but an outbox entry still refers to it
    b.put_message(MessageRecord(id=old_id(3), created_at=old, to=PHONE, text="t",
                                kind="campaign", status="failed",
                                parts=(PartRecord(0, status="failed"),)))
    b.outbox_add(now + DAY, old_id(3))
    # young and final
    b.put_message(MessageRecord(id="zz0001", created_at=now - DAY, to=PHONE, text="t",
                                kind="campaign", status="delivered",
                                parts=(PartRecord(0, status="delivered"),)))
    # an orphan carrier id (its message went long ago)
    b.put_carrier_id("c1", "ORPHAN", "gone", 0, old)
    # events: 5 old ones, a webhook that has delivered 3 of them, a young one
    for _ in range(5):
        b.append_event(Event(seq=0, at=old, type="message.status"))
    b.append_event(Event(seq=0, at=now - DAY, type="message.status"))
    set_cursor(b, "webhook:crm", 3)
    set_cursor(b, "webhook:removed", 1)  # an endpoint no longer in the config
    # recipients: compliance state, never pruned by age
    b.put_recipient(RecipientRecord(phone=KEEP_PHONE, consent="unsubscribed",
                                    consent_at=now - 900 * DAY, updated_at=now - 900 * DAY))
    # error history: three old unreachable ones and a young one (sticky 2: the young one
    # and the newest old one are the two that count; the two oldest go)
    for days in (90, 80, 70, 1):
        b.add_error(PHONE, ErrorEntry(at=now - days * DAY, error_class="temporary_unreachable"))
    await store.commit(b)


async def test_task_prunes_old_finished_data_and_keeps_the_rest(
        autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="smsgw.retention")
    store = MemoryStore()
    start = trio.current_time()

    def clock() -> float:
        return NOW + (trio.current_time() - start)

    await seed(store, NOW)
    settings_ = RetentionSettings(messages_s=R30, events_s=7 * DAY, errors_s=R30,
                                  interval_s=3600.0, webhooks=("crm",))
    retention = Retention(store, settings_, clock=clock)
    with trio.fail_after(3 * 3600):
        async with trio.open_nursery() as nursery:
            await nursery.start(retention.run)
            await trio.sleep(FIRST_SWEEP_DELAY_S - 1)
            assert retention.stats.sweeps == 0  # not during start-up
            await trio.sleep(SWEEP_TIME_S)  # a sweep's pauses take well under this
            assert retention.stats.sweeps == 1

            # pruned: the old delivered message, its carrier id and claim, the orphan id
            assert store.get_message(old_id(1)) is None
            assert store.lookup_carrier_id("c1", "AB") is None
            assert store.get_idempotency("k1") is None
            assert store.lookup_carrier_id("c1", "ORPHAN") is None
            # kept: not final, outbox-referenced, young; the queued one's carrier id
            assert store.get_message(old_id(2)) is not None
            assert store.get_message(old_id(3)) is not None
            assert store.get_message("zz0001") is not None
            assert store.lookup_carrier_id("c1", "KEEP") is not None
            # events: 1..3 delivered by the webhook go; 4, 5 wait for it; 6 is young
            assert [e.seq for e in store.events_after(0, 10)] == [4, 5, 6]
            assert store.last_event_seq() == 6
            # recipients untouched; the error history keeps what decides the segment
            assert store.get_recipient(KEEP_PHONE) is not None
            assert [round((NOW - e.at) / DAY) for e in store.get_errors(PHONE)] == [70, 1]
            assert retention.stats.pruned == {"messages": 1, "carrier_ids": 2,
                                              "idempotency": 1, "events": 3, "errors": 2,
                                              "links": 0, "clicks": 0, "message_clicks": 0,
                                              "optin_challenges": 0, "optin_starts": 0,
                                              "unknown_parts": 0}
            assert retention.stats.events_held == 2
            line = next(r for r in caplog.records if r.getMessage() == "retention sweep")
            fields = line.fields  # type: ignore[attr-defined]
            assert fields["messages"] == 1 and fields["events_held_by"] == "webhook:crm"
            assert "in_outbox:1" in fields["kept"] and "not_final:1" in fields["kept"]

            # the webhook catches up: the next sweep (an interval later) takes 4 and 5
            b = WriteBatch()
            set_cursor(b, "webhook:crm", 6)
            await store.commit(b)
            await trio.sleep(3600)
            assert retention.stats.sweeps == 2
            assert [e.seq for e in store.events_after(0, 10)] == [6]
            assert retention.stats.pruned["events"] == 5
            assert retention.stats.events_held == 0
            nursery.cancel_scope.cancel()


async def test_task_survives_a_failed_sweep(autojump_clock: trio.testing.MockClock) -> None:
    from gateway.store import StoreFullError

    store = MemoryStore()
    await seed(store, NOW)
    store.fail_commits(StoreFullError("full"))
    retention = Retention(store, RetentionSettings(interval_s=600.0),
                          clock=lambda: NOW + trio.current_time())
    with trio.fail_after(3600):
        async with trio.open_nursery() as nursery:
            await nursery.start(retention.run)
            await trio.sleep(FIRST_SWEEP_DELAY_S + SWEEP_TIME_S)
            assert (retention.stats.failures, retention.stats.sweeps) == (1, 0)
            assert store.get_message(old_id(1)) is not None
            store.fail_commits(None)
            await trio.sleep(600)
            assert (retention.stats.failures, retention.stats.sweeps) == (1, 1)
            assert store.get_message(old_id(1)) is None
            nursery.cancel_scope.cancel()


async def test_a_record_it_cannot_read_fails_only_its_kind(
        autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture) -> None:
    from gateway.store.kv import Db

    store = MemoryStore()
    await seed(store, NOW)
    b = WriteBatch()
    b.run_in_txn(lambda tx: tx.put(Db.MESSAGES, b"0a0000", b"\xc1 not msgpack") or ())
    await store.commit(b)
    retention = Retention(store, RetentionSettings(interval_s=600.0), clock=lambda: NOW)
    with trio.fail_after(3600):
        async with trio.open_nursery() as nursery:
            await nursery.start(retention.run)
            await trio.sleep(FIRST_SWEEP_DELAY_S + 600 + SWEEP_TIME_S)
            # the messages fail (every sweep), the other kinds are pruned all the same
            assert (retention.stats.failures, retention.stats.sweeps) == (2, 2)
            assert "retention sweep failed" in caplog.text
            assert store.get_message(old_id(1)) is not None
            assert [e.seq for e in store.events_after(0, 10)] == [6]
            assert retention.stats.pruned["events"] == 5
            nursery.cancel_scope.cancel()


async def test_chunks_are_bounded(autojump_clock: trio.testing.MockClock) -> None:
    """3,000 old events and 450 old messages go in batches of at most 1,000 keys."""
    store = MemoryStore()
    b = WriteBatch()
    for _ in range(3000):
        b.append_event(Event(seq=0, at=T0, type="message.status"))
    for i in range(450):
        b.put_message(MessageRecord(id=old_id(i), created_at=T0, to=PHONE, text="t",
                                    kind="campaign", status="rejected"))
    await store.commit(b)
    sizes: list[int] = []
    real_commit = store.commit

    async def commit(batch: WriteBatch) -> object:
        ops = batch.ops
        for op in ops:
            fn = op[-1]
            sizes.append(len(getattr(fn, "ids", getattr(fn, "keys", ()))) or
                         (op[1] - store.events_after(0, 1)[0].seq + 1 if op[0] == 6 else 0))
        return await real_commit(batch)

    store.commit = commit  # type: ignore[method-assign]
    retention = Retention(store, RetentionSettings(), clock=lambda: NOW)
    await retention.sweep()
    # the newest event stays (the feed is never emptied: tests/test_review_r1.py)
    assert [e.seq for e in store.events_after(0, 10)] == [3000]
    assert store.get_message(old_id(0)) is None
    assert retention.stats.pruned["events"] == 2999
    assert retention.stats.pruned["messages"] == 450
    assert sizes and max(sizes) <= 1000 and len(sizes) >= 3 + 3


@pytest.mark.parametrize(("commit_s", "wrote", "pause"), [
    (0.0005, True, 0.02), (0.01, True, 0.1), (0.05, True, 0.5), (0.5, True, 1.0),
    (0.5, False, 0.01)])
async def test_pause_follows_the_commit_latency(
        autojump_clock: trio.testing.MockClock, commit_s: float, wrote: bool,
        pause: float) -> None:
    retention = Retention(MemoryStore(), RetentionSettings())
    retention._last_commit_s = commit_s
    t0 = trio.current_time()
    await retention._pause(wrote)
    assert trio.current_time() - t0 == pytest.approx(pause)


# ------------------------------------------------------------------- metrics, app

def test_metrics_render_the_counters() -> None:
    from tests.app.test_metrics import value

    m = Metrics()
    stats = Retention(MemoryStore(), RetentionSettings()).statistics()
    stats.pruned["events"] = 7
    stats = msgspec.structs.replace(stats, sweeps=2, events_held=3, last_sweep_at=NOW)
    m.register("retention", lambda: stats)
    text = m.exposition()
    assert value(text, "smsgw_retention_pruned_total", kind="events") == 7
    assert value(text, "smsgw_retention_pruned_total", kind="messages") == 0
    assert value(text, "smsgw_retention_sweeps_total") == 2
    assert value(text, "smsgw_retention_events_held") == 3
    assert value(text, "smsgw_retention_last_sweep_timestamp_seconds") == NOW


@pytest.mark.parametrize(("toml", "started"), [
    ("", True),
    ("[store]\nretention_days = 0\nevents_retention_days = 0\nerrors_retention_days = 0\n"
     "links_retention_days = 0\n", False),
])
async def test_app_starts_the_task_unless_everything_is_off(toml: str, started: bool) -> None:
    gw = Gateway(load_config_bytes(toml, env={}), handle_signals=False)
    async with trio.open_nursery() as nursery:
        await gw._start_retention(nursery, MemoryStore())  # type: ignore[arg-type]
        assert ("retention" in gw.components) is started
        assert ("retention" in gw.metrics.collector.components) is started
        nursery.cancel_scope.cancel()
