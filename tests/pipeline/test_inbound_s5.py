"""Session 5 fast paths of the receipt path, each held to the general code it replaces:

* ``dispatch.rollup_one`` / ``rollup`` of one part = ``_rollup([status])``;
* ``inbound._apply_receipt`` (no list of parts for a one-part message) = the general
  list-copy-and-roll-up version it replaced (kept below as the reference);
* the receipt test of ``InboundProcessor._process`` (``_RECEIPT_ESM_CLASSES``) =
  ``is_receipt_esm_class`` for any int;
* ``bind.ack_all`` = ``Inbound.ack()`` one by one: the same bytes to each SMSC, the same
  ``acked`` flags, a dead link or an already answered delivery skipped, stand-ins acked.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.bind import Inbound, _Link, ack_all
from gateway.pipeline import dispatch as D
from gateway.pipeline.inbound import _RECEIPT_ESM_CLASSES, _apply_receipt
from gateway.receipts import is_receipt_esm_class
from gateway.smpp import DataSm, DeliverSm
from gateway.store import HistoryEntry, MessageRecord, PartRecord
from tests.smpp.helpers import SessionPair

_replace = __import__("msgspec").structs.replace

STATUSES = [D.PENDING, D.SENDING, D.ACCEPTED, D.FAILED, D.UNKNOWN, D.DELIVERED,
            D.UNDELIVERED, D.EXPIRED, D.REJECTED, D.DELETED, D.UNKNOWN_RECEIPT, "odd"]


@pytest.mark.parametrize("status", STATUSES)
def test_rollup_one_is_rollup_of_one_status(status: str) -> None:
    assert D.rollup_one(status) == D._rollup([status])
    assert D.rollup((PartRecord(0, status=status),)) == D._rollup([status])
    assert D.rollup_one(status) == D._rollup([status])  # remembered: same answer


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=12))
def test_rollup_one_any_string(status: str) -> None:
    assert D.rollup_one(status) == D._rollup([status])


def test_rollup_one_table_stays_bounded() -> None:
    for i in range(500):
        D.rollup_one(f"x{i}")
    assert len(D._ROLLUP_ONE) <= 64


def _reference(old: MessageRecord | None, change: Any) -> Any:
    """``_apply_receipt`` as it was before session 5 (every message through a list)."""
    part, status, stat, err, done_at, error_class, now = change
    if old is None or part >= len(old.parts):
        return None
    parts = list(old.parts)
    p = parts[part]
    if p.status in D.RECEIPT_FINAL and p.status != D.UNKNOWN_RECEIPT:
        return None
    parts[part] = _replace(p, receipt_stat=stat, receipt_err=err, done_at=done_at,
                           error_class=error_class,
                           status=p.status if status is None else status)
    st_ = D.rollup(parts)
    if st_ is not None and st_ != old.status:
        return _replace(old, parts=tuple(parts), updated_at=now, status=st_,
                        history=(*old.history, HistoryEntry(
                            now, st_, None, f"part {part + 1}: {stat}"
                            + (f" err {err}" if err else "")))), st_
    return _replace(old, parts=tuple(parts), updated_at=now), st_


def _rec(statuses: list[str], status: str) -> MessageRecord:
    return MessageRecord(
        id="m1", created_at=1.0, to="+33612345601", text="hi", kind="transactional",
        status=status, history=(HistoryEntry(1.0, "queued"),),
        parts=tuple(PartRecord(i, carrier="c1", status=s) for i, s in enumerate(statuses)))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(STATUSES), min_size=1, max_size=3),
       st.sampled_from(["submitted", "delivered", "queued", "failed"]),
       st.integers(0, 3),
       st.sampled_from([None, D.DELIVERED, D.UNDELIVERED, D.EXPIRED, D.UNKNOWN_RECEIPT]),
       st.sampled_from(["DELIVRD", "UNDELIV", "ENROUTE"]),
       st.sampled_from([None, "", "000", "069"]))
def test_apply_receipt_same_as_the_general_version(
        statuses: list[str], status: str, part: int, new: str | None, stat: str,
        err: str | None) -> None:
    old = _rec(statuses, status)
    change = (part, new, stat, err, 5.0, None, 9.0)
    assert _apply_receipt(old, change) == _reference(old, change)


def test_apply_receipt_absent_record() -> None:
    assert _apply_receipt(None, (0, D.DELIVERED, "DELIVRD", None, 5.0, None, 9.0)) is None


def test_receipt_esm_classes_same_as_is_receipt_esm_class() -> None:
    for e in range(-600, 1200):
        assert ((e & 0x3F) in _RECEIPT_ESM_CLASSES) == is_receipt_esm_class(e), e


# --- ack_all -------------------------------------------------------------------------


class _Standin:
    def __init__(self) -> None:
        self.acks = 0

    def ack(self, status: int = 0) -> bool:
        self.acks += 1
        return True


RECEIPT = DeliverSm(source_addr="15550001111", destination_addr="ShopCo", esm_class=0x04,
                    short_message=b"id:1 stat:DELIVRD")


def _world(spec: list[tuple[int, str]]) -> tuple[list[SessionPair], list[Any], list[int]]:
    """Two bound links; ``spec`` = (link 0/1, ``d`` deliver_sm / ``a`` data_sm / ``s`` a
    stand-in) per delivery, in order. Returns the pairs, the deliveries and, per link, how
    often its writer was woken."""
    pairs = [SessionPair(), SessionPair()]
    wakes = [0, 0]
    links = []
    for i, pair in enumerate(pairs):
        pair.bind()

        def wake(i: int = i) -> None:
            wakes[i] += 1

        links.append(_Link(f"c#{i}", pair.esme, wake, "c"))
    items: list[Any] = []
    for li, kind in spec:
        if kind == "s":
            items.append(_Standin())
            continue
        pairs[li].smsc.send_request(RECEIPT if kind == "d" else DataSm(destination_addr="1"),
                                    0.0)
        (ev,) = pairs[li].to_esme()
        items.append(Inbound(links[li], ev.seq, ev.pdu, 0.0))  # type: ignore[attr-defined]
    return pairs, items, wakes


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.sampled_from("dds")), max_size=10),
       st.lists(st.integers(0, 9), max_size=3),
       st.booleans())
def test_ack_all_same_as_one_by_one(spec: list[tuple[int, str]], pre: list[int],
                                    dead: bool) -> None:
    got_pairs, got, wakes = _world(spec)
    ref_pairs, ref, _ = _world(spec)
    for i in pre:  # some answered before the batch (a duplicate in a later batch)
        if i < len(spec):
            got[i].ack()
            ref[i].ack()
    if dead:  # link 1 lost before the acks
        for items in (got, ref):
            for it in items:
                if isinstance(it, Inbound) and it.bind == "c#1":
                    it._link.alive = False
    ack_all(got + got[:2])  # a delivery listed twice is answered once
    for it in ref + ref[:2]:
        it.ack()
    for a, b in zip(got_pairs, ref_pairs, strict=True):
        assert a.esme.data_to_send() == b.esme.data_to_send()
        assert a.esme.statistics() == b.esme.statistics()
    for a, b in zip(got, ref, strict=True):
        if isinstance(a, Inbound):
            assert a.acked == b.acked
        else:
            assert a.acks == b.acks
    n_inbound = [sum(1 for li, k in spec if li == i and k != "s") for i in (0, 1)]
    for i in (0, 1):
        assert wakes[i] <= max(1, n_inbound[i])


def test_ack_all_wakes_each_writer_once() -> None:
    _pairs, items, wakes = _world([(0, "d"), (0, "d"), (0, "d"), (1, "d")])
    ack_all(items)
    assert wakes == [1, 1]
    assert all(i.acked for i in items)
