"""What a Session tells its caller: frozen Structs, drained with ``Session.events()``.

Events are nouns and carry values, never callbacks (h11/wsproto). Peer faults are events
(``PeerProtocolError``), never exceptions: the session has already answered the peer
where the protocol says so (generic_nack or the request's error response).

The Structs are ``gc=False`` like the PDUs they carry: they hold only scalars, enums and
PDUs, so they cannot form reference cycles, and creating them stays cheap on the hot path.
"""

from __future__ import annotations

import msgspec

from .pdu import Pdu
from .state import SessionState
from .timers import LinkDeadReason

__all__ = [
    "BindFailed",
    "BindSucceeded",
    "ConnectionClosed",
    "Event",
    "LinkDead",
    "LinkDeadReason",
    "PeerProtocolError",
    "RequestAbandoned",
    "RequestReceived",
    "ResponseReceived",
    "ResponseTimedOut",
    "Unbound",
]


class RequestReceived(msgspec.Struct, frozen=True, gc=False):
    """The peer sent a request; answer it with ``Session.send_response(seq, ...)``.

    deliver_sm / data_sm (ESME), submit_sm / binds (SMSC), and so on. outbind and
    alert_notification have no response (SMPP 3.4 §4.1.7, §4.12): do not answer them.
    enquire_link and unbind never appear here: the session answers them itself.
    """

    seq: int
    pdu: Pdu


class ResponseReceived(msgspec.Struct, frozen=True, gc=False):
    """The response to a request we sent; the request has left the window.

    ``command_id`` is the response's (GENERIC_NACK when the peer nacked the request,
    with ``pdu`` a GenericNack); ``request`` is the Pdu we sent with ``seq``. Responses
    to bind and unbind appear as BindSucceeded / BindFailed / Unbound instead.
    """

    seq: int
    command_id: int
    status: int
    pdu: Pdu
    request: Pdu


class BindSucceeded(msgspec.Struct, frozen=True, gc=False):
    """The bind completed: ``state`` is BOUND_TX / BOUND_RX / BOUND_TRX.

    ``system_id`` is the SMSC's id from the bind response (ESME role), or the ESME's from
    its bind request (SMSC role).
    """

    state: SessionState
    system_id: str


class BindFailed(msgspec.Struct, frozen=True, gc=False):
    """Our bind was refused with ``status`` (e.g. RINVPASWD); the session is OPEN again."""

    status: int


class Unbound(msgspec.Struct, frozen=True, gc=False):
    """The session is unbound (state UNBOUND); close the connection.

    ``by_peer``: the peer sent unbind (we answered unbind_resp), rather than our unbind
    being answered.
    """

    by_peer: bool


class ResponseTimedOut(msgspec.Struct, frozen=True, gc=False):
    """``request`` (sent with ``seq``) got no response within response_timeout.

    It has left the window. Its fate is unknown: requeue with de-duplication.
    """

    seq: int
    request: Pdu


class RequestAbandoned(msgspec.Struct, frozen=True, gc=False):
    """The session closed while ``request`` (sent with ``seq``) was still unanswered.

    Emitted for every inflight request when the session becomes CLOSED or ERROR, after
    the event that says why. Its fate is unknown: requeue with de-duplication.
    """

    seq: int
    request: Pdu


class LinkDead(msgspec.Struct, frozen=True, gc=False):
    """The link is unusable for ``reason``; the session is CLOSED (or ERROR). Close it."""

    reason: LinkDeadReason


class PeerProtocolError(msgspec.Struct, frozen=True, gc=False):
    """The peer broke the protocol; ``status`` is the command_status that describes it.

    Informational: the session has already replied where a reply is due (generic_nack
    or the request's error response with ``status``) and carries on, unless a LinkDead
    follows. ``seq`` is the offending PDU's sequence_number when it was readable.
    """

    status: int
    detail: str
    seq: int | None = None


class ConnectionClosed(msgspec.Struct, frozen=True, gc=False):
    """The peer closed the connection (``receive_data(b"")``); the session is CLOSED."""


Event = (
    RequestReceived
    | ResponseReceived
    | BindSucceeded
    | BindFailed
    | Unbound
    | ResponseTimedOut
    | RequestAbandoned
    | LinkDead
    | PeerProtocolError
    | ConnectionClosed
)
"""Anything ``Session.events()`` returns."""
