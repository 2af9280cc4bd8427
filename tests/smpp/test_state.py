"""The operation matrix (gateway.smpp.state), table-driven against SMPP 3.4 §2.3 / 5.0 §2.4."""

from __future__ import annotations

import pytest

from gateway.smpp.constants import CommandId, CommandStatus
from gateway.smpp.pdu import PDU_TYPES
from gateway.smpp.state import (
    BIND_RESPONSE_STATE,
    BOUND_STATES,
    RECEIVE_REQUEST,
    SEND_REQUEST,
    Role,
    SessionState,
    can_receive,
    can_send,
    reject_status,
)

C = CommandId
S = SessionState
ESME, SMSC = Role.ESME, Role.SMSC
REQUESTS = [c for c in CommandId if not c & 0x80000000]
TX = {C.SUBMIT_SM, C.SUBMIT_MULTI, C.DATA_SM, C.QUERY_SM, C.CANCEL_SM, C.REPLACE_SM}
RX = {C.DELIVER_SM, C.DATA_SM, C.ALERT_NOTIFICATION}
BINDS = {C.BIND_TRANSMITTER, C.BIND_RECEIVER, C.BIND_TRANSCEIVER}
LINK = {C.ENQUIRE_LINK}

# (role, state) -> the requests it may send: the whole matrix, written out by hand.
SENDS: dict[tuple[Role, SessionState], set[CommandId]] = {
    (ESME, S.OPEN): BINDS | LINK,
    (ESME, S.BINDING): LINK,
    (ESME, S.OUTBOUND): {C.BIND_RECEIVER, C.BIND_TRANSCEIVER} | LINK,
    (ESME, S.BOUND_TX): TX | LINK | {C.UNBIND},
    (ESME, S.BOUND_RX): LINK | {C.UNBIND},
    (ESME, S.BOUND_TRX): TX | LINK | {C.UNBIND},
    (ESME, S.UNBINDING): LINK,
    (ESME, S.UNBOUND): LINK,
    (ESME, S.CLOSED): set(),
    (ESME, S.ERROR): set(),
    (SMSC, S.OPEN): {C.OUTBIND} | LINK,
    (SMSC, S.BINDING): LINK,
    (SMSC, S.OUTBOUND): LINK,
    (SMSC, S.BOUND_TX): LINK | {C.UNBIND},
    (SMSC, S.BOUND_RX): RX | LINK | {C.UNBIND},
    (SMSC, S.BOUND_TRX): RX | LINK | {C.UNBIND},
    (SMSC, S.UNBINDING): LINK,
    (SMSC, S.UNBOUND): LINK,
    (SMSC, S.CLOSED): set(),
    (SMSC, S.ERROR): set(),
}
RECEIVES: dict[tuple[Role, SessionState], set[CommandId]] = {
    (ESME, S.OPEN): {C.OUTBIND} | LINK,
    (ESME, S.BINDING): LINK,
    (ESME, S.OUTBOUND): LINK,
    (ESME, S.BOUND_TX): LINK | {C.UNBIND},
    (ESME, S.BOUND_RX): RX | LINK | {C.UNBIND},
    (ESME, S.BOUND_TRX): RX | LINK | {C.UNBIND},
    (ESME, S.UNBINDING): RX | LINK | {C.UNBIND},
    (ESME, S.UNBOUND): LINK,
    (ESME, S.CLOSED): set(),
    (ESME, S.ERROR): set(),
    (SMSC, S.OPEN): BINDS | LINK,
    (SMSC, S.BINDING): LINK,
    (SMSC, S.OUTBOUND): {C.BIND_RECEIVER, C.BIND_TRANSCEIVER} | LINK,
    (SMSC, S.BOUND_TX): TX | LINK | {C.UNBIND},
    (SMSC, S.BOUND_RX): LINK | {C.UNBIND},
    (SMSC, S.BOUND_TRX): TX | LINK | {C.UNBIND},
    (SMSC, S.UNBINDING): LINK | {C.UNBIND},
    (SMSC, S.UNBOUND): LINK,
    (SMSC, S.CLOSED): set(),
    (SMSC, S.ERROR): set(),
}


@pytest.mark.parametrize(("role", "state"), list(SENDS))
def test_send_matrix(role: Role, state: SessionState) -> None:
    allowed = {c for c in REQUESTS if can_send(role, state, c)}
    assert allowed == SENDS[role, state]


@pytest.mark.parametrize(("role", "state"), list(RECEIVES))
def test_receive_matrix(role: Role, state: SessionState) -> None:
    allowed = {c for c in REQUESTS if can_receive(role, state, c)}
    assert allowed == RECEIVES[role, state]


