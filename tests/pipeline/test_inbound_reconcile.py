"""Reconciliation: a receipt no carrier id matches, for a part left ``unknown``.

A part whose submit got no answer is indexed (``gateway.store.unknown_parts``) under its
carrier, its destination as sent and its sending time. A receipt about to become
``receipt.unmatched`` is adopted by the ONE message found there (same carrier and
destination, sending time compatible with the receipt's submit minute), applied as a
matched receipt (status, roll-up, events, error history), and its carrier id committed;
none or several -> ``receipt.unmatched`` as before. These tests feed the processor
directly (no dispatcher: nothing is held for a grace period) on the memory store.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import msgspec
import pytest
import trio
import trio.testing

from gateway.config import GatewayConfig
from gateway.pipeline.events import decode_data
from gateway.pipeline.inbound import InboundProcessor
from gateway.pipeline.recipients import RecipientCache
from gateway.smpp import pdu as P
from gateway.store import (
    HistoryEntry,
    MessageRecord,
    PartRecord,
    Store,
    WriteBatch,
)
from gateway.store.kv import Db
from gateway.store.records import UnknownPart
from gateway.store.unknown_parts import entries_for

from .conftest import NOW, make_config, put_recipients
from .test_dispatch_harness import FakeInbound

Clock = trio.testing.MockClock
FR1, FR2 = "+33612345601", "+33612345602"
#: The receipts' submit date: NOW's minute (2026-01-02 17:00 UTC).
SUBMIT = datetime.fromtimestamp(NOW, UTC)


def unknown_message(mid: str, to: str = FR1, *, parts: int = 1, carrier: str = "c1",
                    statuses: Sequence[str] | None = None) -> MessageRecord:
    sts = list(statuses) if statuses is not None else ["unknown"] * parts
    return MessageRecord(
        id=mid, created_at=NOW, to=to, text="hi", kind="campaign", campaign_id="camp",
        status="unknown", reason="no_response", encoding="gsm7", segments=len(sts),
        carrier=carrier, route="+",
        parts=tuple(PartRecord(index=i, carrier=carrier, status=s) for i, s in enumerate(sts)),
        history=(HistoryEntry(NOW, "queued"), HistoryEntry(NOW + 10, "unknown",
                                                            "no_response")),
        updated_at=NOW + 10)


def entry(mid: str, part: int = 0, *, sent_at: float = NOW + 5, until: float = NOW + 10,
          at: float | None = None) -> UnknownPart:
    return UnknownPart(mid, part, sent_at, until, until if at is None else at)


async def seed_store(store: Store, records: Sequence[MessageRecord],
                     entries: Sequence[tuple[str, str, UnknownPart]] = ()) -> None:
    batch = WriteBatch()
    for rec in records:
        batch.put_message(rec)
    for carrier, to, e in entries:
        batch.put_unknown_part(carrier, to[1:], e)
    await store.commit(batch)


seed = seed_store


def receipt(source: str, cid: str, stat: str = "DELIVRD", err: str = "000", *,
            submit: datetime = SUBMIT, done: datetime | None = None,
            carrier: str | None = None) -> FakeInbound:
    stamp = submit.strftime("%y%m%d%H%M")
    done_stamp = (done or submit).strftime("%y%m%d%H%M")
    text = (f"id:{cid} sub:001 dlvrd:001 submit date:{stamp} done date:{done_stamp} "
            f"stat:{stat} err:{err} text:hi").encode()
    inb = FakeInbound(P.DeliverSm(source_addr_ton=1, source_addr_npi=1, source_addr=source,
                                  destination_addr="ACME", esm_class=0x04,
                                  short_message=text))
    if carrier is not None:
        inb.carrier = carrier  # type: ignore[attr-defined]
    return inb


def processor(store: Store, config: GatewayConfig, *, at: float = NOW + 30
              ) -> InboundProcessor:
    return InboundProcessor(store, config, RecipientCache(store, policy=config.rules), None,
                            None, clock=lambda: at)


async def feed(proc: InboundProcessor, *inbs: FakeInbound) -> None:
    await proc.process(list(inbs))  # type: ignore[arg-type]
    assert all(i.acked for i in inbs)


def events(store: Store, kind: str, mid: str | None = None) -> list[dict[str, object]]:
    return [{"status": e.status, "message_id": e.message_id, **decode_data(e.data)}
            for e in store.events_after(0, 1000)
            if e.type == kind and (mid is None or e.message_id == mid)]


def index(store: Store) -> list[UnknownPart]:
    return store.read(lambda tx: [e for _, e in entries_for(tx, "c1", FR1[1:])]
                      + [e for _, e in entries_for(tx, "c2", FR1[1:])])


async def test_one_candidate_is_adopted(mem_store: Store, config: GatewayConfig,
                                        autojump_clock: Clock) -> None:
    await seed(mem_store, [unknown_message("M1")], [("c1", FR1, entry("M1"))])
    proc = processor(mem_store, config)
    await feed(proc, receipt(FR1[1:], "AB12"))
    rec = mem_store.get_message("M1")
    assert rec is not None and rec.status == "delivered"
    assert rec.parts[0].status == "delivered" and rec.parts[0].carrier_msg_id == "AB12"
    assert rec.parts[0].receipt_stat == "DELIVRD"
    assert [h.reason for h in rec.history[-2:]] == ["reconciled", None]
    hit = mem_store.lookup_carrier_id("c1", "AB12")
    assert hit is not None and (hit.message_id, hit.part) == ("M1", 0)
    assert index(mem_store) == []  # the entry went with the adoption
    [ev] = events(mem_store, "receipt", "M1")
    assert ev["reconciled"] is True and ev["carrier_message_id"] == "AB12"
    assert ev["status"] == "delivered" and ev["part"] == 1
    assert [e["status"] for e in events(mem_store, "message.status", "M1")] == ["delivered"]
    assert events(mem_store, "receipt.unmatched") == []
    st = proc.statistics()
    assert (st.reconciled, st.unmatched, st.receipts, st.reconcile_ambiguous) == (1, 0, 1, 0)


async def test_no_candidate_stays_unmatched(mem_store: Store, config: GatewayConfig,
                                            autojump_clock: Clock) -> None:
    await seed(mem_store, [unknown_message("M1", FR2)], [("c1", FR2, entry("M1"))])
    proc = processor(mem_store, config)
    await feed(proc, receipt(FR1[1:], "AB12"))  # another destination
    [ev] = events(mem_store, "receipt.unmatched")
    assert ev["carrier_message_id"] == "AB12" and "reconciled" not in ev
    assert mem_store.get_message("M1").status == "unknown"  # type: ignore[union-attr]
    assert mem_store.lookup_carrier_id("c1", "AB12") is None
    st = proc.statistics()
    assert (st.reconciled, st.unmatched, st.reconcile_ambiguous) == (0, 1, 0)


async def test_two_messages_are_ambiguous(mem_store: Store, config: GatewayConfig,
                                          autojump_clock: Clock) -> None:
    await seed(mem_store, [unknown_message("M1"), unknown_message("M2")],
               [("c1", FR1, entry("M1", sent_at=NOW + 5)),
                ("c1", FR1, entry("M2", sent_at=NOW + 40, until=NOW + 45))])
    proc = processor(mem_store, config)
    await feed(proc, receipt(FR1[1:], "AB12"), receipt(FR1[1:], "CD34"))
    assert len(events(mem_store, "receipt.unmatched")) == 2
    for mid in ("M1", "M2"):
        rec = mem_store.get_message(mid)
        assert rec is not None and rec.status == "unknown" and rec.parts[0].carrier_msg_id is None
    assert len(index(mem_store)) == 2
    st = proc.statistics()
    assert (st.reconciled, st.unmatched, st.reconcile_ambiguous) == (0, 2, 2)


async def test_another_carriers_part_is_no_candidate(mem_store: Store,
                                                     autojump_clock: Clock) -> None:
    config = make_config(carriers=("c1", "c2"))
    await seed(mem_store, [unknown_message("M1")], [("c1", FR1, entry("M1"))])
    proc = processor(mem_store, config)
    await feed(proc, receipt(FR1[1:], "AB12", carrier="c2"))
    assert [e["carrier"] for e in events(mem_store, "receipt.unmatched")] == ["c2"]
    assert mem_store.get_message("M1").status == "unknown"  # type: ignore[union-attr]
    await feed(proc, receipt(FR1[1:], "AB12", carrier="c1"))  # its own carrier's receipt
    assert mem_store.get_message("M1").status == "delivered"  # type: ignore[union-attr]


# The receipt says submit date 17:00 (the SMSC took the part in [17:00:00, 17:01:00) of
# its clock); our interval [sent_at, until] must meet [17:00 - 60 s, 17:01 + 60 s].
@pytest.mark.parametrize(("sent_at", "until", "adopted"), [
    (NOW - 70, NOW - 60.5, False),  # answered-by time half a second before the window
    (NOW - 70, NOW - 60, True),  # ... touching it
    (NOW + 59, NOW + 61, True),  # inside the minute
    (NOW + 120, NOW + 125, True),  # handed out at the window's end
    (NOW + 120.5, NOW + 125, False),  # ... half a second after it
    (NOW - 3600, NOW + 3600, True),  # a long interval (a restart found it sending)
])
async def test_the_submit_minute_window(mem_store: Store, config: GatewayConfig,
                                        autojump_clock: Clock, sent_at: float, until: float,
                                        adopted: bool) -> None:
    await seed(mem_store, [unknown_message("M1")],
               [("c1", FR1, entry("M1", sent_at=sent_at, until=until, at=NOW + 10))])
    proc = processor(mem_store, config, at=NOW + 600)
    await feed(proc, receipt(FR1[1:], "AB12"))
    rec = mem_store.get_message("M1")
    assert rec is not None and (rec.status == "delivered") is adopted
    assert proc.statistics().reconciled == int(adopted)


async def test_an_entry_older_than_the_receipt_window_is_no_candidate(
        mem_store: Store, config: GatewayConfig, autojump_clock: Clock) -> None:
    ttl = config.pipeline.carrier_id_ttl_s
    await seed(mem_store, [unknown_message("M1")], [("c1", FR1, entry("M1", at=NOW))])
    proc = processor(mem_store, config, at=NOW + ttl + 1)
    await feed(proc, receipt(FR1[1:], "AB12", done=datetime.fromtimestamp(NOW + ttl, UTC)))
    assert proc.statistics().unmatched == 1
    assert mem_store.get_message("M1").status == "unknown"  # type: ignore[union-attr]


async def test_a_failure_receipt_reaches_the_error_history(mem_store: Store,
                                                          autojump_clock: Clock) -> None:
    config = make_config(error_codes={"001": "temporary_unreachable"})
    await put_recipients(mem_store, [FR1])
    await seed(mem_store, [unknown_message("M1")], [("c1", FR1, entry("M1"))])
    proc = processor(mem_store, config)
    await feed(proc, receipt(FR1[1:], "AB12", "UNDELIV", "001"))
    rec = mem_store.get_message("M1")
    assert rec is not None and rec.status == "undelivered"
    assert rec.parts[0].error_class == "temporary_unreachable"
    [err] = mem_store.get_errors(FR1)
    assert (err.error_class, err.code, err.message_id, err.carrier) == (
        "temporary_unreachable", "001", "M1", "c1")
    recipient = mem_store.get_recipient(FR1)
    assert recipient is not None
    assert recipient.errors.counts.get("temporary_unreachable") == 1
    assert proc.statistics().errors_by_class == {"temporary_unreachable": 1}


async def test_later_receipts_of_the_adopted_id_take_the_normal_path(
        mem_store: Store, config: GatewayConfig, autojump_clock: Clock) -> None:
    await seed(mem_store, [unknown_message("M1")], [("c1", FR1, entry("M1"))])
    proc = processor(mem_store, config)
    await feed(proc, receipt(FR1[1:], "AB12", "ENROUTE"))  # intermediate: adopted
    rec = mem_store.get_message("M1")
    assert rec is not None and rec.parts[0].carrier_msg_id == "AB12"
    assert rec.parts[0].receipt_stat == "ENROUTE" and rec.status == "unknown"
    await feed(proc, receipt(FR1[1:], "AB12", "DELIVRD"))  # matched by its carrier id
    await feed(proc, receipt(FR1[1:], "AB12", "DELIVRD"))  # a re-delivery: duplicate
    rec = mem_store.get_message("M1")
    assert rec is not None and rec.status == "delivered"
    st = proc.statistics()
    assert (st.reconciled, st.receipts, st.duplicates, st.unmatched) == (1, 3, 1, 0)
    assert [e.get("reconciled") for e in events(mem_store, "receipt", "M1")] == [True, None]


async def test_a_copy_in_the_same_batch_is_applied_once(mem_store: Store,
                                                        config: GatewayConfig,
                                                        autojump_clock: Clock) -> None:
    await seed(mem_store, [unknown_message("M1")], [("c1", FR1, entry("M1"))])
    proc = processor(mem_store, config)
    await feed(proc, receipt(FR1[1:], "AB12"), receipt(FR1[1:], "AB12"))
    rec = mem_store.get_message("M1")
    assert rec is not None and rec.status == "delivered"
    st = proc.statistics()
    assert (st.reconciled, st.duplicates, st.unmatched) == (1, 1, 0)


@pytest.mark.parametrize("together", [True, False])
async def test_parts_of_one_message_take_its_receipts_in_turn(
        mem_store: Store, config: GatewayConfig, autojump_clock: Clock,
        together: bool) -> None:
    await seed(mem_store, [unknown_message("M1", parts=2)],
               [("c1", FR1, entry("M1", 0)), ("c1", FR1, entry("M1", 1))])
    proc = processor(mem_store, config)
    a, b = receipt(FR1[1:], "AB12"), receipt(FR1[1:], "CD34", "UNDELIV", "001")
    if together:
        await feed(proc, a, b)
    else:
        await feed(proc, a)
        await feed(proc, b)
    rec = mem_store.get_message("M1")
    assert rec is not None and rec.status == "partially_delivered"
    assert [(p.carrier_msg_id, p.status) for p in rec.parts] == [
        ("AB12", "delivered"), ("CD34", "undelivered")]
    assert index(mem_store) == []
    assert proc.statistics().reconciled == 2


async def test_a_candidate_no_longer_unknown_is_not_adopted(
        mem_store: Store, config: GatewayConfig, autojump_clock: Clock) -> None:
    """A part sent again (``unknown_outcome = "retry"``) or adopted meanwhile has its own
    carrier id: the receipt of the first copy stays unmatched and the part is untouched."""
    rec = unknown_message("M1", statuses=["accepted"])
    rec = msgspec.structs.replace(rec, status="submitted", parts=(msgspec.structs.replace(
        rec.parts[0], carrier_msg_id="OWN1"),))
    await seed(mem_store, [rec], [("c1", FR1, entry("M1"))])
    proc = processor(mem_store, config)
    await feed(proc, receipt(FR1[1:], "AB12"))
    assert proc.statistics().unmatched == 1 and proc.statistics().reconciled == 0
    assert mem_store.get_message("M1") == rec
    assert mem_store.lookup_carrier_id("c1", "AB12") is None


async def test_a_stale_candidate_still_makes_another_ambiguous(
        mem_store: Store, config: GatewayConfig, autojump_clock: Clock) -> None:
    # M1's part was sent again and has its own id; the receipt may be its first copy's:
    # M2 does not take it.
    m1 = unknown_message("M1", statuses=["accepted"])
    await seed(mem_store, [m1, unknown_message("M2")],
               [("c1", FR1, entry("M1")), ("c1", FR1, entry("M2", sent_at=NOW + 20))])
    proc = processor(mem_store, config)
    await feed(proc, receipt(FR1[1:], "AB12"))
    assert mem_store.get_message("M2").status == "unknown"  # type: ignore[union-attr]
    assert proc.statistics().reconcile_ambiguous == 1


async def test_a_candidate_whose_message_is_gone(mem_store: Store, config: GatewayConfig,
                                                 autojump_clock: Clock) -> None:
    await seed(mem_store, [], [("c1", FR1, entry("M1"))])
    proc = processor(mem_store, config)
    await feed(proc, receipt(FR1[1:], "AB12"))
    assert proc.statistics().unmatched == 1
    assert mem_store.get_message("M1") is None


async def test_a_receipt_without_a_submit_date_stays_unmatched(
        mem_store: Store, config: GatewayConfig, autojump_clock: Clock) -> None:
    await seed(mem_store, [unknown_message("M1")], [("c1", FR1, entry("M1"))])
    proc = processor(mem_store, config)
    inb = FakeInbound(P.DeliverSm(source_addr_ton=1, source_addr_npi=1, source_addr=FR1[1:],
                                  destination_addr="ACME", esm_class=0x04,
                                  short_message=b"id:AB12 stat:DELIVRD err:000"))
    await feed(proc, inb)
    assert proc.statistics().unmatched == 1
    assert mem_store.get_message("M1").status == "unknown"  # type: ignore[union-attr]


@pytest.mark.parametrize("source", ["+33612345601", "0033612345601"])
async def test_the_receipts_source_in_international_forms(
        mem_store: Store, config: GatewayConfig, autojump_clock: Clock, source: str) -> None:
    await seed(mem_store, [unknown_message("M1")], [("c1", FR1, entry("M1"))])
    proc = processor(mem_store, config)
    await feed(proc, receipt(source, "AB12"))
    assert proc.statistics().reconciled == 1


async def test_the_matched_path_writes_nothing_to_the_index(
        mem_store: Store, config: GatewayConfig, autojump_clock: Clock) -> None:
    rec = unknown_message("M1", statuses=["accepted"])
    rec = msgspec.structs.replace(rec, status="submitted", parts=(msgspec.structs.replace(
        rec.parts[0], carrier_msg_id="OWN1"),))
    await seed(mem_store, [rec], [("c1", FR1, entry("M9"))])
    b = WriteBatch()
    b.put_carrier_id("c1", "OWN1", "M1", 0, NOW)
    await mem_store.commit(b)
    proc = processor(mem_store, config)
    await feed(proc, receipt(FR1[1:], "OWN1"))
    assert mem_store.get_message("M1").status == "delivered"  # type: ignore[union-attr]
    assert [e.message_id for e in index(mem_store)] == ["M9"]
    assert mem_store.read(lambda tx: tx.count(Db.UNKNOWN_PARTS)) == 1


# The receipt's dates are read as UTC; its done date must be of our clock: not ahead of
# its arrival (+ 60 s), at most 30 minutes before it.
@pytest.mark.parametrize(("done_after_s", "adopted"), [
    (3600.0, False),  # an SMSC writing UTC+1 local time
    (150.0, False),  # (minute precision: 90 s ahead may read as 60)
    (30.0, True),
    (-1500.0, True),  # held 25 minutes by the SMSC
    (-1900.0, False),
    (-5 * 3600.0, False),  # an SMSC writing UTC-5 local time
])
async def test_a_receipt_dated_by_another_clock_is_not_reconciled(
        mem_store: Store, config: GatewayConfig, autojump_clock: Clock,
        done_after_s: float, adopted: bool) -> None:
    arrival = NOW + 2400
    await seed(mem_store, [unknown_message("M1")], [("c1", FR1, entry("M1"))])
    proc = processor(mem_store, config, at=arrival)
    done = datetime.fromtimestamp(arrival - 30 + done_after_s, UTC)
    await feed(proc, receipt(FR1[1:], "AB12", done=done))
    assert proc.statistics().reconciled == int(adopted)
    assert (mem_store.get_message("M1").status == "delivered") is adopted  # type: ignore[union-attr]


async def test_the_reconciled_receipt_event_keeps_the_metadata(
        mem_store: Store, config: GatewayConfig, autojump_clock: Clock) -> None:
    rec = msgspec.structs.replace(unknown_message("M1"), metadata=b'{"order":42}')
    await seed(mem_store, [rec], [("c1", FR1, entry("M1"))])
    await feed(processor(mem_store, config), receipt(FR1[1:], "AB12"))
    [ev] = [e for e in mem_store.events_after(0, 100) if e.type == "receipt"]
    assert decode_data(ev.data) == {
        "carrier": "c1", "carrier_message_id": "AB12", "stat": "DELIVRD", "err": "000",
        "part": 1, "done_at": NOW, "metadata": {"order": 42}, "reconciled": True}


class _Interleaved:
    """The memory store, with another writer's change to a message committed just before
    the processor's batch (its write then finds other bytes than it read)."""

    def __init__(self, store: Store, mid: str) -> None:
        self._store = store
        self._mid = mid

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)

    async def commit(self, batch: WriteBatch) -> object:
        other = WriteBatch()
        other.update_message(self._mid, lambda r: None if r is None else msgspec.structs.replace(
            r, attempts=r.attempts + 7))
        await self._store.commit(other)
        return await self._store.commit(batch)


