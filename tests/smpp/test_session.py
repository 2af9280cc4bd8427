"""Session (gateway.smpp.session): pure, synchronous, integer clock, two sessions on a fake wire."""

from __future__ import annotations

import struct

import pytest

from gateway.smpp.codec import decode, encode
from gateway.smpp.constants import GENERIC_NACK, CommandId, CommandStatus
from gateway.smpp.errors import LocalProtocolError
from gateway.smpp.events import (
    BindFailed,
    BindSucceeded,
    ConnectionClosed,
    LinkDead,
    LinkDeadReason,
    PeerProtocolError,
    RequestAbandoned,
    RequestReceived,
    ResponseReceived,
    ResponseTimedOut,
    Unbound,
)
from gateway.smpp.pdu import (
    BindReceiver,
    BindReceiverResp,
    BindTransceiver,
    BindTransmitter,
    DeliverSm,
    DeliverSmResp,
    EnquireLink,
    EnquireLinkResp,
    GenericNack,
    Outbind,
    Pdu,
    SubmitSm,
    SubmitSmResp,
    Unbind,
    UnbindResp,
)
from gateway.smpp.session import (
    Role,
    Session,
    SessionConfig,
    SessionState,
    WindowFull,
)

from .helpers import BIND_KINDS, BindRequest, BindResponse, SessionPair, feed_bytewise

S = SessionState
SUBMIT = SubmitSm(source_addr="Shop", destination_addr="447700900123", short_message=b"hi")
DELIVER = DeliverSm(source_addr="447700900123", destination_addr="Shop", short_message=b"STOP")
QUIET = SessionConfig(enquire_link_interval=0, bind_timeout=0, response_timeout=10)


def frames(data: bytes) -> list[tuple[int, int, int, Pdu]]:
    """Split wire bytes into (command_id, status, seq, pdu) with the codec."""
    out = []
    while data:
        (length,) = struct.unpack_from(">I", data)
        f = decode(data[:length])
        out.append((int(f.command_id), f.command_status, f.sequence_number, f.pdu))
        data = data[length:]
    return out


def header(command_id: int, seq: int, status: int = 0, body: bytes = b"") -> bytes:
    return struct.pack(">IIII", 16 + len(body), command_id, status, seq) + body


def bound_pair(kind: type[BindRequest] = BindTransceiver, **config: float) -> SessionPair:
    c = SessionConfig(
        window=int(config.get("window", 64)),
        response_timeout=config.get("response_timeout", 10),
        enquire_link_interval=config.get("enquire_link_interval", 0),
        inactivity_timeout=config.get("inactivity_timeout", 0),
        bind_timeout=config.get("bind_timeout", 0),
    )
    pair = SessionPair(c, c)
    (ev,) = pair.bind(kind)
    assert isinstance(ev, BindSucceeded)
    return pair


# --- bind ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "resp"), BIND_KINDS)
def test_bind_succeeds(kind: type[BindRequest], resp: type[BindResponse]) -> None:
    pair = SessionPair(QUIET, QUIET)
    seq = pair.esme.send_request(kind(system_id="esme", password="pw"), 0)
    assert pair.esme.state is S.BINDING
    assert pair.esme.window_free() == 63
    (req,) = pair.to_smsc()
    assert req == RequestReceived(seq, kind(system_id="esme", password="pw"))
    assert pair.smsc.state is S.BINDING
    pair.smsc.send_response(seq, resp(system_id="smsc"))
    bound = {BindTransmitter: S.BOUND_TX, BindReceiver: S.BOUND_RX, BindTransceiver: S.BOUND_TRX}
    assert pair.smsc.state is bound[kind]
    assert pair.to_esme() == [BindSucceeded(bound[kind], "smsc")]
    assert pair.esme.state is bound[kind]
    assert pair.esme.window_free() == 64


@pytest.mark.parametrize(("kind", "resp"), BIND_KINDS)
def test_bind_fails(kind: type[BindRequest], resp: type[BindResponse]) -> None:
    pair = SessionPair(QUIET, QUIET)
    events = pair.bind(kind, status=CommandStatus.RINVPASWD)
    assert events == [BindFailed(CommandStatus.RINVPASWD)]
    assert pair.esme.state is S.OPEN
    assert pair.smsc.state is S.OPEN
    # The refused bind may be retried (SMPP 3.4 §4.1).
    assert isinstance(pair.bind(kind)[0], BindSucceeded)


