"""Bind and Carrier against our own sandbox SMSC (gateway.sim), in memory, autojump clock."""

from __future__ import annotations

import logging
import random
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

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
from gateway.sim import DlrStat, SimServer, SimSettings
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


async def test_transmitter_receiver_pair_and_mo(autojump_clock: trio.testing.MockClock) -> None:
    async with sim(dlr_delay=0.5) as server, carrier(
        server, mode="transmitter+receiver", binds=1
    ) as c:
        await c.wait_bound(2)
        kinds = sorted(b.kind.value for b in c.live_binds)
        assert kinds == ["receiver", "transmitter"]
        outcomes = await c.submit([part(i) for i in range(5)])
        assert all(o.kind is OutcomeKind.ACCEPTED for o in outcomes)
        assert all(o.bind == "sb#0tx" for o in outcomes)
        await server.inject_mo("447700900123", "12345", "STOP")
        assert c.inbound is not None
        got: list[Inbound] = []
        with trio.fail_after(5):
            while len(got) < 6:
                got.extend(await c.inbound.receive())
        assert {x.bind for x in got} == {"sb#0rx"}
        mo = [x for x in got if not x.is_receipt]
        assert len(mo) == 1
        assert mo[0].pdu.short_message == b"STOP"
        for x in got:
            x.ack()
        await trio.sleep(0.1)
        assert server.stats.mo_acked == 1
        assert server.stats.dlrs_acked == 5


async def test_window_is_respected(autojump_clock: trio.testing.MockClock) -> None:
    async with sim(resp_delay=1.0) as server, carrier(server, window=8) as c:
        await c.wait_bound()
        batch = SubmitBatch([part(i) for i in range(40)])
        t0 = trio.current_time()
        await c.enqueue(batch)
        peak = 0
        while not batch.done:
            peak = max(peak, c.statistics().inflight)
            await trio.sleep(0.05)
        assert peak == 8
        assert all(o.kind is OutcomeKind.ACCEPTED for o in await batch.wait())
        # 40 parts, 8 at a time, 1 s each
        assert 5.0 <= trio.current_time() - t0 < 5.5


async def test_tps_limit(autojump_clock: trio.testing.MockClock) -> None:
    async with sim(dlr_delay=0) as server, carrier(server, tps=50) as c:
        await c.wait_bound()
        t0 = trio.current_time()
        outcomes = await c.submit([part(i, dlr=0) for i in range(200)])
        elapsed = trio.current_time() - t0
        assert all(o.kind is OutcomeKind.ACCEPTED for o in outcomes)
        # 200 at 50/s: burst of 2.5 then 47.5/s -> just over 4 s
        assert 3.9 <= elapsed <= 4.5


async def test_tps_equal_to_the_carriers_is_never_throttled(
        autojump_clock: trio.testing.MockClock) -> None:
    """Our tps = the SMSC's, two binds sharing it, answers 0.2 s late: the carrier's window
    never sees more than tps (our ledger counts each part until 1 s after its answer)."""
    async with sim(dlr_delay=0, tps=50, resp_delay=0.2) as server, \
            carrier(server, tps=50, binds=2) as c:
        await c.wait_bound()
        t0 = trio.current_time()
        outcomes = await c.submit([part(i, dlr=0) for i in range(300)])
        elapsed = trio.current_time() - t0
        assert all(o.kind is OutcomeKind.ACCEPTED for o in outcomes)
        assert server.stats.submits_ok == 300
        assert server.stats.throttled == 0
        assert c.statistics().live_binds == 2
        # Each 50 come back 1.2 s later (answer + 1 s): ~7.1 s of the mock clock. Parts
        # kept in the window until their 10 s bound (answers not reported) would take 56.
        assert elapsed < 8.0


async def test_throttled_parts_are_retried_not_dropped(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="smsgw")
    async with sim(tps=20) as server, carrier(server, window=64) as c:
        await c.wait_bound()
        t0 = trio.current_time()
        outcomes = await c.submit([part(i, dlr=0) for i in range(200)])
        elapsed = trio.current_time() - t0
        assert all(o.kind is OutcomeKind.ACCEPTED for o in outcomes)
        assert len({o.message_id for o in outcomes}) == 200
        assert server.stats.submits_ok == 200
        # the SMSC refused some, we paused and re-sent them; never a hot loop:
        assert server.stats.throttled < 2000
        assert elapsed >= 200 / 20 * 0.9
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) <= 3


