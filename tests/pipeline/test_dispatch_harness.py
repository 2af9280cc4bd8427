"""Shared rig of the dispatch / inbound tests (no tests here).

The whole pipeline in-process: our sandbox SMSC (``gateway.sim``) over memory streams, a
``Carrier`` per configured carrier, ``RecipientCache``, ``Accepter``, ``Router``,
``Dispatcher`` and ``InboundProcessor``, all on trio's clock (use ``autojump_clock``).
Store times are epoch seconds: ``rig.clock()`` = ``base + trio.current_time()``.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import trio

from gateway.api_types import MessageIn
from gateway.bind import Inbound
from gateway.carriers import Carrier
from gateway.config import CarrierConfig, GatewayConfig, PipelineConfig, RouteConfig, Secret
from gateway.pipeline.accept import Accepter
from gateway.pipeline.dispatch import Dispatcher
from gateway.pipeline.inbound import InboundProcessor
from gateway.pipeline.recipients import RecipientCache
from gateway.pipeline.routing import Router
from gateway.sim import DlrStat, SimServer, SimSettings
from gateway.smpp import pdu as P
from gateway.store import MessageRecord, Store
from rules.keywords import KeywordSets, load_keyword_sets
from rules.policy import Policy

from .conftest import NOW

KEYWORDS = load_keyword_sets(
    (Path(__file__).resolve().parents[2] / "config" / "keywords.toml").read_bytes())

__all__ = ["KEYWORDS", "NOW", "FakeInbound", "Rig", "deliver", "rig", "stats"]


def stats(*pairs: tuple[str, float] | str) -> tuple[DlrStat, ...]:
    """``stats("DELIVRD")`` or ``stats(("UNDELIV:001", 1.0), ...)`` -> sim receipt mix."""
    out = []
    for p in pairs:
        key, weight = (p, 1.0) if isinstance(p, str) else p
        stat, _, err = key.partition(":")
        out.append(DlrStat(stat=stat, weight=weight, err=err or None))
    return tuple(out)


class FakeInbound:
    """An ``Inbound`` without a bind (for feeding ``InboundProcessor.process`` directly)."""

    def __init__(self, pdu: P.DeliverSm | P.DataSm, bind: str = "sb#0") -> None:
        self.pdu = pdu
        self.bind = bind
        self.acked = False
        self.acks = 0

    @property
    def is_receipt(self) -> bool:
        return (int(self.pdu.esm_class) & 0x3C) == 0x04

    def ack(self, status: int = 0) -> bool:
        self.acks += 1
        self.acked = True
        return True


def deliver(source: str, short: bytes, *, esm: int = 0, dc: int = 0, dest: str = "ACME",
            tlvs: Sequence[P.Tlv] = ()) -> FakeInbound:
    """A fake deliver_sm from ``source``."""
    return FakeInbound(P.DeliverSm(source_addr_ton=1, source_addr_npi=1, source_addr=source,
                                   destination_addr=dest, esm_class=esm, data_coding=dc,
                                   short_message=short, tlvs=tuple(tlvs)))


@dataclass
class Rig:
    store: Store
    config: GatewayConfig
    server: SimServer
    carriers: dict[str, Carrier]
    recipients: RecipientCache
    accepter: Accepter
    dispatcher: Dispatcher
    inbound: InboundProcessor
    base: float
    nursery: trio.Nursery
    ids: list[str] = field(default_factory=list)

    def clock(self) -> float:
        return self.base + trio.current_time()

    async def send(self, to: str | Iterable[str], text: str = "hello", *,
                   kind: str = "transactional", **kw: object) -> list[str]:
        tos = [to] if isinstance(to, str) else list(to)
        msgs = [MessageIn(to=t, text=text, kind=kind, **kw) for t in tos]  # type: ignore[arg-type]
        results = await self.accepter.accept(msgs, self.clock())
        ids = [r.id for r in results]
        self.ids += ids
        return ids

    def get(self, mid: str) -> MessageRecord:
        rec = self.store.get_message(mid)
        assert rec is not None
        return rec

    def statuses(self, ids: Iterable[str]) -> dict[str, str]:
        recs = self.store.get_messages(ids)
        return {i: recs[i].status for i in ids}

    async def wait(self, ids: Sequence[str], done: Callable[[MessageRecord], bool] | str | set[str],
                   limit: float = 120.0) -> list[MessageRecord]:
        """Wait until ``done(record)`` holds for every id (woken by store events)."""
        if isinstance(done, str):
            want = {done}
            pred: Callable[[MessageRecord], bool] = lambda r: r.status in want  # noqa: E731
        elif isinstance(done, set):
            want = done
            pred = lambda r: r.status in want  # noqa: E731
        else:
            pred = done
        with trio.fail_after(limit):
            while True:
                seq = self.store.last_event_seq()
                recs = self.store.get_messages(ids)
                if len(recs) == len(ids) and all(pred(recs[i]) for i in ids):
                    return [recs[i] for i in ids]
                await self.store.wait_for_events(seq)

    async def wait_until(self, cond: Callable[[], bool], limit: float = 60.0) -> None:
        """Poll ``cond`` (virtual time: autojump makes the polling free)."""
        with trio.fail_after(limit):
            while not cond():  # noqa: ASYNC110
                await trio.sleep(0.01)


@asynccontextmanager
async def rig(store: Store, *, sim: dict[str, object] | None = None,
              carrier: dict[str, object] | None = None,
              carriers: Sequence[str] = ("sb",),
              passwords: dict[str, str] | None = None,
              routes: Sequence[tuple[str, tuple[str, ...]]] | None = None,
              pipeline: dict[str, object] | None = None, policy: Policy | None = None,
              keyword_sets: KeywordSets | None = KEYWORDS, base: float = NOW,
              run_dispatcher: bool = True, run_inbound: bool = True) -> AsyncIterator[Rig]:
    """Start the sim, carriers and pipeline; cancel everything on exit."""
    sim_kw: dict[str, object] = {"dlr_delay": 0.2}
    sim_kw.update(sim or {})
    settings = SimSettings(port=0, seed=1, **sim_kw)  # type: ignore[arg-type]
    ckw: dict[str, object] = {"response_timeout_s": 5.0, "reconnect_min_s": 1.0,
                              "reconnect_max_s": 5.0}
    ckw.update(carrier or {})
    pw = passwords or {}
    ccs = tuple(CarrierConfig(name=n, host="127.0.0.1", system_id="sandbox",  # type: ignore[arg-type]
                              password=Secret(pw.get(n, "sandbox")), **ckw) for n in carriers)
    rts = tuple(RouteConfig(prefix=p, carriers=c)
                for p, c in (routes or (("+", tuple(carriers)),)))
    config = GatewayConfig(carriers=ccs, routes=rts,
                           pipeline=PipelineConfig(**(pipeline or {})),  # type: ignore[arg-type]
                           rules=policy or Policy())
    base_t = base

    def clock() -> float:
        return base_t + trio.current_time()

    async with trio.open_nursery() as nursery:
        server: SimServer = await nursery.start(SimServer(settings).run)
        send, recv = trio.open_memory_channel[list[Inbound]](64)
        cs = {cc.name: Carrier(cc.bind_settings(), inbound=send, connect=server.connect_memory,
                               rng=random.Random(7)) for cc in ccs}
        for c in cs.values():
            await nursery.start(c.run)
        with trio.fail_after(30):
            for n, c in cs.items():
                if pw.get(n, "sandbox") == "sandbox":
                    await c.wait_bound()
        recipients = RecipientCache(store, policy=config.rules)
        accepter = Accepter(store, config, recipients, clock=trio.current_time)
        dispatcher = Dispatcher(store, config, cs, Router(config.routes), accepter, clock=clock,
                                recipients=recipients)
        accepter.handoff = dispatcher
        inbound = InboundProcessor(store, config, recipients, accepter, dispatcher, inbound=recv,
                                   keyword_sets=keyword_sets, clock=clock)
        r = Rig(store, config, server, cs, recipients, accepter, dispatcher, inbound, base_t,
                nursery)
        if run_dispatcher:
            await nursery.start(dispatcher.run)
        if run_inbound:
            await nursery.start(inbound.run)
        try:
            yield r
        finally:
            nursery.cancel_scope.cancel()


def replace_sim(server: SimServer, **kw: object) -> None:
    """Change the running simulator's settings (read at each submit)."""
    server.settings = msgspec.structs.replace(server.settings, **kw)
