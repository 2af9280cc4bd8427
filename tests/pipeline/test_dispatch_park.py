"""Per-route parking (partial outages): a message whose whole route is down is parked ONCE
(its outbox entry moves to the route's parking range), not rewritten periodically and
not tracked per message in memory; when a carrier of that route is live again, bounded
chunks put the range back to its due times (docs/pipeline.md "Dispatch")."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import msgspec
import pytest
import trio
import trio.testing

from gateway.pipeline import dispatch as D
from gateway.pipeline.routing import Router
from gateway.store import MemoryStore, MessageRecord, OutboxEntry, Store, WriteBatch
from gateway.store.batch import DELETE, PUT
from gateway.store.errors import StoreUnavailableError
from gateway.store.keys import outbox_key, parse_outbox_key
from gateway.store.kv import Db

from .conftest import NOW, make_config
from .test_dispatch_harness import Rig, rig

Clock = trio.testing.MockClock

#: "+3361..." goes to carrier "down" only; everything else to "up" only.
ROUTES = (("+3361", ("down",)), ("+", ("up",)))
DOWN_PHONES = [f"+33612{i:06d}" for i in range(30)]
UP_PHONES = [f"+33622{i:06d}" for i in range(10)]


# --- pure --------------------------------------------------------------------------------


def test_park_keys_round_trip_and_stay_beyond_any_real_due() -> None:
    rng = random.Random(5)
    tags = [0, 1, (1 << 40) - 1, D.park_tag(("a",)), D.park_tag(("a", "b"))]
    tags += [rng.randrange(1 << 40) for _ in range(20_000)]
    far = NOW + 100 * 365 * 86400.0  # recover()'s horizon (_FAR_FUTURE_S)
    for tag in tags:
        due = D.park_due(tag)
        # The float due an ``OutboxEntry`` carries gives the exact key back, so
        # ``outbox_remove(entry.due, id)`` removes the parked entry.
        ms, mid = parse_outbox_key(outbox_key(due, "01ABC"))
        assert ms == D.PARK_BASE_MS + tag and mid == "01ABC"
        assert outbox_key(ms / 1000, "01ABC") == outbox_key(due, "01ABC")
        assert D.is_parked_due(due) and due > far
    assert not D.is_parked_due(far)


def test_park_tag_is_stable_and_distinguishes_carrier_tuples() -> None:
    assert D.park_tag(("a", "b")) == D.park_tag(["a", "b"])
    assert len({D.park_tag(("a", "b")), D.park_tag(("b", "a")), D.park_tag(("a",)),
                D.park_tag(("ab",)), D.park_tag(("a", "b", "c"))}) == 5
    assert 0 <= D.park_tag(("x" * 100,)) < 1 << 40
    # fixed across processes (blake2b, not hash()): parked stores stay readable
    assert D.park_tag(("sim",)) == int.from_bytes(
        __import__("hashlib").blake2b(b"sim", digest_size=5).digest(), "big")


async def test_parked_chunk_and_census_read_one_range(mem_store: MemoryStore) -> None:
    ta, tb = D.park_tag(("a",)), D.park_tag(("b",))
    batch = WriteBatch()
    for i in range(25):
        batch.ops.append((PUT, Db.OUTBOX, outbox_key(D.park_due(ta), f"m{i:03d}"),
                          msgspec.msgpack.encode(D.Parked(NOW + i))))
    for i in range(4):
        batch.ops.append((PUT, Db.OUTBOX, outbox_key(D.park_due(tb), f"n{i:03d}"), b""))
    batch.outbox_add(NOW, "due-now")
    batch.outbox_add(NOW + 86400 * 365 * 100, "far")
    await mem_store.commit(batch)
    got = mem_store.read(lambda tx: D.parked_chunk(tx, ta, None, 10))
    assert [m for m, _ in got] == [f"m{i:03d}" for i in range(10)]
    assert msgspec.msgpack.decode(got[3][1], type=D.Parked).due == NOW + 3
    rest = mem_store.read(lambda tx: D.parked_chunk(tx, ta, "m009", 100))
    assert [m for m, _ in rest] == [f"m{i:03d}" for i in range(10, 25)]
    assert [m for m, _ in mem_store.read(lambda tx: D.parked_chunk(tx, tb, None, 100))] == [
        f"n{i:03d}" for i in range(4)]
    # chunked census: resumes where it stopped, counts per range, ignores due entries
    counts: dict[int, int] = {}
    start: bytes | None = None
    rounds = 0
    while True:
        got_c, start = mem_store.read(lambda tx, s=start: D.park_census(tx, s, 7))
        rounds += 1
        for t, n in got_c.items():
            counts[t] = counts.get(t, 0) + n
        if start is None:
            break
    assert counts == {ta: 25, tb: 4} and rounds == 5
    # the feed never sees parked entries, nor does recover()'s far-future read
    assert [e.message_id for e in mem_store.due_outbox(NOW + 86400 * 365 * 100, 100)] == [
        "due-now", "far"]


class _Fake:
    """A ``CarrierLike`` whose liveness the test sets."""

    def __init__(self, live: bool) -> None:
        self.can_submit = live

    async def enqueue(self, batch: object) -> None:
        raise AssertionError("nothing is dispatched in these tests")

    async def wait_until(self, predicate: object) -> None:
        await trio.sleep_forever()


def _dispatcher(store: Store, **live: bool) -> tuple[D.Dispatcher, dict[str, _Fake]]:
    config = make_config(routes=(("+3361", ("a",)), ("+", ("b",))), carriers=("a", "b"))
    cs = {n: _Fake(v) for n, v in live.items()}
    return D.Dispatcher(store, config, cs, Router(config.routes), clock=lambda: NOW), cs


async def _park(d: D.Dispatcher, store: Store, wait: tuple[str, ...], ids: list[str],
                live: set[str]) -> None:
    """What a dispatch round does for messages it parks: the moves in its commit, then
    ``_note_parked`` with that round's liveness."""
    batch = WriteBatch()
    add = WriteBatch()
    d._park_pending = {}
    for i, mid in enumerate(ids):
        add.outbox_add(NOW - 100 + i, mid)
        rec = MessageRecord(id=mid, created_at=NOW, to="+33612000000", text="x",
                            kind="transactional")
        d._park(batch, OutboxEntry(NOW - 100 + i, mid), rec, wait, NOW)
    await store.commit(add)
    await store.commit(batch)
    d._note_parked(d._park_pending, live)


