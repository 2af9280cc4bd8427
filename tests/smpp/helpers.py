"""Test helpers: an ESME and an SMSC Session joined by a fake wire (h11's ConnectionPair)."""

from __future__ import annotations

from gateway.smpp.events import Event, RequestReceived
from gateway.smpp.pdu import (
    BindReceiver,
    BindReceiverResp,
    BindTransceiver,
    BindTransceiverResp,
    BindTransmitter,
    BindTransmitterResp,
)
from gateway.smpp.session import Role, Session, SessionConfig

__all__ = ["BIND_KINDS", "SessionPair", "feed_bytewise"]

BindRequest = BindTransmitter | BindReceiver | BindTransceiver
BindResponse = BindTransmitterResp | BindReceiverResp | BindTransceiverResp

#: (bind request class, its response class) for the three bind types.
BIND_KINDS: list[tuple[type[BindRequest], type[BindResponse]]] = [
    (BindTransmitter, BindTransmitterResp),
    (BindReceiver, BindReceiverResp),
    (BindTransceiver, BindTransceiverResp),
]
_RESPONSE_OF = dict(BIND_KINDS)


def feed_bytewise(session: Session, data: bytes, now: float = 0.0) -> list[Event]:
    """Feed ``data`` one octet at a time; return every event it produced."""
    events: list[Event] = []
    for i in range(len(data)):
        session.receive_data(data[i : i + 1], now)
        events.extend(session.events())
    return events


class SessionPair:
    """An ESME session and an SMSC session wired back to back, with no I/O at all."""

    def __init__(
        self,
        esme_config: SessionConfig | None = None,
        smsc_config: SessionConfig | None = None,
        *,
        now: float = 0.0,
    ) -> None:
        self.esme = Session(Role.ESME, esme_config, now=now)
        self.smsc = Session(Role.SMSC, smsc_config, now=now)

    def to_smsc(self, now: float = 0.0) -> list[Event]:
        """Move the ESME's queued bytes to the SMSC; return the SMSC's events."""
        data = self.esme.data_to_send()
        if data:
            self.smsc.receive_data(data, now)
        return self.smsc.events()

    def to_esme(self, now: float = 0.0) -> list[Event]:
        """Move the SMSC's queued bytes to the ESME; return the ESME's events."""
        data = self.smsc.data_to_send()
        if data:
            self.esme.receive_data(data, now)
        return self.esme.events()

    def exchange(self, now: float = 0.0) -> tuple[list[Event], list[Event]]:
        """Pump both ways until the wire is quiet; return (esme events, smsc events).

        Auto-replies (enquire_link_resp, unbind_resp, generic_nack) travel too, so one
        call completes every exchange the sessions can finish on their own.
        """
        esme_events = self.esme.events()
        smsc_events = self.smsc.events()
        for _ in range(100):
            a = self.esme.data_to_send()
            b = self.smsc.data_to_send()
            if not a and not b:
                return esme_events, smsc_events
            if a:
                self.smsc.receive_data(a, now)
            if b:
                self.esme.receive_data(b, now)
            esme_events += self.esme.events()
            smsc_events += self.smsc.events()
        raise AssertionError("the sessions never stopped talking")

    def bind(
        self,
        kind: type[BindRequest] = BindTransceiver,
        *,
        now: float = 0.0,
        status: int = 0,
        system_id: str = "esme",
        smsc_id: str = "smsc",
    ) -> list[Event]:
        """Bind the ESME with ``kind``; the SMSC answers with ``status``.

        Returns the ESME's events (BindSucceeded or BindFailed).
        """
        self.esme.send_request(kind(system_id=system_id, password="secret"), now)
        _, smsc_events = self.exchange(now)
        (request,) = smsc_events
        assert isinstance(request, RequestReceived)
        assert isinstance(request.pdu, kind)
        resp = _RESPONSE_OF[kind]
        self.smsc.send_response(request.seq, resp(system_id=smsc_id), status)
        esme_events, smsc_events = self.exchange(now)
        assert smsc_events == []
        return esme_events
