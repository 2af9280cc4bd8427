"""Bind and Carrier against our own sandbox SMSC (gateway.sim), in memory, autojump clock."""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

from gateway.bind import (
    Bind,
    BindRefused,
    BindSettings,
    Inbound,
    OutcomeKind,
    SubmitBatch,
    WorkQueue,
)
from gateway.carriers import Carrier
from gateway.sim import SimServer, SimSettings
from gateway.smpp import pdu as P


def part(i: int, *, dlr: int = 1) -> P.SubmitSm:
    return P.SubmitSm(source_addr="ACME", source_addr_ton=5, dest_addr_ton=1, dest_addr_npi=1,
                      destination_addr=f"4477009{i:05d}", registered_delivery=dlr,
                      short_message=b"hello %d" % i)


def settings(**kw: object) -> BindSettings:
    base: dict[str, object] = {"name": "sb", "system_id": "sandbox", "password": "sandbox",
                               "enquire_link": 30.0, "response_timeout": 5.0,
                               "backoff_initial": 1.0, "backoff_max": 30.0}
    base.update(kw)
    return BindSettings(**base)  # type: ignore[arg-type]


@asynccontextmanager
async def sim(**kw: object) -> AsyncIterator[SimServer]:
    s = SimSettings(port=0, seed=1, **kw)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        server: SimServer = await nursery.start(SimServer(s).run)
        yield server
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def carrier(server: SimServer, **kw: object) -> AsyncIterator[Carrier]:
    c = Carrier(settings(**kw), connect=server.connect_memory, rng=random.Random(3))
    async with trio.open_nursery() as nursery:
        await nursery.start(c.run)
        yield c
        await c.shutdown()


async def test_bind_submit_and_receipt(autojump_clock: trio.testing.MockClock) -> None:
    async with sim(dlr_delay=1.0) as server:
        queue = WorkQueue()
        send, recv = trio.open_memory_channel[list[Inbound]](10)
        bind = Bind(settings(), queue=queue, inbound=send, connect=server.connect_memory)
        async with trio.open_nursery() as nursery:
            await nursery.start(bind.run)
            batch = SubmitBatch([part(i) for i in range(10)])
            queue.put_nowait(batch)
            outcomes = await batch.wait()
            assert [o.kind for o in outcomes] == [OutcomeKind.ACCEPTED] * 10
            ids = {o.message_id for o in outcomes}
            assert len(ids) == 10
            got: list[Inbound] = []
            with trio.fail_after(5):
                while len(got) < 10:
                    got.extend(await recv.receive())
            assert all(x.is_receipt for x in got)
            for x in got:
                assert x.ack()
            await trio.sleep(0.1)
            assert server.stats.dlrs_acked == 10
            bind.close()
        assert server.stats.unbinds == 1


async def test_wrong_password_is_refused(autojump_clock: trio.testing.MockClock) -> None:
    async with sim() as server:
        bind = Bind(settings(password="nope"), connect=server.connect_memory)
        with pytest.raises(BindRefused) as info:
            await bind.run()
        assert info.value.status == 0x0E
        assert "ESME_RINVPASWD" in info.value.cause


async def test_carrier_wrong_password_no_storm(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="smsgw")
    async with sim() as server, carrier(server, password="bad", backoff_max=30.0) as c:
        await trio.sleep(300)
        # delays in [d/2, d] for d = 1, 2, 4, 8, 16, 30, 30...: 10-20 attempts in 5 virtual
        # minutes, not thousands
        assert 10 <= server.stats.bind_failures <= 20
        assert c.statistics().live_binds == 0
    lines = [r.getMessage() for r in caplog.records if r.name == "smsgw.carriers"]
    assert len(lines) <= 8, lines
    assert "ESME_RINVPASWD" in lines[0]
