"""Our binds against the node-smpp SMSC simulator (../shared/peers/smsc_sim.js).

An independent SMPP implementation on the other side of a real TCP socket. The simulator
is a real process, so these tests use real time: each is bounded by ``trio.fail_after``
and kept short (small backoffs, small delays). Control-port HTTP calls are blocking and
go through ``trio.to_thread.run_sync``. They skip (with the reason) only when node or
../shared/peers is missing.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from gateway.bind import BindSettings, Inbound, OutcomeKind, SubmitOutcome
from gateway.carriers import Carrier
from gateway.smpp import pdu as P
from tests.peers import SimHandle, run_sim

pytestmark = [pytest.mark.peers, pytest.mark.slow]

SYSTEM_ID = "gw1"
PASSWORD = "secret"


def sim_args(*extra: str) -> tuple[str, ...]:
    return ("--system-id", SYSTEM_ID, "--password", PASSWORD, "--seed", "7", *extra)


def part(i: int, *, dlr: int = 0) -> P.SubmitSm:
    return P.SubmitSm(source_addr="ACME", source_addr_ton=5, dest_addr_ton=1, dest_addr_npi=1,
                      destination_addr=f"4477{i:08d}", registered_delivery=dlr,
                      short_message=b"Hello %d" % i)


def settings(sim: SimHandle, **kw: Any) -> BindSettings:
    base: dict[str, Any] = {
        "name": "node", "port": sim.smpp_port, "system_id": SYSTEM_ID, "password": PASSWORD,
        "backoff_initial": 0.2, "backoff_max": 1.0, "response_timeout": 5.0,
        "enquire_link": 30.0, "shutdown_timeout": 2.0,
    }
    base.update(kw)
    return BindSettings(**base)


@asynccontextmanager
async def running(sim: SimHandle, **kw: Any) -> AsyncIterator[Carrier]:
    c = Carrier(settings(sim, **kw), rng=random.Random(5))
    async with trio.open_nursery() as nursery:
        await nursery.start(c.run)
        yield c
        await c.shutdown()


async def control(sim: SimHandle, path: str, body: dict[str, Any] | None = None) -> Any:
    return await trio.to_thread.run_sync(sim.control, "POST", path, body or {},
                                         abandon_on_cancel=True)


def kinds(outcomes: list[SubmitOutcome]) -> Counter[str]:
    return Counter(o.kind.value for o in outcomes)


async def collect(c: Carrier, n: int, *, ack: bool = True) -> list[Inbound]:
    assert c.inbound is not None
    got: list[Inbound] = []
    while len(got) < n:
        batch = await c.inbound.receive()
        got.extend(batch)
        if ack:
            for x in batch:
                x.ack()
    return got


async def test_wrong_password_backs_off_without_storm(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="smsgw")
    with run_sim(*sim_args(), tmp_path=tmp_path) as sim:
        async with running(sim, password="wrong", backoff_initial=0.2, backoff_max=0.8) as c:
            with trio.fail_after(10):
                await trio.sleep(3.0)
            assert c.live_binds == []
            assert "ESME_RINVPASWD" in (c.last_failure or "")
    # delays in [d/2, d], d = 0.2, 0.4, 0.8, 0.8 ...: at most ~10 attempts in 3 s
    assert 3 <= sim.stats["bind_failures"] <= 12
    lines = [r.getMessage() for r in caplog.records if r.name == "smsgw.carriers"]
    assert len(lines) == 1, lines  # one line for the cause; summaries only every 60 s
    assert "refused: ESME_RINVPASWD" in lines[0]


async def test_unknown_system_id_and_refused_connection(tmp_path: Path) -> None:
    with run_sim(*sim_args(), tmp_path=tmp_path) as sim:
        async with running(sim, system_id="nobody") as c:
            with trio.fail_after(10):
                await c.wait_until(lambda c: c.failures >= 1)
            assert "ESME_RINVSYSID" in (c.last_failure or "")
        port = sim.smpp_port
    # the simulator is gone: connection refused, backoff, still no bind
    c = Carrier(BindSettings(name="gone", port=port, system_id="x", password="y",
                             backoff_initial=0.1, backoff_max=0.2))
    async with trio.open_nursery() as nursery:
        await nursery.start(c.run)
        with trio.fail_after(10):
            await c.wait_until(lambda c: c.failures >= 3)
        assert "connect to 127.0.0.1" in (c.last_failure or "")
        assert (c.last_failure or "").endswith("failed: Connection refused")
        await c.shutdown()


async def test_transceiver_submit_receipts_and_mo(tmp_path: Path) -> None:
    with run_sim(*sim_args("--dlr-delay", "50"), tmp_path=tmp_path) as sim:
        async with running(sim) as c:
            with trio.fail_after(20):
                await c.wait_bound()
                out = await c.submit([part(i, dlr=1) for i in range(20)])
                assert kinds(out) == {"accepted": 20}
                receipts = await collect(c, 20)
                assert all(x.is_receipt for x in receipts)
                ids = {o.message_id for o in out}
                got = {P.tlv_str(x.pdu, 0x001E) for x in receipts}
                assert got == ids
                replies: list[Any] = []

                async def inject() -> None:  # returns once we acked the deliver_sm
                    replies.append(await control(sim, "/mo", {
                        "source_addr": "447700900123", "destination_addr": "12345",
                        "text": "STOP"}))

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(inject)
                    (mo,) = await collect(c, 1)
                assert replies[0]["status"] == 200, replies
                assert not mo.is_receipt
                assert mo.pdu.short_message == b"STOP"
    assert sim.stats["dlrs_acked"] == 20
    assert sim.stats["mo_acked"] == 1
    assert sim.stats["unbinds"] == 1  # graceful shutdown unbinds


async def test_transmitter_receiver_pair(tmp_path: Path) -> None:
    with run_sim(*sim_args("--dlr-delay", "50"), tmp_path=tmp_path) as sim:
        async with running(sim, mode="transmitter+receiver", binds=2) as c:
            with trio.fail_after(20):
                await c.wait_bound(4)
                assert Counter(b.kind.value for b in c.live_binds) == {
                    "transmitter": 2, "receiver": 2}
                out = await c.submit([part(i, dlr=1) for i in range(50)])
                assert kinds(out) == {"accepted": 50}
                assert {o.bind for o in out} <= {"node#0tx", "node#1tx"}
                receipts = await collect(c, 50)
                assert {x.bind for x in receipts} <= {"node#0rx", "node#1rx"}
    assert sim.stats["dlrs_acked"] == 50


async def test_ten_thousand_pipelined_submits(tmp_path: Path) -> None:
    n = 10_000
    with run_sim(*sim_args(), tmp_path=tmp_path) as sim:
        async with running(sim, window=64) as c:
            with trio.fail_after(30):
                await c.wait_bound()
                out = await c.submit([part(i) for i in range(n)])
            assert kinds(out) == {"accepted": n}
            assert len({o.message_id for o in out}) == n
            (bind,) = c.live_binds
            assert bind.writes < n / 10  # coalesced: many PDUs per send_all
    assert sim.stats["submits_ok"] == n


async def test_receipts_for_many_submits(tmp_path: Path) -> None:
    n = 2000
    with run_sim(*sim_args("--dlr-delay", "20",
                           "--dlr-stats", "DELIVRD=0.8,UNDELIV=0.1:001,EXPIRED=0.1"),
                 tmp_path=tmp_path) as sim:
        async with running(sim, window=128) as c:
            with trio.fail_after(30):
                await c.wait_bound()
                out = await c.submit([part(i, dlr=1) for i in range(n)])
                assert kinds(out) == {"accepted": n}
                receipts = await collect(c, n)
            stats = Counter(x.pdu.short_message.split(b"stat:")[1][:7] for x in receipts)
            assert set(stats) == {b"DELIVRD", b"UNDELIV", b"EXPIRED"}
            await trio.sleep(0.2)
    assert sim.stats["dlrs_acked"] == n
    assert sim.stats["dlrs_nacked"] == 0


async def test_tps_throttling_nothing_lost(tmp_path: Path) -> None:
    n = 600
    with run_sim(*sim_args("--tps", "200"), tmp_path=tmp_path, log=True) as sim:
        async with running(sim, window=64) as c:  # we don't know the carrier's limit
            with trio.fail_after(30):
                await c.wait_bound()
                t0 = trio.current_time()
                out = await c.submit([part(i) for i in range(n)])
                elapsed = trio.current_time() - t0
            assert kinds(out) == {"accepted": n}
            assert len({o.message_id for o in out}) == n
            assert elapsed >= (n - 200) / 200 * 0.9
            assert c.statistics().throttle_pauses >= 1
            log = await trio.to_thread.run_sync(sim.submit_log)
    ok = [x for x in log if x["result"] == "ok"]
    assert len(ok) == n
    assert len({x["destination_addr"] for x in ok}) == n  # each part accepted exactly once
    throttled = sum(1 for x in log if x["result"] == "throttled")
    assert throttled < 5 * n  # slowed down, never a hot loop


async def test_configured_tps_avoids_throttling(tmp_path: Path) -> None:
    n = 300
    with run_sim(*sim_args("--tps", "200"), tmp_path=tmp_path) as sim:
        async with running(sim, tps=200) as c:
            with trio.fail_after(30):
                await c.wait_bound()
                out = await c.submit([part(i) for i in range(n)])
            assert kinds(out) == {"accepted": n}
    assert sim.stats["throttled"] == 0


def check_no_duplicates(log: list[dict[str, Any]], out: list[SubmitOutcome]) -> None:
    """Every part reached the SMSC at most once; our accepted ids are the SMSC's ok ids."""
    per_dest = Counter(x["destination_addr"] for x in log)
    assert max(per_dest.values()) == 1, "a part was sent twice"
    ok_ids = {x["message_id"] for x in log if x["result"] == "ok"}
    accepted = {o.message_id for o in out if o.kind is OutcomeKind.ACCEPTED}
    assert accepted <= ok_ids
    unknown = sum(1 for o in out if o.kind is OutcomeKind.UNKNOWN)
    # answered by the SMSC but the answer was lost with the link: reported unknown
    assert len(ok_ids - accepted) <= unknown


