"""The dispatcher's fast paths against its general ones (differential, pure).

``_complete_accepted`` (every part of a flight accepted: ``_ApplyAccepted``, a cached
``message.status`` payload) must write exactly what ``_complete_general`` (per-part change
dicts, ``_Apply``, ``status_event``) writes for the same flight: the same ops in the same
order, the same record once applied, the same events, the same counters.
"""

from __future__ import annotations

import itertools
from typing import Any

import msgspec
import pytest

from gateway.bind import OutcomeKind, SubmitOutcome
from gateway.encoding import plan
from gateway.pipeline.dispatch import (
    _KEEP,
    Dispatcher,
    _Apply,
    _ApplyAccepted,
    _Flight,
    _StaleRecord,
)
from gateway.pipeline.routing import Router
from gateway.store import HistoryEntry, Lease, MessageRecord, PartRecord, Store, WriteBatch
from gateway.store.batch import EVENT, UPDATE

from .conftest import NOW, make_config

_replace = msgspec.structs.replace
STATUSES = ("pending", "sending", "accepted", "delivered", "failed")


def _record(statuses: tuple[str, ...], **kw: Any) -> MessageRecord:
    parts = tuple(PartRecord(index=i, status=s, carrier="c0" if s != "pending" else None)
                  for i, s in enumerate(statuses))
    fields: dict[str, Any] = {"status": "queued", "updated_at": NOW - 5.0, "kind": "campaign",
                              "history": (HistoryEntry(NOW - 9.0, "queued"),)}
    fields.update(kw)
    return MessageRecord(id="01J0000000000000000000MSG1", created_at=NOW - 10.0,
                         to="+14155550100", text="hi", parts=parts, **fields)


def _apply_ops(batch: WriteBatch, rec: MessageRecord) -> tuple[MessageRecord | None, list[Any]]:
    """Run the batch's update functions on ``rec``; the other ops as they are."""
    out: MessageRecord | None = rec
    rest: list[Any] = []
    for op in batch.ops:
        if op[0] == UPDATE:
            out = op[3](out)
        elif op[0] == EVENT:
            ev = op[1]
            rest.append(("event", ev.type, ev.message_id, ev.phone, ev.status, ev.at,
                         msgspec.json.decode(ev.data) if ev.data else None))
        else:
            rest.append(op)
    return out, rest


def _dispatcher(store: Store) -> Dispatcher:
    config = make_config(carriers=("c0", "c1"), routes=(("+", ("c0", "c1")),))
    return Dispatcher(store, config, {}, Router(config.routes))


def _flight(rec: MessageRecord, parts: list[int], *, applied: set[int], lease: bool,
            ) -> _Flight:
    fl = _Flight(rec, "c1", parts, NOW + 3600.0, NOW - 5.0)
    fl.route = "+"
    if lease:
        fl.lease = Lease("c1", tuple(parts), NOW - 5.0)
    for i in parts:
        fl.outcomes[i] = SubmitOutcome(kind=OutcomeKind.ACCEPTED, message_id=f"00ab{i:02x}")
    fl.applied = set(applied)
    return fl


def _cases() -> list[tuple[tuple[str, ...], list[int], set[int], bool, dict[str, Any]]]:
    out = []
    for n in (1, 2, 3):
        for statuses in itertools.product(STATUSES if n < 3 else STATUSES[1:], repeat=n):
            if "failed" in statuses:
                continue  # _complete takes the general path for those
            for k in range(1, n + 1):
                for parts in itertools.combinations(range(n), k):
                    out.extend((statuses, list(parts), applied, lease, {})
                               for applied in ({*()}, {parts[0]}) for lease in (False, True))
    # record fields the payload and roll-up read
    out.append((("pending",), [0], set(), True, {"campaign_id": "cmp1", "flow_id": "f"}))
    out.append((("pending",), [0], set(), True, {"metadata": b'{"a":1}'}))
    out.append((("pending",), [0], set(), True, {"status": "submitted"}))
    out.append((("sending", "pending"), [1], set(), False, {"kind": "transactional"}))
    # a part index beyond the record's parts (a record re-planned meanwhile)
    out.append((("pending",), [0, 1], set(), True, {}))
    return out


async def test_accepted_fast_path_writes_what_the_general_path_writes(
        mem_store: Store) -> None:
    cases = _cases()
    assert len(cases) > 500
    for case in cases:
        _check_case(mem_store, *case)