def test_bind_refused_with_generic_nack() -> None:
    pair = SessionPair(QUIET, QUIET)
    pair.esme.send_request(BindTransmitter(system_id="x"), 0)
    (req,) = pair.to_smsc()
    assert isinstance(req, RequestReceived)
    pair.smsc.send_response(req.seq, GenericNack(), CommandStatus.RSYSERR)
    assert pair.smsc.state is S.OPEN
    assert pair.to_esme() == [BindFailed(CommandStatus.RSYSERR)]
    assert pair.esme.state is S.OPEN


def test_second_bind_while_binding_is_refused_locally() -> None:
    pair = SessionPair(QUIET, QUIET)
    pair.esme.send_request(BindTransmitter(), 0)
    with pytest.raises(LocalProtocolError):
        pair.esme.send_request(BindReceiver(), 0)


def test_bind_when_already_bound_gets_ralybnd() -> None:
    pair = bound_pair()
    pair.smsc.receive_data(encode(BindTransmitter(system_id="again"), seq=99), 0)
    (err,) = pair.smsc.events()
    assert isinstance(err, PeerProtocolError)
    assert err.status == CommandStatus.RALYBND
    assert err.seq == 99
    assert frames(pair.smsc.data_to_send()) == [
        (CommandId.BIND_TRANSMITTER_RESP, CommandStatus.RALYBND, 99, decode(
            header(CommandId.BIND_TRANSMITTER_RESP, 99)).pdu),
    ]
    assert pair.smsc.state is S.BOUND_TRX


def test_outbind_then_bind_receiver() -> None:
    pair = SessionPair(QUIET, QUIET)
    pair.smsc.send_request(Outbind(system_id="smsc", password="pw"), 0)
    assert pair.smsc.state is S.OUTBOUND
    assert pair.smsc.window_free() == 64  # outbind has no response
    (ev,) = pair.to_esme()
    assert isinstance(ev, RequestReceived)
    assert ev.pdu == Outbind(system_id="smsc", password="pw")
    assert pair.esme.state is S.OUTBOUND
    with pytest.raises(LocalProtocolError):
        pair.esme.send_response(ev.seq, GenericNack())  # outbind is never answered
    seq = pair.esme.send_request(BindReceiver(system_id="esme"), 0)
    pair.to_smsc()
    pair.smsc.send_response(seq, BindReceiverResp(system_id="smsc"))
    assert pair.to_esme() == [BindSucceeded(S.BOUND_RX, "smsc")]


# --- the matrix, seen through the session -------------------------------------------------


def test_submit_before_bind_is_answered_rinvbndsts() -> None:
    smsc = Session(Role.SMSC, QUIET)
    smsc.receive_data(encode(SUBMIT, seq=5), 0)
    (err,) = smsc.events()
    assert isinstance(err, PeerProtocolError)
    assert (err.status, err.seq) == (CommandStatus.RINVBNDSTS, 5)
    assert frames(smsc.data_to_send()) == [
        (CommandId.SUBMIT_SM_RESP, CommandStatus.RINVBNDSTS, 5, SubmitSmResp())
    ]
    assert smsc.state is S.OPEN


@pytest.mark.parametrize(
    ("kind", "pdu"),
    [
        (BindReceiver, SUBMIT),  # a receiver may not submit
        (BindTransmitter, BindTransmitter()),  # bound: no second bind
        (BindTransceiver, Outbind()),  # outbind is the SMSC's
        (BindTransceiver, DELIVER),  # deliver_sm is the SMSC's
        (BindTransceiver, SubmitSmResp()),  # a response through send_request
    ],
)
def test_illegal_send_raises_and_changes_nothing(kind: type[BindRequest], pdu: Pdu) -> None:
    pair = bound_pair(kind)
    before = pair.esme.statistics()
    with pytest.raises(LocalProtocolError):
        pair.esme.send_request(pdu, 1)
    assert pair.esme.data_to_send() == b""
    assert pair.esme.statistics() == before


