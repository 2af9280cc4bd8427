"""Review R1 (session 4): retention, the event counter in ``meta`` and the ``pruned`` count
of ``GET /v1/events``. Each test failed before the fix named in its docstring."""

from __future__ import annotations

import trio
import trio.testing

from gateway.api_types import ConsentIn
from gateway.backend import GatewayBackend
from gateway.pipeline import Accepter, RecipientCache
from gateway.store import MemoryStore, WriteBatch, open_memory_store
from tests.pipeline.conftest import LA, NOW, make_config


def _backend(store: MemoryStore) -> GatewayBackend:
    config = make_config()
    rc = RecipientCache(store, policy=config.rules)
    return GatewayBackend(config, store, Accepter(store, config, rc), rc,
                          ready_probe=lambda c: True, clock=lambda: NOW)


async def _six_events(be: GatewayBackend) -> None:
    for _ in range(3):
        await be.consent(ConsentIn(phone=LA, action="subscribe", source="web"))
        await be.consent(ConsentIn(phone=LA, action="unsubscribe", source="web"))


async def _prune_through(store: MemoryStore, seq: int) -> None:
    batch = WriteBatch()
    batch.delete_events_through(seq)  # what the retention sweep commits
    await store.commit(batch)


async def test_events_after_a_fully_pruned_feed_say_so_and_long_poll(
        autojump_clock: trio.testing.MockClock) -> None:
    """Every event after the cursor pruned and none newer (an idle week): the answer
    said ``pruned: 0`` with no events, and ``wait`` was ignored (``wait_for_events``
    returns at once while ``last_event_seq`` > cursor), so a long-polling consumer spun
    without ever being told it missed events 3..6."""
    async with open_memory_store() as store:
        be = _backend(store)
        await _six_events(be)
        await _prune_through(store, 6)
        t0 = trio.current_time()
        out = await be.events("2", 100, 30.0)
        assert out.events == [] and out.pruned == 4 and out.next == "6"
        # the next call with that cursor long-polls (nothing missed any more)
        again = await be.events(out.next, 100, 30.0)
        assert again.events == [] and again.pruned == 0 and again.next == "6"
        assert trio.current_time() - t0 >= 30.0
        # limit 0 looks at nothing: nothing is reported missed, the cursor stays
        assert await be.events("2", 0, 0) == type(out)(events=[], next="2", pruned=0)
        # no cursor: nothing is reported missed, but the cursor moves past the gap
        fresh = await be.events(None, 100, 0)
        assert fresh.events == [] and fresh.pruned == 0 and fresh.next == "6"


async def test_events_pruned_counts_from_an_explicit_cursor_zero() -> None:
    """``after=0`` is a real cursor (``next`` of an empty feed is "0"): a consumer at 0
    whose events 1..4 were pruned was told ``pruned: 0``."""
    async with open_memory_store() as store:
        be = _backend(store)
        empty = await be.events(None, 100, 0)
        assert empty.next == "0"
        await _six_events(be)
        await _prune_through(store, 4)
        out = await be.events(empty.next, 100, 0)
        assert [e.id for e in out.events] == ["5", "6"] and out.pruned == 4
        assert (await be.events(None, 100, 0)).pruned == 0
        assert (await be.events("", 100, 0)).pruned == 0


async def test_outbox_snapshot_keeps_an_old_message_made_in_the_cutoffs_millisecond(
        autojump_clock: trio.testing.MockClock) -> None:
    """``young_id_prefix(cutoff)`` is the id prefix of the cutoff's millisecond: a message
    created earlier in that millisecond (created_at < cutoff, so a candidate) has an id
    >= the prefix and was left out of the outbox snapshot, so its outbox entry did not
    protect it (the final record with an outbox entry of tests/test_retention.py
    ``seed``, one millisecond later, was pruned)."""
    from gateway.pipeline.ids import IdGenerator
    from gateway.retention import DAY, Retention, RetentionSettings
    from gateway.store import MessageRecord, PartRecord

    now = 1_790_000_000.0 + 40 * DAY + 0.0005
    cutoff = now - 30 * DAY
    created = cutoff - 0.0003  # same millisecond as the cutoff, before it
    assert int(created * 1000) == int(cutoff * 1000)
    mid = IdGenerator().next(created)
    async with open_memory_store() as store:
        b = WriteBatch()
        b.put_message(MessageRecord(id=mid, created_at=created, to=LA, text="t",
                                    kind="campaign", status="failed",
                                    parts=(PartRecord(0, status="failed"),)))
        b.outbox_add(now + DAY, mid)
        await store.commit(b)
        retention = Retention(store, RetentionSettings(messages_s=30 * DAY, events_s=0,
                                                       errors_s=0), clock=lambda: now)
        sw = await retention.sweep()
        assert store.get_message(mid) is not None
        assert sw.pruned["messages"] == 0 and sw.kept == {"in_outbox": 1}


