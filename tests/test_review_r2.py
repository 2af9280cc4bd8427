"""Review R2 (session 4): probes of the HTTP server's direct I/O, timeout sweeper and
head-parser memory, beyond the area tests (tests/api/test_http_*.py)."""

from __future__ import annotations

import logging
import random
import socket
import struct
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
import trio.testing

from gateway.http import Limits, Request, Response
from gateway.http._fastparse import HeadParser, parse_head
from tests.api.client import parse_responses, read_until_eof, start_server
from tests.api.conftest import Net


@pytest.fixture
async def mem_store() -> AsyncIterator[object]:
    from tests.pipeline.conftest import open_memory_store
    async with open_memory_store() as store:
        yield store


@pytest.fixture
async def net() -> AsyncIterator[Net]:
    n = Net()
    try:
        yield n
    finally:
        await n.aclose()


async def echo(request: Request) -> Response:
    return Response(200, b"%s %s" % (request.method.encode(), request.target.encode()),
                    [(b"content-type", b"text/plain")])


async def test_keep_alive_partial_next_head_is_cut_by_header_timeout_not_idle(
        net: Net, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock) -> None:
    # The next head starts right away (a direct read finds it), then stalls: the head
    # timeout applies, not the (longer) idle timeout left from the wait for it.
    with trio.fail_after(200):
        server = await start_server(nursery, echo,
                                    Limits(header_timeout=5, idle_timeout=60, linger=1))
        stream = await net.raw(server.port)
        await stream.send_all(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\n")
        start = trio.current_time()
        replies = parse_responses(await read_until_eof(stream))
        assert [r.status for r in replies] == [200, 408]
        assert 5 <= trio.current_time() - start < 10
        assert server.statistics().header_timeouts == 1


async def test_partial_head_after_an_idle_wait_gets_the_header_timeout(
        net: Net, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(200):
        server = await start_server(nursery, echo,
                                    Limits(header_timeout=5, idle_timeout=60, linger=1))
        stream = await net.raw(server.port)
        await stream.send_all(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
        await stream.receive_some(65536)
        await trio.sleep(30)  # idle, within the idle timeout
        await stream.send_all(b"GET /b HTTP/1.1\r\nHo")
        start = trio.current_time()
        [reply] = parse_responses(await read_until_eof(stream))
        assert reply.status == 408
        assert 5 <= trio.current_time() - start < 10


async def test_peer_reset_during_a_direct_write_is_quiet(
        net: Net, nursery: trio.Nursery, caplog: pytest.LogCaptureFixture) -> None:
    # ECONNRESET / EPIPE on os.write or os.read: the connection ends, nothing is logged
    # as a failure, the server keeps serving.
    body = b"y" * 4_000_000
    gate = trio.Event()

    async def big(request: Request) -> Response:
        if request.path == "/big":
            await gate.wait()
        return Response(200, body if request.path == "/big" else b"ok")

    caplog.set_level(logging.ERROR, logger="gateway.http")
    with trio.fail_after(10):
        server = await start_server(nursery, big)
        for _ in range(5):
            s = socket.socket()
            s.connect(("127.0.0.1", server.port))
            s.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n" * 3)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            await trio.sleep(0.05)
            s.close()  # RST
            gate.set()
            gate = trio.Event()
        await trio.sleep(0.2)
        stream = await net.raw(server.port)
        await stream.send_all(b"GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        [reply] = parse_responses(await read_until_eof(stream))
        assert reply.body == b"ok"
        assert server.statistics().connections_open == 0
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_head_parser_memory_never_changes_a_verdict() -> None:
    # One parser, warm across many inputs that share lines in different roles and
    # orders (duplicates, case variants, TE, obs-fold, bare LF): same as parse_head.
    rng = random.Random(7)
    starts = [b"GET / HTTP/1.1", b"POST /v1/messages HTTP/1.1", b"get / HTTP/1.1",
              b"GET / HTTP/1.0", b"GET  / HTTP/1.1", b"GET /\x7f HTTP/1.1"]
    fields = [b"Host: x", b"host: x", b"Host:", b"HOST: y", b"Content-Length: 5",
              b"content-length: 5", b"Content-Length: 05", b"Content-Length: 5, 5",
              b"Content-Length: +5", b"Content-Length:5 ", b"Transfer-Encoding: chunked",
              b"transfer-encoding: identity", b"Expect: 100-continue", b" folded",
              b"\tfolded", b"X-A: a\nb", b"X-A: a\rb", b"X-A: \x01", b"X A: b",
              b"X-A: b ", b"X-A:\tb\t", b"Content-Type: application/json",
              b"Connection: close", b"", b"X-\xff: a", b"X-A: \xff"]
    memo = HeadParser(size=32, max_line=64)
    for _ in range(20_000):
        lines = [rng.choice(starts)] + [rng.choice(fields)
                                        for _ in range(rng.randrange(0, 6))]
        data = b"\r\n".join(lines) + b"\r\n\r\n" + b"hello" * rng.randrange(0, 2)
        pos = rng.randrange(0, 3)
        data = b"xy"[:pos] + data
        assert memo(data, 8192, pos) == parse_head(data, 8192, pos), data


async def test_writer_stop_commits_every_lane_queued_before_it() -> None:
    # A stop behind queued urgent and normal batches: each is committed (none left
    # waiting), lanes taking turns, and later commits are refused.
    from gateway.store import StoreClosedError, WriteBatch
    from gateway.store.writer import GroupCommitWriter
    from tests.store.test_writer import Recorder, _tagged

    runner = Recorder()
    writer = GroupCommitWriter(runner, max_group_ops=5)
    results: list[object] = []

    async def commit(b: WriteBatch) -> None:
        try:
            results.append(await writer.commit(b))
        except StoreClosedError as exc:
            results.append(exc)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.to_thread.run_sync, writer.run)
            runner.gate.clear()
            nursery.start_soon(commit, _tagged(1, urgent=False))
            await trio.to_thread.run_sync(runner.entered.wait, 10)
            for b in (_tagged(5, urgent=False), _tagged(5, urgent=True),
                      _tagged(5, urgent=True), _tagged(5, urgent=False)):
                nursery.start_soon(commit, b)
                await trio.testing.wait_all_tasks_blocked()
            writer.stop()
            runner.gate.set()
        await commit(_tagged(1, urgent=False))
    assert len(results) == 6
    assert all(not isinstance(r, Exception) for r in results[:5]), results
    assert isinstance(results[5], StoreClosedError)
    assert runner.seen[1:] == [[(True, 5)], [(False, 5)], [(True, 5)], [(False, 5)]]


@pytest.mark.parametrize("flaps", [1, 3])
async def test_route_flapping_in_the_middle_of_unparking_sends_each_message_once(
        mem_store: object, autojump_clock: trio.testing.MockClock,
        monkeypatch: pytest.MonkeyPatch, flaps: int) -> None:
    # The down route comes up, and goes down again right after an unpark chunk's commit
    # (the pass half done: some entries back in the due range, the rest parked), several
    # times: every message is still submitted exactly once, nothing stays parked.
    from gateway.pipeline import dispatch as D
    from gateway.store.batch import DELETE
    from gateway.store.keys import parse_outbox_key
    from gateway.store.kv import Db
    from tests.pipeline.test_dispatch_harness import rig
    from tests.pipeline.test_dispatch_park import (
        DOWN_PHONES,
        ROUTES,
        bring_up_down,
        parked_in_store,
    )

    # ``unknown``: handed to the bind that the cut killed (may have been sent: never
    # again, as for any submit in flight at a disconnect).
    DONE = {"submitted", "delivered", "unknown"}
    monkeypatch.setattr(D, "UNPARK_CHUNK", 4)
    store: Any = mem_store
    left = flaps
    cut = 0
    async with rig(store, carriers=("up", "down"), passwords={"down": "wrong"},
                   routes=ROUTES) as r:
        inner = store.commit

        async def commit(batch: Any) -> Any:
            nonlocal left, cut
            out = await inner(batch)
            unparks = sum(1 for op in batch.ops if op[0] == DELETE and op[1] is Db.OUTBOX
                          and parse_outbox_key(op[2])[0] >= D.PARK_BASE_MS)
            if unparks and left:
                # down again at once: the SMSC refuses the password, cuts the session
                left -= 1
                cut += 1
                r.server.settings.accounts["sandbox"] = "sandbox"
                r.server.drop_all()
            return out

        store.commit = commit
        ids = await r.send(DOWN_PHONES)
        await r.wait_until(lambda: r.dispatcher.statistics().parked == 30)
        for _ in range(flaps + 1):
            await bring_up_down(r)
            await r.wait_until(lambda: not r.carriers["down"].can_submit or (
                set(r.statuses(ids).values()) <= DONE))
            await trio.sleep(30)
        try:
            await r.wait_until(lambda: set(r.statuses(ids).values())
                               <= DONE)
            await trio.sleep(60)
        except trio.TooSlowError:
            from collections import Counter
            st = r.dispatcher.statistics()
            raise AssertionError((Counter(r.statuses(ids).values()), st.parked,
                                  st.parked_by_route, parked_in_store(store),
                                  store.outbox_depth(), r.server.stats.submits,
                                  {n: c.can_submit for n, c in r.carriers.items()},
                                  [(s.count, s.down, s.unparking, s.cursor)
                                   for s in r.dispatcher._parks.values()])) from None
        del store.commit
        assert cut == flaps
        statuses = list(r.statuses(ids).values())
        assert r.server.stats.submits == 30 - statuses.count("unknown")
        assert parked_in_store(store) == 0
        st = r.dispatcher.statistics()
        assert st.parked == 0 and st.parked_by_route == {}


async def test_a_prefix_routed_elsewhere_after_a_restart_takes_its_new_route(
        mem_store: object, autojump_clock: trio.testing.MockClock) -> None:
    # Parked while "+3361" went to the "down" carrier only; the operator re-routes that
    # prefix to "up" (the "down" carrier stays configured, still down) and restarts: the
    # waiting messages go out through "up", as they did within <= 30 s before per-route
    # parking (they were re-routed at each re-park). Before the fix their range, tagged
    # by the carrier tuple ("down",) alone, was still "known" (a configured carrier) and
    # waited for "down" however long it stayed down.
    from tests.pipeline.test_dispatch_harness import rig
    from tests.pipeline.test_dispatch_park import park_down, parked_in_store

    store: Any = mem_store
    ids = await park_down(store, 6)
    assert parked_in_store(store) == 6
    async with rig(store, carriers=("up", "down"), passwords={"down": "wrong"},
                   routes=(("+", ("up",)),)) as r:
        recs = await r.wait(ids, "delivered")
        assert {rec.parts[0].carrier for rec in recs} == {"up"}
        assert r.server.stats.submits == 6
        assert parked_in_store(store) == 0 and r.dispatcher.statistics().parked == 0


async def test_a_prefix_still_routed_the_same_keeps_waiting_after_a_restart(
        mem_store: object, autojump_clock: trio.testing.MockClock) -> None:
    # The counterpart: same routes after the restart, the carrier still down: the range
    # is known, left alone (no writes), and goes out when the carrier is up.
    from tests.pipeline.test_dispatch_harness import rig
    from tests.pipeline.test_dispatch_park import (
        ROUTES,
        bring_up_down,
        count_writes,
        park_down,
        parked_in_store,
    )

    store: Any = mem_store
    ids = await park_down(store, 6)
    async with rig(store, carriers=("up", "down"), passwords={"down": "wrong"},
                   routes=ROUTES) as r:
        with count_writes(store) as w:
            await r.wait_until(lambda: r.dispatcher.statistics().parked == 6)
            assert r.dispatcher.statistics().parked_by_route == {"down": 6}
            await trio.sleep(120)
            assert w.commits == 0
        await bring_up_down(r)
        recs = await r.wait(ids, "delivered")
        assert {rec.parts[0].carrier for rec in recs} == {"down"}
        assert r.server.stats.submits == 6 and parked_in_store(store) == 0


async def test_a_longer_prefix_added_after_a_restart_takes_its_numbers(
        mem_store: object, autojump_clock: trio.testing.MockClock) -> None:
    # The "+3361" route to "down" stays, but a new, longer "+33612" route sends those
    # numbers to "up": the messages parked for "+3361" go out through "up".
    from tests.pipeline.test_dispatch_harness import rig
    from tests.pipeline.test_dispatch_park import ROUTES, park_down, parked_in_store

    store: Any = mem_store
    ids = await park_down(store, 6)
    async with rig(store, carriers=("up", "down"), passwords={"down": "wrong"},
                   routes=(("+33612", ("up",)), *ROUTES)) as r:
        recs = await r.wait(ids, "delivered")
        assert {rec.parts[0].carrier for rec in recs} == {"up"}
        assert r.server.stats.submits == 6
        assert parked_in_store(store) == 0 and r.dispatcher.statistics().parked == 0


def test_route_sigs_name_the_longer_prefixes_taking_numbers_away() -> None:
    from gateway.pipeline.dispatch import park_tag, route_sigs

    sigs = route_sigs(["+", "+3361", "+33612", "+4", "+336"])
    assert sigs["+33612"] == "+33612" and sigs["+4"] == "+4"
    assert sigs["+3361"].split("\x1d") == ["+3361", "+33612"]
    assert sigs["+"].split("\x1d") == ["+", "+336", "+3361", "+33612", "+4"]
    # a carrier's own range (no prefix) keeps its tag; a route's differs from it
    assert park_tag(("down",)) != park_tag(("down",), sigs["+4"])
