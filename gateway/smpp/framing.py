"""Cut a byte stream into SMPP frames (SMPP 3.4 §3.2: a u32 command_length leads each PDU).

``PduBuffer`` is sans-IO: ``feed()`` whatever the socket returned, then call
``next_frame()`` until it returns None. Consumed bytes are tracked with an offset into
one bytearray and compacted only when the dead prefix dominates, so draining many small
frames from one large chunk is linear, not quadratic.

command_length is checked as soon as its 4 octets arrive: below 16 (the header alone) or
above ``max_length`` raises ``FramingError`` (status RINVCMDLEN). We never wait for a
length we will refuse, so a garbage length cannot make us buffer forever, and a bad
length poisons the buffer: every later call raises again, since nothing after a lost
frame boundary can be trusted (the session answers generic_nack and drops the link).
go-smpp caps frames at 4 KiB; we default to 64 KiB + header because message_payload may
legitimately carry up to 64 KiB (SMPP 3.4 §5.3.2.32).
"""

from __future__ import annotations

from typing import Final

from .constants import HEADER_LENGTH
from .errors import FramingError

__all__ = ["DEFAULT_MAX_LENGTH", "PduBuffer"]

DEFAULT_MAX_LENGTH: Final = 65536 + 1024
"""Largest command_length accepted by default: a full message_payload plus headroom."""

_COMPACT_AT: Final = 65536


class PduBuffer:
    """Accumulates stream bytes and yields complete frames (header included) as ``bytes``."""

    __slots__ = ("_buf", "_error", "_pos", "max_length")

    def __init__(self, max_length: int = DEFAULT_MAX_LENGTH) -> None:
        if max_length < HEADER_LENGTH:
            raise ValueError(f"max_length {max_length} < {HEADER_LENGTH}")
        self.max_length = max_length
        self._buf = bytearray()
        self._pos = 0
        self._error: FramingError | None = None

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Append bytes received from the peer."""
        buf = self._buf
        pos = self._pos
        # (next_frame() empties the buffer when it consumes everything, so pos < len(buf).)
        if pos and (pos >= _COMPACT_AT or pos * 2 >= len(buf)):
            # Drop the consumed prefix only when it is at least half the buffer (or
            # large): each byte moves O(1) times amortised.
            del buf[:pos]
            self._pos = 0
        buf += data

    def next_frame(self) -> bytes | None:
        """The next complete frame, or None until more bytes arrive.

        Raises ``FramingError`` for a command_length < 16 or > ``max_length``.
        """
        if self._error is not None:
            raise self._error
        buf = self._buf
        pos = self._pos
        avail = len(buf) - pos
        if avail < 4:
            return None
        length = int.from_bytes(buf[pos : pos + 4], "big")
        if length < HEADER_LENGTH or length > self.max_length:
            self._error = FramingError(
                length,
                f"command_length {length} outside {HEADER_LENGTH}..{self.max_length}",
            )
            raise self._error
        if avail < length:
            return None
        end = pos + length
        frame = bytes(buf[pos:end])
        if end == len(buf):
            buf.clear()
            self._pos = 0
        else:
            self._pos = end
        return frame

    def frames(self) -> list[bytes]:
        """Every complete frame now buffered (possibly none), in order.

        If a bad command_length is met after some good frames, those are returned first
        and the next call raises ``FramingError``.
        """
        out: list[bytes] = []
        try:
            while (frame := self.next_frame()) is not None:
                out.append(frame)
        except FramingError:
            if not out:
                raise
        return out

    @property
    def pending(self) -> int:
        """Octets buffered but not yet returned as a frame (non-zero at EOF = truncated)."""
        return len(self._buf) - self._pos
