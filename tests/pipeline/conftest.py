"""Shared fixtures of the pipeline tests: a config, memory/LMDB stores, recipients."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime
from pathlib import Path

import pytest
import trio.testing

from gateway.config import CarrierConfig, GatewayConfig, PipelineConfig, RouteConfig
from gateway.store import (
    LmdbStore,
    MemoryStore,
    RecipientRecord,
    Store,
    WriteBatch,
    open_memory_store,
    open_store,
)

#: Friday 2 January 2026, 17:00 UTC = 09:00 in Los Angeles, 12:00 in New York: open
#: everywhere in the US under the default quiet-hours table.
NOW = datetime(2026, 1, 2, 17, 0, tzinfo=UTC).timestamp()
#: 06:00 UTC = 22:00 the evening before in Los Angeles: quiet hours.
NIGHT = datetime(2026, 1, 2, 6, 0, tzinfo=UTC).timestamp()

LA = "+14155550100"  # California, America/Los_Angeles
LA2 = "+14155550101"
NY = "+12125550100"  # New York
FR = "+33612345678"


def make_config(*, routes: Iterable[tuple[str, tuple[str, ...]]] = (("+", ("c1",)),),
                carriers: Iterable[str] = ("c1",), outbox_max: int = 100_000,
                **carrier_kw: object) -> GatewayConfig:
    """A config with the named carriers (``host`` unused) and routes."""
    cs = tuple(CarrierConfig(name=n, host="127.0.0.1", system_id="sys", **carrier_kw)  # type: ignore[arg-type]
               for n in carriers)
    rs = tuple(RouteConfig(prefix=p, carriers=c) for p, c in routes)
    return GatewayConfig(carriers=cs, routes=rs, pipeline=PipelineConfig(outbox_max=outbox_max))


@pytest.fixture
def config() -> GatewayConfig:
    return make_config()


@pytest.fixture
async def mem_store() -> AsyncIterator[MemoryStore]:
    async with open_memory_store() as store:
        yield store


@pytest.fixture
async def lmdb_store(tmp_path: Path) -> AsyncIterator[LmdbStore]:
    async with open_store(tmp_path / "db", durability="os") as store:
        yield store


# The dispatcher tests run on both stores (``store``), each with its autojump ``clock``.
@pytest.fixture(params=["memory", "lmdb"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def clock(kind: str) -> trio.testing.MockClock:
    """Autojump; with LMDB only after 20 ms of real idleness: its commits run in a thread,
    which trio's clock cannot see (a jump mid-commit would fire timeouts early)."""
    return trio.testing.MockClock(autojump_threshold=0.0 if kind == "memory" else 0.02)


@pytest.fixture
def store(kind: str, mem_store: Store, lmdb_store: Store) -> Store:
    return mem_store if kind == "memory" else lmdb_store


async def put_recipients(store: Store, phones: Iterable[str], *, consent: str = "subscribed",
                         double_opt_in: str = "none", **fields: object) -> None:
    """Store recipient records (consent loaded) in one commit."""
    batch = WriteBatch()
    for p in phones:
        batch.put_recipient(RecipientRecord(phone=p, consent=consent,  # type: ignore[arg-type]
                                            double_opt_in=double_opt_in, **fields))
    await store.commit(batch)
