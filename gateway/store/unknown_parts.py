"""The ``unknown_parts`` index: parts whose submit got no answer, for receipt reconciliation.

A part becomes ``unknown`` when its submit_sm_resp never came (connection cut, response
timeout, or a part a previous process left ``sending``): its carrier id was never
committed, so its receipt cannot be matched by id. The dispatcher indexes such a part under
what the carrier-facing side knows and the receipt repeats: the carrier, the destination
as sent (``dest_of``; the receipt's source_addr) and the time it was handed to the bind
(the receipt's ``submit date``). The inbound processor looks a receipt that is about to
become ``receipt.unmatched`` up here (``entries_for``) and adopts the one candidate, if
there is exactly one (docs/pipeline.md "Inbound", gateway.pipeline.inbound).

Bounded: an entry goes when its receipt adopts it, with its message (``PruneMessages``
deletes the entries of the message it deletes) and after ``[pipeline] carrier_id_ttl_s``
(the retention sweep, ``PruneUnknownParts``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import msgspec

from .keys import unknown_part_prefix
from .kv import Db, KvTxn
from .records import UnknownPart

__all__ = [
    "UNKNOWN_PART",
    "PruneUnknownParts",
    "delete_entries_of",
    "dest_of",
    "entries_for",
    "unknown_part_chunk",
]

UNKNOWN_PART: Final = msgspec.msgpack.Decoder(UnknownPart)


def dest_of(number: str) -> str:
    """A destination as the index keys it: the digits the submit_sm carried
    (``gateway.pipeline.submit_pdus`` sends the E.164 number without '+'); a receipt's
    source_addr normalised to E.164 (``InboundProcessor._phone``) goes through the same."""
    return number[1:] if number[:1] == "+" else number


def entries_for(tx: KvTxn, carrier: str, dest: str) -> list[tuple[bytes, UnknownPart]]:
    """Every entry of ``carrier`` and ``dest``, oldest first (a prefix scan: a few keys)."""
    try:
        prefix = unknown_part_prefix(carrier, dest)
    except ValueError:
        return []  # a NUL in the address: never indexed
    out: list[tuple[bytes, UnknownPart]] = []
    for key, value in tx.scan(Db.UNKNOWN_PARTS, prefix):
        if not key.startswith(prefix):
            break
        out.append((bytes(key), UNKNOWN_PART.decode(value)))
    return out


def delete_entries_of(tx: KvTxn, message_id: str, carrier_dests: Sequence[tuple[str, str]]
                      ) -> int:
    """In a write txn: delete the entries of ``message_id`` under each ``(carrier, dest)``;
    returns how many."""
    n = 0
    for carrier, dest in set(carrier_dests):
        for key, entry in entries_for(tx, carrier, dest):
            if entry.message_id == message_id and tx.delete(Db.UNKNOWN_PARTS, key):
                n += 1
    return n


def unknown_part_chunk(tx: KvTxn, start: bytes, limit: int
                       ) -> tuple[list[tuple[bytes, UnknownPart]], bytes | None]:
    """Up to ``limit`` ``(key, entry)`` from key ``start`` on, and the key to resume at
    (None at the end)."""
    out: list[tuple[bytes, UnknownPart]] = []
    for key, value in tx.scan(Db.UNKNOWN_PARTS, start):
        if len(out) >= limit:
            return out, bytes(key)
        out.append((bytes(key), UNKNOWN_PART.decode(value)))
    return out, None


class PruneUnknownParts:
    """In the write txn: delete each listed entry still indexed before ``older_than`` (an
    entry is written once; the re-check only skips one deleted or re-written meanwhile)."""

    __slots__ = ("deleted", "keys", "older_than")

    def __init__(self, keys: Sequence[bytes], older_than: float) -> None:
        self.keys = tuple(keys)
        self.older_than = older_than
        self.deleted = 0

    def __call__(self, tx: KvTxn) -> tuple[()]:
        self.deleted = 0
        for key in self.keys:
            v = tx.get(Db.UNKNOWN_PARTS, key)
            if v is not None and UNKNOWN_PART.decode(v).at < self.older_than:
                tx.delete(Db.UNKNOWN_PARTS, key)
                self.deleted += 1
        return ()
