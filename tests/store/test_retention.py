"""gateway.store.retention on both stores: bounded scans and the in-transaction prune ops
(re-checked inside the write transaction, counted, all or nothing with their batch)."""

from __future__ import annotations

from functools import partial

import pytest
import trio

from gateway.store import (
    IdempotencyRecord,
    MessageRecord,
    PartRecord,
    Store,
    WriteBatch,
)
from gateway.store.keys import carrier_key, error_key, to_ms
from gateway.store.kv import Db
from gateway.store.logic import IDEMPOTENCY
from gateway.store.retention import (
    PruneCarrierIds,
    PruneErrors,
    PruneIdempotency,
    PruneMessages,
    carrier_id_chunk,
    error_chunk,
    event_head,
    message_chunk,
    outbox_chunk,
    record_chunk,
)

from .helpers import T0, error, event, message, no_retention_pauses

TIMEOUT = 10


async def commit(store: Store, build: object) -> None:
    batch = WriteBatch()
    build(batch)  # type: ignore[operator]
    await store.commit(batch)


async def run(store: Store, fn: object) -> None:
    batch = WriteBatch()
    batch.run_in_txn(fn)  # type: ignore[arg-type]
    await store.commit(batch)


# scans ---------------------------------------------------------------------------------


async def test_message_and_outbox_chunks_page_in_key_order(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        def build(b: WriteBatch) -> None:
            for i in (3, 1, 5, 2, 4):
                b.put_message(message(f"m{i}"))
                b.outbox_add(T0 + i, f"m{i}")
        await commit(store, build)
        seen: list[str] = []
        pos: bytes | None = b""
        while pos is not None:
            recs, pos = store.read(partial(message_chunk, start=pos, limit=2))
            assert len(recs) <= 2
            seen += [r.id for r in recs]
        assert seen == ["m1", "m2", "m3", "m4", "m5"]
        ids, nxt = store.read(partial(outbox_chunk, start=b"", limit=3))
        assert ids == ["m1", "m2", "m3"] and nxt is not None
        ids, nxt = store.read(partial(outbox_chunk, start=nxt, limit=3))
        assert ids == ["m4", "m5"] and nxt is None


async def test_event_head(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        await commit(store, lambda b: [b.append_event(event(at=T0 + i)) for i in range(5)])
        await commit(store, lambda b: b.delete_events_through(2))
        assert store.read(partial(event_head, limit=2)) == [(3, T0 + 2), (4, T0 + 3)]
        assert store.read(partial(event_head, limit=10))[-1] == (5, T0 + 4)


async def test_carrier_id_chunk_reports_old_ids_and_whether_their_message_exists(
        store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        def build(b: WriteBatch) -> None:
            b.put_message(message("m1"))
            b.put_carrier_id("c1", "A", "m1", 0, T0 - 100)
            b.put_carrier_id("c1", "B", "gone", 0, T0 - 100)
            b.put_carrier_id("c1", "C", "gone", 0, T0 + 100)  # young: not reported
        await commit(store, build)
        found, n, nxt = store.read(partial(carrier_id_chunk, start=b"", limit=10,
                                           older_than=T0))
        assert n == 3 and nxt is None
        assert [(k, r.message_id, exists) for k, r, exists in found] == [
            (carrier_key("c1", "A"), "m1", True), (carrier_key("c1", "B"), "gone", False)]
        found, n, nxt = store.read(partial(carrier_id_chunk, start=b"", limit=2,
                                           older_than=T0))
        assert n == 2 and nxt == carrier_key("c1", "C")


async def test_error_chunk_never_splits_a_phone(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        def build(b: WriteBatch) -> None:
            for phone, n in (("+1", 3), ("+2", 1), ("+3", 2)):
                for i in range(n):
                    b.add_error(phone, error(T0 + i))
        await commit(store, build)
        phones, pos = store.read(partial(error_chunk, start=b"", max_entries=2))
        assert [(p, len(es)) for p, es in phones] == [(b"+1\0", 3)]
        assert [k for k, _ in phones[0][1]] == [error_key("+1", to_ms(T0 + i)) for i in range(3)]
        assert pos is not None
        phones, pos = store.read(partial(error_chunk, start=pos, max_entries=2))
        assert [(p, len(es)) for p, es in phones] == [(b"+2\0", 1), (b"+3\0", 2)]
        phones, pos = store.read(partial(error_chunk, start=pos, max_entries=2))
        assert phones == [] and pos is None


async def test_idempotency_chunk(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        await commit(store, lambda b: [b.put_idempotency(
            k, IdempotencyRecord(message_id="m", at=T0)) for k in ("a", "b", "c")])
        got, nxt = store.read(partial(record_chunk, db=Db.IDEMPOTENCY, decoder=IDEMPOTENCY,
                                      start=b"", limit=2))
        assert [k for k, _ in got] == [b"a", b"b"] and nxt == b"c"


# prune ops ------------------------------------------------------------------------------


def _done(mid: str, cid: str, key: str | None = None) -> MessageRecord:
    return message(mid, status="delivered", idempotency_key=key,
                   parts=(PartRecord(0, carrier="c1", carrier_msg_id=cid, status="delivered"),))


def _ids_of(rec: MessageRecord) -> list[tuple[str, str]]:
    return [(p.carrier, p.carrier_msg_id.upper())
            for p in rec.parts if p.carrier and p.carrier_msg_id]


async def test_prune_messages_takes_their_carrier_ids_and_claims_and_rechecks(
        store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        def build(b: WriteBatch) -> None:
            b.put_message(_done("m1", "ab", "k1"))
            b.put_carrier_id("c1", "AB", "m1", 0, T0)
            b.put_idempotency("k1", IdempotencyRecord(message_id="m1", at=T0))
            # m2's carrier id was reused by the carrier for m9; its key claimed again by m9
            b.put_message(_done("m2", "cd", "k2"))
            b.put_carrier_id("c1", "CD", "m9", 0, T0)
            b.put_idempotency("k2", IdempotencyRecord(message_id="m9", at=T0))
            # m3 changed since it was read: the re-check keeps it
            b.put_message(message("m3", status="queued"))
        await commit(store, build)
        op = PruneMessages(["m1", "m2", "m3", "absent"], lambda r: r.status == "delivered",
                           _ids_of)
        await run(store, op)
        assert (op.messages, op.carrier_ids, op.claims) == (2, 1, 1)
        assert store.get_message("m1") is None and store.get_message("m2") is None
        assert store.lookup_carrier_id("c1", "AB") is None
        assert store.get_idempotency("k1") is None
        assert store.lookup_carrier_id("c1", "CD") is not None  # another message's
        assert store.get_idempotency("k2") is not None
        assert store.get_message("m3") is not None


async def test_prune_ops_are_all_or_nothing_with_their_batch(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        await commit(store, lambda b: b.put_message(_done("m1", "ab")))
        batch = WriteBatch()
        batch.run_in_txn(PruneMessages(["m1"], lambda r: True, _ids_of))

        def boom(tx: object) -> tuple[()]:
            raise RuntimeError("later op fails")
        batch.run_in_txn(boom)
        with pytest.raises(RuntimeError):
            await store.commit(batch)
        assert store.get_message("m1") is not None


async def test_prune_carrier_ids_rechecks_age_and_message(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        def build(b: WriteBatch) -> None:
            b.put_carrier_id("c1", "A", "gone", 0, T0 - 100)
            b.put_carrier_id("c1", "B", "back", 0, T0 - 100)
            b.put_carrier_id("c1", "C", "gone", 0, T0 + 100)
            b.put_message(message("back"))  # came back since the read
        await commit(store, build)
        op = PruneCarrierIds([carrier_key("c1", x) for x in "ABCD"], T0)
        await run(store, op)
        assert op.deleted == 1
        assert store.lookup_carrier_id("c1", "A") is None
        assert store.lookup_carrier_id("c1", "B") is not None
        assert store.lookup_carrier_id("c1", "C") is not None


async def test_prune_idempotency_and_errors(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        def build(b: WriteBatch) -> None:
            b.put_idempotency("old", IdempotencyRecord(message_id="m", at=T0 - 100))
            b.put_idempotency("new", IdempotencyRecord(message_id="m", at=T0 + 100))
            b.add_error("+1", error(T0 - 100))
            b.add_error("+1", error(T0))
        await commit(store, build)
        op = PruneIdempotency([b"old", b"new", b"absent"], T0)
        await run(store, op)
        assert op.deleted == 1
        assert store.get_idempotency("old") is None and store.get_idempotency("new") is not None
        op2 = PruneErrors([error_key("+1", to_ms(T0 - 100)), error_key("+1", 1)])
        await run(store, op2)
        assert op2.deleted == 1
        assert [e.at for e in store.get_errors("+1")] == [T0]


async def test_ops_count_again_when_run_again(store: Store) -> None:
    """A run_in_txn function may run twice (a group retried after the map grew)."""
    with trio.fail_after(TIMEOUT):
        await commit(store, lambda b: b.add_error("+1", error(T0)))
        op = PruneErrors([error_key("+1", to_ms(T0))])
        await run(store, op)
        await run(store, op)
        assert op.deleted == 0


@pytest.mark.slow  # LMDB: a handful of fsynced commits
async def test_a_whole_sweep_prunes_the_same_on_both_stores(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.retention import Retention, RetentionSettings
    from tests.test_retention import KEEP_PHONE, NOW, PHONE, R30, old_id, seed

    # (no autojump clock: it would jump while the LMDB writer thread works)
    no_retention_pauses(monkeypatch)
    with trio.fail_after(TIMEOUT):
        await seed(store, NOW)  # type: ignore[arg-type]
        retention = Retention(store, RetentionSettings(messages_s=R30, webhooks=("crm",)),
                              clock=lambda: NOW)
        await retention.sweep()
        assert retention.stats.pruned == {"messages": 1, "carrier_ids": 2, "idempotency": 1,
                                          "events": 3, "errors": 2, "links": 0, "clicks": 0,
                                          "message_clicks": 0, "optin_challenges": 0,
                                          "optin_starts": 0, "unknown_parts": 0}
        assert [store.get_message(old_id(i)) is None for i in (1, 2, 3)] == [True, False, False]
        assert [e.seq for e in store.events_after(0, 10)] == [4, 5, 6]
        assert store.get_recipient(KEEP_PHONE) is not None
        assert len(store.get_errors(PHONE)) == 2
        await retention.sweep()  # nothing left to do
        assert retention.stats.pruned["messages"] == 1 and retention.stats.sweeps == 2
