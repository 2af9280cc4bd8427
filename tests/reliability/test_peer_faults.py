"""Faults only a scripted peer can produce, against one carrier's binds (gateway.carriers).

* receipts the SMSC sends in the same TCP segment as bind_resp (a receipt backlog at
  bind time) reach the inbound consumer and are acknowledged;
* garbage bytes from the peer: an undecodable body is answered (generic_nack or an error
  resp), lost framing drops the link with one log line and the carrier binds again; the
  process lives;
* a carrier that accepts the TCP connection and never answers the bind: the bind times
  out, reconnects are spaced by the backoff (bounded attempts), the cause is logged once.

Real loopback sockets with short timeouts; every test is bounded by ``fail_after``.
"""

from __future__ import annotations

import logging
import os
import struct

import pytest
import trio

from gateway.bind import BindSettings, Inbound
from gateway.carriers import Carrier
from gateway.smpp.constants import CommandId
from tests.reliability.fake_smsc import Conn, ScriptedSmsc, bind_resp_for, receipt

pytestmark = pytest.mark.slow


def settings(port: int, **kw: float) -> BindSettings:
    base: dict[str, float] = {"bind_timeout": 2.0, "response_timeout": 2.0,
                              "enquire_link": 30.0, "backoff_initial": 0.05,
                              "backoff_max": 0.2, "log_interval": 60.0}
    base.update(kw)
    return BindSettings(name="fake", port=port, system_id="gw", password="pw",
                        **base)  # type: ignore[arg-type]


async def ack_all(carrier: Carrier, got: list[Inbound]) -> None:
    assert carrier.inbound is not None
    async for batch in carrier.inbound:
        for item in batch:
            got.append(item)
            item.ack()


async def test_receipts_in_the_bind_resp_segment_are_acknowledged() -> None:
    """A receipt backlog sent right behind bind_resp (one segment) is not dropped.

    Regression: ``Bind._bind`` returned at BindSucceeded and dropped the events decoded
    from the same read, so those deliver_sm were never passed on nor answered; the SMSC
    kept them outstanding (its deliver window shrank) until the link died.
    """
    acked: list[int] = []
    done = trio.Event()

    async def script(conn: Conn) -> None:
        bind = await conn.read_frame()
        assert bind is not None
        await conn.send(conn.frame(bind_resp_for(bind), seq=bind.sequence_number),
                        *(conn.frame(receipt(f"abc{i}"), seq=100 + i) for i in range(3)))
        while (f := await conn.read_frame()) is not None:
            if f.command_id == CommandId.DELIVER_SM_RESP:
                acked.append(f.sequence_number)
                if len(acked) == 3:
                    done.set()

    smsc = ScriptedSmsc(script)
    got: list[Inbound] = []
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(smsc.serve)
            carrier = Carrier(settings(port))
            await nursery.start(carrier.run)
            nursery.start_soon(ack_all, carrier, got)
            await done.wait()
            nursery.cancel_scope.cancel()
    assert sorted(acked) == [100, 101, 102]
    assert len(got) == 3 and all(i.is_receipt for i in got)


async def test_garbage_from_the_peer(caplog: pytest.LogCaptureFixture) -> None:
    """Undecodable PDUs are answered on the same link; lost framing drops the link with
    one warning and the carrier binds again; nothing escapes the carrier's nursery."""
    answers: list[tuple[int, int, int]] = []
    rebound = trio.Event()

    async def script(conn: Conn) -> None:
        bind = await conn.read_frame()
        assert bind is not None
        await conn.send(conn.frame(bind_resp_for(bind), seq=bind.sequence_number))
        if conn.index >= 2:
            rebound.set()
            await trio.sleep_forever()
        # 1. an unknown command_id with a valid header: generic_nack RINVCMDID (§4.3)
        await conn.send(struct.pack(">IIII", 20, 0x0000_0FFF, 0, 7) + b"\xde\xad\xbe\xef")
        # 2. a deliver_sm whose body is truncated garbage: an error deliver_sm_resp
        await conn.send(struct.pack(">IIII", 16 + 5, CommandId.DELIVER_SM, 0, 8) + b"\xff" * 5)
        for _ in range(2):
            f = await conn.read_frame()
            assert f is not None
            answers.append((f.command_id, f.command_status, f.sequence_number))
        # 3. lost framing: command_length 3, then random bytes
        await conn.send(struct.pack(">I", 3) + os.urandom(4096))
        while await conn.read_frame() is not None:
            pass

    smsc = ScriptedSmsc(script)
    caplog.set_level(logging.INFO)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(smsc.serve)
            carrier = Carrier(settings(port))
            await nursery.start(carrier.run)
            await rebound.wait()
            await carrier.wait_bound()
            stats = carrier.statistics()
            nursery.cancel_scope.cancel()
    by_seq = {seq: (cid, status) for cid, status, seq in answers}
    assert by_seq[7][0] == CommandId.GENERIC_NACK and by_seq[7][1] != 0
    assert by_seq[8][1] != 0  # refused (an error resp or generic_nack), never acked as stored
    assert stats.failures == 1 and stats.live_binds == 1
    lost = [r for r in caplog.records if r.name == "smsgw.carriers"
            and r.levelno == logging.WARNING]
    assert len(lost) == 1, [r.getMessage() for r in lost]
    assert "fake#0" in lost[0].getMessage()
    # Each bad PDU: one warning naming it (was: debug only, invisible); the framing one
    # is followed by the carrier's "dead: framing_error" line above.
    protocol = [r.getMessage() for r in caplog.records if r.name == "smsgw.bind"
                and r.levelno == logging.WARNING and "protocol error" in r.getMessage()]
    assert len(protocol) == 3, protocol
    assert "RINVCMDID" in protocol[0] and "command_length 3" in protocol[2]
    assert stats.binds[0].session is not None


async def test_bind_never_answered(caplog: pytest.LogCaptureFixture) -> None:
    """TCP accepted, bind never answered: bind_timeout per attempt, backoff between
    attempts (bounded count), one log line for the repeated cause, recovery when the
    SMSC starts answering."""
    answer = trio.Event()

    async def script(conn: Conn) -> None:
        bind = await conn.read_frame()
        assert bind is not None
        if not answer.is_set():
            await trio.sleep_forever()
        await conn.send(conn.frame(bind_resp_for(bind), seq=bind.sequence_number))
        while await conn.read_frame() is not None:
            pass

    smsc = ScriptedSmsc(script)
    caplog.set_level(logging.INFO)
    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(smsc.serve)
            carrier = Carrier(settings(port, bind_timeout=0.2, backoff_initial=0.1,
                                       backoff_max=0.4))
            await nursery.start(carrier.run)
            t0 = trio.current_time()
            await trio.sleep(2.0)  # the fault lasts 2 s (what is measured: attempts)
            attempts = carrier.attempts
            answer.set()
            await carrier.wait_bound()
            recovery = trio.current_time() - t0 - 2.0
            nursery.cancel_scope.cancel()
    # each attempt costs bind_timeout (0.2) + a backoff of at most 0.4 s: 4..11 attempts
    assert 3 <= attempts <= 11, attempts
    assert recovery < 1.0
    warnings = [r.getMessage() for r in caplog.records
                if r.name == "smsgw.carriers" and r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "timed out" in warnings[0], warnings
    recovered = [r.getMessage() for r in caplog.records
                 if r.name == "smsgw.carriers" and "recovered" in r.getMessage()]
    assert len(recovered) == 1, recovered