async def test_throttled_too_long_is_reported(autojump_clock: trio.testing.MockClock) -> None:
    async with sim(tps=1) as server, carrier(server, throttle_retry_for=5.0,
                                                throttle_pause_max=2.0) as c:
        await c.wait_bound()
        outcomes = await c.submit([part(i, dlr=0) for i in range(30)])
        kinds = [o.kind for o in outcomes]
        assert OutcomeKind.REJECTED in kinds
        rejected = [o for o in outcomes if o.kind is OutcomeKind.REJECTED]
        assert all(o.status == 0x58 and o.retry == "throttled" for o in rejected)
        assert server.stats.submits_ok == kinds.count(OutcomeKind.ACCEPTED)


async def test_permanent_and_temporary_errors(autojump_clock: trio.testing.MockClock) -> None:
    async with sim(fail_rate=1.0, fail_status=0x0B) as server, carrier(server) as c:
        await c.wait_bound()
        (o,) = await c.submit([part(1)])
        assert o.kind is OutcomeKind.REJECTED
        assert (o.status, o.retry, o.reason) == (0x0B, "permanent", "ESME_RINVDSTADR")
        assert server.stats.failed == 1


async def test_unencodable_part_rejected_alone(autojump_clock: trio.testing.MockClock) -> None:
    async with sim() as server, carrier(server) as c:
        await c.wait_bound()
        bad = P.SubmitSm(destination_addr="1" * 30, short_message=b"x")
        out = await c.submit([part(1), bad, part(2)])
        assert [o.kind for o in out] == [OutcomeKind.ACCEPTED, OutcomeKind.REJECTED,
                                         OutcomeKind.ACCEPTED]
        assert out[1].retry == "permanent"
        assert len(c.live_binds) == 1


async def test_response_timeout_is_unknown(autojump_clock: trio.testing.MockClock) -> None:
    async with sim(resp_delay=20.0) as server, carrier(server, response_timeout=5.0) as c:
        await c.wait_bound()
        t0 = trio.current_time()
        out = await c.submit([part(i) for i in range(3)])
        assert [o.kind for o in out] == [OutcomeKind.UNKNOWN] * 3
        assert "5 s" in out[0].reason
        assert 5.0 <= trio.current_time() - t0 < 6.0
        assert server.stats.submits == 3  # never re-sent by the bind


async def test_drop_then_reconnect_nothing_lost(autojump_clock: trio.testing.MockClock) -> None:
    async with sim(drop_after=50) as server, carrier(server, window=16) as c:
        await c.wait_bound()
        out = await c.submit([part(i, dlr=0) for i in range(200)])
        kinds = [o.kind for o in out]
        assert OutcomeKind.UNKNOWN in kinds
        assert set(kinds) <= {OutcomeKind.ACCEPTED, OutcomeKind.UNKNOWN}
        accepted = [o for o in out if o.kind is OutcomeKind.ACCEPTED]
        assert len(accepted) == server.stats.submits_ok
        assert len({o.message_id for o in accepted}) == len(accepted)
        # each session: 49 answered, the 50th cut, the rest of the window unknown
        assert server.stats.drops == 3
        assert c.statistics().attempts == 4
        assert kinds.count(OutcomeKind.UNKNOWN) == 200 - server.stats.submits_ok


async def test_smsc_unbind_then_rebind(autojump_clock: trio.testing.MockClock) -> None:
    async with sim() as server, carrier(server) as c:
        await c.wait_bound()
        first = c.live_binds[0]
        assert server.unbind_all() == 1
        with trio.fail_after(10):
            await c.wait_until(lambda c: bool(c.live_binds) and c.live_binds[0] is not first)
        assert server.stats.unbinds == 1
        assert "unbound" in (c.last_failure or "")
        out = await c.submit([part(1)])
        assert out[0].kind is OutcomeKind.ACCEPTED


async def test_enquire_link_both_ways(autojump_clock: trio.testing.MockClock) -> None:
    async with sim(enquire_link=7.0) as server, carrier(server, enquire_link=10.0) as c:
        await c.wait_bound()
        bind = c.live_binds[0]
        await trio.sleep(100)
        assert c.live_binds == [bind]  # still the same healthy link
        ours = c.statistics().binds[0].session
        assert ours is not None and ours.enquire_links_sent >= 2
        conn = server.conns[0]
        assert conn.session.statistics().enquire_links_sent >= 5
        assert conn.session.statistics().received.get("enquire_link_resp", 0) >= 5