def test_deliver_sm_to_a_transmitter_is_rejected() -> None:
    pair = bound_pair(BindTransmitter)
    pair.esme.receive_data(encode(DELIVER, seq=77), 0)
    (err,) = pair.esme.events()
    assert isinstance(err, PeerProtocolError)
    assert err.status == CommandStatus.RINVBNDSTS
    assert frames(pair.esme.data_to_send()) == [
        (CommandId.DELIVER_SM_RESP, CommandStatus.RINVBNDSTS, 77, DeliverSmResp())
    ]


# --- sequence numbers and the window -----------------------------------------------------


def test_sequence_numbers_wrap_to_one() -> None:
    esme = Session(Role.ESME, QUIET, first_sequence=0x7FFFFFFF)
    seqs = [esme.send_request(EnquireLink(), 0) for _ in range(3)]
    assert seqs == [0x7FFFFFFF, 1, 2]


def test_sequence_number_still_in_flight_is_skipped() -> None:
    esme = Session(Role.ESME, QUIET, first_sequence=0x7FFFFFFF)
    assert esme.send_request(EnquireLink(), 0) == 0x7FFFFFFF
    assert esme.send_request(EnquireLink(), 0) == 1
    # Reaching the wrap with seq 1 still unanswered takes 2^31 requests; jump there.
    esme._next_seq = 0x7FFFFFFF
    assert esme.send_request(EnquireLink(), 0) == 2  # 0x7FFFFFFF and 1 are in flight
    assert esme.send_request(EnquireLink(), 0) == 3


def test_bytearray_input_is_accepted() -> None:
    pair = bound_pair()
    pair.esme.receive_data(bytearray(encode(DELIVER, seq=5)), 1)
    (ev,) = pair.esme.events()
    assert isinstance(ev, RequestReceived)
    assert type(ev.pdu.short_message) is bytes  # type: ignore[union-attr]


def test_read_only_views() -> None:
    session = Session(Role.SMSC, QUIET)
    assert session.role is Role.SMSC
    assert session.config is QUIET
    assert session.state is S.OPEN
    assert Session(Role.ESME).config == SessionConfig()


def test_first_sequence_is_checked() -> None:
    for bad in (0, 0x80000000):
        with pytest.raises(ValueError, match="first_sequence"):
            Session(Role.ESME, first_sequence=bad)
    with pytest.raises(ValueError, match="window"):
        Session(Role.ESME, SessionConfig(window=0))


def test_window_full() -> None:
    pair = bound_pair(window=2)
    a = pair.esme.send_request(SUBMIT, 1)
    pair.esme.send_request(SUBMIT, 1)
    assert pair.esme.window_free() == 0
    with pytest.raises(WindowFull):
        pair.esme.send_request(SUBMIT, 1)
    assert pair.esme.statistics().sent["submit_sm"] == 2
    pair.to_smsc(1)
    pair.smsc.send_response(a, SubmitSmResp(message_id="m1"))
    pair.to_esme(1)
    assert pair.esme.window_free() == 1
    pair.esme.send_request(SUBMIT, 1)


def test_responses_out_of_order() -> None:
    pair = bound_pair()
    pdus = [SubmitSm(destination_addr=f"4477009001{i}", short_message=b"x") for i in range(3)]
    seqs = [pair.esme.send_request(p, 1) for p in pdus]
    pair.to_smsc(1)
    for i in (2, 0, 1):
        pair.smsc.send_response(seqs[i], SubmitSmResp(message_id=f"id{i}"))
    events = pair.to_esme(2)
    assert [(e.seq, e.request, e.pdu) for e in events if isinstance(e, ResponseReceived)] == [
        (seqs[i], pdus[i], SubmitSmResp(message_id=f"id{i}")) for i in (2, 0, 1)
    ]
    assert pair.esme.window_free() == 64


def test_generic_nack_for_our_request() -> None:
    pair = bound_pair()
    seq = pair.esme.send_request(SUBMIT, 1)
    pair.esme.data_to_send()
    pair.esme.receive_data(header(GENERIC_NACK, seq, CommandStatus.RINVCMDID), 2)
    assert pair.esme.events() == [
        ResponseReceived(seq, GENERIC_NACK, CommandStatus.RINVCMDID, GenericNack(), SUBMIT)
    ]
    assert pair.esme.window_free() == 64
    assert pair.esme.statistics().nacks_received == 1


