"""Key encodings of the named databases: byte order is the iteration order LMDB gives us.

* ``outbox``: 8-byte big-endian due time in ms + message id: a cursor scan from the
  start yields work in due order (ties by id).
* ``errors``: phone + ``\\0`` + 8-byte big-endian time in ms. E.164 numbers contain no
  ``\\0``, so one phone's entries are contiguous and sorted by time, and
  ``phone + b"\\x01"`` is the first key after all of them. Two errors of one phone in the
  same millisecond get the next free millisecond (the writer probes), so none is lost.
* ``events``: 8-byte big-endian sequence number.
* ``carrier_ids``: carrier + ``\\0`` + carrier message id (as the caller normalised it).
* ``messages`` / ``recipients`` / ``idempotency``: the UTF-8 id, phone or client key.
* ``unknown_parts``: carrier + ``\\0`` + destination as sent + ``\\0`` + 8-byte big-endian
  ``sending`` time in ms + 2-byte part index + message id: one carrier's parts to one
  destination are contiguous (``unknown_part_prefix``), oldest first.

LMDB refuses keys over 511 bytes; ``check_key`` says so early, naming the field.
"""

from __future__ import annotations

import struct

__all__ = [
    "MAX_KEY_BYTES",
    "carrier_key",
    "check_key",
    "error_key",
    "error_prefix",
    "event_key",
    "from_ms",
    "outbox_key",
    "pack_event_key",
    "parse_error_key",
    "parse_event_key",
    "parse_outbox_key",
    "to_ms",
    "unknown_part_key",
    "unknown_part_prefix",
]

MAX_KEY_BYTES = 511  # LMDB's compiled-in MDB_MAXKEYSIZE (mdb_env_get_maxkeysize)

_U64 = struct.Struct(">Q")
_U16 = struct.Struct(">H")


def to_ms(t: float) -> int:
    """Epoch seconds -> integer milliseconds (rounded; negative clamps to 0)."""
    return max(0, round(t * 1000))


def from_ms(ms: int) -> float:
    """Integer milliseconds -> epoch seconds."""
    return ms / 1000


def check_key(key: bytes, what: str) -> bytes:
    """Return ``key``, or raise ValueError when LMDB could not store it."""
    if not key or len(key) > MAX_KEY_BYTES:
        raise ValueError(f"{what}: key must be 1..{MAX_KEY_BYTES} bytes, got {len(key)}")
    return key


def _no_nul(s: str, what: str) -> bytes:
    b = s.encode()
    if b"\0" in b:
        raise ValueError(f"{what} must not contain NUL: {s!r}")
    return b


def outbox_key(due: float, message_id: str) -> bytes:
    """Outbox key of a message due at ``due`` (epoch seconds)."""
    # ``to_ms`` and ``check_key`` written out: 4 outbox keys per message on the main
    # thread (the key cannot be empty: 8 bytes of time come first).
    ms = round(due * 1000)
    key = _U64.pack(ms if ms > 0 else 0) + message_id.encode()
    if len(key) > MAX_KEY_BYTES:
        check_key(key, "outbox")
    return key


def parse_outbox_key(key: bytes) -> tuple[int, str]:
    """Outbox key -> (due in ms, message id)."""
    return _U64.unpack_from(key)[0], key[8:].decode()


def error_prefix(phone: str) -> bytes:
    """The common prefix of every ``errors`` key of ``phone``."""
    return _no_nul(phone, "phone") + b"\0"


def error_key(phone: str, at_ms: int) -> bytes:
    """``errors`` key of one error of ``phone`` at ``at_ms``."""
    return check_key(error_prefix(phone) + _U64.pack(at_ms), "errors")


def parse_error_key(key: bytes) -> tuple[str, int]:
    """``errors`` key -> (phone, time in ms)."""
    return key[:-9].decode(), _U64.unpack_from(key, len(key) - 8)[0]


def event_key(seq: int) -> bytes:
    """``events`` key of sequence number ``seq``."""
    return _U64.pack(seq)


#: ``event_key`` without the Python call around it, for the writer's loop.
pack_event_key = _U64.pack


def parse_event_key(key: bytes) -> int:
    """``events`` key -> sequence number."""
    return int(_U64.unpack(key)[0])


def carrier_key(carrier: str, carrier_msg_id: str) -> bytes:
    """``carrier_ids`` key."""
    key = carrier.encode() + b"\0" + carrier_msg_id.encode()
    if key.count(b"\0") != 1 or len(key) > MAX_KEY_BYTES:  # one check on the hot path
        _no_nul(carrier, "carrier")
        _no_nul(carrier_msg_id, "carrier message id")
        check_key(key, "carrier_ids")
    return key


def unknown_part_prefix(carrier: str, dest: str) -> bytes:
    """The common prefix of the ``unknown_parts`` keys of ``carrier`` and ``dest``."""
    return _no_nul(carrier, "carrier") + b"\0" + _no_nul(dest, "destination") + b"\0"


def unknown_part_key(carrier: str, dest: str, sent_at: float, message_id: str,
                     part: int) -> bytes:
    """``unknown_parts`` key of part ``part`` of ``message_id``, marked ``sending`` at
    ``sent_at``."""
    return check_key(unknown_part_prefix(carrier, dest) + _U64.pack(to_ms(sent_at))
                     + _U16.pack(part) + message_id.encode(), "unknown_parts")