async def test_missing_enquire_link_resp_rebinds(autojump_clock: trio.testing.MockClock) -> None:
    async with sim() as server, carrier(server, enquire_link=10.0, response_timeout=5.0) as c:
        await c.wait_bound()
        first = c.live_binds[0]
        # Freeze the SMSC side of the link: it reads nothing and answers nothing.
        server.freeze_all()
        t0 = trio.current_time()
        with trio.fail_after(60):
            await c.wait_until(lambda c: bool(c.live_binds) and c.live_binds[0] is not first)
        assert "enquire_link_timeout" in (c.last_failure or "")
        # idle 10 s -> enquire_link, no resp within 5 s -> dead, then ~1 s backoff
        assert 14.0 <= trio.current_time() - t0 <= 17.0


async def test_graceful_shutdown_waits_for_inflight(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with sim(resp_delay=2.0) as server:
        c = Carrier(settings(shutdown_timeout=5.0), connect=server.connect_memory)
        async with trio.open_nursery() as nursery:
            await nursery.start(c.run)
            await c.wait_bound()
            batch = SubmitBatch([part(i) for i in range(10)])
            await c.enqueue(batch)
            await trio.sleep(0.5)
            later = SubmitBatch([part(99)])
            await c.shutdown()
            await c.enqueue(later)
        out = await batch.wait()
        assert [o.kind for o in out] == [OutcomeKind.ACCEPTED] * 10
        assert (await later.wait())[0].kind is OutcomeKind.NOT_SENT
        assert server.stats.unbinds == 1


async def test_shutdown_bounded_when_smsc_silent(autojump_clock: trio.testing.MockClock) -> None:
    async with sim(resp_delay=1000.0) as server:
        c = Carrier(settings(shutdown_timeout=3.0, response_timeout=600.0),
                    connect=server.connect_memory)
        async with trio.open_nursery() as nursery:
            await nursery.start(c.run)
            await c.wait_bound()
            batch = SubmitBatch([part(i) for i in range(4)])
            await c.enqueue(batch)
            await trio.sleep(0.5)
            t0 = trio.current_time()
            await c.shutdown()
            assert trio.current_time() - t0 <= 5.0
        assert [o.kind for o in await batch.wait()] == [OutcomeKind.UNKNOWN] * 4


async def test_cancel_resolves_everything(autojump_clock: trio.testing.MockClock) -> None:
    async with sim(resp_delay=10.0) as server:
        c = Carrier(settings(), connect=server.connect_memory)
        batch = SubmitBatch([part(i) for i in range(100)])
        with trio.move_on_after(3):
            async with trio.open_nursery() as nursery:
                await nursery.start(c.run)
                await c.wait_bound()
                await c.enqueue(batch)
                await trio.sleep_forever()
        out = await batch.wait()
        kinds = {o.kind for o in out}
        assert kinds == {OutcomeKind.UNKNOWN, OutcomeKind.NOT_SENT}
        assert sum(o.kind is OutcomeKind.UNKNOWN for o in out) == 64  # one window


async def test_two_binds_share_the_work(autojump_clock: trio.testing.MockClock) -> None:
    async with sim(resp_delay=0.01) as server, carrier(server, binds=2, window=10) as c:
        await c.wait_bound(2)
        out = await c.submit([part(i, dlr=0) for i in range(100)])
        by_bind: dict[str, int] = {}
        for o in out:
            by_bind[o.bind] = by_bind.get(o.bind, 0) + 1
        assert set(by_bind) == {"sb#0", "sb#1"}
        assert min(by_bind.values()) >= 30


async def test_receipt_to_unacked_is_redelivered_after_reconnect(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with sim(dlr_delay=0.2) as server, carrier(server) as c:
        await c.wait_bound()
        await c.submit([part(1)])
        assert c.inbound is not None
        first = await c.inbound.receive()
        assert len(first) == 1
        server.drop_all()  # before we ack
        await trio.sleep(0.01)
        assert not first[0].ack()  # the link is gone: ack is a no-op
        with trio.fail_after(30):
            again = await c.inbound.receive()
        assert again[0].pdu.short_message == first[0].pdu.short_message
        assert again[0].ack()
        await trio.sleep(0.1)
        assert server.stats.dlrs_acked == 1


def make_cert(directory: Path, name: str) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 (its own CA), made with the openssl CLI."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not available to make a test certificate")
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True,
    )
    return str(cert), str(key)


@pytest.mark.slow
async def test_tls_to_the_carrier(tmp_path: Path) -> None:
    cert, key = make_cert(tmp_path, "smsc")
    other, _ = make_cert(tmp_path, "other")
    async with sim(certfile=cert, keyfile=key) as server:
        good = Carrier(settings(port=server.port, tls=True, ca_file=cert))
        bad = Carrier(settings(name="bad", port=server.port, tls=True, ca_file=other,
                               backoff_initial=5.0))
        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                await nursery.start(good.run)
                await nursery.start(bad.run)
                await good.wait_bound()
                out = await good.submit([part(1)])
                assert out[0].kind is OutcomeKind.ACCEPTED
                await bad.wait_until(lambda c: c.failures >= 1)
                assert "TLS handshake" in (bad.last_failure or "")
                assert "certificate verify failed" in (bad.last_failure or "")
                await good.shutdown()
                await bad.shutdown()