def test_unknown_and_duplicate_response_seq() -> None:
    pair = bound_pair()
    seq = pair.esme.send_request(SUBMIT, 1)
    pair.to_smsc(1)
    resp = encode(SubmitSmResp(message_id="m"), seq=seq)
    pair.esme.receive_data(resp + resp + encode(SubmitSmResp(), seq=4242), 2)
    ok, dup, unknown = pair.esme.events()
    assert isinstance(ok, ResponseReceived)
    assert isinstance(dup, PeerProtocolError)
    assert dup.seq == seq
    assert isinstance(unknown, PeerProtocolError)
    assert unknown.seq == 4242
    assert pair.esme.statistics().protocol_errors == 2


def test_response_of_the_wrong_type_keeps_the_request_waiting() -> None:
    pair = bound_pair()
    seq = pair.esme.send_request(SUBMIT, 1)
    pair.esme.receive_data(encode(DeliverSmResp(), seq=seq), 1)
    (err,) = pair.esme.events()
    assert isinstance(err, PeerProtocolError)
    assert pair.esme.window_free() == 63


def test_unreadable_response_body_still_resolves_the_request() -> None:
    # message_id longer than 65 octets: the header status is still the SMSC's verdict.
    pair = bound_pair()
    seq = pair.esme.send_request(SUBMIT, 1)
    pair.esme.receive_data(header(CommandId.SUBMIT_SM_RESP, seq, 0, b"9" * 80 + b"\0"), 1)
    err, resp = pair.esme.events()
    assert isinstance(err, PeerProtocolError)
    assert err.status == CommandStatus.RINVMSGID
    assert resp == ResponseReceived(seq, CommandId.SUBMIT_SM_RESP, 0, SubmitSmResp(), SUBMIT)
    assert pair.esme.window_free() == 64


# --- peer requests --------------------------------------------------------------------------


def test_deliver_sm_round_trip() -> None:
    pair = bound_pair()
    seq = pair.smsc.send_request(DELIVER, 1)
    (ev,) = pair.to_esme(1)
    assert ev == RequestReceived(seq, DELIVER)
    assert pair.esme.statistics().pending_responses == 1
    pair.esme.send_response(seq, DeliverSmResp())
    assert pair.to_smsc(1) == [
        ResponseReceived(seq, CommandId.DELIVER_SM_RESP, 0, DeliverSmResp(), DELIVER)
    ]
    with pytest.raises(LocalProtocolError):
        pair.esme.send_response(seq, DeliverSmResp())  # answered already


def test_send_response_misuse() -> None:
    pair = bound_pair()
    seq = pair.smsc.send_request(DELIVER, 1)
    pair.to_esme(1)
    with pytest.raises(LocalProtocolError, match="awaits"):
        pair.esme.send_response(seq + 1, DeliverSmResp())
    with pytest.raises(LocalProtocolError, match="cannot answer"):
        pair.esme.send_response(seq, SubmitSmResp())
    assert pair.esme.data_to_send() == b""
    pair.esme.send_response(seq, GenericNack(), CommandStatus.RSYSERR)  # a nack is fine
    assert pair.esme.statistics().nacks_sent == 1


def test_duplicate_request_seq_from_peer_is_dropped() -> None:
    pair = bound_pair()
    pair.esme.receive_data(encode(DELIVER, seq=9) * 2, 1)
    ok, dup = pair.esme.events()
    assert ok == RequestReceived(9, DELIVER)
    assert isinstance(dup, PeerProtocolError)
    assert pair.esme.data_to_send() == b""


@pytest.mark.parametrize("state", ["open", "bound"])
def test_peer_enquire_link_is_answered(state: str) -> None:
    pair = bound_pair() if state == "bound" else SessionPair(QUIET, QUIET)
    seq = pair.smsc.send_request(EnquireLink(), 1)
    assert pair.to_esme(1) == []
    assert frames(pair.esme.data_to_send()) == [
        (CommandId.ENQUIRE_LINK_RESP, 0, seq, EnquireLinkResp())
    ]


def test_caller_enquire_link_gets_its_response_event() -> None:
    pair = bound_pair()
    seq = pair.smsc.send_request(EnquireLink(), 1)
    esme_events, smsc_events = pair.exchange(1)
    assert esme_events == []
    assert smsc_events == [
        ResponseReceived(seq, CommandId.ENQUIRE_LINK_RESP, 0, EnquireLinkResp(), EnquireLink())
    ]


