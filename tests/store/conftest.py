"""Fixtures for the store tests: the same contract runs against LMDB and the memory fake."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from gateway.store import MemoryStore, Store, open_store

KINDS = ["lmdb", "memory"]


class Harness:
    """Opens "the same" store again and again: a directory for LMDB, one object for memory."""

    def __init__(self, kind: str, path: Path) -> None:
        self.kind = kind
        self.path = path
        self._memory = MemoryStore()

    @asynccontextmanager
    async def open(self) -> AsyncIterator[Store]:
        if self.kind == "lmdb":
            async with open_store(self.path, map_size=4 << 20) as store:
                yield store
        else:
            yield self._memory


@pytest.fixture(params=KINDS)
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Harness:
    return Harness(request.param, tmp_path / "store")


@pytest.fixture
async def store(harness: Harness) -> AsyncIterator[Store]:
    async with harness.open() as s:
        yield s