async def test_withdraw_when_no_bind_comes_up(autojump_clock: trio.testing.MockClock) -> None:
    async with sim() as server, carrier(server, password="bad") as c:
        batch = SubmitBatch([part(i) for i in range(5)])
        await c.enqueue(batch)
        with trio.move_on_after(10):
            await batch.wait()
        assert not batch.done
        assert c.withdraw(batch) == 5
        out = await batch.wait()
        assert {o.kind for o in out} == {OutcomeKind.NOT_SENT}


async def test_statistics_totals_survive_reconnects(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with sim(drop_after=11) as server, carrier(server, window=1) as c:
        await c.wait_bound()
        out = await c.submit([part(i, dlr=0) for i in range(25)])
        st = c.statistics()
        # window 1: each session answers 10 and is cut at its 11th (unknown): 10+1, 10+1, 3
        assert st.accepted == sum(o.kind is OutcomeKind.ACCEPTED for o in out) == 23
        assert st.unknown == sum(o.kind is OutcomeKind.UNKNOWN for o in out) == 2
        assert st.submitted == 25
        assert st.failures == 2
        assert st.live_binds == 1


async def test_long_mo_arrives_in_concatenated_parts(
    autojump_clock: trio.testing.MockClock,
) -> None:
    text = "Hi! " * 60  # 240 GSM characters: 2 parts with a UDH
    async with sim() as server, carrier(server) as c:
        await c.wait_bound()
        assert await server.inject_mo("447700900123", "12345", text) == 2
        assert await server.inject_mo("447700900123", "12345", "Grüße €") == 1
        assert c.inbound is not None
        got: list[Inbound] = []
        while len(got) < 3:
            got.extend(await c.inbound.receive())
        first, second, third = (x.pdu for x in got)
        assert first.esm_class == second.esm_class == 0x40
        assert first.short_message[:3] == b"\x05\x00\x03"
        assert (first.short_message[6:] + second.short_message[6:]).decode("ascii") == text
        assert third.data_coding == 0  # ü, ß and € are in GSM 03.38
        for x in got:
            x.ack()
        with pytest.raises(ValueError):
            await server.inject_mo("1", "2", "")


async def test_closed_inbound_consumer_does_not_break_the_bind(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with sim(dlr_delay=0.1) as server, carrier(server) as c:
        await c.wait_bound()
        first = c.live_binds[0]
        assert c.inbound is not None
        await c.inbound.aclose()
        out = await c.submit([part(i) for i in range(3)])
        assert all(o.kind is OutcomeKind.ACCEPTED for o in out)
        await trio.sleep(1)
        assert c.live_binds == [first]
        assert server.stats.dlrs_acked == 0  # never acked: the SMSC keeps them


async def test_receipt_quirks_decimal_text_id_and_network_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    mix = (DlrStat("UNDELIV", 1.0, "012"),)
    async with sim(dlr_delay=0.1, dlr_text_id="dec", dlr_network_error=True,
                   dlr_stats=mix) as server, carrier(server) as c:
        await c.wait_bound()
        (o,) = await c.submit([part(1)])
        assert c.inbound is not None
        (r,) = await c.inbound.receive()
        r.ack()
        assert P.tlv_str(r.pdu, 0x001E) == o.message_id
        assert f"id:{int(o.message_id, 16)} ".encode() in r.pdu.short_message
        assert b"stat:UNDELIV err:012" in r.pdu.short_message
        assert P.tlv_get(r.pdu, 0x0423) == b"\x03\x00\x0c"
        assert P.tlv_int(r.pdu, 0x0427) == 5


async def test_reconnect_delay_after_drop_is_jittered_backoff(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with sim() as server, carrier(server, backoff_initial=2.0, backoff_max=10.0) as c:
        await c.wait_bound()
        for _ in range(3):
            first = c.live_binds[0]
            server.drop_all()
            t0 = trio.current_time()
            await c.wait_until(
                lambda c, first=first: bool(c.live_binds) and c.live_binds[0] is not first)
            # a link that was bound resets the backoff: equal jitter in [d/2, d], d = 2 s
            assert 1.0 <= trio.current_time() - t0 <= 2.0 + 0.01
        assert c.statistics().failures == 3