async def test_the_adoption_is_applied_again_to_a_record_changed_meanwhile(
        mem_store: Store, config: GatewayConfig, autojump_clock: Clock) -> None:
    await seed(mem_store, [unknown_message("M1", parts=2)],
               [("c1", FR1, entry("M1", 0)), ("c1", FR1, entry("M1", 1))])
    proc = processor(_Interleaved(mem_store, "M1"), config)  # type: ignore[arg-type]
    await feed(proc, receipt(FR1[1:], "AB12"), receipt(FR1[1:], "CD34", "UNDELIV", "001"))
    rec = mem_store.get_message("M1")
    assert rec is not None and rec.attempts == 7  # the other change kept ...
    assert [(p.carrier_msg_id, p.status) for p in rec.parts] == [
        ("AB12", "delivered"), ("CD34", "undelivered")]  # ... and both adoptions applied
    assert rec.status == "partially_delivered"
    assert [h.reason for h in rec.history].count("reconciled") == 2


def test_the_reconciled_field_is_what_encoding_it_gives() -> None:
    from gateway.pipeline.events import ReceiptData, encode_data
    from gateway.pipeline.inbound import _mark_reconciled
    from gateway.store import Event

    for data in (ReceiptData(carrier="c1", carrier_message_id="A", stat="DELIVRD"),
                 ReceiptData(carrier="c1", carrier_message_id="A", stat="UNDELIV", err="001",
                             part=2, error_class="permanent", done_at=NOW,
                             metadata=msgspec.Raw(b'{"k":[1,{"x":"}"}]}'))):
        batch = WriteBatch()
        batch.append_event(Event(0, NOW, "receipt", "M1", FR1, "delivered", encode_data(data)))
        _mark_reconciled(batch, 0)
        assert batch.ops[0][1].data == encode_data(
            msgspec.structs.replace(data, reconciled=True))