def test_peer_unbind() -> None:
    pair = bound_pair()
    pair.smsc.send_request(Unbind(), 1)
    assert pair.smsc.state is S.UNBINDING
    with pytest.raises(LocalProtocolError):
        pair.smsc.send_request(DELIVER, 1)
    esme_events, smsc_events = pair.exchange(1)
    assert esme_events == [Unbound(by_peer=True)]
    assert smsc_events == [Unbound(by_peer=False)]
    assert pair.esme.state is S.UNBOUND
    assert pair.smsc.state is S.UNBOUND
    with pytest.raises(LocalProtocolError):
        pair.esme.send_request(SUBMIT, 1)


def test_our_unbind_lets_crossing_deliveries_in() -> None:
    pair = bound_pair()
    unbind = pair.esme.send_request(Unbind(), 1)
    assert pair.esme.state is S.UNBINDING
    pair.esme.receive_data(encode(DELIVER, seq=3), 1)  # crossed our unbind on the wire
    assert pair.esme.events() == [RequestReceived(3, DELIVER)]
    pair.esme.send_response(3, DeliverSmResp())
    pair.esme.receive_data(encode(UnbindResp(), seq=unbind), 1)
    assert pair.esme.events() == [Unbound(by_peer=False)]


def test_crossed_unbinds_report_once() -> None:
    pair = bound_pair()
    pair.esme.send_request(Unbind(), 1)
    pair.smsc.send_request(Unbind(), 1)
    esme_events, smsc_events = pair.exchange(1)
    assert esme_events == [Unbound(by_peer=True)]
    assert smsc_events == [Unbound(by_peer=True)]
    assert pair.esme.state is S.UNBOUND
    assert pair.esme.window_free() == 64


def test_unknown_command_id_gets_generic_nack() -> None:
    pair = bound_pair()
    pair.esme.receive_data(header(0x00000099, 42) + header(0x80000099, 43), 1)
    a, b = pair.esme.events()
    assert isinstance(a, PeerProtocolError)
    assert (a.status, a.seq) == (CommandStatus.RINVCMDID, 42)
    assert isinstance(b, PeerProtocolError)
    assert frames(pair.esme.data_to_send()) == [
        (GENERIC_NACK, CommandStatus.RINVCMDID, 42, GenericNack()),
        (GENERIC_NACK, CommandStatus.RINVCMDID, 43, GenericNack()),
    ]
    assert pair.esme.state is S.BOUND_TRX


@pytest.mark.parametrize(
    ("body", "status"),
    [
        # destination_addr of 30 digits: over 21 octets.
        (b"\0\1\1Shop\0\1\1" + b"4" * 30 + b"\0\0\0\0\0\0\0\0\0\0\2hi", CommandStatus.RINVDSTADR),
        # sm_length 9 but only 2 octets follow.
        (b"\0\1\1Shop\0\1\1447700\0\0\0\0\0\0\0\0\0\0\x09hi", CommandStatus.RINVMSGLEN),
        # service_type not terminated within 6 octets.
        (b"ABCDEFGHIJ", CommandStatus.RINVSERTYP),
    ],
)
def test_body_decode_error_is_answered_in_the_requests_response(
    body: bytes, status: CommandStatus
) -> None:
    pair = bound_pair()
    pair.smsc.receive_data(header(CommandId.SUBMIT_SM, 8, 0, body), 1)
    (err,) = pair.smsc.events()
    assert isinstance(err, PeerProtocolError)
    assert (err.status, err.seq) == (status, 8)
    assert frames(pair.smsc.data_to_send()) == [
        (CommandId.SUBMIT_SM_RESP, status, 8, SubmitSmResp())
    ]
    assert pair.smsc.state is S.BOUND_TRX


def test_body_decode_error_of_outbind_gets_no_answer() -> None:
    esme = Session(Role.ESME, QUIET)
    esme.receive_data(header(CommandId.OUTBIND, 8, 0, b"x" * 20), 1)
    (err,) = esme.events()
    assert isinstance(err, PeerProtocolError)
    assert esme.data_to_send() == b""
    assert esme.state is S.OPEN


# --- byte-by-byte and coalescing ------------------------------------------------------------


