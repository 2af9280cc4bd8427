"""The ``unknown_parts`` index (gateway.store.unknown_parts) on both stores: its ops and
scans, a store made before it, and its bounds (with its message; after the receipt window)."""

from __future__ import annotations

from pathlib import Path

import lmdb
import pytest
import trio

from gateway.retention import DAY, Retention, RetentionSettings, carrier_ids_of, unknown_parts_of
from gateway.store import PartRecord, Store, WriteBatch, open_store
from gateway.store.kv import Db
from gateway.store.records import UnknownPart
from gateway.store.retention import PruneMessages
from gateway.store.unknown_parts import (
    PruneUnknownParts,
    dest_of,
    entries_for,
    unknown_part_chunk,
)

from .conftest import Harness
from .helpers import T0, message, no_retention_pauses

TIMEOUT = 10
TO = "+15551230000"
WINDOW = 72 * 3600.0


def unknown(mid: str, *, carrier: str = "c1", parts: int = 1, at: float = T0) -> object:
    return message(mid, at=at, to=TO, status="unknown", updated_at=at, parts=tuple(
        PartRecord(index=i, carrier=carrier, status="unknown") for i in range(parts)))


def entry(mid: str, part: int = 0, *, at: float = T0) -> UnknownPart:
    return UnknownPart(mid, part, at - 1, at, at)


def all_entries(store: Store) -> list[tuple[str, int]]:
    return store.read(lambda tx: [(e.message_id, e.part)
                                  for _, e in unknown_part_chunk(tx, b"", 1000)[0]])


async def test_put_scan_delete(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        b = WriteBatch()
        b.put_unknown_part("c1", dest_of(TO), entry("m2", at=T0 + 5))
        b.put_unknown_part("c1", dest_of(TO), entry("m1", 1))
        b.put_unknown_part("c1", dest_of(TO), entry("m1", 0))
        b.put_unknown_part("c2", dest_of(TO), entry("m3"))
        b.put_unknown_part("c1", "15551230001", entry("m4"))
        await store.commit(b)
        got = store.read(lambda tx: [(e.message_id, e.part)
                                     for _, e in entries_for(tx, "c1", "15551230000")])
        assert got == [("m1", 0), ("m1", 1), ("m2", 0)]  # oldest first, then by part
        assert store.read(lambda tx: entries_for(tx, "c9", "1")) == []
        b = WriteBatch()
        b.delete_unknown_part("c1", dest_of(TO), entry("m1", 1))
        await store.commit(b)
        assert sorted(all_entries(store)) == [("m1", 0), ("m2", 0), ("m3", 0), ("m4", 0)]


def test_keys_refuse_a_nul() -> None:
    with pytest.raises(ValueError, match="destination"):
        WriteBatch().put_unknown_part("c1", "1\0", entry("m1"))


async def test_a_store_made_before_the_index_opens_and_works(tmp_path: Path) -> None:
    """A store whose environment has no ``unknown_parts`` database (written by a build
    before it): it opens, its data is intact, and the index works."""
    path = tmp_path / "db"
    with trio.fail_after(TIMEOUT):
        async with open_store(path, durability="os") as store:
            b = WriteBatch()
            b.put_message(unknown("m1"))  # type: ignore[arg-type]
            await store.commit(b)
        env = lmdb.open(str(path), max_dbs=32)
        with env.begin(write=True) as txn:
            txn.drop(env.open_db(Db.UNKNOWN_PARTS.value, txn=txn), delete=True)
        with env.begin() as txn:
            names = [k for k, _ in txn.cursor()]
        env.close()
        assert Db.UNKNOWN_PARTS.value not in names and Db.MESSAGES.value in names
        async with open_store(path, durability="os") as store:
            assert store.get_message("m1") is not None
            assert all_entries(store) == []
            b = WriteBatch()
            b.put_unknown_part("c1", dest_of(TO), entry("m1"))
            await store.commit(b)
            assert all_entries(store) == [("m1", 0)]


async def test_pruned_with_its_message(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        b = WriteBatch()
        b.put_message(unknown("m1", parts=2))  # type: ignore[arg-type]
        b.put_message(unknown("m2"))  # type: ignore[arg-type]
        for e in (entry("m1", 0), entry("m1", 1), entry("m2")):
            b.put_unknown_part("c1", dest_of(TO), e)
        await store.commit(b)
        op = PruneMessages(["m1"], lambda rec: True, carrier_ids_of, unknown_parts_of)
        b = WriteBatch()
        b.run_in_txn(op)
        await store.commit(b)
        assert (op.messages, op.unknown_parts) == (1, 2)
        assert all_entries(store) == [("m2", 0)]


async def test_prune_op_rechecks_the_age(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        b = WriteBatch()
        b.put_unknown_part("c1", dest_of(TO), entry("old", at=T0))
        b.put_unknown_part("c1", dest_of(TO), entry("young", at=T0 + 10))
        await store.commit(b)
        keys = store.read(lambda tx: [k for k, _ in unknown_part_chunk(tx, b"", 10)[0]])
        op = PruneUnknownParts(keys, older_than=T0 + 5)
        b = WriteBatch()
        b.run_in_txn(op)
        await store.commit(b)
        assert op.deleted == 1 and all_entries(store) == [("young", 0)]


async def test_chunks_page_through_the_index(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        b = WriteBatch()
        for i in range(5):
            b.put_unknown_part("c1", f"1555000000{i}", entry(f"m{i}"))
        await store.commit(b)
        first, pos = store.read(lambda tx: unknown_part_chunk(tx, b"", 3))
        assert [e.message_id for _, e in first] == ["m0", "m1", "m2"] and pos is not None
        rest, end = store.read(lambda tx: unknown_part_chunk(tx, pos, 3))
        assert [e.message_id for _, e in rest] == ["m3", "m4"] and end is None


async def test_the_sweep_prunes_entries_past_the_receipt_window(
        harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    no_retention_pauses(monkeypatch)
    now = T0 + 10 * DAY
    with trio.fail_after(TIMEOUT):
        async with harness.open() as store:
            b = WriteBatch()
            b.put_unknown_part("c1", dest_of(TO), entry("old", at=now - WINDOW - 1))
            b.put_unknown_part("c1", dest_of(TO), entry("young", at=now - WINDOW + 60))
            await store.commit(b)
            retention = Retention(store, RetentionSettings(receipt_window_s=WINDOW),
                                  clock=lambda: now)
            sw = await retention.sweep()
            assert sw.pruned["unknown_parts"] == 1
            assert all_entries(store) == [("young", 0)]