class _Dispatcher:
    """``PendingCommits`` plus what reconciliation asks the dispatcher: ``flush`` commits
    the outcomes it holds (here: ``on_flush``), ``unanswered_dests`` the parts in flight."""

    def __init__(self, store: Store, on_flush: WriteBatch | None = None,
                 in_flight: frozenset[tuple[str, str]] = frozenset()) -> None:
        self._store = store
        self._on_flush = on_flush
        self._in_flight = in_flight
        self.flushes = 0

    def pending_carrier_id(self, carrier: str, keys: Sequence[str]) -> tuple[str, int] | None:
        return None

    def awaiting_response(self, carrier: str | None = None) -> int:
        return 0

    async def wait_committed(self) -> None:
        await trio.sleep_forever()

    async def flush(self) -> None:
        self.flushes += 1
        if self._on_flush is not None:
            batch, self._on_flush = self._on_flush, None
            await self._store.commit(batch)

    def unanswered_dests(self) -> set[tuple[str, str]]:
        return set(self._in_flight)


async def test_an_answer_committed_by_the_flush_is_the_receipts_own(
        mem_store: Store, config: GatewayConfig, autojump_clock: Clock) -> None:
    """M2's submit_sm_resp arrived while its receipt was about to be unmatched: the flush
    commits its carrier id, the receipt goes to M2, not to M1 (unknown, same minute)."""
    m2 = msgspec.structs.replace(unknown_message("M2", statuses=["accepted"]),
                                 status="submitted")
    m2 = msgspec.structs.replace(m2, parts=(msgspec.structs.replace(
        m2.parts[0], carrier_msg_id="AB12"),))
    await seed(mem_store, [unknown_message("M1"), m2], [("c1", FR1, entry("M1"))])
    answer = WriteBatch()
    answer.put_carrier_id("c1", "AB12", "M2", 0, NOW + 20)
    d = _Dispatcher(mem_store, on_flush=answer)
    proc = InboundProcessor(mem_store, config, RecipientCache(mem_store, policy=config.rules),
                            None, d, clock=lambda: NOW + 30)
    await feed(proc, receipt(FR1[1:], "AB12"))
    assert d.flushes == 1
    assert mem_store.get_message("M2").status == "delivered"  # type: ignore[union-attr]
    assert mem_store.get_message("M1").status == "unknown"  # type: ignore[union-attr]
    assert proc.statistics().reconciled == 0 and proc.statistics().unmatched == 0