async def test_drop_after_reconnects_nothing_lost_or_duplicated(tmp_path: Path) -> None:
    n = 1000
    with run_sim(*sim_args("--drop-after", "300", "--drop-times", "1"), tmp_path=tmp_path,
                 log=True) as sim:
        async with running(sim, window=32) as c:
            with trio.fail_after(30):
                await c.wait_bound()
                out = await c.submit([part(i) for i in range(n)])
            k = kinds(out)
            assert set(k) == {"accepted", "unknown"}
            assert 1 <= k["unknown"] <= 32
            assert c.statistics().attempts == 2
            log = await trio.to_thread.run_sync(sim.submit_log)
    check_no_duplicates(log, out)
    assert sim.stats["drops"] == 1


async def test_control_drop_mid_stream(tmp_path: Path) -> None:
    with run_sim(*sim_args("--resp-delay", "20"), tmp_path=tmp_path, log=True) as sim:
        async with running(sim, window=16) as c:
            with trio.fail_after(30):
                await c.wait_bound()
                results: list[list[SubmitOutcome]] = []

                async def send() -> None:
                    results.append(await c.submit([part(i) for i in range(400)]))

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(send)
                    await trio.sleep(0.1)
                    r = await control(sim, "/drop", {"mode": "rst"})
                    assert r["status"] == 200
                (out,) = results
            k = kinds(out)
            assert set(k) <= {"accepted", "unknown"}
            assert k["accepted"] >= 300
            log = await trio.to_thread.run_sync(sim.submit_log)
    check_no_duplicates(log, out)
    assert sim.stats["binds"] >= 2


