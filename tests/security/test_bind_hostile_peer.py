"""Hostile input at the BIND level: a fake SMSC that sends garbage and mutated PDUs.

tests/smpp already fuzzes the codec (``test_codec_properties``) and the sans-IO Session
(``test_session_fuzz``). What they cannot show is the trio layer around them: that the
``Bind`` reader/writer/ticker and the ``Carrier`` supervisor turn whatever a peer sends
into a protocol error report, an answer (generic_nack / error resp) or a rebind, and that
the carrier task itself never dies and serves submits again afterwards.

The fake SMSC is our own Session in the SMSC role over a ``trio.testing`` memory stream:
no sockets, so a ``MockClock`` with autojump makes every timeout (response timeout,
enquire_link, backoff) instant and deterministic.
"""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Awaitable, Callable

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.bind import BindSettings, OutcomeKind, SubmitBatch
from gateway.carriers import Carrier
from gateway.smpp import events as ev
from gateway.smpp import pdu as P
from gateway.smpp.codec import decode, encode
from gateway.smpp.constants import CommandId, CommandStatus
from gateway.smpp.errors import LocalProtocolError
from gateway.smpp.session import Role, Session

SETTINGS = BindSettings(name="hostile", system_id="esme", password="pw", enquire_link=5.0,
                        response_timeout=2.0, bind_timeout=5.0, backoff_initial=0.5,
                        backoff_max=2.0, shutdown_timeout=1.0, max_pdu_length=4096)

# Valid PDUs an SMSC may legitimately send (and some it may not): the seeds of mutation.
SEEDS: list[P.Pdu] = [
    P.DeliverSm(source_addr="447700900123", destination_addr="Shop", short_message=b"STOP"),
    P.DeliverSm(source_addr="447700900123", destination_addr="Shop", esm_class=4,
                short_message=b"id:abc sub:001 dlvrd:001 submit date:2601011200 done "
                              b"date:2601011201 stat:DELIVRD err:000 text:hi"),
    P.SubmitSmResp(message_id="abc"),
    P.EnquireLink(),
    P.EnquireLinkResp(),
    P.GenericNack(),
    P.Unbind(),
    P.DataSm(destination_addr="1"),
    P.BindTransceiverResp(system_id="X"),
    P.Outbind(system_id="y"),
    P.SubmitSm(destination_addr="1", short_message=b"wrong way"),
]


class FakeSmsc:
    """Accepts every bind; on the first ``hostile`` connections it then sends ``chunks``.

    After the chunks it behaves (answers submit_sm, enquire_link...) as well as its own
    Session can, given what the ESME answered to the garbage.
    """

    def __init__(self, chunks: list[bytes], hostile: int = 1, *, silent: bool = False) -> None:
        self.chunks = chunks
        #: On hostile connections, answer nothing at all after the bind (a hung SMSC).
        self.silent = silent
        self.hostile = hostile
        self.connections = 0
        self.received = bytearray()  # everything the ESME sent on hostile connections
        self.next_id = 0

    async def connect(self, nursery: trio.Nursery) -> trio.abc.Stream:
        client, server = trio.testing.memory_stream_pair()
        self.connections += 1
        nursery.start_soon(self._serve, server, self.connections <= self.hostile)
        return client

    async def _serve(self, stream: trio.abc.Stream, hostile: bool) -> None:
        session = Session(Role.SMSC, now=trio.current_time())
        injected = False
        try:
            while True:
                data = bytes(await stream.receive_some(65536))
                if hostile:
                    self.received += data
                if hostile and self.silent and injected:
                    if not data:
                        return
                    continue
                session.receive_data(data, trio.current_time())
                for event in session.events():
                    self._answer(session, event)
                out = session.data_to_send()
                if out:
                    await stream.send_all(out)
                if hostile and not injected and session.state.name.startswith("BOUND"):
                    injected = True
                    for chunk in self.chunks:
                        await stream.send_all(chunk)
                if not data:
                    return
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return
        finally:
            await trio.aclose_forcefully(stream)

    def _answer(self, session: Session, event: ev.Event) -> None:
        if not isinstance(event, ev.RequestReceived):
            return
        pdu = event.pdu
        # The fake's own session may be in any state after the garbage: answering can be
        # illegal by then, which is the fake's problem, not the bind under test.
        with contextlib.suppress(LocalProtocolError):
            if isinstance(pdu, P.BindTransceiver):
                session.send_response(event.seq, P.BindTransceiverResp(system_id="FAKE"))
            elif isinstance(pdu, P.SubmitSm):
                self.next_id += 1
                session.send_response(event.seq, P.SubmitSmResp(message_id=f"m{self.next_id}"))


