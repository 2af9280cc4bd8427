"""A scripted raw SMSC on 127.0.0.1:0 for faults the simulators can't produce.

Each accepted connection runs ``script(conn)``; a :class:`Conn` reads and writes frames
with our own codec (or raw bytes: garbage, a bind_resp and deliver_sm in one segment).
Nothing here is clever: the point is to control exactly which bytes go out together.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio

from gateway.smpp import pdu as P
from gateway.smpp.codec import Frame, decode, encode
from gateway.smpp.constants import Tag
from gateway.smpp.framing import PduBuffer

__all__ = ["Conn", "ScriptedSmsc", "bind_resp_for", "receipt"]


class Conn:
    """One connection to the gateway, seen from the SMSC side."""

    def __init__(self, stream: trio.SocketStream, index: int) -> None:
        self.stream = stream
        self.index = index
        self._buf = PduBuffer()
        self._seq = 0

    def next_seq(self) -> int:
        self._seq += 1
        return self._seq

    async def read_frame(self) -> Frame | None:
        """The next frame from the gateway, or None at EOF / reset."""
        while True:
            raw = self._buf.next_frame()
            if raw is not None:
                return decode(raw)
            try:
                data = await self.stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return None
            if not data:
                return None
            self._buf.feed(data)

    async def send(self, *frames: bytes) -> None:
        """Write frames (or any bytes) in ONE send_all: they leave in one segment."""
        await self.stream.send_all(b"".join(frames))

    def frame(self, pdu: P.Pdu, *, seq: int | None = None, status: int = 0) -> bytes:
        return encode(pdu, seq=self.next_seq() if seq is None else seq, status=status)


Script = Callable[[Conn], Awaitable[None]]


class ScriptedSmsc:
    """``await nursery.start(smsc.serve)`` -> port; connection ``i`` runs ``script(conn)``."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.connections = 0
        self.port = 0

    async def _handle(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        conn = Conn(stream, self.connections)
        try:
            await self.script(conn)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await trio.aclose_forcefully(stream)

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
                    ) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started(self.port)
        await trio.serve_listeners(self._handle, listeners)


def bind_resp_for(frame: Frame) -> P.Pdu:
    """The *_resp matching a bind request frame."""
    resp = {
        P.BindTransceiver: P.BindTransceiverResp,
        P.BindTransmitter: P.BindTransmitterResp,
        P.BindReceiver: P.BindReceiverResp,
    }[type(frame.pdu)]
    return resp(system_id="FAKESMSC")


def receipt(message_id: str, stat: str = "DELIVRD") -> P.DeliverSm:
    """A delivery receipt deliver_sm (Appendix B text + receipted_message_id TLV)."""
    text = (f"id:{message_id} sub:001 dlvrd:001 submit date:2611221200 "
            f"done date:2611221201 stat:{stat} err:000 text:hello").encode()
    return P.DeliverSm(source_addr="33612345678", destination_addr="SMSGW", esm_class=0x04,
                       short_message=text,
                       tlvs=(P.Tlv(Tag.RECEIPTED_MESSAGE_ID, message_id.encode() + b"\0"),))