async def test_the_sweep_never_empties_the_feed(autojump_clock: trio.testing.MockClock) -> None:
    """Every event old and no cursor holding them (an idle week; a webhook endpoint
    removed from the config, its cursor at 2): the sweep deleted all of them. A consumer
    whose cursor is behind the newest number then finds no event at all: the webhook
    sender, if that endpoint is added back, loops on ``events_after`` = [] and
    ``wait_for_events`` (which returns at once) without a checkpoint and freezes the
    trio thread (the whole gateway). The newest event now stays, so the consumer gets
    it and sees the gap."""
    from gateway.retention import DAY, Retention, RetentionSettings
    from gateway.store import Event
    from gateway.store.cursors import set_cursor

    now = 1_790_000_000.0 + 40 * DAY
    async with open_memory_store() as store:
        b = WriteBatch()
        for _ in range(6):
            b.append_event(Event(seq=0, at=now - 30 * DAY, type="message.status"))
        set_cursor(b, "webhook:removed", 2)
        await store.commit(b)
        retention = Retention(store, RetentionSettings(messages_s=0, errors_s=0,
                                                       events_s=7 * DAY), clock=lambda: now)
        sw = await retention.sweep()
        assert [e.seq for e in store.events_after(2, 10)] == [6]
        assert sw.pruned["events"] == 5 and store.last_event_seq() == 6
        # the next event lets the kept one go at the next sweep
        b = WriteBatch()
        b.append_event(Event(seq=0, at=now, type="message.status"))
        await store.commit(b)
        sw = await retention.sweep()
        assert [e.seq for e in store.events_after(0, 10)] == [7] and sw.pruned["events"] == 1


async def test_a_sweep_that_fails_part_way_still_counts_what_it_pruned(
        autojump_clock: trio.testing.MockClock) -> None:
    """The messages step commits its deletions, then the events step's commit fails
    (store full): the messages (and their carrier id) were deleted for good, but
    ``smsgw_retention_pruned_total`` never counted them (the sweep's counts were added to
    the stats only after the last kind)."""
    from gateway.retention import DAY, Retention, RetentionSettings
    from gateway.store import Event, MessageRecord, PartRecord, StoreFullError
    from gateway.store.batch import PRUNE_EVENTS

    now = 1_790_000_000.0 + 40 * DAY
    old = now - 35 * DAY
    async with open_memory_store() as store:
        b = WriteBatch()
        b.put_message(MessageRecord(id="0a0001", created_at=old, to=LA, text="t",
                                    kind="campaign", status="delivered",
                                    parts=(PartRecord(0, carrier="c1", carrier_msg_id="AB",
                                                      status="delivered"),)))
        b.put_carrier_id("c1", "AB", "0a0001", 0, old)
        for _ in range(3):
            b.append_event(Event(seq=0, at=old, type="message.status"))
        await store.commit(b)
        real_commit = store.commit

        async def commit(batch: WriteBatch) -> object:
            if any(op[0] == PRUNE_EVENTS for op in batch.ops):
                raise StoreFullError("full")
            return await real_commit(batch)

        store.commit = commit  # type: ignore[method-assign]
        retention = Retention(store, RetentionSettings(errors_s=0), clock=lambda: now)
        try:
            await retention.sweep()
        except StoreFullError:
            pass
        else:  # pragma: no cover
            raise AssertionError("the events step should have failed")
        assert store.get_message("0a0001") is None
        assert retention.statistics().pruned["messages"] == 1
        assert retention.statistics().pruned["carrier_ids"] == 1