def _due_ids(store: Store) -> list[tuple[float, str]]:
    return [(e.due, e.message_id) for e in store.due_outbox(NOW, 1000)]


async def test_parking_decisions(mem_store: MemoryStore, monkeypatch: pytest.MonkeyPatch,
                                 ) -> None:
    d, cs = _dispatcher(mem_store, a=False, b=True)
    ids = [f"m{i}" for i in range(5)]
    await _park(d, mem_store, ("a",), ids, live={"b"})
    st = d.statistics()
    assert st.parked == 5 and st.parked_by_route == {"a": 5} and _due_ids(mem_store) == []
    commits = mem_store.statistics().commits
    # "a" still down: nothing read back, nothing written, however often the feed looks
    for _ in range(50):
        await d._unpark_round(NOW)
    assert mem_store.statistics().commits == commits
    # up: chunks of UNPARK_CHUNK, each entry back at the due time it had
    monkeypatch.setattr(D, "UNPARK_CHUNK", 2)
    cs["a"].can_submit = True
    rounds = 0
    while d._parks:
        await d._unpark_round(NOW)
        rounds += 1
    assert rounds == 3 and mem_store.statistics().commits == commits + 3
    assert _due_ids(mem_store) == [(NOW - 100 + i, mid) for i, mid in enumerate(ids)]
    assert d.statistics().parked == 0 and mem_store.outbox_depth() == 5