def test_tables_cover_every_role_and_state() -> None:
    for table in (SEND_REQUEST, RECEIVE_REQUEST):
        assert set(table) == set(Role)
        for role in Role:
            assert set(table[role]) == set(SessionState)


def test_responses_are_never_in_the_matrix() -> None:
    # Responses are legal when they answer a pending request, not by state.
    for table in (SEND_REQUEST, RECEIVE_REQUEST):
        for by_state in table.values():
            for cell in by_state.values():
                assert not any(c & 0x80000000 for c in cell)


def test_every_request_in_the_matrix_is_a_known_pdu() -> None:
    for table in (SEND_REQUEST, RECEIVE_REQUEST):
        for by_state in table.values():
            for cell in by_state.values():
                assert set(cell) <= set(PDU_TYPES)


def test_what_one_side_sends_the_other_receives_when_bound() -> None:
    # SMPP 5.0 §2.4: the ESME's send column is the MC's receive column, and vice versa.
    for state in BOUND_STATES:
        assert set(SEND_REQUEST[ESME][state]) == set(RECEIVE_REQUEST[SMSC][state])
        assert set(SEND_REQUEST[SMSC][state]) == set(RECEIVE_REQUEST[ESME][state])


@pytest.mark.parametrize(
    ("role", "state", "command", "after"),
    [
        (ESME, S.OPEN, C.BIND_TRANSMITTER, S.BINDING),
        (ESME, S.OPEN, C.BIND_RECEIVER, S.BINDING),
        (ESME, S.OPEN, C.BIND_TRANSCEIVER, S.BINDING),
        (ESME, S.OUTBOUND, C.BIND_RECEIVER, S.BINDING),
        (ESME, S.BOUND_TX, C.UNBIND, S.UNBINDING),
        (ESME, S.BOUND_TRX, C.SUBMIT_SM, None),
        (SMSC, S.OPEN, C.OUTBIND, S.OUTBOUND),
        (SMSC, S.BOUND_RX, C.DELIVER_SM, None),
        (SMSC, S.BOUND_RX, C.UNBIND, S.UNBINDING),
    ],
)
def test_send_transitions(
    role: Role, state: SessionState, command: CommandId, after: SessionState | None
) -> None:
    assert SEND_REQUEST[role][state][command] is after


@pytest.mark.parametrize(
    ("role", "state", "command", "after"),
    [
        (SMSC, S.OPEN, C.BIND_TRANSCEIVER, S.BINDING),
        (SMSC, S.OUTBOUND, C.BIND_TRANSCEIVER, S.BINDING),
        (SMSC, S.BOUND_TX, C.UNBIND, S.UNBOUND),
        (SMSC, S.UNBINDING, C.UNBIND, S.UNBOUND),
        (ESME, S.OPEN, C.OUTBIND, S.OUTBOUND),
        (ESME, S.BOUND_RX, C.UNBIND, S.UNBOUND),
        (ESME, S.UNBINDING, C.UNBIND, S.UNBOUND),
        (ESME, S.BOUND_RX, C.DELIVER_SM, None),
    ],
)
def test_receive_transitions(
    role: Role, state: SessionState, command: CommandId, after: SessionState | None
) -> None:
    assert RECEIVE_REQUEST[role][state][command] is after


def test_bind_responses_lead_to_the_matching_bound_state() -> None:
    assert BIND_RESPONSE_STATE == {
        C.BIND_TRANSMITTER_RESP: S.BOUND_TX,
        C.BIND_RECEIVER_RESP: S.BOUND_RX,
        C.BIND_TRANSCEIVER_RESP: S.BOUND_TRX,
    }


@pytest.mark.parametrize(
    ("state", "command", "status"),
    [
        (S.OPEN, C.SUBMIT_SM, CommandStatus.RINVBNDSTS),
        (S.BOUND_RX, C.SUBMIT_SM, CommandStatus.RINVBNDSTS),
        (S.UNBOUND, C.DELIVER_SM, CommandStatus.RINVBNDSTS),
        (S.OUTBOUND, C.BIND_TRANSMITTER, CommandStatus.RINVBNDSTS),
        (S.BOUND_TX, C.BIND_TRANSMITTER, CommandStatus.RALYBND),
        (S.BOUND_TRX, C.BIND_RECEIVER, CommandStatus.RALYBND),
        (S.BINDING, C.BIND_TRANSCEIVER, CommandStatus.RALYBND),
    ],
)
def test_reject_status(state: SessionState, command: CommandId, status: CommandStatus) -> None:
    assert reject_status(state, command) == status
