"""One SMPP session, sans-IO: bytes and ``now`` in, events and bytes out.

The Session owns what belongs to one connection (SMPP 3.4 §2): the bind state, sequence
numbers, the window of requests awaiting a response, the peer's requests awaiting ours,
enquire_link keep-alive and response timers, and the replies the protocol makes
automatically (enquire_link_resp, unbind_resp, generic_nack, error responses). It never
touches a socket or a clock; the trio bind layer drives it:

- reader: ``receive_data(chunk, now)`` (``b""`` at EOF), then handle ``events()``;
- writer: ``data_to_send()`` drains every PDU queued since the last call into one
  ``bytes``, so one ``send_all`` carries many PDUs (the coalescing that makes 50k
  submit_sm/s possible, DESIGN.md "Performance design");
- ticker: ``tick(now)`` when ``next_deadline()`` is reached.

Errors (the h11 split, house rule 4):

- Our misuse (a request illegal in the state, a response to nothing, a full window, a
  field that cannot be encoded) raises ``LocalProtocolError`` *before* anything changes:
  the session stays usable.
- The peer's faults never raise: the session answers where the protocol says so and
  reports ``PeerProtocolError``. Lost framing is fatal: ``LinkDead`` and state ERROR,
  after which every send raises and received data is ignored.

Hot path: ``send_request`` of a submit_sm is one table lookup, one ``encode`` and a few
dict/list operations. In a whole chunk, a submit_sm_resp answering a submit_sm and a
legal deliver_sm are decoded straight from their header (the codec's fast decoders, no
Frame) into one event each; everything else goes through ``decode()``. ``acknowledge``
answers a deliver_sm with status 0 from a template.
"""

from __future__ import annotations

import struct
from typing import Final

import msgspec

from .codec import decode, decode_header, encode, fast_deliver_sm, fast_submit_sm_resp
from .constants import (
    GENERIC_NACK,
    HEADER_LENGTH,
    MAX_SEQUENCE_NUMBER,
    RESPONSE_BIT,
    CommandId,
    CommandStatus,
)
from .errors import DecodeError, FramingError, LocalProtocolError
from .events import (
    BindFailed,
    BindSucceeded,
    ConnectionClosed,
    Event,
    LinkDead,
    PeerProtocolError,
    RequestAbandoned,
    RequestReceived,
    ResponseReceived,
    ResponseTimedOut,
    Unbound,
)
from .framing import DEFAULT_MAX_LENGTH, PduBuffer
from .pdu import (
    PDU_TYPES,
    BindReceiver,
    BindReceiverResp,
    BindTransceiver,
    BindTransceiverResp,
    BindTransmitter,
    BindTransmitterResp,
    CancelSmResp,
    DataSmResp,
    DeliverSmResp,
    EnquireLink,
    EnquireLinkResp,
    GenericNack,
    Pdu,
    QuerySmResp,
    ReplaceSmResp,
    SubmitMultiResp,
    SubmitSmResp,
    UnbindResp,
)
from .state import (
    BIND_FAILED_STATE,
    BIND_REQUESTS,
    BIND_RESPONSE_STATE,
    BOUND_STATES,
    INIT_STATES,
    LINK_REQUESTS,
    RECEIVE_REQUEST,
    RESPONSE_STATES,
    SEND_REQUEST,
    Role,
    SessionState,
    Transitions,
    reject_status,
)
from .timers import EnquireLinkDue, Expired, LinkDeadReason, ResponseOverdue, Timers

__all__ = ["Role", "Session", "SessionConfig", "SessionState", "SessionStats", "WindowFull"]

_HEADER: Final = struct.Struct(">IIII").unpack_from  # the PDU header, SMPP 3.4 §3.2
_ENQUIRE_LINK: Final = int(CommandId.ENQUIRE_LINK)
_SUBMIT_SM: Final = int(CommandId.SUBMIT_SM)
_SUBMIT_SM_RESP: Final = CommandId.SUBMIT_SM_RESP  # the member, as decode() gives it
_DELIVER_SM: Final = int(CommandId.DELIVER_SM)
_DELIVER_SM_RESP: Final = int(CommandId.DELIVER_SM_RESP)
# deliver_sm_resp, status 0: the header and a NULL message_id (SMPP 3.4 §4.6.2), 17 octets
# of which only the sequence_number varies; the same bytes as encode(DeliverSmResp(), seq=).
_DELIVER_SM_RESP_OK: Final = struct.Struct(">IIIIx").pack
_UNBIND: Final = int(CommandId.UNBIND)
_OPEN: Final = SessionState.OPEN
_BINDING: Final = SessionState.BINDING
_UNBINDING: Final = SessionState.UNBINDING
_UNBOUND: Final = SessionState.UNBOUND
_CLOSED: Final = SessionState.CLOSED
_ERROR: Final = SessionState.ERROR