def _check_case(store: Store, statuses: tuple[str, ...], parts: list[int], applied: set[int],
                lease: bool, kw: dict[str, Any]) -> None:
    rec = _record(statuses, **kw)
    results = []
    for fast in (True, False):
        d = _dispatcher(store)
        fl = _flight(rec, parts, applied=applied, lease=lease)
        batch = WriteBatch(urgent=True)
        if fast:
            d._complete_accepted(batch, fl, rec, NOW, (rec.updated_at,))
        else:
            d._complete_general(batch, fl, rec, NOW, expect=(rec.updated_at,))
        after, rest = _apply_ops(batch, rec)
        results.append((after, rest, dict(d._n)))
    assert results[0] == results[1], (statuses, parts, applied, lease, kw)
    # the payload cache gives the same event the second time
    d = _dispatcher(store)
    evs = []
    for _ in range(2):
        batch = WriteBatch()
        d._complete_accepted(batch, _flight(rec, parts, applied=applied, lease=lease), rec,
                             NOW, None)
        evs.append(_apply_ops(batch, rec)[1])
    assert evs[0] == evs[1] == results[1][1]


@pytest.mark.parametrize("route", [_KEEP, "+1", None])
@pytest.mark.parametrize("history", [None, HistoryEntry(NOW, "submitted")])
@pytest.mark.parametrize("statuses", [("pending",), ("sending", "delivered", "accepted"),
                                      ("accepted", "pending"), ()])
def test_apply_accepted_is_apply(route: str | None, history: HistoryEntry | None,
                                 statuses: tuple[str, ...]) -> None:
    rec = _record(statuses)
    accepted = [(i, f"id{i}") for i in range(len(statuses) + 1)]  # one index too many
    fields: dict[str, Any] = {"updated_at": NOW, "outbox_due": None}
    if route != _KEEP:
        fields["carrier"] = "c1"
        fields["route"] = route
    changes = {i: {"status": "accepted", "carrier": "c1", "carrier_msg_id": m,
                   "submit_status": 0, "submitted_at": NOW} for i, m in accepted}
    general = _Apply(changes, fields, history, roll=True, expect=(rec.updated_at,))
    fast = _ApplyAccepted(accepted, "c1", route, NOW, history, expect=(rec.updated_at,))
    assert fast(rec) == general(rec)
    assert fast(None) is general(None) is None
    stale = _replace(rec, updated_at=NOW - 1.0)
    for fn in (fast, general):
        with pytest.raises(_StaleRecord):
            fn(stale)
    nocheck = _ApplyAccepted(accepted, "c1", route, NOW, history, expect=None)
    assert nocheck(stale) == _Apply(changes, fields, history, roll=True)(stale)
    # the dispatcher's own roll-up is taken only when ``expect`` vouches for its copy
    unchecked = _ApplyAccepted(accepted, "c1", route, NOW, history, expect=None,
                               status="bogus")
    assert unchecked(stale) == nocheck(stale)


@pytest.mark.parametrize("options", [
    {}, {"segmentation": "payload"}, {"segmentation": "sar"}, {"segmentation": "udh16"},
    {"national_languages": {"TR": "turkish"}}, {"max_parts": 2}, {"latin1": True},
])
async def test_kept_plans_are_the_plans(mem_store: Store, options: dict[str, Any]) -> None:
    """``Dispatcher._plan`` (kept plans for texts without a concatenation reference)
    returns what ``plan`` returns, for the same text whichever message carries it."""
    config = make_config(carriers=("c0",), routes=(("+", ("c0",)),))
    cc = msgspec.structs.replace(config.carriers[0], encoding=msgspec.structs.replace(
        config.carriers[0].encoding, **options))
    config = msgspec.structs.replace(config, carriers=(cc,))
    d = Dispatcher(mem_store, config, {}, Router(config.routes))
    opts = cc.encoding
    texts = ["hello", "x" * 160, "x" * 161, "x" * 400, "Grüße 🎉", "ğüş ok", "", "a" * 2000,
             "é€[]"]
    for rnd in range(3):
        for i, text in enumerate(texts):
            for smart in (False, True):
                for country in (None, "TR"):
                    rec = _replace(_record(("pending",)), id=f"01J{rnd}{i:03d}{smart:d}",
                                   text=text, smart_encoding=smart,
                                   ref=None if rnd == 0 else 7 * rnd + i)
                    want = plan(text, opts, ref=Dispatcher._ref(rec), country=country,
                                smart=smart)
                    assert d._plan("c0", opts, rec, country) == want, (text, options)
    kept = d._plans["c0"]
    assert kept and all(p.ref is None for p in kept.values())
