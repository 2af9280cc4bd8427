"""Session states and the operation matrix: the one place that knows what is legal when.

Rule 1 (after h11's ``_state.py``): every fact that decides whether a *request* may be
sent or received, and which state it leads to, lives in the tables of this module. The
session asks them (one dict lookup per PDU) and never spells out an if-chain of its own.

Sources: SMPP 3.4 §2.3 ("SMPP PDUs by session state", Table 2-1) and §2.4 (outbind),
and the SMPP 5.0 §2.4 operation matrix as Rusmpp writes it out
(``SessionState::can_send_as_esme`` / ``can_send_as_mc``). Broadcast PDUs are SMPP 5.0
only and absent here.

Refinements over the spec's states, so transitions need no side flags:

- ``BINDING``: a bind request is outstanding (the ESME sent it, or the SMSC received
  it and has not answered yet). The spec calls this OPEN; splitting it lets the table
  refuse a second bind and tells the session which response completes the bind.
- ``UNBINDING``: we sent unbind and wait for unbind_resp. We may not start new
  requests, but the peer's deliver_sm that crossed our unbind is still accepted (as
  ESME) so no receipt is bounced (SMPP 3.4 §2.8: outstanding operations complete).
- ``ERROR``: the session failed (the framing was lost); nothing is legal any more.

Responses are not in the matrix: a response is legal exactly when it answers a request
that is still waiting for it (matched by sequence_number, SMPP 3.4 §2.6), in any state in
``RESPONSE_STATES``. The session keeps those two tables (inflight and pending-in).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from typing import Final

from .constants import CommandId, CommandStatus

__all__ = [
    "BIND_FAILED_STATE",
    "BIND_REQUESTS",
    "BIND_RESPONSE_STATE",
    "BOUND_STATES",
    "INIT_STATES",
    "LINK_REQUESTS",
    "RECEIVE_REQUEST",
    "RESPONSE_STATES",
    "SEND_REQUEST",
    "Role",
    "SessionState",
    "Transitions",
    "can_receive",
    "can_send",
    "reject_status",
]


class Role(enum.Enum):
    """Which end of the link this session plays (SMPP 3.4 §2.1)."""

    #: External Short Message Entity: binds to the SMSC, submits, receives receipts/MO.
    ESME = "esme"
    #: Short Message Service Centre (MC in SMPP 5.0): our simulator's role.
    SMSC = "smsc"


class SessionState(enum.StrEnum):
    """The state of one SMPP session (SMPP 3.4 §2.3, SMPP 5.0 §2.2); values are labels."""

    #: Connected, not bound. Only bind (ESME) / outbind (SMSC) and enquire_link.
    OPEN = "open"
    #: A bind request is outstanding (our refinement of OPEN, see the module docstring).
    BINDING = "binding"
    #: The SMSC sent outbind; the ESME must bind_receiver or bind_transceiver (§2.2.1).
    OUTBOUND = "outbound"
    #: Bound as transmitter: ESME submits, SMSC answers.
    BOUND_TX = "bound_tx"
    #: Bound as receiver: SMSC delivers (receipts, MO), ESME answers.
    BOUND_RX = "bound_rx"
    #: Bound as transceiver: both directions (SMPP 3.4 §2.2.1).
    BOUND_TRX = "bound_trx"
    #: We sent unbind and wait for unbind_resp.
    UNBINDING = "unbinding"
    #: Unbind completed (either side); the caller closes the connection.
    UNBOUND = "unbound"
    #: The connection is gone (EOF, link dead, local close).
    CLOSED = "closed"
    #: The session failed (lost framing); it refuses further use.
    ERROR = "error"


Transitions = Mapping[int, SessionState | None]
"""command_id -> the state it leads to, or None when the state does not change."""

_C = CommandId
_S = SessionState

BIND_REQUESTS: Final = frozenset(
    {int(_C.BIND_TRANSMITTER), int(_C.BIND_RECEIVER), int(_C.BIND_TRANSCEIVER)}
)
"""The three bind requests (SMPP 3.4 §4.1)."""

LINK_REQUESTS: Final = frozenset(BIND_REQUESTS | {int(_C.UNBIND), int(_C.ENQUIRE_LINK)})
"""Session-management requests: if one goes unanswered the link is dead (§2.9, §4.11)."""

BOUND_STATES: Final = frozenset({_S.BOUND_TX, _S.BOUND_RX, _S.BOUND_TRX})

BIND_RESPONSE_STATE: Final[Mapping[int, SessionState]] = {
    int(_C.BIND_TRANSMITTER_RESP): _S.BOUND_TX,
    int(_C.BIND_RECEIVER_RESP): _S.BOUND_RX,
    int(_C.BIND_TRANSCEIVER_RESP): _S.BOUND_TRX,
}
"""A successful (status 0) bind response moves both ends to this state (§2.2.1)."""

BIND_FAILED_STATE: Final = _S.OPEN
"""A refused bind leaves the session OPEN; the ESME may try again or close (§4.1)."""

INIT_STATES: Final = frozenset({_S.OPEN, _S.BINDING, _S.OUTBOUND})
"""Not bound yet: the session init (bind) timer runs (SMPP 5.0 §2.9 session_init_timer)."""

RESPONSE_STATES: Final = frozenset(set(_S) - {_S.CLOSED, _S.ERROR})
"""States in which responses to outstanding requests may still be sent and received."""


def _moves(stay: Iterable[int] = (), **goto: Iterable[int]) -> dict[int, SessionState | None]:
    """Build one cell of the matrix: ``stay`` ids keep the state, ``goto[STATE]`` move."""
    cell: dict[int, SessionState | None] = dict.fromkeys((int(c) for c in stay), None)
    for state_name, ids in goto.items():
        cell.update(dict.fromkeys((int(c) for c in ids), SessionState[state_name]))
    return cell


_LINK = (_C.ENQUIRE_LINK,)
# ESME -> SMSC traffic requests, allowed in BOUND_TX/BOUND_TRX (§2.3 Table 2-1).
_TX = (_C.SUBMIT_SM, _C.SUBMIT_MULTI, _C.DATA_SM, _C.QUERY_SM, _C.CANCEL_SM, _C.REPLACE_SM)
# SMSC -> ESME traffic requests, allowed in BOUND_RX/BOUND_TRX (§2.3 Table 2-1).
_RX = (_C.DELIVER_SM, _C.DATA_SM, _C.ALERT_NOTIFICATION)
_BINDS = (_C.BIND_TRANSMITTER, _C.BIND_RECEIVER, _C.BIND_TRANSCEIVER)
# After outbind the ESME binds as receiver (3.4 §4.1.7) or transceiver (5.0 §2.2.1).
_OUTBOUND_BINDS = (_C.BIND_RECEIVER, _C.BIND_TRANSCEIVER)
_UNBIND = (_C.UNBIND,)
_NONE: dict[int, SessionState | None] = {}

SEND_REQUEST: Final[Mapping[Role, Mapping[SessionState, Transitions]]] = {
    Role.ESME: {
        _S.OPEN: _moves(_LINK, BINDING=_BINDS),
        _S.BINDING: _moves(_LINK),
        _S.OUTBOUND: _moves(_LINK, BINDING=_OUTBOUND_BINDS),
        _S.BOUND_TX: _moves((*_LINK, *_TX), UNBINDING=_UNBIND),
        _S.BOUND_RX: _moves(_LINK, UNBINDING=_UNBIND),
        _S.BOUND_TRX: _moves((*_LINK, *_TX), UNBINDING=_UNBIND),
        _S.UNBINDING: _moves(_LINK),
        _S.UNBOUND: _moves(_LINK),
        _S.CLOSED: _NONE,
        _S.ERROR: _NONE,
    },
    Role.SMSC: {
        _S.OPEN: _moves(_LINK, OUTBOUND=(_C.OUTBIND,)),
        _S.BINDING: _moves(_LINK),
        _S.OUTBOUND: _moves(_LINK),
        _S.BOUND_TX: _moves(_LINK, UNBINDING=_UNBIND),
        _S.BOUND_RX: _moves((*_LINK, *_RX), UNBINDING=_UNBIND),
        _S.BOUND_TRX: _moves((*_LINK, *_RX), UNBINDING=_UNBIND),
        _S.UNBINDING: _moves(_LINK),
        _S.UNBOUND: _moves(_LINK),
        _S.CLOSED: _NONE,
        _S.ERROR: _NONE,
    },
}
"""``SEND_REQUEST[role][state][command_id]``: a request we may send, and where it leads.

