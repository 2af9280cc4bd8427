"""Review of session 5 (3ae8d41, 7a5beea): the event number carried from group to group
and one-batch groups without a nested transaction, under a MapFull retry (the group is
aborted after some of its events were numbered, the map grows and the group runs again),
against the memory store, and the event notification skipped when nobody waits (waiters
arming and re-arming while commits come from trio and from a plain thread)."""

from __future__ import annotations

import threading
from pathlib import Path

import msgspec
import trio

from gateway.store import LmdbStore, MemoryStore, WriteBatch, open_store
from gateway.store.kv import Db

from .store.helpers import event, message

BIG = "x" * 450_000  # three of them overflow the 1 MiB map at once


def _batch(tag: str, n_events: int, big: bool) -> WriteBatch:
    b = WriteBatch()
    for _ in range(n_events):
        b.append_event(event(mid=tag))
    if big:
        b.put_message(msgspec.structs.replace(message(tag), text=BIG))
    return b


def test_map_full_retries_keep_event_numbers_contiguous(tmp_path: Path) -> None:
    store = LmdbStore.open(tmp_path / "s", durability="os", map_size=1 << 20,
                           max_map_size=1 << 28)
    try:
        tries = 0
        inner = store._txn_group

        def counting(batches: list[WriteBatch]) -> list[object]:
            nonlocal tries
            tries += 1
            return inner(batches)  # type: ignore[return-value]

        store._txn_group = counting  # type: ignore[method-assign,assignment]
        want: list[tuple[int, str]] = []
        seq = 0
        for g in range(12):
            # groups of 1 (no nested txn) and of 3 batches, the big values last so the
            # MapFull comes after events were numbered
            sizes = [1] if g % 2 else [2, 1, 3]
            batches = [_batch(f"g{g}b{i}", n, big=True) for i, n in enumerate(sizes)]
            outcomes = store._run_group(batches)
            for i, (o, n) in enumerate(zip(outcomes, sizes, strict=True)):
                assert not isinstance(o, Exception), o
                assert o.event_seqs == tuple(range(seq + 1, seq + n + 1)), (g, i, o)
                want += [(s, f"g{g}b{i}") for s in o.event_seqs]
                seq += n
            assert store._seq == store.last_event_seq() == seq
        assert tries > 12  # some groups hit MapFull and ran again
        got = [(e.seq, e.message_id) for e in store.events_after(0, 10_000)]
        assert got == want
    finally:
        store.close()


def test_memory_store_failed_batch_then_next_numbers_follow() -> None:
    # The memory store commits one batch per group: the one-batch path with abort.
    store = MemoryStore()
    ok = _batch("a", 2, big=False)
    assert store.commit_sync(ok).event_seqs == (1, 2)
    bad = _batch("b", 3, big=False)

    def boom(old: object) -> object:
        raise ValueError("bad update")

    bad.update_message("a", boom)  # type: ignore[arg-type]
    try:
        store.commit_sync(bad)
    except ValueError:
        pass
    else:  # pragma: no cover
        raise AssertionError("the batch should fail")
    assert store.last_event_seq() == 2
    assert store.read(lambda tx: tx.get(Db.MESSAGES, b"b")) is None
    nxt = _batch("c", 1, big=False)
    assert store.commit_sync(nxt).event_seqs == (3,)
    assert [(e.seq, e.message_id) for e in store.events_after(0, 10)] == [
        (1, "a"), (2, "a"), (3, "c")]


async def test_event_waiters_all_wake_with_commits_from_trio_and_a_thread(
        tmp_path: Path) -> None:
    # Waiters arm and re-arm while groups commit from a plain thread (no trio waiter in
    # the group: the notification goes alone) and from trio (folded into the wake-up);
    # none may miss the event it waits for (the writer skips the notification when
    # ``_events_changed`` is None).
    n = 200
    async with open_store(tmp_path / "s", durability="os") as store:
        woke: list[int] = []

        async def waiter(k: int) -> None:
            await store.wait_for_events(k - 1)
            assert store.last_event_seq() >= k
            woke.append(k)

        def from_thread() -> None:
            for _ in range(n // 2):
                store.commit_sync(_batch("t", 1, big=False), timeout=10)

        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                for k in range(1, n + 1):
                    nursery.start_soon(waiter, k)
                t = threading.Thread(target=from_thread)
                t.start()
                for _ in range(n // 2):
                    await store.commit(_batch("r", 1, big=False))
                await trio.to_thread.run_sync(t.join)
        assert sorted(woke) == list(range(1, n + 1))
        assert store.last_event_seq() == n


async def test_a_re_arming_waiter_follows_every_commit_of_a_thread(tmp_path: Path) -> None:
    # The feed's pattern: read the last number, wait for a newer one, again. Commits come
    # one by one from a plain thread, so each notification is a run_sync_soon of its own
    # and the waiter re-arms between them.
    n = 300
    async with open_store(tmp_path / "s", durability="os") as store:
        def from_thread() -> None:
            for _ in range(n):
                store.commit_sync(_batch("t", 1, big=False), timeout=10)

        seen = 0
        rounds = 0
        with trio.fail_after(20):
            t = threading.Thread(target=from_thread)
            t.start()
            while seen < n:
                await store.wait_for_events(seen)
                seen = store.last_event_seq()
                rounds += 1
            await trio.to_thread.run_sync(t.join)
        assert seen == n and rounds >= 1
