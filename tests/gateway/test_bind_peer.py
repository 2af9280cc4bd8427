"""Bind against a scripted SMSC: our Session in the SMSC role over a memory stream.

For answers the sandbox SMSC never gives (generic_nack, odd responses, a peer that
unbinds and never closes), each test scripts the SMSC side directly.
"""

from __future__ import annotations

from collections.abc import Callable

import trio
import trio.testing

from gateway.bind import Bind, BindSettings, OutcomeKind, PeerUnbound, SubmitBatch, WorkQueue
from gateway.smpp import events as ev
from gateway.smpp import pdu as P
from gateway.smpp.session import Role, Session

Script = Callable[[Session, ev.Event], None]


async def run_peer(stream: trio.abc.Stream, script: Script,
                   closes_on_unbind: bool = True) -> None:
    """Answer binds OK, then hand every event to ``script``; flush after each read."""
    session = Session(Role.SMSC, now=trio.current_time())
    while True:
        data = await stream.receive_some(65536)
        session.receive_data(bytes(data), trio.current_time())
        unbound = False
        for event in session.events():
            if isinstance(event, ev.RequestReceived) and isinstance(event.pdu, P.BindTransceiver):
                session.send_response(event.seq, P.BindTransceiverResp(system_id="FAKE"))
            elif isinstance(event, ev.Unbound):
                unbound = True
            else:
                script(session, event)
        out = session.data_to_send()
        if out:
            await stream.send_all(out)
        if not data or (unbound and closes_on_unbind):
            await stream.aclose()
            return


def bind_with_peer(
    nursery: trio.Nursery, script: Script, *, closes_on_unbind: bool = True
) -> tuple[Bind, WorkQueue]:
    async def connect(_: BindSettings) -> trio.abc.Stream:
        client, server = trio.testing.memory_stream_pair()
        nursery.start_soon(run_peer, server, script, closes_on_unbind)
        return client

    queue = WorkQueue()
    settings = BindSettings(system_id="esme", password="pw", response_timeout=5.0)
    bind = Bind(settings, queue=queue, connect=connect)
    return bind, queue


def part(i: int) -> P.SubmitSm:
    return P.SubmitSm(destination_addr=f"447700900{i:03d}", short_message=b"hi")


async def submit(queue: WorkQueue, n: int) -> list[OutcomeKind]:
    batch = SubmitBatch([part(i) for i in range(n)])
    queue.put_nowait(batch)
    return [o.kind for o in await batch.wait()]


async def test_generic_nack_is_permanent(autojump_clock: trio.testing.MockClock) -> None:
    def nack(session: Session, event: ev.Event) -> None:
        if isinstance(event, ev.RequestReceived):
            session.send_response(event.seq, P.GenericNack(), 0x03)

    async with trio.open_nursery() as nursery:
        bind, queue = bind_with_peer(nursery, nack)
        await nursery.start(bind.run)
        batch = SubmitBatch([part(1)])
        queue.put_nowait(batch)
        (o,) = await batch.wait()
        assert (o.kind, o.status, o.retry) == (OutcomeKind.REJECTED, 0x03, "permanent")
        assert o.reason == "generic_nack ESME_RINVCMDID"
        bind.close()


async def test_out_of_order_responses(autojump_clock: trio.testing.MockClock) -> None:
    held: list[int] = []

    def reverse(session: Session, event: ev.Event) -> None:
        if isinstance(event, ev.RequestReceived):
            held.append(event.seq)
            if len(held) == 5:
                for seq in reversed(held):
                    session.send_response(seq, P.SubmitSmResp(message_id=f"id{seq}"))

    async with trio.open_nursery() as nursery:
        bind, queue = bind_with_peer(nursery, reverse)
        await nursery.start(bind.run)
        batch = SubmitBatch([part(i) for i in range(5)])
        queue.put_nowait(batch)
        out = await batch.wait()
        # seq 1 is the bind; parts got 2..6, each matched by sequence number
        assert [o.message_id for o in out] == ["id2", "id3", "id4", "id5", "id6"]
        bind.close()


async def test_peer_unbinds_and_never_closes(autojump_clock: trio.testing.MockClock) -> None:
    def unbind_at_first_submit(session: Session, event: ev.Event) -> None:
        if isinstance(event, ev.RequestReceived):
            session.send_response(event.seq, P.SubmitSmResp(message_id="x"))
            session.send_request(P.Unbind(), trio.current_time())

    async with trio.open_nursery() as nursery:
        bind, queue = bind_with_peer(nursery, unbind_at_first_submit, closes_on_unbind=False)
        queue.put_nowait(SubmitBatch([part(1)]))
        t0 = trio.current_time()
        with trio.fail_after(10):
            try:
                await bind.run(task_status=trio.TASK_STATUS_IGNORED)
            except PeerUnbound:
                pass
            else:  # pragma: no cover
                raise AssertionError("expected PeerUnbound")
        nursery.cancel_scope.cancel()
    assert trio.current_time() - t0 < 2.0  # waited ~1 s for the SMSC to close, then left


async def test_peer_unbinds_while_parts_queued(autojump_clock: trio.testing.MockClock) -> None:
    def unbind_now(session: Session, event: ev.Event) -> None:
        if isinstance(event, ev.RequestReceived):
            session.send_response(event.seq, P.SubmitSmResp(message_id="x"))
            session.send_request(P.Unbind(), trio.current_time())

    async with trio.open_nursery() as nursery:
        bind, queue = bind_with_peer(nursery, unbind_now, closes_on_unbind=False)
        ended: list[BaseException] = []

        async def run(task_status: trio.TaskStatus[None]) -> None:
            try:
                await bind.run(task_status=task_status)
            except PeerUnbound as e:
                ended.append(e)

        await nursery.start(run)
        first = SubmitBatch([part(1)])
        queue.put_nowait(first)
        await trio.sleep(0.1)
        later = SubmitBatch([part(i) for i in range(3)])
        queue.put_nowait(later)
        await trio.sleep(3)
        assert (await first.wait())[0].kind is OutcomeKind.ACCEPTED
        # the unbound bind took nothing more: the parts wait for the next bind
        assert len(queue) == 3
        assert not later.done
        assert len(ended) == 1 and "unbound" in str(ended[0])
        nursery.cancel_scope.cancel()


async def test_accepted_and_coalesced(autojump_clock: trio.testing.MockClock) -> None:
    def ok(session: Session, event: ev.Event) -> None:
        if isinstance(event, ev.RequestReceived):
            session.send_response(event.seq, P.SubmitSmResp(message_id="abc"))

    async with trio.open_nursery() as nursery:
        bind, queue = bind_with_peer(nursery, ok)
        await nursery.start(bind.run)
        assert await submit(queue, 50) == [OutcomeKind.ACCEPTED] * 50
        assert bind.statistics().writes <= 3  # 50 submit_sm in very few send_all calls
        bind.close()