# Requests with no response (outbind §4.1.7, alert_notification §4.12), derived from the
# codec's table: they never enter the window and are never answered.
_UNANSWERED: Final = frozenset(
    cid for cid in PDU_TYPES if not cid & RESPONSE_BIT and cid | RESPONSE_BIT not in PDU_TYPES
)
_BIND_RESPONSES = (BindTransmitterResp, BindReceiverResp, BindTransceiverResp)
_BINDS = (BindTransmitter, BindReceiver, BindTransceiver)
_ENQUIRE_LINK_PDU: Final = EnquireLink()
_ENQUIRE_LINK_RESP: Final = EnquireLinkResp()
_UNBIND_RESP: Final = UnbindResp()
_GENERIC_NACK: Final = GenericNack()
# An empty body per response: what we answer on error (the codec then writes the header
# only, SMPP 3.4 §4.1.2/§4.4.2), and what an unreadable response body is reported as.
_EMPTY_RESPONSE: Final[dict[int, Pdu]] = {
    int(pdu.command_id): pdu
    for pdu in (
        BindTransmitterResp(), BindReceiverResp(), BindTransceiverResp(), UnbindResp(),
        EnquireLinkResp(), _GENERIC_NACK, SubmitSmResp(), DeliverSmResp(), DataSmResp(),
        QuerySmResp(), CancelSmResp(), ReplaceSmResp(), SubmitMultiResp(),
    )
}  # fmt: skip


class SessionConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Per-connection settings (Kannel defaults and carrier asks in domain.md §1.2, §1.5)."""

    #: Max requests we sent that await a response (SMPP 3.4 §2.6 suggests ~10).
    window: int = 64
    #: Seconds a request may wait for its response before ResponseTimedOut.
    response_timeout: float = 10.0
    #: Idle seconds (no PDU either way) before we send enquire_link; 0 = never.
    enquire_link_interval: float = 30.0
    #: Seconds without any PDU from the peer before LinkDead; 0 = off.
    inactivity_timeout: float = 0.0
    #: Seconds from connection to completed bind before LinkDead; 0 = off.
    bind_timeout: float = 10.0
    #: Largest command_length accepted; larger ones lose the framing (go-smpp caps 4 KiB;
    #: the default leaves room for a 64 KiB message_payload, SMPP 3.4 §5.3.2.32).
    max_pdu_length: int = DEFAULT_MAX_LENGTH


class SessionStats(msgspec.Struct, frozen=True, kw_only=True):
    """An immutable snapshot from ``Session.statistics()`` (trio's statistics() idiom)."""

    role: Role
    state: SessionState
    #: Configured window and requests currently awaiting a response (ours).
    window: int
    inflight: int
    #: Peer requests we have not answered yet.
    pending_responses: int
    #: PDUs sent / received per command name (e.g. ``"submit_sm"``).
    sent: dict[str, int]
    received: dict[str, int]
    bytes_sent: int
    bytes_received: int
    #: Our requests that got no response in time.
    timeouts: int
    nacks_sent: int
    nacks_received: int
    #: PeerProtocolError events raised so far.
    protocol_errors: int
    #: enquire_link requests the session sent on its own.
    enquire_links_sent: int
    #: ``now`` of the last PDU sent or received, and of the last data received.
    last_activity: float
    last_received: float


class WindowFull(LocalProtocolError):
    """``send_request`` with no room in the window: wait for a response (window_free())."""

    def __init__(self, window: int) -> None:
        super().__init__(f"window full: {window} requests await a response")


_COMMAND_NAMES: Final = {int(c): c.name.lower() for c in CommandId}


def _command_name(command_id: int) -> str:
    return _COMMAND_NAMES.get(command_id) or f"0x{command_id:08x}"


class Session:
    """An SMPP 3.4 session in the ESME or SMSC role; see the module docstring."""

    __slots__ = (
        "_bytes_received",
        "_bytes_sent",
        "_config",
        "_enquire_links_sent",
        "_enquire_seq",
        "_events",
        "_fast_deliver",
        "_frames",
        "_inflight",
        "_nacks_received",
        "_nacks_sent",
        "_next_seq",
        "_out",
        "_peer_system_id",
        "_pending_in",
        "_protocol_errors",
        "_received",
        "_recv_moves",
        "_role",
        "_send_moves",
        "_sent",
        "_state",
        "_timeouts",
        "_timers",
        "_window",
    )

    def __init__(
        self,
        role: Role,
        config: SessionConfig | None = None,
        *,
        now: float = 0.0,
        first_sequence: int = 1,
    ) -> None:
        if config is None:
            config = SessionConfig()
        if not 1 <= first_sequence <= MAX_SEQUENCE_NUMBER:
            raise ValueError(f"first_sequence {first_sequence} outside 1..0x7FFFFFFF")
        if config.window < 1:
            raise ValueError("window must be >= 1")
        self._role = role
        self._config = config
        self._window = config.window
        self._frames = PduBuffer(config.max_pdu_length)
        self._timers = Timers(
            now=now,
            response_timeout=config.response_timeout,
            enquire_link_interval=config.enquire_link_interval,
            inactivity_timeout=config.inactivity_timeout,
            bind_timeout=config.bind_timeout,
        )
        self._next_seq = first_sequence
        # seq -> (request, sent_at). Insertion order is send order, and every request
        # shares one timeout, so the first entry is always the next to expire.
        self._inflight: dict[int, tuple[Pdu, float]] = {}
        # seq -> command_id of peer requests we still have to answer.
        self._pending_in: dict[int, int] = {}
        self._enquire_seq: int | None = None
        self._peer_system_id = ""
        self._out: list[bytes] = []
        self._events: list[Event] = []
        self._sent: dict[int, int] = {}
        self._received: dict[int, int] = {}
        self._bytes_sent = 0
        self._bytes_received = 0
        self._timeouts = 0
        self._nacks_sent = 0
        self._nacks_received = 0
        self._protocol_errors = 0
        self._enquire_links_sent = 0
        self._state = _OPEN
        self._send_moves: Transitions = SEND_REQUEST[role][_OPEN]
        self._recv_moves: Transitions = RECEIVE_REQUEST[role][_OPEN]
        self._fast_deliver = False

    # --- read-only views ---------------------------------------------------------------

    @property
    def role(self) -> Role:
        """ESME or SMSC."""
        return self._role

    @property
    def state(self) -> SessionState:
        """The current SessionState."""
        return self._state

    @property
    def config(self) -> SessionConfig:
        """The SessionConfig this session was built with."""
        return self._config

    def window_free(self) -> int:
        """How many more requests ``send_request`` accepts now."""
        used = len(self._inflight) - (self._enquire_seq is not None)
        return max(0, self._window - used)

    def inflight(self) -> list[tuple[int, Pdu, float]]:
        """(seq, request, sent_at) of every request awaiting a response, oldest first."""
        return [
            (seq, pdu, sent_at)
            for seq, (pdu, sent_at) in self._inflight.items()
            if seq != self._enquire_seq
        ]

    # --- the three drains ----------------------------------------------------------------

    def events(self) -> list[Event]:
        """Every event since the last call, in order (an empty list if none)."""
        events = self._events
        if not events:
            return []
        self._events = []
        return events

    def data_to_send(self) -> bytes:
        """Every PDU queued since the last call, as one ``bytes`` for one send_all."""
        out = self._out
        if not out:
            return b""
        self._out = []
        return b"".join(out)

    # --- input ---------------------------------------------------------------------------

    def receive_data(self, data: bytes, now: float) -> None:
        """Feed bytes from the peer; ``b""`` means EOF (-> ConnectionClosed, CLOSED).

        Never raises for anything the peer sends. Data arriving after the session
        closed or failed is ignored (the reader may race the close).
        """
        state = self._state
        if state is _CLOSED or state is _ERROR:
            return
        if not data:
            self._events.append(ConnectionClosed())
            self._finish(_CLOSED)
            return
        if type(data) is not bytes:
            data = bytes(data)  # trio may hand us a bytearray; PDU fields must be bytes
        self._bytes_received += len(data)
        timers = self._timers
        timers.last_received = now
        timers.last_activity = now
        frames = self._frames
        if not frames.pending:
            # Fast path (nothing partial buffered, the common case): slice whole frames
            # straight out of ``data``, one copy each, instead of copying everything
            # through the PduBuffer (~250 ns/PDU saved). Any length the buffer would
            # refuse, and a trailing partial frame, go through the PduBuffer below,
            # which stays the one judge of framing errors.
            #
            # The two PDUs of every message's way back (submit_sm_resp answering our
            # submit_sm, the carrier's deliver_sm) are handled right here from the
            # header read once: the codec's fast decoder and the event, with no Frame
            # and no _on_frame. Everything else, and whatever these fast decoders
            # decline, goes through _on_frame/decode(), which judges and diagnoses; the
            # tests hold both ways to the same events (fed whole vs. byte by byte).
            pos = 0
            n = len(data)
            max_length = frames.max_length
            on_frame = self._on_frame
            inflight = self._inflight
            pending = self._pending_in
            append = self._events.append
            n_resp = n_deliver = 0
            while n - pos >= HEADER_LENGTH:
                length, command_id, status, seq = _HEADER(data, pos)
                end = pos + length
                if length < HEADER_LENGTH or length > max_length or end > n:
                    break
                frame = data[pos:end]
                pos = end
                if command_id == _SUBMIT_SM_RESP:
                    entry = inflight.get(seq)
                    if entry is not None and entry[0].command_id == _SUBMIT_SM:
                        try:
                            resp = fast_submit_sm_resp(frame)
                        except Exception:  # decode() says what is wrong
                            on_frame(frame)
                            continue
                        del inflight[seq]
                        append(ResponseReceived(seq, _SUBMIT_SM_RESP, status, resp, entry[0]))
                        n_resp += 1
                        continue
                elif command_id == _DELIVER_SM and self._fast_deliver and seq not in pending:
                    # (_fast_deliver is read per frame: an unbind earlier in this same
                    # chunk makes deliver_sm illegal.)
                    try:
                        deliver = fast_deliver_sm(frame)
                    except Exception:  # decode() says what is wrong
                        on_frame(frame)
                        continue
                    pending[seq] = command_id
                    append(RequestReceived(seq, deliver))
                    n_deliver += 1
                    continue
                on_frame(frame)
            if n_resp or n_deliver:
                received = self._received
                if n_resp:
                    received[_SUBMIT_SM_RESP] = received.get(_SUBMIT_SM_RESP, 0) + n_resp
                if n_deliver:
                    received[_DELIVER_SM] = received.get(_DELIVER_SM, 0) + n_deliver
            if pos:
                if pos == n:
                    return
                data = data[pos:]
        frames.feed(data)
        while True:
            try:
                buffered = frames.next_frame()
            except FramingError as exc:
                # SMPP 3.4 §3.2: nothing after a bad command_length can be delimited.
                self._peer_error(exc.status, str(exc), None)
                self._events.append(LinkDead(LinkDeadReason.FRAMING_ERROR))
                self._finish(_ERROR)
                return
            if buffered is None:
                return
            self._on_frame(buffered)

    def _on_frame(self, frame: bytes) -> None:
        try:
            decoded = decode(frame)
        except DecodeError as exc:
            self._on_decode_error(frame, exc)
            return
        command_id = decoded.command_id
        seq = decoded.sequence_number
        received = self._received
        received[command_id] = received.get(command_id, 0) + 1
        if command_id & RESPONSE_BIT:
            # Hot path (submit_sm_resp): _on_response inlined for the plain case.
            inflight = self._inflight
            entry = inflight.get(seq)
            if entry is not None:
                request = entry[0]
                request_id = request.command_id
                if command_id == request_id | RESPONSE_BIT and request_id not in LINK_REQUESTS:
                    del inflight[seq]
                    self._events.append(
                        ResponseReceived(seq, command_id, decoded.command_status, decoded.pdu,
                                         request)
                    )  # fmt: skip
                    return
            self._on_response(seq, command_id, decoded.command_status, decoded.pdu)
            return
        try:
            move = self._recv_moves[command_id]
        except KeyError:
            self._reject(command_id, seq)
            return
        if command_id == _ENQUIRE_LINK:
            # §4.11: answered by the session in every state where it is legal.
            self._queue(encode(_ENQUIRE_LINK_RESP, seq=seq))
            return
        if command_id == _UNBIND:
            self._on_peer_unbind(seq, move)
            return
        if command_id in _UNANSWERED:
            self._events.append(RequestReceived(seq, decoded.pdu))
        else:
            pending = self._pending_in
            if seq in pending:
                # The peer reused a sequence number we have not answered yet: two
                # responses with one seq would be ambiguous to it, so drop the second.
                self._peer_error(
                    CommandStatus.RSYSERR,
                    f"{_command_name(command_id)} reuses unanswered sequence_number {seq}",
                    seq,
                )
                return
            pending[seq] = command_id
            pdu = decoded.pdu
            if isinstance(pdu, _BINDS):
                self._peer_system_id = pdu.system_id
            self._events.append(RequestReceived(seq, pdu))
        if move is not None:
            self._set_state(move)

    def _on_response(self, seq: int, command_id: int, status: int, pdu: Pdu) -> None:
        entry = self._inflight.get(seq)
        if entry is None:
            self._peer_error(
                CommandStatus.RINVCMDID,
                f"{_command_name(command_id)} with sequence_number {seq} answers no request",
                seq,
            )
            return
        request = entry[0]
        request_id = request.command_id
        if command_id != request_id | RESPONSE_BIT and command_id != GENERIC_NACK:
            self._peer_error(
                CommandStatus.RINVCMDID,
                f"{_command_name(command_id)} does not answer {_command_name(request_id)}"
                f" (sequence_number {seq})",
                seq,
            )
            return
        del self._inflight[seq]
        if command_id == GENERIC_NACK:
            self._nacks_received += 1
        if request_id in LINK_REQUESTS:
            self._on_link_response(seq, command_id, status, pdu, request)
            return
        self._events.append(ResponseReceived(seq, command_id, status, pdu, request))

    def _on_link_response(
        self, seq: int, command_id: int, status: int, pdu: Pdu, request: Pdu
    ) -> None:
        request_id = request.command_id
        if request_id in BIND_REQUESTS:
            if status == 0 and isinstance(pdu, _BIND_RESPONSES):
                bound = BIND_RESPONSE_STATE[command_id]
                self._set_state(bound)
                self._events.append(BindSucceeded(bound, pdu.system_id))
            else:
                self._set_state(BIND_FAILED_STATE)
                # A generic_nack with status 0 still refuses the bind.
                self._events.append(BindFailed(status or int(CommandStatus.RBINDFAIL)))
        elif request_id == _UNBIND:
            # §4.2: unbind_resp ends the session whatever its status. A crossed unbind
            # already moved us to UNBOUND and reported it.
            if self._state is not _UNBOUND:
                self._set_state(_UNBOUND)
                self._events.append(Unbound(by_peer=False))
        elif seq == self._enquire_seq:
            self._enquire_seq = None
            self._timers.enquire_pending = False
        else:  # an enquire_link the caller sent itself
            self._events.append(ResponseReceived(seq, command_id, status, pdu, request))

    def _on_peer_unbind(self, seq: int, move: SessionState | None) -> None:
        # §4.2: answer unbind_resp; the caller closes the connection after draining.
        self._queue(encode(_UNBIND_RESP, seq=seq))
        if move is not None and move is not self._state:
            self._set_state(move)
            self._events.append(Unbound(by_peer=True))

    def _reject(self, command_id: int, seq: int) -> None:
        """Answer a request that is illegal in this state (§2.3, §5.1.3)."""
        state = self._state
        status = reject_status(state, command_id)
        self._peer_error(
            status,
            f"{_command_name(command_id)} not allowed in {state.value}"
            f" for the {self._role.value.upper()} role",
            seq,
        )
        response = _EMPTY_RESPONSE.get(command_id | RESPONSE_BIT)
        if response is not None:
            self._queue(encode(response, seq=seq, status=status))

    def _on_decode_error(self, frame: bytes, exc: DecodeError) -> None:
        command_id = exc.command_id
        seq = exc.sequence_number
        self._peer_error(exc.status, str(exc), seq)
        if command_id is None or seq is None:  # pragma: no cover - framed PDUs have a header
            return
        if command_id not in PDU_TYPES or exc.field == "command_length":
            # §4.3: an unusable header is answered with generic_nack echoing the seq.
            self._nacks_sent += 1
            self._queue(encode(_GENERIC_NACK, seq=seq, status=exc.status))
            return
        if command_id & RESPONSE_BIT:
            # The header's status says what the peer did with our request; only the body
            # is unreadable. Report the status with an empty body rather than let the
            # request time out and be sent twice.
            entry = self._inflight.get(seq)
            if entry is not None and (
                command_id == entry[0].command_id | RESPONSE_BIT or command_id == GENERIC_NACK
            ):
                status = decode_header(frame)[2]
                self._on_response(seq, command_id, status, _EMPTY_RESPONSE[command_id])
            return
        response = _EMPTY_RESPONSE.get(command_id | RESPONSE_BIT)
        if response is not None:
            # §2.4: a body error is answered in the request's own response.
            self._queue(encode(response, seq=seq, status=exc.status))

    # --- output --------------------------------------------------------------------------

    def send_request(self, pdu: Pdu, now: float) -> int:
        """Queue a request; return its sequence_number.

        Raises LocalProtocolError (nothing queued, state unchanged) if the request is
        illegal in the current state, WindowFull if ``window_free() == 0``, and
        EncodeError if a field cannot be encoded.
        """
        command_id = pdu.command_id
        try:
            move = self._send_moves[command_id]
        except KeyError:
            raise self._illegal(command_id, "send") from None
        inflight = self._inflight
        if len(inflight) - (self._enquire_seq is not None) >= self._window:
            raise WindowFull(self._window)
        # Inlined _take_seq (a call costs as much as the rest of this block).
        seq = self._next_seq
        self._next_seq = 1 if seq >= MAX_SEQUENCE_NUMBER else seq + 1
        if seq in inflight:
            seq = self._take_seq()
        data = encode(pdu, seq=seq)
        self._out.append(data)
        self._bytes_sent += len(data)
        sent = self._sent
        sent[command_id] = sent.get(command_id, 0) + 1
        self._timers.last_activity = now
        if command_id not in _UNANSWERED:
            inflight[seq] = (pdu, now)
        if move is not None:
            self._set_state(move)
        return seq

    def send_response(self, seq: int, pdu: Pdu, status: int = 0) -> None:
        """Queue the response to the peer's request ``seq`` (a RequestReceived).

        ``pdu`` is the matching ``*Resp`` (or a GenericNack). In the SMSC role a
        successful bind response binds the session (state BOUND_*), a failed one leaves
        it OPEN. Raises LocalProtocolError if no request ``seq`` awaits a response, the
        response does not match it, or the session is closed or failed.
        """
        state = self._state
        if state not in RESPONSE_STATES:
            raise LocalProtocolError(f"cannot respond: the session is {state.value}")
        command_id = pdu.command_id
        pending = self._pending_in
        request_id = pending.get(seq)
        if request_id is None:
            raise LocalProtocolError(f"no request with sequence_number {seq} awaits a response")
        if command_id != request_id | RESPONSE_BIT and command_id != GENERIC_NACK:
            raise LocalProtocolError(
                f"{_command_name(command_id)} cannot answer {_command_name(request_id)}"
            )
        data = encode(pdu, seq=seq, status=status)
        del pending[seq]
        self._out.append(data)
        self._bytes_sent += len(data)
        sent = self._sent
        sent[command_id] = sent.get(command_id, 0) + 1
        if command_id == GENERIC_NACK:
            self._nacks_sent += 1
        if request_id in BIND_REQUESTS:
            if status == 0 and command_id != GENERIC_NACK:
                self._set_state(BIND_RESPONSE_STATE[command_id])
            else:
                self._set_state(BIND_FAILED_STATE)

    def acknowledge(self, seq: int, status: int = 0) -> None:
        """Answer the peer's request ``seq`` with its response type, body left empty.

        Same as ``send_response(seq, DeliverSmResp(), status)`` (or DataSmResp, ...: the
        response matching the request), made cheap for the case of every message's
        receipt: a deliver_sm answered with status 0 is written from a template.
        Raises LocalProtocolError like send_response.
        """
        pending = self._pending_in
        if status == 0 and pending.get(seq) == _DELIVER_SM and self._state in RESPONSE_STATES:
            del pending[seq]
            self._out.append(_DELIVER_SM_RESP_OK(17, _DELIVER_SM_RESP, 0, seq))
            self._bytes_sent += 17
            sent = self._sent
            sent[_DELIVER_SM_RESP] = sent.get(_DELIVER_SM_RESP, 0) + 1
            return
        state = self._state
        if state not in RESPONSE_STATES:
            raise LocalProtocolError(f"cannot respond: the session is {state.value}")
        request_id = pending.get(seq)
        if request_id is None:
            raise LocalProtocolError(f"no request with sequence_number {seq} awaits a response")
        self.send_response(seq, _EMPTY_RESPONSE[request_id | RESPONSE_BIT], status)

    def acknowledge_all(self, seqs: list[int]) -> int:
        """``acknowledge(seq)`` (status 0) for each of ``seqs``, in order; a ``seq`` it
        would refuse (LocalProtocolError) is skipped. Returns how many were answered.

        For the answers to a batch of receipts, committed together: one call, and the
        deliver_sm ones written from the template in one loop.
        """
        pending = self._pending_in
        out = self._out
        n = 0
        fast = self._state in RESPONSE_STATES
        answered = 0
        for seq in seqs:
            if fast and pending.get(seq) == _DELIVER_SM:
                del pending[seq]
                out.append(_DELIVER_SM_RESP_OK(17, _DELIVER_SM_RESP, 0, seq))
                n += 1
                continue
            try:
                self.acknowledge(seq)
            except LocalProtocolError:
                continue
            answered += 1
        if n:
            self._bytes_sent += 17 * n
            sent = self._sent
            sent[_DELIVER_SM_RESP] = sent.get(_DELIVER_SM_RESP, 0) + n
        return answered + n

    def close(self) -> None:
        """We are closing the connection: state CLOSED, inflight requests abandoned.

        Emits RequestAbandoned for every request still awaiting a response. Idempotent.
        """
        if self._state is not _CLOSED and self._state is not _ERROR:
            self._finish(_CLOSED)

    # --- timers --------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """When ``tick`` must next run, or None if no timer is armed.

        The deadline can move earlier after ``send_request`` (never earlier than ``now +
        response_timeout``) and after ``receive_data``: when ``enquire_link_interval <
        response_timeout``, the enquire_link_resp clears the inflight enquire_link and the
        next deadline becomes ``now + enquire_link_interval``. A ticker must therefore
        re-read ``next_deadline()`` after every send and every read (``gateway.bind`` does).
        """
        state = self._state
        if state is _CLOSED or state is _ERROR:
            return None
        inflight = self._inflight
        oldest = inflight[next(iter(inflight))][1] if inflight else None
        return self._timers.next_deadline(oldest)

    def tick(self, now: float) -> None:
        """Run every timer due at ``now``: response timeouts, enquire_link, bind/inactivity."""
        timers = self._timers
        inflight = self._inflight
        while self._state is not _CLOSED and self._state is not _ERROR:
            oldest: tuple[int, float] | None = None
            if inflight:
                seq = next(iter(inflight))
                oldest = (seq, inflight[seq][1])
            action = timers.on_tick(now, oldest)
            if action is None:
                return
            if isinstance(action, ResponseOverdue):
                self._on_overdue(action.seq)
            elif isinstance(action, EnquireLinkDue):
                self._send_enquire_link(now)
            else:
                assert isinstance(action, Expired)
                self._events.append(LinkDead(action.reason))
                self._finish(_CLOSED)

    def _on_overdue(self, seq: int) -> None:
        request = self._inflight.pop(seq)[0]
        self._timeouts += 1
        if seq == self._enquire_seq:
            self._enquire_seq = None
            self._events.append(LinkDead(LinkDeadReason.ENQUIRE_LINK_TIMEOUT))
            self._finish(_CLOSED)
            return
        self._events.append(ResponseTimedOut(seq, request))
        request_id = request.command_id
        if request_id in BIND_REQUESTS or request_id == _UNBIND:
            # Without a bind or unbind answer the session's state is unknowable.
            self._events.append(LinkDead(LinkDeadReason.RESPONSE_TIMEOUT))
            self._finish(_CLOSED)

    def _send_enquire_link(self, now: float) -> None:
        # Not counted against the window: a keep-alive must go out even when it is full.
        seq = self._take_seq()
        data = encode(_ENQUIRE_LINK_PDU, seq=seq)
        self._queue(data)
        self._sent[_ENQUIRE_LINK] = self._sent.get(_ENQUIRE_LINK, 0) + 1
        self._inflight[seq] = (_ENQUIRE_LINK_PDU, now)
        self._enquire_seq = seq
        self._enquire_links_sent += 1
        timers = self._timers
        timers.enquire_pending = True
        timers.last_activity = now

    # --- statistics ----------------------------------------------------------------------

    def statistics(self) -> SessionStats:
        """An immutable snapshot of counters and state (read it at scrape time)."""
        timers = self._timers
        return SessionStats(
            role=self._role,
            state=self._state,
            window=self._window,
            inflight=len(self._inflight) - (self._enquire_seq is not None),
            pending_responses=len(self._pending_in),
            sent={_command_name(c): n for c, n in sorted(self._sent.items())},
            received={_command_name(c): n for c, n in sorted(self._received.items())},
            bytes_sent=self._bytes_sent,
            bytes_received=self._bytes_received,
            timeouts=self._timeouts,
            nacks_sent=self._nacks_sent,
            nacks_received=self._nacks_received,
            protocol_errors=self._protocol_errors,
            enquire_links_sent=self._enquire_links_sent,
            last_activity=timers.last_activity,
            last_received=timers.last_received,
        )

    # --- internals -----------------------------------------------------------------------

    def _take_seq(self) -> int:
        # §5.1.4 / domain.md §1.5: 1..0x7FFFFFFF, wrapping to 1. Skip a number still in
        # flight (only possible after 2^31 requests with an ancient one unanswered).
        inflight = self._inflight
        seq = self._next_seq
        while True:
            self._next_seq = 1 if seq >= MAX_SEQUENCE_NUMBER else seq + 1
            if seq not in inflight:
                return seq
            seq = self._next_seq

    def _queue(self, data: bytes) -> None:
        self._out.append(data)
        self._bytes_sent += len(data)

    def _peer_error(self, status: int, detail: str, seq: int | None) -> None:
        self._protocol_errors += 1
        self._events.append(PeerProtocolError(int(status), detail, seq))

    def _illegal(self, command_id: int, verb: str) -> LocalProtocolError:
        state = self._state
        name = _command_name(command_id)
        if state is _ERROR or state is _CLOSED:
            return LocalProtocolError(f"cannot {verb} {name}: the session is {state.value}")
        if command_id & RESPONSE_BIT:
            return LocalProtocolError(f"{name} is a response: use send_response")
        return LocalProtocolError(
            f"{name} not allowed in {state.value} for the {self._role.value.upper()} role",
            reject_status(state, command_id),
        )

    def _set_state(self, state: SessionState) -> None:
        self._state = state
        role = self._role
        self._send_moves = SEND_REQUEST[role][state]
        self._recv_moves = recv_moves = RECEIVE_REQUEST[role][state]
        # deliver_sm legal here and moving no state: receive_data may take its fast path.
        self._fast_deliver = _DELIVER_SM in recv_moves and recv_moves[_DELIVER_SM] is None
        timers = self._timers
        timers.binding = state in INIT_STATES
        timers.keepalive = state in BOUND_STATES

    def _finish(self, state: SessionState) -> None:
        """Enter CLOSED or ERROR: every unanswered request is abandoned."""
        self._set_state(state)
        enquire_seq = self._enquire_seq
        events = self._events
        for seq, (request, _sent_at) in self._inflight.items():
            if seq != enquire_seq:
                events.append(RequestAbandoned(seq, request))
        self._inflight.clear()
        self._pending_in.clear()
        self._enquire_seq = None
        self._timers.enquire_pending = False
