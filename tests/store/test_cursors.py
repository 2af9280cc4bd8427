"""gateway.store.cursors on both stores: named feed positions survive a reopen."""

from __future__ import annotations

from gateway.store import Event, WriteBatch
from gateway.store.cursors import get_cursor, list_cursors, set_cursor

from .conftest import Harness


async def test_cursor_persists_moves_forward_only_and_appends_events(harness: Harness) -> None:
    async with harness.open() as store:
        assert get_cursor(store, "webhook:a") is None
        b = WriteBatch()
        b.append_event(Event(0, 1.0, "message.status", "m1", None, "queued", b""))
        set_cursor(b, "webhook:a", 7)
        set_cursor(b, "webhook:b", 2, [Event(0, 2.0, "webhook.dead_letter", None, None,
                                               None, b'{"webhook":"b"}')])
        result = await store.commit(b)
        assert result.event_seqs == (1, 2)
        b = WriteBatch()
        set_cursor(b, "webhook:a", 3)  # a late, older position does not move it back
        await store.commit(b)
    async with harness.open() as store:
        assert get_cursor(store, "webhook:a") == 7
        assert list_cursors(store) == {"webhook:a": 7, "webhook:b": 2}
        assert [e.type for e in store.events_after(0, 10)] == ["message.status",
                                                               "webhook.dead_letter"]
        assert store.last_event_seq() == 2
