"""The sandbox SMSC (gateway.sim) against an independent ESME: smpplib, blocking, in a thread.

Real sockets and real time (smpplib is a blocking client), so these are short and
bounded by ``trio.fail_after``.
"""

from __future__ import annotations

import http.client
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import smpplib.client
import smpplib.consts
import trio

from gateway.bind import BindSettings
from gateway.carriers import Carrier
from gateway.sim import DlrStat, SimServer, SimSettings

pytestmark = pytest.mark.slow


@asynccontextmanager
async def sim(**kw: Any) -> AsyncIterator[SimServer]:
    s = SimSettings(port=0, seed=1, accounts={"sandbox": "sandbox"}, **kw)
    async with trio.open_nursery() as nursery:
        server: SimServer = await nursery.start(SimServer(s).run)
        yield server
        nursery.cancel_scope.cancel()


def smpplib_session(port: int, n: int, *, password: str = "sandbox") -> dict[str, Any]:
    """Bind as transceiver, submit n messages asking for receipts, read until all arrive."""
    logging.getLogger("smpp.Client").setLevel(logging.WARNING)
    client = smpplib.client.Client("127.0.0.1", port, timeout=5, allow_unknown_opt_params=True)
    sent: list[Any] = []
    received: list[Any] = []
    # smpplib calls handlers with pdu=... (keyword), which list.append refuses
    client.set_message_sent_handler(lambda pdu: sent.append(pdu))  # noqa: PLW0108
    client.set_message_received_handler(lambda pdu: received.append(pdu))  # noqa: PLW0108
    client.connect()
    try:
        try:
            client.bind_transceiver(system_id="sandbox", password=password)
        except smpplib.exceptions.PDUError as e:
            return {"bind_error": e.args}
        for i in range(n):
            client.send_message(
                source_addr_ton=smpplib.consts.SMPP_TON_ALNUM, source_addr="ACME",
                dest_addr_ton=smpplib.consts.SMPP_TON_INTL, dest_addr_npi=1,
                destination_addr=f"4477009{i:05d}", short_message=b"Hello from smpplib",
                registered_delivery=1,
            )
        # read_once() answers a socket timeout with an enquire_link and returns: bound the
        # loop ourselves so a missing receipt fails the test instead of hanging it.
        deadline = time.monotonic() + 15
        while len(sent) < n or len(received) < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(sent)} resps, {len(received)} receipts of {n}")
            client.read_once()
        client.unbind()
    finally:
        client.disconnect()
    return {
        "message_ids": [p.message_id.decode() for p in sent],
        "statuses": [p.status for p in sent],
        "receipts": [(p.receipted_message_id.decode(), p.message_state, p.short_message)
                     for p in received],
    }


async def test_smpplib_submits_and_gets_receipts() -> None:
    async with sim(dlr_delay=0.05) as server:
        with trio.fail_after(20):
            r = await trio.to_thread.run_sync(smpplib_session, server.port, 5,
                                             abandon_on_cancel=True)
        assert r["statuses"] == [0] * 5
        assert len(set(r["message_ids"])) == 5
        assert {mid for mid, _, _ in r["receipts"]} == set(r["message_ids"])
        for mid, state, text in r["receipts"]:
            assert state == 2  # DELIVERED
            assert text.startswith(f"id:{mid} sub:001 dlvrd:001 submit date:".encode())
            assert b" stat:DELIVRD err:000 text:Hello from smpplib" in text
        assert server.stats.dlrs_acked == 5
        assert server.stats.unbinds == 1


async def test_smpplib_wrong_password() -> None:
    async with sim() as server:
        with trio.fail_after(10):
            r = await trio.to_thread.run_sync(
                lambda: smpplib_session(server.port, 1, password="nope"), abandon_on_cancel=True)
        assert "bind_error" in r
        assert server.stats.bind_failures == 1


async def test_stat_mix_and_failure_only_receipts() -> None:
    mix = (DlrStat("DELIVRD", 1.0), DlrStat("UNDELIV", 1.0, "005"))
    async with sim(dlr_delay=0.0, dlr_stats=mix) as server:
        with trio.fail_after(20):
            r = await trio.to_thread.run_sync(smpplib_session, server.port, 40,
                                             abandon_on_cancel=True)
        texts = [t for _, _, t in r["receipts"]]
        undeliv = [t for t in texts if b"stat:UNDELIV err:005" in t]
        assert 5 <= len(undeliv) <= 35
        states = {s for _, s, _ in r["receipts"]}
        assert states == {2, 5}


def http_call(port: int, method: str, path: str, body: dict[str, Any] | None = None,
         ) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(method, path, body=json.dumps(body).encode() if body is not None else None)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"null")
    finally:
        conn.close()


async def test_control_endpoint_mo_drop_unbind() -> None:
    async with sim(control_port=0) as server:
        assert server.control_port
        port = server.control_port

        async def call(method: str, path: str, body: dict[str, Any] | None = None,
                       ) -> tuple[int, Any]:
            return await trio.to_thread.run_sync(http_call, port, method, path, body,
                                                 abandon_on_cancel=True)

        c = Carrier(BindSettings(name="sb", port=server.port, system_id="sandbox",
                                 password="sandbox", backoff_initial=0.05, backoff_max=0.1))
        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                await nursery.start(c.run)
                await c.wait_bound()
                status, body = await call("POST", "/mo", {
                    "source_addr": "447700900123", "destination_addr": "12345",
                    "text": "STOP ✋"})
                assert (status, body) == (202, {"queued": 1})
                assert c.inbound is not None
                (mo,) = await c.inbound.receive()
                assert mo.pdu.data_coding == 8
                assert mo.pdu.short_message.decode("utf-16-be") == "STOP ✋"
                mo.ack()
                assert (await call("POST", "/mo", {"source_addr": "1"}))[0] == 400
                status, sessions = await call("GET", "/sessions")
                assert status == 200 and sessions[0]["system_id"] == "sandbox"
                first = c.live_binds[0]
                assert await call("POST", "/drop", {}) == (200, {"sessions": 1})
                await c.wait_until(lambda c: bool(c.live_binds) and c.live_binds[0] is not first)
                second = c.live_binds[0]
                assert await call("POST", "/unbind", {}) == (200, {"sessions": 1})
                await c.wait_until(
                    lambda c: bool(c.live_binds) and c.live_binds[0] is not second)
                status, stats = await call("GET", "/stats")
                assert status == 200
                assert stats["mo_acked"] == 1 and stats["binds"] == 3 and stats["unbinds"] == 1
                assert (await call("GET", "/nope"))[0] == 404
                await c.shutdown()