async def drain(carrier: Carrier) -> None:
    """Consume (and ack) inbound deliveries, as the pipeline would."""
    assert carrier.inbound is not None
    async for batch in carrier.inbound:
        for item in batch:
            item.ack()


async def submit_until_accepted(carrier: Carrier, rounds: int = 25,
                                size: int = 20) -> list[OutcomeKind]:
    """Submit batches of ``size`` parts until one part is ACCEPTED; every outcome seen.

    Parts sent while a garbage frame that announced more octets than it had is still
    being completed end UNKNOWN: their resps are eaten by that frame until it is whole
    (at most ``max_pdu_length`` octets), after which the stream re-synchronises or fails
    framing and is rebound. Batches make that take few rounds.
    """
    kinds: list[OutcomeKind] = []
    for r in range(rounds):
        batch = SubmitBatch([P.SubmitSm(destination_addr=f"44770{r:03d}{i:04d}",
                                        short_message=b"after garbage") for i in range(size)])
        await carrier.enqueue(batch)
        outcomes = await batch.wait()
        kinds.extend(o.kind for o in outcomes)
        if OutcomeKind.ACCEPTED in kinds:
            return kinds
    return kinds


async def with_carrier(smsc: FakeSmsc, body: Callable[[Carrier], Awaitable[None]]) -> None:
    async with trio.open_nursery() as peers:
        async def connect(_: BindSettings) -> trio.abc.Stream:
            return await smsc.connect(peers)

        carrier = Carrier(SETTINGS, connect=connect)
        async with trio.open_nursery() as nursery:
            await nursery.start(carrier.run)
            nursery.start_soon(drain, carrier)
            await body(carrier)
            await carrier.shutdown()
            nursery.cancel_scope.cancel()
        peers.cancel_scope.cancel()


def esme_frames(data: bytes) -> list[tuple[int, int, int]]:
    """(command_id, status, seq) of each frame the ESME wrote; they must all decode."""
    out: list[tuple[int, int, int]] = []
    while len(data) >= 16:
        (length,) = struct.unpack_from(">I", data)
        frame = decode(data[:length])
        out.append((frame.command_id, frame.command_status, frame.sequence_number))
        data = data[length:]
    assert data == b""
    return out


# --- deterministic cases ------------------------------------------------------------


async def test_unknown_command_is_nacked_and_the_bind_stays(
        autojump_clock: trio.testing.MockClock) -> None:
    # A well-framed PDU with a command_id SMPP 3.4 does not define (§5.1.2.1).
    junk = struct.pack(">IIII", 16, 0x000000AA, 0, 77)
    smsc = FakeSmsc([junk])

    async def body(carrier: Carrier) -> None:
        with trio.fail_after(30):
            await carrier.wait_bound()
            await trio.sleep(1)
            [bind] = carrier.live_binds
            stats = bind.statistics().session
            assert stats is not None and stats.protocol_errors == 1 and stats.nacks_sent == 1
            assert carrier.statistics().protocol_errors == 1  # exported per carrier
            assert await submit_until_accepted(carrier, size=1) == [OutcomeKind.ACCEPTED]
            assert smsc.connections == 1  # answered, not rebound

    await with_carrier(smsc, body)
    nacks = [f for f in esme_frames(bytes(smsc.received)) if f[0] == CommandId.GENERIC_NACK]
    assert nacks == [(CommandId.GENERIC_NACK, CommandStatus.RINVCMDID, 77)]


async def test_impossible_length_drops_the_link_and_the_carrier_rebinds(
        autojump_clock: trio.testing.MockClock) -> None:
    # command_length 8 < 16: the stream cannot be re-synchronised, so the link must go.
    smsc = FakeSmsc([struct.pack(">IIII", 8, 0x15, 0, 1)])

    async def body(carrier: Carrier) -> None:
        with trio.fail_after(60):
            await carrier.wait_until(lambda c: c.failures >= 1)
            assert carrier.last_failure is not None
            await carrier.wait_bound()
            assert await submit_until_accepted(carrier, size=1) == [OutcomeKind.ACCEPTED]
            # the dead bind's error survives its retirement in the carrier's totals
            assert carrier.statistics().protocol_errors >= 1
        assert smsc.connections == 2

    await with_carrier(smsc, body)