def test_bytes_fed_one_at_a_time() -> None:
    whole = bound_pair()
    bytewise = bound_pair()
    wire = b"".join(encode(DELIVER, seq=i) for i in range(1, 4)) + encode(EnquireLink(), seq=9)
    whole.esme.receive_data(wire, 1)
    assert feed_bytewise(bytewise.esme, wire, 1) == whole.esme.events()
    assert bytewise.esme.data_to_send() == whole.esme.data_to_send()


def test_many_pdus_coalesce_into_one_write() -> None:
    pair = bound_pair()
    seqs = [pair.esme.send_request(SUBMIT, 1) for _ in range(10)]
    data = pair.esme.data_to_send()
    assert [f[2] for f in frames(data)] == seqs
    assert pair.esme.data_to_send() == b""
    assert pair.esme.events() == []


# --- timers ----------------------------------------------------------------------------------


def test_response_timeout() -> None:
    pair = bound_pair(response_timeout=30)
    seq = pair.esme.send_request(SUBMIT, 60)
    assert pair.esme.next_deadline() == 90
    pair.esme.tick(89)
    assert pair.esme.events() == []
    pair.esme.tick(91)
    assert pair.esme.events() == [ResponseTimedOut(seq, SUBMIT)]
    assert pair.esme.window_free() == 64
    assert pair.esme.statistics().timeouts == 1
    assert pair.esme.state is S.BOUND_TRX
    # A response arriving after the timeout answers nothing any more.
    pair.to_smsc(91)
    pair.smsc.send_response(seq, SubmitSmResp(message_id="late"))
    (err,) = pair.to_esme(92)
    assert isinstance(err, PeerProtocolError)


def test_timeouts_expire_oldest_first_in_one_tick() -> None:
    pair = bound_pair(response_timeout=10)
    a = pair.esme.send_request(SUBMIT, 1)
    b = pair.esme.send_request(SUBMIT, 2)
    c = pair.esme.send_request(SUBMIT, 30)
    pair.esme.tick(20)
    assert pair.esme.events() == [ResponseTimedOut(a, SUBMIT), ResponseTimedOut(b, SUBMIT)]
    assert pair.esme.next_deadline() == 40
    assert [s for s, _, _ in pair.esme.inflight()] == [c]


def test_enquire_link_when_idle_then_link_dead() -> None:
    pair = bound_pair(enquire_link_interval=60, response_timeout=30)
    esme = pair.esme
    esme.tick(59)
    assert esme.data_to_send() == b""
    assert esme.next_deadline() == 60
    esme.tick(61)
    ((cid, _, seq, _),) = frames(esme.data_to_send())
    assert cid == CommandId.ENQUIRE_LINK
    assert esme.window_free() == 64  # a keep-alive does not use the window
    assert esme.events() == []
    assert esme.next_deadline() == 91
    esme.tick(89)
    assert esme.events() == []
    inflight = esme.send_request(SUBMIT, 89)
    esme.tick(91)
    assert esme.events() == [
        LinkDead(LinkDeadReason.ENQUIRE_LINK_TIMEOUT),
        RequestAbandoned(inflight, SUBMIT),
    ]
    assert esme.state is S.CLOSED
    assert esme.next_deadline() is None
    assert seq == 2


def test_enquire_link_answered_keeps_the_link() -> None:
    pair = bound_pair(enquire_link_interval=60, response_timeout=30)
    pair.esme.tick(61)
    assert pair.exchange(61) == ([], [])
    assert pair.esme.statistics().enquire_links_sent == 1
    assert pair.esme.next_deadline() == 121
    pair.esme.tick(100)
    assert pair.esme.events() == []
    assert pair.esme.state is S.BOUND_TRX


def test_traffic_postpones_enquire_link() -> None:
    pair = bound_pair(enquire_link_interval=60)
    pair.smsc.send_request(DELIVER, 50)
    pair.to_esme(50)
    pair.esme.tick(61)
    assert pair.esme.data_to_send() == b""
    assert pair.esme.next_deadline() == 110


def test_bind_timeout() -> None:
    smsc = Session(Role.SMSC, SessionConfig(bind_timeout=10))
    assert smsc.next_deadline() == 10
    smsc.tick(9)
    assert smsc.events() == []
    smsc.tick(10)
    assert smsc.events() == [LinkDead(LinkDeadReason.BIND_TIMEOUT)]
    assert smsc.state is S.CLOSED


