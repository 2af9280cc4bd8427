"""Protocol errors, split by whose fault they are (the h11 pattern).

- ``LocalProtocolError``: we broke the rules (an over-long field, a request in the wrong
  bind state). A bug or a bad config on our side; never the peer's fault.
- ``RemoteProtocolError``: the peer did (a malformed PDU, a bad command_length). The
  session answers with ``.status`` (generic_nack or the error response) and carries on
  or rebinds; a peer's bad PDU never crashes the process.

Every error carries ``.status``, the SMPP 3.4 §5.1.3 command_status that describes it
best, so the caller can put it on the wire without a second lookup.
"""

from __future__ import annotations

from .constants import CommandStatus

__all__ = [
    "DecodeError",
    "EncodeError",
    "FramingError",
    "LocalProtocolError",
    "ProtocolError",
    "RemoteProtocolError",
]


class ProtocolError(Exception):
    """Base of every SMPP protocol error; ``status`` is the command_status to report."""

    status: int

    def __init__(self, message: str, status: int = CommandStatus.RSYSERR) -> None:
        super().__init__(message)
        self.status = status


class LocalProtocolError(ProtocolError):
    """We misused the protocol (our bug or config), e.g. a field too long to encode."""


class RemoteProtocolError(ProtocolError):
    """The peer broke the protocol, e.g. sent a PDU we cannot decode."""


class EncodeError(LocalProtocolError, ValueError):
    """A PDU value cannot be encoded; ``field`` names it (e.g. ``"source_addr"``)."""

    field: str

    def __init__(self, field: str, message: str, status: int = CommandStatus.RSYSERR) -> None:
        super().__init__(f"{field}: {message}", status)
        self.field = field


class DecodeError(RemoteProtocolError):
    """A frame from the peer cannot be decoded.

    ``field`` names the PDU field (or ``"header"``, ``"command_id"``, ``"tlv"``, ...)
    and ``status`` the command_status to answer with. When the header was readable,
    ``command_id`` and ``sequence_number`` are set so the session can answer the right
    request: a generic_nack for an unusable header (RINVCMDID, RINVCMDLEN), otherwise
    the request's own response with ``status`` (SMPP 3.4 §2.4, §4.3).
    """

    field: str
    command_id: int | None
    sequence_number: int | None

    def __init__(
        self,
        field: str,
        status: int,
        detail: str = "",
        *,
        command_id: int | None = None,
        sequence_number: int | None = None,
    ) -> None:
        try:
            name = CommandStatus(status).name
        except ValueError:
            name = hex(status)
        super().__init__(f"{field}: {detail or 'invalid'} ({name})", status)
        self.field = field
        self.command_id = command_id
        self.sequence_number = sequence_number


class FramingError(RemoteProtocolError):
    """The stream carries a command_length we refuse (< 16 or > max): drop the link.

    Once the framing is lost nothing after it can be trusted, so the buffer keeps raising.
    """

    length: int

    def __init__(self, length: int, message: str) -> None:
        super().__init__(message, CommandStatus.RINVCMDLEN)
        self.length = length
