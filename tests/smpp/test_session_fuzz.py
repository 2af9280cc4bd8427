"""Hypothesis: whatever the peer sends, receive_data never raises and never hangs.

Faults become events; the only exceptions a Session raises are LocalProtocolError for
*our* misuse. And everything the Session writes is itself a well-formed PDU stream.
"""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.smpp.codec import decode, encode
from gateway.smpp.constants import CommandId
from gateway.smpp.errors import LocalProtocolError
from gateway.smpp.events import Event, RequestReceived
from gateway.smpp.pdu import (
    BindTransceiver,
    DataSm,
    DeliverSm,
    EnquireLink,
    GenericNack,
    Outbind,
    Pdu,
    SubmitSm,
    SubmitSmResp,
    Unbind,
    UnbindResp,
)
from gateway.smpp.session import Role, Session, SessionConfig, SessionState

from .helpers import SessionPair

CONFIG = SessionConfig(window=8, response_timeout=5, enquire_link_interval=3, bind_timeout=50)
EVENT_TYPES = Event.__args__  # type: ignore[attr-defined]

SAMPLES: list[Pdu] = [
    SubmitSm(source_addr="Shop", destination_addr="447700900123", short_message=b"hello"),
    DeliverSm(source_addr="447700900123", destination_addr="Shop", short_message=b"STOP"),
    DataSm(destination_addr="1"),
    SubmitSmResp(message_id="abc"),
    EnquireLink(),
    Unbind(),
    UnbindResp(),
    GenericNack(),
    BindTransceiver(system_id="x"),
    Outbind(system_id="y"),
]


def well_formed(data: bytes) -> bool:
    while data:
        (length,) = struct.unpack_from(">I", data)
        decode(data[:length])
        data = data[length:]
    return True


def mutate(frame: bytes, edits: list[tuple[int, int]], cut: int | None) -> bytes:
    buf = bytearray(frame)
    for pos, value in edits:
        buf[pos % len(buf)] = value
    return bytes(buf[:cut] if cut is not None else buf)


pdu_stream = st.lists(
    st.one_of(
        st.binary(max_size=64),
        st.builds(
            mutate,
            st.builds(
                encode,
                st.sampled_from(SAMPLES),
                seq=st.integers(1, 12),
                status=st.sampled_from([0, 0, 0, 8]),
            ),
            st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=3),
            st.one_of(st.none(), st.integers(0, 80)),
        ),
    ),
    max_size=12,
)


def drive(session: Session, chunks: list[bytes], times: list[int], respond: bool) -> None:
    now = 0.0
    for i, chunk in enumerate(chunks):
        now += times[i % len(times)] if times else 1
        session.receive_data(chunk, now)
        events = session.events()
        assert all(isinstance(e, EVENT_TYPES) for e in events)
        for e in events:
            if respond and isinstance(e, RequestReceived):
                # LocalProtocolError is legitimate here: no response is due (outbind, or
                # the session closed), never anything else.
                with contextlib.suppress(LocalProtocolError):
                    session.send_response(e.seq, GenericNack(), 8)
        session.tick(now)
        deadline = session.next_deadline()
        assert deadline is None or deadline > now or session.state is SessionState.CLOSED
        assert well_formed(session.data_to_send())
        assert session.window_free() >= 0


@pytest.mark.slow
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    role=st.sampled_from(list(Role)),
    bound=st.booleans(),
    chunks=pdu_stream,
    times=st.lists(st.integers(0, 4), max_size=5),
    respond=st.booleans(),
)
def test_peer_bytes_never_raise(
    role: Role, bound: bool, chunks: list[bytes], times: list[int], respond: bool
) -> None:
    pair = SessionPair(CONFIG, CONFIG)
    if bound:
        pair.bind()
    session = pair.esme if role is Role.ESME else pair.smsc
    # Some of our own requests in flight, so responses have something to match.
    if session.state is SessionState.BOUND_TRX:
        first = SAMPLES[0] if role is Role.ESME else SAMPLES[1]
        for _ in range(3):
            session.send_request(first, 0)
        session.data_to_send()
    drive(session, chunks, times, respond)
    stats = session.statistics()
    assert stats.inflight <= CONFIG.window


@settings(max_examples=100, deadline=None)
@given(data=st.binary(max_size=400), split=st.lists(st.integers(1, 40), max_size=20))
def test_random_bytes_in_random_chunks(data: bytes, split: list[int]) -> None:
    pair = SessionPair(CONFIG, CONFIG)
    pair.bind()
    chunks = []
    pos = 0
    for n in split:
        chunks.append(data[pos : pos + n])
        pos += n
    chunks.append(data[pos:])
    drive(pair.esme, [c for c in chunks if c], [1], respond=True)
    # EOF always ends cleanly, whatever came before.
    pair.esme.receive_data(b"", 100)
    pair.esme.events()
    assert pair.esme.state in (SessionState.CLOSED, SessionState.ERROR)


def test_response_ids_cover_every_request() -> None:
    # The session's table of empty responses must cover every request with a response.
    from gateway.smpp.pdu import PDU_TYPES
    from gateway.smpp.session import _EMPTY_RESPONSE

    responses = {c for c in PDU_TYPES if c & 0x80000000}
    assert set(_EMPTY_RESPONSE) == responses
    assert all(int(p.command_id) == c for c, p in _EMPTY_RESPONSE.items())
    assert CommandId.GENERIC_NACK in responses