async def test_smsc_initiated_unbind(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="smsgw")
    with run_sim(*sim_args(), tmp_path=tmp_path) as sim:
        async with running(sim) as c:
            with trio.fail_after(20):
                await c.wait_bound()
                first = c.live_binds[0]
                r = await control(sim, "/unbind", {})
                assert r["status"] == 200
                await c.wait_until(lambda c: bool(c.live_binds) and c.live_binds[0] is not first)
                out = await c.submit([part(1)])
                assert out[0].kind is OutcomeKind.ACCEPTED
            assert "unbound" in (c.last_failure or "")
    assert sim.stats["binds"] == 2
    assert any("sent unbind" in r.getMessage() for r in caplog.records)


async def test_smsc_sent_enquire_link(tmp_path: Path) -> None:
    with run_sim(*sim_args("--enquire-link", "100"), tmp_path=tmp_path) as sim:
        async with running(sim) as c:
            with trio.fail_after(10):
                await c.wait_bound()
                first = c.live_binds[0]
                await trio.sleep(1.0)
                assert c.live_binds == [first]
    assert sim.stats["enquire_link_resps"] >= 5


async def test_our_enquire_link(tmp_path: Path) -> None:
    with run_sim(*sim_args(), tmp_path=tmp_path) as sim:
        async with running(sim, enquire_link=0.2) as c:
            with trio.fail_after(10):
                await c.wait_bound()
                await trio.sleep(1.2)
                assert len(c.live_binds) == 1
    assert sim.stats["enquire_links"] >= 4


async def test_resp_delay_beyond_timeout_is_unknown(tmp_path: Path) -> None:
    with run_sim(*sim_args("--resp-delay", "1500"), tmp_path=tmp_path, log=True) as sim:
        async with running(sim, response_timeout=0.5, shutdown_timeout=0.5) as c:
            with trio.fail_after(10):
                await c.wait_bound()
                t0 = trio.current_time()
                out = await c.submit([part(i) for i in range(5)])
                assert kinds(out) == {"unknown": 5}
                assert trio.current_time() - t0 < 1.4
                # the late responses arrive after the timeout and are ignored, the bind
                # stays up and usable
                await trio.sleep(1.5)
                assert len(c.live_binds) == 1
            log = await trio.to_thread.run_sync(sim.submit_log)
    assert len(log) == 5  # never re-sent by the bind


async def test_max_binds_rbindfail_one_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="smsgw")
    with run_sim(*sim_args("--max-binds", "1"), tmp_path=tmp_path) as sim:
        async with running(sim, binds=2, backoff_initial=0.1, backoff_max=0.4) as c:
            with trio.fail_after(10):
                await c.wait_bound()
                await trio.sleep(2.0)
                assert len(c.live_binds) == 1
                out = await c.submit([part(i) for i in range(100)])
                assert kinds(out) == {"accepted": 100}
            assert "ESME_RBINDFAIL" in (c.last_failure or "")
    assert 3 <= sim.stats["bind_failures"] <= 25
    failures = [r.getMessage() for r in caplog.records
                if r.name == "smsgw.carriers" and "RBINDFAIL" in r.getMessage()]
    assert len(failures) == 1, failures
