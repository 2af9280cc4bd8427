"""InboundProcessor: receipts (correlation, duplicates, roll-up, error history) and MO
(keywords, consent, confirmations, reassembly), against the sandbox SMSC and fed directly."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import trio
import trio.testing

from gateway.pipeline.dispatch import rollup
from gateway.pipeline.recipients import facts_from_record
from gateway.smpp import pdu as P
from gateway.store import PartRecord, Store, StoreUnavailableError
from rules.error_segment import in_error_segment
from rules.model import ErrorClass

from .conftest import LA, put_recipients
from .test_dispatch_harness import FakeInbound, deliver, rig, stats

Clock = trio.testing.MockClock
FR1, FR2, FR3 = "+33612345601", "+33612345602", "+33612345603"


def parts(*statuses: str) -> tuple[PartRecord, ...]:
    return tuple(PartRecord(index=i, status=s) for i, s in enumerate(statuses))


@pytest.mark.parametrize(("statuses", "expected"), [
    (("pending",), None),
    (("accepted", "sending"), None),
    (("accepted",), "submitted"),
    (("delivered", "accepted"), "submitted"),
    (("delivered", "delivered"), "delivered"),
    (("delivered", "undelivered"), "partially_delivered"),
    (("delivered", "unknown"), "partially_delivered"),
    (("undelivered", "expired"), "undelivered"),
    (("expired", "expired"), "expired"),
    (("failed", "accepted"), "failed"),
    (("unknown", "accepted"), "unknown"),
    (("unknown_receipt",), "unknown"),
    (("rejected",), "undelivered"),
    ((), None),
])
def test_rollup(statuses: tuple[str, ...], expected: str | None) -> None:
    assert rollup(parts(*statuses)) == expected


def receipt_pdu(source: str, carrier_id: str, stat: str, err: str = "000") -> P.DeliverSm:
    text = (f"id:{carrier_id} sub:001 dlvrd:000 submit date:2601021700 done date:2601021700 "
            f"stat:{stat} err:{err} text:x").encode()
    return P.DeliverSm(source_addr_ton=1, source_addr_npi=1, source_addr=source,
                       destination_addr="ACME", esm_class=0x04, short_message=text)


async def test_duplicate_receipts_are_acked_once_applied(mem_store: Store,
                                                         autojump_clock: Clock) -> None:
    async with rig(mem_store, sim={"dlr_stats": stats("ACCEPTD"), "dlr_delay": 0.1}) as r:
        [mid] = await r.send(FR1)
        await r.wait([mid], "submitted")
        await trio.sleep(1)
        rec = r.get(mid)
        cid = rec.parts[0].carrier_msg_id
        assert cid is not None and rec.parts[0].receipt_stat == "ACCEPTD"
        a = FakeInbound(receipt_pdu(FR1[1:], cid, "DELIVRD"))
        b = FakeInbound(receipt_pdu(FR1[1:], cid, "DELIVRD"))
        await r.inbound.process([a])  # type: ignore[list-item]
        await r.inbound.process([b])  # type: ignore[list-item]
        rec = r.get(mid)
        assert rec.status == "delivered" and a.acked and b.acked
        assert r.inbound.statistics().duplicates == 1
        receipts = [e for e in mem_store.events_after(0, 100)
                    if e.message_id == mid and e.type == "receipt"]
        assert [e.status for e in receipts] == ["accepted", "delivered"]
        # a contradicting late receipt does not undo the final one
        c = FakeInbound(receipt_pdu(FR1[1:], cid, "UNDELIV", "001"))
        await r.inbound.process([c])  # type: ignore[list-item]
        assert r.get(mid).status == "delivered" and c.acked


async def test_unmatched_receipt_is_an_event_and_acked(mem_store: Store,
                                                       autojump_clock: Clock) -> None:
    async with rig(mem_store) as r:
        x = FakeInbound(receipt_pdu(FR1[1:], "DEADBEEF", "DELIVRD"))
        await r.inbound.process([x])  # type: ignore[list-item]
        assert x.acked
        [ev] = [e for e in mem_store.events_after(0, 10) if e.type == "receipt.unmatched"]
        assert ev.phone == FR1 and b"DEADBEEF" in ev.data
        assert r.inbound.statistics().unmatched == 1


async def test_decimal_receipt_id_still_correlates(mem_store: Store,
                                                   autojump_clock: Clock) -> None:
    async with rig(mem_store, sim={"dlr_text_id": "dec"}) as r:
        ids = await r.send([FR1, FR2])
        await r.wait(ids, "delivered")
        assert r.inbound.statistics().unmatched == 0


async def test_multipart_partially_delivered(mem_store: Store, autojump_clock: Clock) -> None:
    async with rig(mem_store, sim={"dlr_stats": stats("ACCEPTD")}) as r:
        [mid] = await r.send(FR1, "y" * 300)
        [rec] = await r.wait([mid], "submitted")
        await trio.sleep(1)
        ids = [p.carrier_msg_id or "" for p in r.get(mid).parts]
        assert len(ids) == 2
        await r.inbound.process([FakeInbound(receipt_pdu(FR1[1:], ids[0], "DELIVRD"))])  # type: ignore[list-item]
        assert r.get(mid).status == "submitted"  # part 2 still open
        await r.inbound.process([FakeInbound(receipt_pdu(FR1[1:], ids[1], "UNDELIV", "001"))])  # type: ignore[list-item]
        rec = r.get(mid)
        assert rec.status == "partially_delivered"
        assert [p.status for p in rec.parts] == ["delivered", "undelivered"]
        assert rec.parts[1].receipt_err == "001" and rec.parts[1].error_class is not None
        statuses = [e.status for e in mem_store.events_after(0, 100)
                    if e.message_id == mid and e.type == "message.status"]
        assert statuses == ["queued", "submitted", "partially_delivered"]


@pytest.mark.parametrize(("stat", "cls"), [
    ("UNDELIV:001", ErrorClass.TEMPORARY_UNREACHABLE),  # mapped by the carrier's error_codes
    ("EXPIRED", ErrorClass.TEMPORARY_UNREACHABLE),
])
async def test_failed_receipts_put_recipients_in_the_error_segment(
        mem_store: Store, autojump_clock: Clock, stat: str, cls: ErrorClass) -> None:
    await put_recipients(mem_store, [FR1, FR2])
    async with rig(mem_store, sim={"dlr_stats": stats(stat)},
                   carrier={"error_codes": {"001": "temporary_unreachable"}}) as r:
        ids = await r.send([FR1, FR2], "Big sale", kind="campaign")
        recs = await r.wait(ids, {"undelivered", "expired"})
        assert {rec.parts[0].error_class for rec in recs} == {cls.value}
        for phone in (FR1, FR2):
            errs = mem_store.get_errors(phone)
            assert [e.error_class for e in errs] == [cls.value]
            stored = mem_store.get_recipient(phone)
            assert stored is not None and stored.errors.last_error_class == cls.value
            facts = facts_from_record(stored)
            assert in_error_segment(facts, r.config.rules, datetime.fromtimestamp(r.clock(), UTC))
        assert r.inbound.statistics().errors_by_class == {cls.value: 2}
        # campaigns now skip them; flows still go
        [camp] = await r.send(FR1, "Another sale", kind="campaign")
        assert r.get(camp).status == "rejected" and r.get(camp).reason == "error_segment"
        [flow] = await r.send(FR1, "Your cart", kind="flow", flow_id="f1", flow_type="welcome")
        assert r.get(flow).reason != "error_segment", r.get(flow).reason


async def test_permanent_error_marks_number_undeliverable(mem_store: Store,
                                                          autojump_clock: Clock) -> None:
    await put_recipients(mem_store, [FR1])
    async with rig(mem_store, sim={"dlr_stats": stats("UNDELIV:005")},
                   carrier={"error_codes": {"005": "permanent"}}) as r:
        [mid] = await r.send(FR1, "hi", kind="campaign")
        await r.wait([mid], "undelivered")
        stored = mem_store.get_recipient(FR1)
        assert stored is not None and stored.errors.permanent
        [m2] = await r.send(FR1, "again", kind="campaign")
        assert r.get(m2).reason == "undeliverable_number"


async def test_mo_stop_opts_out_and_sends_one_confirmation(mem_store: Store,
                                                           autojump_clock: Clock) -> None:
    await put_recipients(mem_store, [LA])
    async with rig(mem_store) as r:
        await r.server.inject_mo(LA[1:], "12345", "STOP")
        await r.wait_until(lambda: r.server.stats.submits >= 1)
        await trio.sleep(2)
        stored = mem_store.get_recipient(LA)
        assert stored is not None and stored.consent == "unsubscribed"
        assert stored.opt_out_confirmed
        assert [(k.kind, k.language) for k in stored.keywords] == [("opt_out", "en")]
        assert r.server.stats.mo_acked == 1
        # a second STOP: no second confirmation
        await r.server.inject_mo(LA[1:], "12345", "stop")
        await trio.sleep(2)
        assert r.server.stats.submits == 1
        # campaigns are refused now
        [mid] = await r.send(LA, "sale", kind="campaign")
        assert r.get(mid).reason == "opted_out"
        evs = [e for e in mem_store.events_after(0, 100) if e.phone == LA]
        assert [e.type for e in evs if e.type in ("mo", "consent")] == ["consent", "mo", "mo"]
        st = r.inbound.statistics()
        assert st.mo == 2 and st.replies == 1 and st.mo_by_keyword == {"opt_out": 2}


@pytest.mark.parametrize("text", ["Arrêt", "stop please", "STOP"])
async def test_mo_variants_opt_out(mem_store: Store, autojump_clock: Clock, text: str) -> None:
    phone = "+33612345678" if text == "Arrêt" else LA
    await put_recipients(mem_store, [phone])
    async with rig(mem_store) as r:
        await r.server.inject_mo(phone[1:], "12345", text)
        await r.wait_until(lambda: r.server.stats.mo_acked >= 1)
        stored = mem_store.get_recipient(phone)
        assert stored is not None and stored.consent == "unsubscribed"


async def test_multipart_ucs2_mo_reassembled_out_of_order(mem_store: Store,
                                                          autojump_clock: Clock) -> None:
    await put_recipients(mem_store, [FR1])
    text = "Arrêtez ces messages s'il vous plaît, merci beaucoup. 😀 " * 3
    body = text.encode("utf-16-be")
    chunks = [body[i:i + 134] for i in range(0, len(body), 134)]
    assert len(chunks) == 3
    frags = [deliver(FR1[1:], bytes((5, 0, 3, 0x42, 3, i + 1)) + c, esm=0x40, dc=8)
             for i, c in enumerate(chunks)]
    async with rig(mem_store) as r:
        await r.inbound.process([frags[2]])  # type: ignore[list-item]
        await r.inbound.process([frags[0]])  # type: ignore[list-item]
        assert not any(f.acked for f in frags)  # acked only once the whole MO is committed
        assert r.inbound.statistics().mo_fragments_pending == 2
        await r.inbound.process([frags[1]])  # type: ignore[list-item]
        assert all(f.acks == 1 for f in frags)
        [ev] = [e for e in mem_store.events_after(0, 100) if e.type == "mo"]
        assert text.strip() in ev.data.decode()


async def test_sar_mo_via_sim_out_of_order(mem_store: Store, autojump_clock: Clock) -> None:
    text = "help me please with my order 12345 today " * 2
    body = text.encode("utf-16-be")
    chunks = [body[i:i + 60] for i in range(0, len(body), 60)]
    async with rig(mem_store) as r:
        for i in reversed(range(len(chunks))):
            await r.server.inject_mo(FR1[1:], "ACME", chunks[i], data_coding=8,
                                     tlvs=P.sar_tlvs(7, len(chunks), i + 1))
        await r.wait_until(lambda: r.server.stats.mo_acked == len(chunks))
        [ev] = [e for e in mem_store.events_after(0, 100) if e.type == "mo"]
        assert text in ev.data.decode()


async def test_incomplete_mo_straggler_acked_after_hold_then_expires(
        mem_store: Store, autojump_clock: Clock) -> None:
    async with rig(mem_store) as r:
        await r.server.inject_mo(FR1[1:], "ACME", b"STO", data_coding=0,
                                 tlvs=P.sar_tlvs(9, 2, 1))
        await trio.sleep(3)
        assert r.server.stats.mo_acked == 0  # held while its sibling may still come
        assert r.inbound.statistics().mo_fragments_pending == 1
        await r.wait_until(lambda: r.server.stats.mo_acked == 1, limit=30)
        assert r.server.stats.mo_sent <= 2  # no re-send storm
        await trio.sleep(700)  # reassembly TTL
        [ev] = [e for e in mem_store.events_after(0, 100) if e.type == "mo"]
        assert b"incomplete" in ev.data and b"STO" in ev.data
        stored = mem_store.get_recipient(FR1)
        assert stored is None or stored.consent != "unsubscribed"


async def test_commit_failure_leaves_deliveries_unacked(mem_store: Store,
                                                        autojump_clock: Clock) -> None:
    await put_recipients(mem_store, [LA])
    async with rig(mem_store, run_dispatcher=False) as r:
        x = deliver(LA[1:], b"STOP")
        mem_store.fail_commits(StoreUnavailableError("gone"))  # type: ignore[attr-defined]
        await r.inbound.process([x])  # type: ignore[list-item]
        assert not x.acked
        assert r.inbound.statistics().commit_failures == 1
        mem_store.fail_commits(None)  # type: ignore[attr-defined]
        # the cache forgot the uncommitted opt-out; the re-sent MO applies it once
        rc = r.recipients.get(LA)
        assert rc is not None and rc.consent == "subscribed"
        await r.inbound.process([x])  # type: ignore[list-item]
        assert x.acked
        stored = mem_store.get_recipient(LA)
        assert stored is not None and stored.consent == "unsubscribed"
        assert mem_store.outbox_depth() == 1  # one confirmation queued