async def test_oversized_frame_is_refused_not_buffered(
        autojump_clock: trio.testing.MockClock) -> None:
    # A peer announcing a 2 GiB PDU must not make us buffer (or wait for) it.
    smsc = FakeSmsc([struct.pack(">IIII", 0x7FFFFFFF, 0x05, 0, 1) + b"\0" * 64])

    async def body(carrier: Carrier) -> None:
        with trio.fail_after(60):
            await carrier.wait_until(lambda c: c.failures >= 1)
            await carrier.wait_bound()
            assert await submit_until_accepted(carrier, size=1) == [OutcomeKind.ACCEPTED]

    await with_carrier(smsc, body)


async def test_truncated_frame_then_silence_is_bounded(
        autojump_clock: trio.testing.MockClock) -> None:
    # Half a PDU and then nothing: the ESME's enquire_link gets no answer (the SMSC's
    # reply lands inside the half frame), so the link is declared dead and rebound.
    frame = encode(SEEDS[0], seq=5)
    smsc = FakeSmsc([frame[: len(frame) // 2]])

    async def body(carrier: Carrier) -> None:
        with trio.fail_after(120):
            await carrier.wait_until(lambda c: c.failures >= 1)
            await carrier.wait_bound()
            assert OutcomeKind.ACCEPTED in await submit_until_accepted(carrier)

    await with_carrier(smsc, body)


async def test_smsc_that_goes_silent_under_traffic_is_declared_dead(
        autojump_clock: trio.testing.MockClock) -> None:
    smsc = FakeSmsc([], silent=True)

    async def body(carrier: Carrier) -> None:
        await carrier.wait_bound()
        # One part a second for a minute: ~12 enquire_link intervals, ~30 response timeouts.
        with trio.move_on_after(60):
            while carrier.failures == 0:
                batch = SubmitBatch([P.SubmitSm(destination_addr="447700900001",
                                                short_message=b"x")])
                await carrier.enqueue(batch)
                await trio.sleep(1)
        assert carrier.failures >= 1, "the silent link was never recycled"

    await with_carrier(smsc, body)


# --- hypothesis: random and mutated PDUs --------------------------------------------


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(encode(draw(st.sampled_from(SEEDS)), seq=draw(st.integers(1, 2**31 - 1)),
                            status=draw(st.sampled_from([0, 0, 8, 0x58]))))
    for _ in range(draw(st.integers(0, 3))):
        op = draw(st.sampled_from(["flip", "set", "truncate", "insert"]))
        i = draw(st.integers(0, len(data)))
        if op == "flip" and i < len(data):
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and i < len(data):
            data[i] = draw(st.sampled_from([0, 1, 0x7F, 0x80, 0xFF]))
        elif op == "truncate":
            del data[max(i, 1):]
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
    if draw(st.booleans()) and len(data) >= 4:
        data[0:4] = struct.pack(">I", len(data))  # consistent length: the body decoders run
    return bytes(data)


hostile_stream = st.lists(st.one_of(st.binary(min_size=1, max_size=40), mutated()),
                          min_size=1, max_size=6)


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunks=hostile_stream)
def test_any_peer_bytes_end_in_an_answer_or_a_rebind(chunks: list[bytes]) -> None:
    """Whatever the SMSC sends after the bind: no crash, no hang, the carrier serves again.

    Bounded in virtual time: enquire_link (5 s) + response timeout (2 s) detect a wedged
    link, backoff (<= 2 s) reconnects; 300 s is far more than the worst case.
    """
    smsc = FakeSmsc(chunks)

    async def main() -> None:
        async def body(carrier: Carrier) -> None:
            with trio.fail_after(300):
                await carrier.wait_bound()
                kinds = await submit_until_accepted(carrier)
                assert OutcomeKind.ACCEPTED in kinds, kinds
                # Every outcome is a known kind; nothing was silently lost.
                assert all(isinstance(k, OutcomeKind) for k in kinds)

        await with_carrier(smsc, body)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    # What the ESME wrote back on the hostile link is a well-formed PDU stream (answers,
    # nacks, enquire_links, unbind), never garbage of its own.
    esme_frames(bytes(smsc.received))