async def test_a_park_while_its_carrier_is_live_waits_for_its_next_up(
        mem_store: MemoryStore) -> None:
    # Parts that went out with another layout wait for their carrier; if it was live in
    # that round (the layout changed), looking again must not unpark it in a loop.
    d, cs = _dispatcher(mem_store, a=False, b=True)
    await _park(d, mem_store, ("b",), ["x1"], live={"b"})
    commits = mem_store.statistics().commits
    for _ in range(20):
        await d._unpark_round(NOW)
    assert mem_store.statistics().commits == commits and d.statistics().parked == 1
    cs["b"].can_submit = False
    await d._unpark_round(NOW)  # a look finds it down ...
    cs["b"].can_submit = True
    await d._unpark_round(NOW)  # ... and the next one up: put back
    assert _due_ids(mem_store) == [(NOW - 100, "x1")] and not d._parks


async def test_a_failed_unpark_commit_resumes_where_it_stood(mem_store: MemoryStore,
                                                              monkeypatch: pytest.MonkeyPatch,
                                                              ) -> None:
    monkeypatch.setattr(D, "UNPARK_CHUNK", 3)
    d, cs = _dispatcher(mem_store, a=False, b=True)
    ids = [f"m{i}" for i in range(7)]
    await _park(d, mem_store, ("a",), ids, live={"b"})
    cs["a"].can_submit = True
    await d._unpark_round(NOW)  # 3 back
    mem_store.fail_commits(StoreUnavailableError("disk"))
    with pytest.raises(StoreUnavailableError):
        await d._unpark_round(NOW)
    mem_store.fail_commits(None)
    while d._parks:
        await d._unpark_round(NOW)
    assert sorted(m for _, m in _due_ids(mem_store)) == ids
    assert mem_store.outbox_depth() == 7


