"""Persistence: the only package that imports lmdb.

One LMDB environment with named databases (``messages``, ``outbox``, ``carrier_ids``,
``recipients``, ``errors``, ``events``, ``idempotency``, ``meta``), values as msgpack
array Structs (``records``), one writer thread with group commit (``writer``), reads in
short read transactions. ``MemoryStore`` is the in-memory fake with the same interface.

Modules: ``records`` (values), ``keys`` (key encodings), ``batch`` (``WriteBatch``),
``logic`` (shared by both stores), ``kv`` (the transaction interface under it),
``writer`` (group commit), ``lmdb_store``, ``memory_store``, ``interface`` (``Store``),
``errors``, ``cursors`` (named feed positions), ``retention`` (bounded scans and
in-transaction prune ops for ``gateway.retention``).
"""

from typing import TYPE_CHECKING

from .batch import MessageUpdate, RecipientUpdate, WriteBatch
from .errors import (
    IdempotencyConflictError,
    StoreClosedError,
    StoreError,
    StoreFullError,
    StoreUnavailableError,
)
from .interface import Store
from .lmdb_store import DEFAULT_MAP_SIZE, DEFAULT_MAX_MAP_SIZE, Durability, LmdbStore, open_store
from .memory_store import MemoryStore, open_memory_store
from .records import (
    CarrierIdRecord,
    CommitResult,
    ErrorEntry,
    ErrorSummary,
    Event,
    HistoryEntry,
    IdempotencyRecord,
    KeywordEntry,
    Lease,
    MessageRecord,
    OutboxEntry,
    PartRecord,
    PhoneErrors,
    RecipientRecord,
    SendEntry,
    StoreStats,
)

__all__ = [
    "DEFAULT_MAP_SIZE",
    "DEFAULT_MAX_MAP_SIZE",
    "CarrierIdRecord",
    "CommitResult",
    "Durability",
    "ErrorEntry",
    "ErrorSummary",
    "Event",
    "HistoryEntry",
    "IdempotencyConflictError",
    "IdempotencyRecord",
    "KeywordEntry",
    "Lease",
    "LmdbStore",
    "MemoryStore",
    "MessageRecord",
    "MessageUpdate",
    "OutboxEntry",
    "PartRecord",
    "PhoneErrors",
    "RecipientRecord",
    "RecipientUpdate",
    "SendEntry",
    "Store",
    "StoreClosedError",
    "StoreError",
    "StoreFullError",
    "StoreStats",
    "StoreUnavailableError",
    "WriteBatch",
    "open_memory_store",
    "open_store",
]

if TYPE_CHECKING:  # both implementations must satisfy the Store protocol (checked by mypy)

    def _conforms(lmdb_store: LmdbStore, memory_store: MemoryStore) -> tuple[Store, Store]:
        return lmdb_store, memory_store
