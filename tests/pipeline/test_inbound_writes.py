"""InboundProcessor: how a batch of receipts writes its message records.

The receipts are applied on the trio thread to the record as read there; the write txn
puts the result as it is when the stored bytes are still those, else applies the same
receipts again to the stored record (``_WriteReceipts``). These tests feed receipts
directly to ``process`` against a store holding submitted messages (no SMSC), and make
the record change between the read and the commit.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import msgspec
import pytest

from gateway.config import GatewayConfig
from gateway.pipeline.events import StatusData, encode_data
from gateway.pipeline.inbound import InboundProcessor
from gateway.pipeline.recipients import RecipientCache
from gateway.store import (
    CommitResult,
    HistoryEntry,
    MessageRecord,
    PartRecord,
    Store,
    WriteBatch,
    open_memory_store,
    open_store,
)

from .conftest import NOW
from .test_dispatch_harness import FakeInbound
from .test_inbound import receipt_pdu

FR1 = "+33612345601"


def _record(mid: str, n_parts: int, metadata: bytes = b"") -> MessageRecord:
    parts = tuple(PartRecord(index=i, carrier="c1", carrier_msg_id=f"A{mid}{i}", submit_status=0,
                             submitted_at=NOW + 1, status="accepted") for i in range(n_parts))
    return MessageRecord(id=mid, created_at=NOW, to=FR1, text="hello", kind="campaign",
                         campaign_id="camp", metadata=metadata, status="submitted",
                         encoding="gsm7",
                         segments=n_parts, carrier="c1", route="+", parts=parts,
                         history=(HistoryEntry(NOW, "queued"), HistoryEntry(NOW + 1, "submitted")),
                         updated_at=NOW + 1)


async def _submitted(store: Store, mid: str, n_parts: int,
                     metadata: bytes = b"") -> MessageRecord:
    rec = _record(mid, n_parts, metadata)
    batch = WriteBatch()
    batch.put_message(rec)
    for p in rec.parts:
        assert p.carrier_msg_id is not None
        batch.put_carrier_id("c1", p.carrier_msg_id, mid, p.index, NOW + 1)
    await store.commit(batch)
    return rec


class _Racing:
    """The store, but before each commit another writer changes the record first."""

    def __init__(self, store: Store, change: Callable[[WriteBatch], None]) -> None:
        self._store = store
        self._change = change

    async def commit(self, batch: WriteBatch) -> CommitResult:
        other = WriteBatch()
        self._change(other)
        await self._store.commit(other)
        return await self._store.commit(batch)

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)


def _processor(store: Store, config: GatewayConfig) -> InboundProcessor:
    return InboundProcessor(store, config, RecipientCache(store, policy=config.rules), None, None,
                            clock=lambda: NOW + 5)


def _events(store: Store, mid: str) -> list[tuple[str, str | None]]:
    return [(e.type, e.status) for e in store.events_after(0, 100) if e.message_id == mid]


async def test_two_parts_in_one_batch(mem_store: Store, config: GatewayConfig) -> None:
    await _submitted(mem_store, "M1", 2)
    a = FakeInbound(receipt_pdu(FR1[1:], "AM10", "DELIVRD"))
    b = FakeInbound(receipt_pdu(FR1[1:], "AM11", "UNDELIV", "001"))
    proc = _processor(mem_store, config)
    await proc.process([a, b])  # type: ignore[list-item]
    rec = mem_store.get_message("M1")
    assert rec is not None and a.acked and b.acked
    assert rec.status == "partially_delivered"
    assert [p.status for p in rec.parts] == ["delivered", "undelivered"]
    assert [p.receipt_stat for p in rec.parts] == ["DELIVRD", "UNDELIV"]
    assert rec.parts[1].receipt_err == "001" and rec.updated_at == NOW + 5
    assert [h.status for h in rec.history] == ["queued", "submitted", "partially_delivered"]
    assert rec.history[-1].detail == "part 2: UNDELIV err 001"
    assert _events(mem_store, "M1") == [("receipt", "delivered"), ("receipt", "undelivered"),
                                        ("message.status", "partially_delivered")]


async def test_same_receipt_twice_in_one_batch_is_one_change(mem_store: Store,
                                                             config: GatewayConfig) -> None:
    await _submitted(mem_store, "M1", 1)
    a = FakeInbound(receipt_pdu(FR1[1:], "AM10", "DELIVRD"))
    b = FakeInbound(receipt_pdu(FR1[1:], "AM10", "DELIVRD"))
    proc = _processor(mem_store, config)
    await proc.process([a, b])  # type: ignore[list-item]
    rec = mem_store.get_message("M1")
    assert rec is not None and rec.status == "delivered" and a.acked and b.acked
    assert proc.statistics().duplicates == 1
    assert _events(mem_store, "M1") == [("receipt", "delivered"), ("message.status", "delivered")]


@pytest.fixture(params=["memory", "lmdb"])
async def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "memory":
        async with open_memory_store() as mem:
            yield mem
    else:
        async with open_store(tmp_path / "db", durability="os") as store:
            yield store


async def test_record_changed_after_the_read_gets_both_changes(any_store: Store,
                                                               config: GatewayConfig) -> None:
    store = any_store
    await _submitted(store, "M1", 2)

    def other_part_delivered(batch: WriteBatch) -> None:
        # e.g. another batch's receipt for part 2, committed between our read and commit
        def fn(old: MessageRecord | None) -> MessageRecord | None:
            assert old is not None
            parts = (old.parts[0], msgspec.structs.replace(old.parts[1], status="delivered",
                                                          receipt_stat="DELIVRD"))
            return msgspec.structs.replace(old, parts=parts, updated_at=NOW + 4)
        batch.update_message("M1", fn)

    proc = _processor(_Racing(store, other_part_delivered), config)  # type: ignore[arg-type]
    a = FakeInbound(receipt_pdu(FR1[1:], "AM10", "DELIVRD"))
    await proc.process([a])  # type: ignore[list-item]
    rec = store.get_message("M1")
    assert rec is not None and a.acked
    # part 2 from the other writer is kept; our receipt applied to the stored record
    assert [p.status for p in rec.parts] == ["delivered", "delivered"]
    assert rec.status == "delivered" and rec.updated_at == NOW + 5
    assert rec.history[-1] == HistoryEntry(NOW + 5, "delivered", None,
                                         "part 1: DELIVRD err 000")


async def test_record_deleted_after_the_read_stays_deleted(mem_store: Store,
                                                           config: GatewayConfig) -> None:
    await _submitted(mem_store, "M1", 1)
    proc = _processor(_Racing(mem_store, lambda b: b.delete_message("M1")),  # type: ignore[arg-type]
                      config)
    a = FakeInbound(receipt_pdu(FR1[1:], "AM10", "DELIVRD"))
    await proc.process([a])  # type: ignore[list-item]
    assert a.acked and mem_store.get_message("M1") is None


async def test_unchanged_record_is_written_as_decided(lmdb_store: Store,
                                                      config: GatewayConfig) -> None:
    await _submitted(lmdb_store, "M1", 1)
    proc = _processor(lmdb_store, config)
    await proc.process([FakeInbound(receipt_pdu(FR1[1:], "AM10", "UNDELIV", "001"))])  # type: ignore[list-item]
    rec = lmdb_store.get_message("M1")
    assert rec is not None and rec.status == "undelivered"
    assert rec.parts[0].error_class is not None and rec.parts[0].done_at is not None
    assert _events(lmdb_store, "M1") == [("receipt", "undelivered"),
                                         ("message.status", "undelivered")]


async def test_status_payloads(mem_store: Store, config: GatewayConfig) -> None:
    await _submitted(mem_store, "M1", 1)
    await _submitted(mem_store, "M2", 1, metadata=b'{"order":7}')
    await _submitted(mem_store, "M3", 1)
    proc = _processor(mem_store, config)
    await proc.process([FakeInbound(receipt_pdu(FR1[1:], f"AM{i}0", "DELIVRD"))  # type: ignore[misc]
                        for i in (1, 2, 3)])
    plain = encode_data(StatusData(detail="part 1: DELIVRD", kind="campaign", campaign_id="camp",
                                   carrier="c1", part=1))
    with_meta = encode_data(StatusData(detail="part 1: DELIVRD", kind="campaign",
                                       campaign_id="camp", carrier="c1", part=1,
                                       metadata=msgspec.Raw(b'{"order":7}')))
    got = {e.message_id: e.data for e in mem_store.events_after(0, 100)
           if e.type == "message.status"}
    assert got == {"M1": plain, "M2": with_meta, "M3": plain}  # M3: M1's, remembered
    assert b'"metadata":{"order":7}' in with_meta