async def test_a_part_in_flight_to_the_destination_makes_it_ambiguous(
        mem_store: Store, config: GatewayConfig, autojump_clock: Clock) -> None:
    await seed(mem_store, [unknown_message("M1")], [("c1", FR1, entry("M1"))])
    d = _Dispatcher(mem_store, in_flight=frozenset({("c1", FR1[1:])}))
    proc = InboundProcessor(mem_store, config, RecipientCache(mem_store, policy=config.rules),
                            None, d, clock=lambda: NOW + 30)
    await feed(proc, receipt(FR1[1:], "AB12"))
    st = proc.statistics()
    assert (st.reconciled, st.unmatched, st.reconcile_ambiguous) == (0, 1, 1)
    assert mem_store.get_message("M1").status == "unknown"  # type: ignore[union-attr]
    d2 = _Dispatcher(mem_store, in_flight=frozenset({("c1", FR2[1:]), ("c2", FR1[1:])}))
    proc = InboundProcessor(mem_store, config, RecipientCache(mem_store, policy=config.rules),
                            None, d2, clock=lambda: NOW + 30)
    await feed(proc, receipt(FR1[1:], "AB12"))  # other destinations or carriers in flight
    assert proc.statistics().reconciled == 1


def _random_case(seed: int) -> tuple[list[MessageRecord], list[tuple[str, str, UnknownPart]],
                                     list[list[tuple[FakeInbound, str]]]]:
    """Unknown messages to a few destinations at random times, the receipts the SMSC sends
    for some of their parts (its clock within the skew of ours, the submit date the minute
    it took the part) in random batches: ``(records, index entries, batches of (receipt,
    the message it belongs to))``."""
    import random

    rng = random.Random(seed)
    phones = [f"+3361234560{i}" for i in range(rng.randint(1, 3))]
    records: list[MessageRecord] = []
    entries: list[tuple[str, str, UnknownPart]] = []
    receipts: list[tuple[FakeInbound, str]] = []
    for m in range(rng.randint(1, 8)):
        mid = f"M{m}"
        to = rng.choice(phones)
        n = rng.choice([1, 1, 2, 3])
        records.append(unknown_message(mid, to, parts=n))
        sent = NOW + rng.uniform(0, 900)
        until = sent + rng.choice([0.5, 5.0, 30.0])
        for part in range(n):
            entries.append(("c1", to, UnknownPart(mid, part, sent, until, until)))
            if rng.random() < 0.7:  # the SMSC took it (at a time of the interval)
                took = rng.uniform(sent, until) + rng.uniform(-50, 50)  # its clock
                submit = datetime.fromtimestamp(took, UTC)
                cid = f"C{m}x{part}"
                stat = rng.choice(["DELIVRD", "DELIVRD", "UNDELIV", "ENROUTE"])
                receipts.append((receipt(to[1:], cid, stat, submit=submit,
                                         done=datetime.fromtimestamp(NOW + 1000, UTC)), mid))
                if rng.random() < 0.2:  # re-delivered
                    receipts.append((receipt(to[1:], cid, stat, submit=submit,
                                             done=datetime.fromtimestamp(NOW + 1000, UTC)),
                                     mid))
    rng.shuffle(receipts)
    batches: list[list[tuple[FakeInbound, str]]] = []
    while receipts:
        k = rng.randint(1, 4)
        batches.append(receipts[:k])
        receipts = receipts[k:]
    return records, entries, batches