def test_unanswered_bind_kills_the_link() -> None:
    esme = Session(Role.ESME, SessionConfig(bind_timeout=0, response_timeout=5))
    seq = esme.send_request(BindTransceiver(), 0)
    esme.tick(5)
    assert esme.events() == [
        ResponseTimedOut(seq, BindTransceiver()),
        LinkDead(LinkDeadReason.RESPONSE_TIMEOUT),
    ]
    assert esme.state is S.CLOSED


def test_inactivity() -> None:
    pair = bound_pair(inactivity_timeout=100)
    pair.esme.receive_data(encode(EnquireLink(), seq=5), 50)
    pair.esme.tick(149)
    assert pair.esme.events() == []
    pair.esme.tick(150)
    assert pair.esme.events() == [LinkDead(LinkDeadReason.INACTIVITY)]


# --- closing and failing ------------------------------------------------------------------------


def test_eof() -> None:
    pair = bound_pair()
    seq = pair.esme.send_request(SUBMIT, 1)
    pair.esme.receive_data(b"", 2)
    assert pair.esme.events() == [ConnectionClosed(), RequestAbandoned(seq, SUBMIT)]
    assert pair.esme.state is S.CLOSED
    pair.esme.receive_data(encode(DELIVER, seq=1), 3)  # ignored after close
    assert pair.esme.events() == []
    with pytest.raises(LocalProtocolError, match="closed"):
        pair.esme.send_request(SUBMIT, 3)


def test_local_close() -> None:
    pair = bound_pair()
    seq = pair.esme.send_request(SUBMIT, 1)
    pair.esme.close()
    pair.esme.close()
    assert pair.esme.events() == [RequestAbandoned(seq, SUBMIT)]
    assert pair.esme.state is S.CLOSED


@pytest.mark.parametrize("length", [0, 15, 70000])
def test_framing_error_fails_the_session(length: int) -> None:
    pair = bound_pair()
    seq = pair.esme.send_request(SUBMIT, 1)
    pair.esme.data_to_send()
    pair.esme.receive_data(encode(DELIVER, seq=3) + struct.pack(">IIII", length, 4, 0, 1), 2)
    events = pair.esme.events()
    assert events[0] == RequestReceived(3, DELIVER)
    assert isinstance(events[1], PeerProtocolError)
    assert events[1].status == CommandStatus.RINVCMDLEN
    assert events[2:] == [LinkDead(LinkDeadReason.FRAMING_ERROR), RequestAbandoned(seq, SUBMIT)]
    assert pair.esme.state is S.ERROR
    # ERROR refuses every use; data is ignored.
    with pytest.raises(LocalProtocolError, match="error"):
        pair.esme.send_request(EnquireLink(), 3)
    with pytest.raises(LocalProtocolError, match="error"):
        pair.esme.send_response(3, DeliverSmResp())
    pair.esme.receive_data(encode(DELIVER, seq=4), 3)
    pair.esme.tick(1000)
    assert pair.esme.events() == []
    assert pair.esme.next_deadline() is None


# --- statistics -----------------------------------------------------------------------------------


def test_statistics() -> None:
    pair = bound_pair()
    seq = pair.esme.send_request(SUBMIT, 5)
    pair.esme.send_request(SUBMIT, 6)
    pair.to_smsc(6)
    pair.smsc.send_response(seq, SubmitSmResp(message_id="a"))
    pair.to_esme(7)
    pair.esme.receive_data(header(0x99, 1), 8)
    stats = pair.esme.statistics()
    assert stats.role is Role.ESME
    assert stats.state is S.BOUND_TRX
    assert (stats.window, stats.inflight, stats.pending_responses) == (64, 1, 0)
    assert stats.sent == {"bind_transceiver": 1, "submit_sm": 2}
    assert stats.received == {"bind_transceiver_resp": 1, "submit_sm_resp": 1}
    assert (stats.protocol_errors, stats.nacks_sent, stats.timeouts) == (1, 1, 0)
    assert stats.last_activity == 8
    assert stats.last_received == 8
    assert stats.bytes_sent == len(encode(BindTransceiver(system_id="esme", password="secret"),
                                          seq=1)) + 2 * len(encode(SUBMIT, seq=1)) + 16
    smsc = pair.smsc.statistics()
    assert smsc.received == {"bind_transceiver": 1, "submit_sm": 2}
    assert smsc.pending_responses == 1