async def test_a_round_parking_under_a_down_route_stops_the_pass(
        mem_store: MemoryStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(D, "UNPARK_CHUNK", 2)
    d, cs = _dispatcher(mem_store, a=False, b=True)
    await _park(d, mem_store, ("a",), ["m0", "m1", "m2", "m3"], live={"b"})
    cs["a"].can_submit = True
    await d._unpark_round(NOW)  # m0, m1 back
    cs["a"].can_submit = False  # down again; a round parks m0 again
    batch = WriteBatch()
    d._park_pending = {}
    rec = MessageRecord(id="m0", created_at=NOW, to="+33612000000", text="x",
                        kind="transactional")
    d._park(batch, OutboxEntry(NOW - 100, "m0"), rec, ("a",), NOW)
    await mem_store.commit(batch)
    d._note_parked(d._park_pending, {"b"})
    commits = mem_store.statistics().commits
    for _ in range(10):
        await d._unpark_round(NOW)
    assert mem_store.statistics().commits == commits  # stopped: the route is down
    assert d.statistics().parked == 3 and _due_ids(mem_store) == [(NOW - 99, "m1")]
    cs["a"].can_submit = True
    while d._parks:
        await d._unpark_round(NOW)
    assert sorted(m for _, m in _due_ids(mem_store)) == ["m0", "m1", "m2", "m3"]


# --- with the pipeline -------------------------------------------------------------------


class _Writes:
    """Counts what the store commits: parking moves per message, commits overall."""

    def __init__(self) -> None:
        self.parked: dict[str, int] = {}
        self.unparked: dict[str, int] = {}
        self.commits = 0
        self.unpark_commits: list[int] = []


@contextmanager
def count_writes(store: Store) -> Iterator[_Writes]:
    w = _Writes()
    inner = store.commit

    async def commit(batch: WriteBatch) -> Any:
        w.commits += 1
        n_unpark = 0
        for op in batch.ops:
            if op[0] in (PUT, DELETE) and op[1] is Db.OUTBOX:
                ms, mid = parse_outbox_key(op[2])
                if ms >= D.PARK_BASE_MS:
                    target = w.parked if op[0] == PUT else w.unparked
                    target[mid] = target.get(mid, 0) + 1
                    n_unpark += op[0] == DELETE
        if n_unpark:
            w.unpark_commits.append(n_unpark)
        return await inner(batch)

    store.commit = commit  # type: ignore[method-assign]
    try:
        yield w
    finally:
        del store.commit  # type: ignore[method-assign]


def parked_in_store(store: Store) -> int:
    return sum(store.read(lambda tx: D.park_census(tx, None, 1 << 30))[0].values())


async def bring_up_down(r: Rig) -> None:
    """The "down" carrier's password fits from now on (it binds at its next attempt)."""
    r.server.settings.accounts["sandbox"] = "wrong"


async def send_spread(r: Rig, phones: list[str], step: float = 1.0) -> list[str]:
    """One message per ``step`` seconds: distinct due times."""
    ids: list[str] = []
    for p in phones:
        ids += await r.send(p)
        await trio.sleep(step)
    return ids


async def park_down(store: Store, n: int) -> list[str]:
    """A run with the "down" carrier down: ``n`` of ``DOWN_PHONES`` sent (0.25 s apart)
    and parked; the run then stops. Returns the message ids."""
    async with rig(store, carriers=("up", "down"), passwords={"down": "wrong"},
                   routes=ROUTES) as r:
        ids = await send_spread(r, DOWN_PHONES[:n], 0.25)
        await r.wait_until(lambda: r.dispatcher.statistics().parked == n)
    return ids


async def test_down_route_parked_once_other_route_flows_then_all_delivered_in_due_order(
        store: Store, clock: Clock) -> None:
    async with rig(store, carriers=("up", "down"), passwords={"down": "wrong"},
                   routes=ROUTES) as r:
        with count_writes(store) as w:
            down_ids = await send_spread(r, DOWN_PHONES[:20], 0.5)
            up_ids = await r.send(UP_PHONES)
            await r.wait(up_ids, "delivered")
            await r.wait_until(lambda: r.dispatcher.statistics().parked == 20)
            # each parked exactly once, never re-parked
            assert w.parked == dict.fromkeys(down_ids, 1) and not w.unparked
            st = r.dispatcher.statistics()
            assert st.parked_by_route == {"down": 20}
            assert set(r.statuses(down_ids).values()) == {"queued"}
            assert store.outbox_depth() == 20 and parked_in_store(store) == 20
            assert st.oldest_due is None  # nothing due: only parked entries
            # no periodic rewrite: ten minutes of outage cost no store write at all
            commits = w.commits
            await trio.sleep(600)
            assert w.commits == commits
            assert w.parked == dict.fromkeys(down_ids, 1) and not w.unparked
            # the other route keeps flowing meanwhile
            more_up = await r.send(UP_PHONES)
            await r.wait(more_up, "delivered")
            # one more for the down route: parked once too
            late = await r.send(DOWN_PHONES[20:25])
            await r.wait_until(lambda: r.dispatcher.statistics().parked == 25)
            t0 = trio.current_time()
            await bring_up_down(r)
            recs = await r.wait(down_ids + late, "delivered")
            assert trio.current_time() - t0 < 15  # the bind's reconnect backoff (<= 5 s)
            assert w.unparked == dict.fromkeys(down_ids + late, 1)
            assert w.parked == dict.fromkeys(down_ids + late, 1)
        assert r.server.stats.submits == 25 + 20  # none twice
        assert {rec.parts[0].carrier for rec in recs} == {"down"}
        by_due = sorted(recs, key=lambda rec: (rec.created_at, rec.id))
        sub = [rec.parts[0].submitted_at for rec in by_due]
        assert sub == sorted(sub)  # submitted in order of due
        assert all(rec.outbox_due is None for rec in recs)
        assert [h.status for h in recs[0].history] == ["queued", "submitted", "delivered"]
        st = r.dispatcher.statistics()
        assert st.parked == 0 and st.parked_by_route == {} and store.outbox_depth() == 0


async def test_unparking_goes_in_bounded_chunks(mem_store: MemoryStore, autojump_clock: Clock,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(D, "UNPARK_CHUNK", 7)
    async with rig(mem_store, carriers=("up", "down"), passwords={"down": "wrong"},
                   routes=ROUTES) as r:
        with count_writes(mem_store) as w:
            ids = await r.send(DOWN_PHONES)
            await r.wait_until(lambda: r.dispatcher.statistics().parked == 30)
            await bring_up_down(r)
            await r.wait(ids, "delivered")
        assert w.unpark_commits and max(w.unpark_commits) <= 7
        assert sum(w.unpark_commits) == 30 and len(w.unpark_commits) >= 5
        assert r.server.stats.submits == 30


async def test_restart_while_parked_delivers_once_the_route_is_live(
        store: Store, clock: Clock) -> None:
    ids = await park_down(store, 12)
    assert parked_in_store(store) == 12
    # restart, the route still down: found (counted), left alone
    async with rig(store, carriers=("up", "down"), passwords={"down": "wrong"},
                   routes=ROUTES) as r:
        with count_writes(store) as w:
            await r.wait_until(lambda: r.dispatcher.statistics().parked == 12)
            assert r.dispatcher.statistics().parked_by_route == {"down": 12}
            await trio.sleep(120)
            assert w.commits == 0
    # restart with the route live: delivered, each once
    async with rig(store, carriers=("up", "down"), routes=ROUTES) as r:
        recs = await r.wait(ids, "delivered")
        assert r.server.stats.submits == 12
        assert parked_in_store(store) == 0 and store.outbox_depth() == 0
        sub = [rec.parts[0].submitted_at for rec in recs]
        assert sub == sorted(sub)
        assert r.dispatcher.statistics().parked == 0


async def test_entries_parked_by_the_old_code_still_go_out(store: Store, clock: Clock) -> None:
    # The old dispatcher moved a parked entry up to 30 s ahead and wrote that due into
    # the record's ``outbox_due``: an ordinary outbox entry, due later.
    async with rig(store, carriers=("up", "down"), routes=ROUTES, run_dispatcher=False,
                   run_inbound=False) as r:
        ids = await r.send(DOWN_PHONES[:3] + UP_PHONES[:2])
        batch = WriteBatch()
        for mid in ids:
            rec = r.get(mid)
            assert rec.outbox_due is not None
            later = rec.outbox_due + 20.0
            batch.outbox_remove(rec.outbox_due, mid)
            batch.outbox_add(later, mid)
            batch.put_message(msgspec.structs.replace(rec, outbox_due=later))
        await store.commit(batch)
    # a new process, "down" still down: the old-style entries come due and are parked
    # the new way (once); the other route's are sent
    async with rig(store, carriers=("up", "down"), passwords={"down": "wrong"},
                   routes=ROUTES) as r:
        await r.wait(ids[3:], "delivered")
        await r.wait_until(lambda: r.dispatcher.statistics().parked == 3)
        await bring_up_down(r)
        await r.wait(ids[:3], "delivered")
        assert r.server.stats.submits == 5


async def test_a_range_of_an_old_config_is_put_back_at_start(mem_store: MemoryStore,
                                                             autojump_clock: Clock) -> None:
    # Parked by a run whose routes named a carrier that no longer exists: routed again.
    async with rig(mem_store, carriers=("up", "down"), routes=ROUTES, run_dispatcher=False,
                   run_inbound=False) as r:
        ids = await r.send(DOWN_PHONES[:4])
        batch = WriteBatch()
        tag = D.park_tag(("gone",))
        for mid in ids:
            rec = r.get(mid)
            assert rec.outbox_due is not None
            batch.outbox_remove(rec.outbox_due, mid)
            batch.ops.append((PUT, Db.OUTBOX, outbox_key(D.park_due(tag), mid),
                              msgspec.msgpack.encode(D.Parked(rec.outbox_due))))
        await mem_store.commit(batch)
    async with rig(mem_store, carriers=("up", "down"), routes=ROUTES) as r:
        await r.wait(ids, "delivered")
        assert r.server.stats.submits == 4 and parked_in_store(mem_store) == 0


async def test_route_flaps_each_outage_parks_once(mem_store: MemoryStore,
                                                  autojump_clock: Clock) -> None:
    async with rig(mem_store, carriers=("up", "down"), passwords={"down": "wrong"},
                   routes=ROUTES) as r:
        with count_writes(mem_store) as w:
            first = await r.send(DOWN_PHONES[:5])
            await r.wait_until(lambda: r.dispatcher.statistics().parked == 5)
            await bring_up_down(r)
            await r.wait(first, "delivered")
            # down again: the SMSC refuses the password and cuts the session
            r.server.settings.accounts["sandbox"] = "sandbox"
            r.server.drop_all()
            await r.wait_until(lambda: not r.carriers["down"].can_submit)
            second = await r.send(DOWN_PHONES[5:10])
            await r.wait_until(lambda: r.dispatcher.statistics().parked == 5)
            await trio.sleep(300)
            assert all(w.parked[m] == 1 for m in second)
            await bring_up_down(r)
            await r.wait(second, "delivered")
        assert r.server.stats.submits == 10
        assert w.parked == dict.fromkeys(first + second, 1)


async def test_a_stop_in_the_middle_of_unparking_loses_nothing(
        store: Store, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    # The process dies right after the first chunk's commit: part of the range is back
    # in the due range, the rest still parked. The next run sends every message once;
    # only a message whose ``sending`` mark was committed before the kill (LMDB: a
    # commit under way completes in the writer thread) ends ``unknown``, never sent.
    monkeypatch.setattr(D, "UNPARK_CHUNK", 4)
    async with rig(store, carriers=("up", "down"), passwords={"down": "wrong"},
                   routes=ROUTES) as r:
        ids = await r.send(DOWN_PHONES[:10])
        await r.wait_until(lambda: r.dispatcher.statistics().parked == 10)
        inner = store.commit

        async def commit(batch: WriteBatch) -> Any:
            result = await inner(batch)
            if any(op[0] == DELETE and op[1] is Db.OUTBOX
                   and parse_outbox_key(op[2])[0] >= D.PARK_BASE_MS for op in batch.ops):
                r.nursery.cancel_scope.cancel()  # "killed" right after this commit
            return result

        store.commit = commit  # type: ignore[method-assign]
        await bring_up_down(r)
        await trio.sleep_forever()
    del store.commit  # type: ignore[method-assign]
    # A real kill ends the writer with the process; here the store lives on, and a batch
    # the killed feed queued before its cancellation (it may lease the chunk it just put
    # back) still commits in the writer thread. Let it land before the "next process"
    # starts, as it would have before a restart (else, under load, it lands after the
    # second run's recovery and leaves those entries leased for lease_s).
    await store.commit(WriteBatch(urgent=True))
    assert parked_in_store(store) == 6 and store.outbox_depth() == 10
    assert r.server.stats.submits == 0
    async with rig(store, carriers=("up", "down"), routes=ROUTES) as r2:
        recs = await r2.wait(ids, {"delivered", "unknown"})
        delivered = [rec for rec in recs if rec.status == "delivered"]
        assert r2.server.stats.submits == len(delivered) >= 6  # the parked six at least
        assert all(rec.reason == "no_response" for rec in recs if rec.status == "unknown")
        if isinstance(store, MemoryStore):
            assert len(delivered) == 10
        assert parked_in_store(store) == 0 and store.outbox_depth() == 0