@pytest.mark.parametrize("chunk", range(4))
async def test_random_cases_never_attach_a_receipt_to_another_message(
        chunk: int, config: GatewayConfig, autojump_clock: Clock) -> None:
    from gateway.store import open_memory_store
    from gateway.store.unknown_parts import dest_of

    adopted_total = 0
    for seed in range(chunk * 50, chunk * 50 + 50):
        records, entries, batches = _random_case(seed)
        async with open_memory_store() as store:
            await seed_store(store, records, entries)
            proc = processor(store, config, at=NOW + 1030)
            for items in batches:
                await feed(proc, *(inb for inb, _ in items))
            owner = {inb.pdu.short_message.split()[0][3:].decode(): mid
                     for items in batches for inb, mid in items}
            for rec in (store.get_message(r.id) for r in records):
                assert rec is not None
                for p in rec.parts:
                    if p.carrier_msg_id is not None:
                        adopted_total += 1
                        assert owner[p.carrier_msg_id] == rec.id, f"seed {seed}"
            left = store.read(lambda tx: sum(1 for _ in tx.scan(Db.UNKNOWN_PARTS)))
            assert left == len(entries) - sum(
                1 for r in records for p in (store.get_message(r.id) or r).parts
                if p.carrier_msg_id is not None), f"seed {seed}"
            assert all(dest_of(r.to) for r in records)
    assert adopted_total > 50  # most receipts are unambiguous