A missing key means illegal: ``send_request`` raises LocalProtocolError.
"""

RECEIVE_REQUEST: Final[Mapping[Role, Mapping[SessionState, Transitions]]] = {
    Role.ESME: {
        _S.OPEN: _moves(_LINK, OUTBOUND=(_C.OUTBIND,)),
        _S.BINDING: _moves(_LINK),
        _S.OUTBOUND: _moves(_LINK),
        _S.BOUND_TX: _moves(_LINK, UNBOUND=_UNBIND),
        _S.BOUND_RX: _moves((*_LINK, *_RX), UNBOUND=_UNBIND),
        _S.BOUND_TRX: _moves((*_LINK, *_RX), UNBOUND=_UNBIND),
        # A deliver_sm may cross our unbind on the wire: accept it rather than bounce a
        # receipt (some SMSCs treat an error resp to a receipt as final). Crossed unbinds
        # are answered too.
        _S.UNBINDING: _moves((*_LINK, *_RX), UNBOUND=_UNBIND),
        _S.UNBOUND: _moves(_LINK),
        _S.CLOSED: _NONE,
        _S.ERROR: _NONE,
    },
    Role.SMSC: {
        _S.OPEN: _moves(_LINK, BINDING=_BINDS),
        _S.BINDING: _moves(_LINK),
        _S.OUTBOUND: _moves(_LINK, BINDING=_OUTBOUND_BINDS),
        _S.BOUND_TX: _moves((*_LINK, *_TX), UNBOUND=_UNBIND),
        _S.BOUND_RX: _moves(_LINK, UNBOUND=_UNBIND),
        _S.BOUND_TRX: _moves((*_LINK, *_TX), UNBOUND=_UNBIND),
        # We asked to unbind: refuse new submits (RINVBNDSTS), answer a crossed unbind.
        _S.UNBINDING: _moves(_LINK, UNBOUND=_UNBIND),
        _S.UNBOUND: _moves(_LINK),
        _S.CLOSED: _NONE,
        _S.ERROR: _NONE,
    },
}
"""``RECEIVE_REQUEST[role][state][command_id]``: a request the peer may send us, and where
it leads. A missing key means illegal: the session answers the request's response with
``reject_status(state, command_id)`` and reports a PeerProtocolError.
"""

_ALREADY_BOUND: Final = frozenset(
    {_S.BINDING, _S.BOUND_TX, _S.BOUND_RX, _S.BOUND_TRX, _S.UNBINDING}
)


def reject_status(state: SessionState, command_id: int) -> int:
    """The command_status answering a request that is illegal in ``state``.

    A bind on a session that is bound (or binding) gets ESME_RALYBND; anything else out
    of place gets ESME_RINVBNDSTS, "incorrect BIND status for given command" (§5.1.3).
    """
    if command_id in BIND_REQUESTS and state in _ALREADY_BOUND:
        return int(CommandStatus.RALYBND)
    return int(CommandStatus.RINVBNDSTS)


def can_send(role: Role, state: SessionState, command_id: int) -> bool:
    """True if ``role`` may send the request ``command_id`` in ``state``."""
    return command_id in SEND_REQUEST[role][state]


def can_receive(role: Role, state: SessionState, command_id: int) -> bool:
    """True if ``role`` may receive the request ``command_id`` in ``state``."""
    return command_id in RECEIVE_REQUEST[role][state]
