"""A `Backend` fake: in-memory, deterministic, with knobs to make it slow or failing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import trio

from gateway.api_types import (
    ConsentIn,
    ConsentOut,
    ErrorSegmentLine,
    EventOut,
    EventsOut,
    HistoryEntry,
    MessageIn,
    MessageResult,
    MessageStatusOut,
    PartOut,
    PreviewIn,
    PreviewOut,
    RecipientConsent,
    RecipientOut,
)

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


class FakeBackend:
    """Rules by text: "REJECT" -> rejected (opted_out), "LATER" -> scheduled, else queued."""

    def __init__(self) -> None:
        self.batches: list[list[MessageIn]] = []
        self.messages: dict[str, MessageStatusOut] = {}
        self.consents: list[ConsentIn] = []
        self.recipients: dict[str, RecipientOut] = {}
        self.segment: list[ErrorSegmentLine] = []
        #: When set, error_segment yields what arrives here after `segment` (until closed).
        self.segment_feed: trio.MemoryReceiveChannel[ErrorSegmentLine] | None = None
        self.segment_closed = trio.Event()
        self.event_log: list[EventOut] = []
        self._new_event = trio.Event()
        #: Raised by the next call to any method, then cleared.
        self.fail_with: BaseException | None = None
        self.healthy = True
        self.readiness = (True, "store open; binds: sandbox=1")
        self._next_id = 0

    def _maybe_fail(self) -> None:
        if self.fail_with is not None:
            exc, self.fail_with = self.fail_with, None
            raise exc

    async def submit(self, messages: list[MessageIn]) -> list[MessageResult]:
        self._maybe_fail()
        await trio.lowlevel.checkpoint()
        self.batches.append(messages)
        results = []
        for message in messages:
            self._next_id += 1
            mid = f"m{self._next_id}"
            if "REJECT" in message.text:
                result = MessageResult(id=mid, status="rejected", reason="opted_out")
            elif "LATER" in message.text:
                result = MessageResult(id=mid, status="scheduled", reason="quiet_hours",
                                       defer_until=T0 + timedelta(hours=9), segments=1,
                                       encoding="gsm7")
            else:
                result = MessageResult(id=mid, status="queued", segments=1, encoding="gsm7")
            results.append(result)
            self.messages[mid] = MessageStatusOut(
                id=mid, status=result.status, to=message.to, kind=message.kind,
                reason=result.reason, created_at=T0,
                parts=[PartOut(part=1, status="pending")],
                history=[HistoryEntry(at=T0, status=result.status)],
                metadata=message.metadata)
        return results

    async def get_message(self, message_id: str) -> MessageStatusOut | None:
        self._maybe_fail()
        return self.messages.get(message_id)

    async def preview(self, request: PreviewIn) -> PreviewOut:
        self._maybe_fail()
        n = len(request.text)
        return PreviewOut(encoding="gsm7", segments=1 if n <= 160 else -(-n // 153),
                          characters=n, per_segment=160 if n <= 160 else 153)

    async def consent(self, request: ConsentIn) -> ConsentOut:
        self._maybe_fail()
        self.consents.append(request)
        state = {"subscribe": "pending" if request.double_opt_in else "subscribed",
                 "unsubscribe": "unsubscribed", "confirm": "subscribed"}[request.action]
        return ConsentOut(phone=request.phone, state=state, changed=True,
                          source=request.source, double_opt_in=request.double_opt_in,
                          updated_at=request.at or T0)

    async def get_recipient(self, phone: str) -> RecipientOut | None:
        self._maybe_fail()
        return self.recipients.get(phone)

    async def error_segment(self, days: int) -> AsyncIterator[ErrorSegmentLine]:
        self._maybe_fail()
        try:
            for line in self.segment:
                if line.last_error_at >= T0 - timedelta(days=days):
                    yield line
            if self.segment_feed is not None:
                async for line in self.segment_feed:
                    yield line
        finally:
            self.segment_closed.set()

    def add_event(self, type_: str, message_id: str | None = None) -> EventOut:
        event = EventOut(id=str(len(self.event_log) + 1), type=type_, at=T0,
                         message_id=message_id)
        self.event_log.append(event)
        self._new_event.set()
        self._new_event = trio.Event()
        return event

    async def events(self, after: str | None, limit: int, wait: float) -> EventsOut:
        self._maybe_fail()
        start = int(after) if after else 0
        if start >= len(self.event_log) and wait > 0:
            with trio.move_on_after(wait):
                await self._new_event.wait()
        found = self.event_log[start:start + limit]
        return EventsOut(events=found, next=found[-1].id if found else (after or "0"))

    async def health(self) -> bool:
        self._maybe_fail()
        return self.healthy

    async def ready(self) -> tuple[bool, str]:
        self._maybe_fail()
        return self.readiness


def recipient(phone: str) -> RecipientOut:
    return RecipientOut(phone=phone, consent=RecipientConsent(state="subscribed"),
                        zones=["America/New_York"])

