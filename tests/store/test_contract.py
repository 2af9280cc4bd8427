"""The store contract: every test runs against LmdbStore and MemoryStore (conftest)."""

from __future__ import annotations

import msgspec
import pytest
import trio
import trio.testing

from gateway.store import (
    Event,
    HistoryEntry,
    IdempotencyConflictError,
    IdempotencyRecord,
    MessageRecord,
    OutboxEntry,
    PartRecord,
    RecipientRecord,
    Store,
    StoreClosedError,
    WriteBatch,
)
from gateway.store.keys import event_key
from gateway.store.kv import Db, KvTxn

from .conftest import Harness
from .helpers import T0, error, event, message, recipient

TIMEOUT = 10


async def commit(store: Store, build: object) -> None:
    batch = WriteBatch()
    build(batch)  # type: ignore[operator]
    await store.commit(batch)


# messages -------------------------------------------------------------------------------


async def test_message_roundtrip_and_missing(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        m = message(
            "m1",
            metadata=b'{"order": 7}',
            bypass=("quiet_hours",),
            parts=(PartRecord(0, carrier="c1", carrier_msg_id="abc"),),
            history=(HistoryEntry(T0, "queued"),),
            idempotency_key="k1",
        )
        await commit(store, lambda b: b.put_message(m))
        assert store.get_message("m1") == m
        assert store.get_message("nope") is None
        assert store.get_messages(["m1", "nope"]) == {"m1": m}


async def test_message_replace_update_delete(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        await commit(store, lambda b: b.put_message(message("m1")))

        def submitted(old: MessageRecord | None) -> MessageRecord | None:
            assert old is not None
            return msgspec.structs.replace(old, status="submitted", attempts=old.attempts + 1)

        await commit(store, lambda b: b.update_message("m1", submitted))
        got = store.get_message("m1")
        assert got is not None and (got.status, got.attempts) == ("submitted", 1)
        # None from the function = leave unchanged; absent records arrive as None
        await commit(store, lambda b: b.update_message("m1", lambda old: None))
        seen: list[MessageRecord | None] = []
        await commit(store, lambda b: b.update_message("ghost", seen.append))
        assert seen == [None] and store.get_message("ghost") is None
        await commit(store, lambda b: b.delete_message("m1"))
        assert store.get_message("m1") is None


async def test_update_returning_another_key_fails_the_batch(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        await commit(store, lambda b: b.put_message(message("m1")))
        batch = WriteBatch()
        batch.put_message(message("m2"))
        batch.update_message("m1", lambda old: message("other"))
        with pytest.raises(ValueError, match="another key"):
            await store.commit(batch)
        assert store.get_message("m2") is None and store.get_message("other") is None


class _SubRecord(MessageRecord, frozen=True):
    """A subclass: the writer's fast key check falls back to the general one."""


async def test_update_key_check_by_record_type(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        await commit(store, lambda b: b.put_message(message("m1")))
        await commit(store, lambda b: b.put_recipient(recipient("+15551110009")))
        for build in (
            lambda b: b.update_message("m1", lambda old: recipient("+15551110009")),
            lambda b: b.update_recipient("+15551110009", lambda old: message("m1")),
            lambda b: b.update_recipient("+15551110009", lambda old: recipient("+1555")),
        ):
            with pytest.raises(ValueError, match="another key"):
                await commit(store, build)
        sub = _SubRecord(id="m1", created_at=T0, to="+1555", text="t", kind="campaign")
        await commit(store, lambda b: b.update_message("m1", lambda old: sub))
        assert store.get_message("m1") == MessageRecord(
            id="m1", created_at=T0, to="+1555", text="t", kind="campaign")
        assert store.get_recipient("+15551110009") == recipient("+15551110009")


async def test_event_values_are_the_record_with_its_seq(store: Store) -> None:
    # The stored bytes of an event are those of the Event with the assigned seq: what
    # readers of the feed (and bench/e2e.py's follower) decode.
    with trio.fail_after(TIMEOUT):
        evs = [Event(seq=s, at=T0 + i, type="status", message_id=f"m{i}", phone="+1555",
                     status="queued", data=b'{"a":1}') for i, s in enumerate((0, -5, 7, 2**40))]

        def build(b: WriteBatch) -> None:
            for _ in range(40):  # seqs past 127 and 255: longer msgpack ints
                for ev in evs:
                    b.append_event(ev)

        await commit(store, build)
        for seq in (1, 127, 128, 160):
            raw = store._read(lambda tx, seq=seq: tx.get(Db.EVENTS, event_key(seq)))
            ev = evs[(seq - 1) % 4]
            assert raw == msgspec.msgpack.encode(msgspec.structs.replace(ev, seq=seq))


async def test_batch_is_all_or_nothing_when_an_update_raises(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        def boom(old: MessageRecord | None) -> MessageRecord | None:
            raise RuntimeError("rule bug")

        batch = WriteBatch()
        batch.put_message(message("a"))
        batch.outbox_add(T0, "a")
        batch.append_event(event())
        batch.update_message("a", boom)
        with pytest.raises(RuntimeError, match="rule bug"):
            await store.commit(batch)
        assert store.get_message("a") is None
        assert store.outbox_depth() == 0
        assert store.last_event_seq() == 0


# recipients -----------------------------------------------------------------------------


async def test_recipients(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        r1 = recipient(
            "+15551110001",
            consent="subscribed",
            zones=("America/New_York",),
            flow_marks={"abandoned_cart:t1": T0},
        )
        r2 = recipient("+15551110002", consent="unsubscribed")

        def both(b: WriteBatch) -> None:
            b.put_recipient(r1)
            b.put_recipient(r2)

        await commit(store, both)
        assert store.get_recipient("+15551110001") == r1
        assert store.get_recipients(["+15551110002", "+1999", "+15551110001"]) == {
            "+15551110001": r1,
            "+15551110002": r2,
        }
        await commit(store, lambda b: b.delete_recipient("+15551110002"))
        assert store.get_recipient("+15551110002") is None


async def test_concurrent_updates_lose_nothing(store: Store) -> None:
    phone = "+15551110003"

    def add_send(at: float):  # type: ignore[no-untyped-def]
        def fn(old: RecipientRecord | None) -> RecipientRecord:
            old = old or recipient(phone)
            return msgspec.structs.replace(old, marketing_sends=(*old.marketing_sends, at))

        return fn

    async def one(i: int) -> None:
        await commit(store, lambda b: b.update_recipient(phone, add_send(T0 + i)))

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            for i in range(50):
                nursery.start_soon(one, i)
    got = store.get_recipient(phone)
    assert got is not None
    assert sorted(got.marketing_sends) == [T0 + i for i in range(50)]


# outbox ---------------------------------------------------------------------------------


async def test_outbox_due_order(store: Store) -> None:
    dues = {"late": T0 + 60, "first": T0 - 5, "mid-b": T0 + 0.25, "mid-a": T0 + 0.25, "now": T0}

    def fill(b: WriteBatch) -> None:
        for mid, due in dues.items():
            b.outbox_add(due, mid)

    with trio.fail_after(TIMEOUT):
        await commit(store, fill)
        assert store.outbox_depth() == 5
        assert store.outbox_oldest() == OutboxEntry(T0 - 5, "first")
        assert [e.message_id for e in store.due_outbox(T0 + 1, 100)] == [
            "first",
            "now",
            "mid-a",
            "mid-b",
        ]
        assert store.due_outbox(T0 + 1, 2) == [OutboxEntry(T0 - 5, "first"), OutboxEntry(T0, "now")]
        assert store.due_outbox(T0 - 10, 10) == []
        assert store.due_outbox(T0 + 1, 0) == []
        await commit(store, lambda b: b.outbox_remove(T0 - 5, "first"))
        await commit(store, lambda b: b.outbox_remove(T0 - 5, "never-there"))
        assert [e.message_id for e in store.due_outbox(T0 + 3600, 100)] == [
            "now",
            "mid-a",
            "mid-b",
            "late",
        ]


async def test_outbox_due_survives_ms_roundtrip(store: Store) -> None:
    due = T0 + 0.1234567  # sub-ms part is dropped, but remove() with the same float works
    with trio.fail_after(TIMEOUT):
        await commit(store, lambda b: b.outbox_add(due, "m"))
        (entry,) = store.due_outbox(due + 1, 10)
        assert entry.due == pytest.approx(due, abs=0.0005)
        await commit(store, lambda b: b.outbox_remove(entry.due, "m"))
        assert store.outbox_depth() == 0
        assert store.outbox_oldest() is None


# carrier ids ----------------------------------------------------------------------------


async def test_carrier_id_lookup(store: Store) -> None:
    def fill(b: WriteBatch) -> None:
        b.put_carrier_id("c1", "0A1B", "m1", 0, T0)
        b.put_carrier_id("c1", "0A1C", "m1", 1, T0)
        b.put_carrier_id("c2", "0A1B", "m2", 0, T0)

    with trio.fail_after(TIMEOUT):
        await commit(store, fill)
        hit = store.lookup_carrier_id("c1", "0A1C")
        assert hit is not None and (hit.message_id, hit.part) == ("m1", 1)
        other = store.lookup_carrier_id("c2", "0A1B")
        assert other is not None and other.message_id == "m2"
        assert store.lookup_carrier_id("c1", "0a1b") is None
        assert store.lookup_carrier_id("c3", "0A1B") is None
        found = store.lookup_carrier_ids("c1", ["0a1b", "2587", "0A1B"])
        assert found is not None and found[0] == "0A1B" and found[1].message_id == "m1"
        assert store.lookup_carrier_ids("c1", []) is None
        await commit(store, lambda b: b.delete_carrier_id("c1", "0A1B"))
        assert store.lookup_carrier_id("c1", "0A1B") is None


# events ---------------------------------------------------------------------------------


async def test_events_are_numbered_in_commit_order(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        assert store.last_event_seq() == 0
        batch = WriteBatch()
        assert batch.append_event(event("status", mid="a")) == 0
        assert batch.append_event(event("receipt", mid="a")) == 1
        result = await store.commit(batch)
        assert result.event_seqs == (1, 2)
        batch = WriteBatch()
        batch.append_event(event("mo"))
        assert (await store.commit(batch)).event_seqs == (3,)
        assert [(e.seq, e.type) for e in store.events_after(0, 10)] == [
            (1, "status"),
            (2, "receipt"),
            (3, "mo"),
        ]
        assert [e.seq for e in store.events_after(1, 1)] == [2]
        assert store.events_after(3, 10) == []
        got = store.get_event(2)
        assert got is not None and got.message_id == "a"


async def test_events_monotonic_across_reopen_and_prune(harness: Harness) -> None:
    with trio.fail_after(TIMEOUT):
        async with harness.open() as store:
            for _ in range(3):
                await commit(store, lambda b: b.append_event(event()))
            await commit(store, lambda b: b.delete_events_through(3))
            assert store.events_after(0, 10) == []
            assert store.last_event_seq() == 3
        async with harness.open() as store:
            assert store.last_event_seq() == 3
            batch = WriteBatch()
            batch.append_event(event())
            assert (await store.commit(batch)).event_seqs == (4,)


async def test_events_monotonic_when_the_newest_is_pruned_with_it(harness: Harness) -> None:
    # meta holds the counter only when the newest event is gone (logic.apply_group): a
    # batch that appends and prunes through its own events, and a run_in_txn function
    # that deletes the newest event, must still leave the counter where it was.
    def drop_newest(tx: KvTxn) -> list[Event]:
        last = tx.last(Db.EVENTS)
        assert last is not None
        tx.delete(Db.EVENTS, last[0])
        return []

    with trio.fail_after(TIMEOUT):
        async with harness.open() as store:
            batch = WriteBatch()
            batch.append_event(event())
            batch.append_event(event())
            batch.delete_events_through(2)
            assert (await store.commit(batch)).event_seqs == (1, 2)
            assert store.last_event_seq() == 2
            await commit(store, lambda b: b.append_event(event()))
            await commit(store, lambda b: b.run_in_txn(drop_newest))
            assert store.events_after(0, 10) == []
            assert store.last_event_seq() == 3
        async with harness.open() as store:
            assert store.last_event_seq() == 3
            assert (await store.commit(_event_batch())).event_seqs == (4,)
            # pruning below the newest event keeps the newest: the sequence goes on
            await commit(store, lambda b: b.append_event(event()))
            await commit(store, lambda b: b.delete_events_through(4))
            assert [e.seq for e in store.events_after(0, 10)] == [5]
        async with harness.open() as store:
            assert store.last_event_seq() == 5
            assert (await store.commit(_event_batch())).event_seqs == (6,)


def _event_batch() -> WriteBatch:
    batch = WriteBatch()
    batch.append_event(event())
    return batch


async def test_concurrent_event_seqs_are_unique_and_dense(store: Store) -> None:
    seqs: list[int] = []

    async def one() -> None:
        batch = WriteBatch()
        batch.append_event(event())
        batch.append_event(event())
        seqs.extend((await store.commit(batch)).event_seqs)

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            for _ in range(40):
                nursery.start_soon(one)
    assert sorted(seqs) == list(range(1, 81))


async def test_wait_for_events(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        woke = trio.Event()

        async def waiter() -> None:
            await store.wait_for_events(0)
            woke.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(waiter)
            await trio.testing.wait_all_tasks_blocked()
            assert not woke.is_set()
            await commit(store, lambda b: b.put_message(message("no-event")))
            await commit(store, lambda b: b.append_event(event()))
            await woke.wait()


# idempotency ----------------------------------------------------------------------------


async def test_idempotency_claims(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        assert store.get_idempotency("k") is None
        rec = IdempotencyRecord("m1", T0, b"digest")

        def first(b: WriteBatch) -> None:
            b.put_message(message("m1"))
            b.claim_idempotency("k", rec)

        await commit(store, first)
        assert store.get_idempotency("k") == rec
        # the same message claiming again (a retried commit) is fine
        await commit(store, lambda b: b.claim_idempotency("k", IdempotencyRecord("m1", T0 + 1)))
        assert store.get_idempotency("k") == rec

        batch = WriteBatch()
        batch.put_message(message("m2"))
        batch.claim_idempotency("k", IdempotencyRecord("m2", T0))
        with pytest.raises(IdempotencyConflictError) as info:
            await store.commit(batch)
        assert (info.value.key, info.value.existing_message_id) == ("k", "m1")
        assert store.get_message("m2") is None  # the whole batch was dropped

        await commit(store, lambda b: b.put_idempotency("k", IdempotencyRecord("m3", T0)))
        got = store.get_idempotency("k")
        assert got is not None and got.message_id == "m3"
        await commit(store, lambda b: b.delete_idempotency("k"))
        assert store.get_idempotency("k") is None


async def test_racing_claims_one_wins(store: Store) -> None:
    outcomes: list[str] = []

    async def claim(mid: str) -> None:
        batch = WriteBatch()
        batch.put_message(message(mid))
        batch.claim_idempotency("same", IdempotencyRecord(mid, T0))
        try:
            await store.commit(batch)
            outcomes.append("ok")
        except IdempotencyConflictError:
            outcomes.append("conflict")

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            for i in range(10):
                nursery.start_soon(claim, f"m{i}")
    assert sorted(outcomes) == ["conflict"] * 9 + ["ok"]
    winner = store.get_idempotency("same")
    assert winner is not None
    assert len(store.get_messages(f"m{i}" for i in range(10))) == 1


# errors and the error segment -----------------------------------------------------------


async def test_errors_per_phone_and_same_millisecond(store: Store) -> None:
    phone = "+15552220001"

    def fill(b: WriteBatch) -> None:
        b.add_error(phone, error(T0, "temp_unreachable", code="27"))
        b.add_error(phone, error(T0, "temp_network", code="34"))  # same ms: both kept
        b.add_error(phone, error(T0 - 86400, "disconnected"))
        b.add_error("+15552220002", error(T0, "unknown"))
        b.add_error("+1555222000", error(T0, "unknown"))  # a prefix of the first phone

    with trio.fail_after(TIMEOUT):
        await commit(store, fill)
        assert [e.error_class for e in store.get_errors(phone)] == [
            "disconnected",
            "temp_unreachable",
            "temp_network",
        ]
        assert [e.code for e in store.get_errors(phone, since=T0)] == ["27", "34"]
        assert store.get_errors("+1555") == []
        await commit(store, lambda b: b.delete_error(phone, T0 - 86400))
        assert len(store.get_errors(phone)) == 2


async def test_error_segment_in_chunks(store: Store) -> None:
    recent = {f"+1555333{i:04d}": i % 3 + 1 for i in range(25)}  # phone -> n recent errors
    old_only = [f"+1555444{i:04d}" for i in range(7)]

    def fill(b: WriteBatch) -> None:
        for phone, n in recent.items():
            b.add_error(phone, error(T0 - 90 * 86400, "disconnected"))
            for k in range(n):
                b.add_error(phone, error(T0 - k * 3600, "temp_unreachable"))
        for phone in old_only:
            b.add_error(phone, error(T0 - 90 * 86400, "disconnected"))

    with trio.fail_after(TIMEOUT):
        await commit(store, fill)
        since = T0 - 30 * 86400
        chunks = list(store.iter_error_segment(since, chunk=4))
        assert all(chunks) and all(len(c) <= 4 for c in chunks)
        flat = [pe for c in chunks for pe in c]
        assert [pe.phone for pe in flat] == sorted(recent)
        assert {pe.phone: len(pe.entries) for pe in flat} == recent
        assert all(e.at >= since for pe in flat for e in pe.entries)
        everything = [pe for c in store.iter_error_segment(0.0) for pe in c]
        assert len(everything) == len(recent) + len(old_only)


async def test_error_segment_chunks_hold_no_transaction(store: Store) -> None:
    # A write between two chunks is not blocked and later chunks see it.
    def fill(b: WriteBatch) -> None:
        for i in range(6):
            b.add_error(f"+1555666{i:04d}", error(T0))

    with trio.fail_after(TIMEOUT):
        await commit(store, fill)
        it = store.iter_error_segment(0.0, chunk=2)
        first = next(it)
        await commit(store, lambda b: b.add_error("+15556669999", error(T0)))
        rest = [pe.phone for c in it for pe in c]
        assert [pe.phone for pe in first] == ["+15556660000", "+15556660001"]
        assert rest[-1] == "+15556669999" and len(rest) == 5


# batches and lifecycle ------------------------------------------------------------------


def test_keys_that_lmdb_cannot_store_fail_at_the_batch() -> None:
    batch = WriteBatch()
    with pytest.raises(ValueError, match="idempotency key"):
        batch.claim_idempotency("k" * 600, IdempotencyRecord("m", T0))
    with pytest.raises(ValueError, match="message id"):
        batch.put_message(message(""))
    with pytest.raises(ValueError, match="NUL"):
        batch.put_carrier_id("c\0", "x", "m", 0, T0)
    assert len(batch) == 0 and not batch


async def test_empty_batch_commits(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        assert (await store.commit(WriteBatch())).event_seqs == ()


async def test_statistics_shape(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        await commit(store, lambda b: (b.put_message(message("s")), b.append_event(event())))
        stats = store.statistics()
        assert stats.commits == 1 and stats.ops == 2 and stats.events == 1
        assert stats.txns >= 1 and stats.avg_group_size >= 1


async def test_closed_store_refuses_commits(harness: Harness) -> None:
    with trio.fail_after(TIMEOUT):
        async with harness.open() as store:
            pass
        if harness.kind == "memory":
            store.close()  # type: ignore[attr-defined]
        with pytest.raises(StoreClosedError):
            await commit(store, lambda b: b.put_message(message("late")))
        with pytest.raises(StoreClosedError):
            store.get_message("late")
