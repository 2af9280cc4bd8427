"""Store errors: what a failed commit or read raises, with the cause chained.

The API maps them at its edge: ``StoreFullError`` -> 507, ``StoreUnavailableError`` -> 503,
``IdempotencyConflictError`` -> 409. A failed commit never leaves a partial write: the
transaction of that group was aborted (or, for a per-batch failure, only that batch's
nested transaction).
"""

from __future__ import annotations

__all__ = [
    "IdempotencyConflictError",
    "StoreClosedError",
    "StoreError",
    "StoreFullError",
    "StoreUnavailableError",
]


class StoreError(Exception):
    """Base of every error the store raises on purpose."""


class StoreFullError(StoreError):
    """The write did not fit: the map is full and may not (or could not) grow further.

    Nothing of the failed batches was written. Retrying after space is freed or
    ``max_map_size`` is raised will work.
    """


class StoreUnavailableError(StoreError):
    """The store could not read or write (disk error, LMDB panic, closed store)."""


class StoreClosedError(StoreUnavailableError):
    """The store is closed (or closing): it takes no new commits."""


class IdempotencyConflictError(StoreError):
    """A batch claimed an idempotency key already used for another message.

    Only that batch failed; others in the same group commit were written.
    """

    def __init__(self, key: str, existing_message_id: str) -> None:
        super().__init__(key, existing_message_id)  # args as given: copy/pickle work
        self.key = key
        self.existing_message_id = existing_message_id

    def __str__(self) -> str:
        return f"idempotency key {self.key!r} already used for {self.existing_message_id!r}"
