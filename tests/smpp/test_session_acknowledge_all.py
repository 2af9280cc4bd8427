"""``Session.acknowledge_all`` against ``acknowledge`` called once per sequence number:
the same bytes queued, the same statistics and the same pending requests, whatever mix of
deliver_sm, data_sm, unknown and already answered sequence numbers it is given (and in a
state where no response can be sent)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.smpp import DataSm, DeliverSm
from gateway.smpp.errors import LocalProtocolError
from gateway.smpp.session import Session

from .helpers import SessionPair

RECEIPT = DeliverSm(source_addr="15550001111", destination_addr="ShopCo", esm_class=0x04,
                    short_message=b"id:1 sub:001 dlvrd:001 submit date:2611221539 done "
                                  b"date:2611221539 stat:DELIVRD err:000 text:hi")


def _bound_with_requests(kinds: list[str]) -> tuple[Session, list[int]]:
    """A bound ESME session holding the SMSC's requests (``d`` deliver_sm, ``a`` data_sm)
    unanswered; returns it and their sequence numbers."""
    pair = SessionPair()
    pair.bind()
    for k in kinds:
        pair.smsc.send_request(RECEIPT if k == "d" else DataSm(destination_addr="1"), 0.0)
    events = pair.to_esme()
    assert len(events) == len(kinds)
    return pair.esme, [e.seq for e in events]  # type: ignore[attr-defined]


def _one_by_one(session: Session, seqs: list[int]) -> int:
    n = 0
    for seq in seqs:
        try:
            session.acknowledge(seq)
        except LocalProtocolError:
            continue
        n += 1
    return n


def _same(kinds: list[str], pick: list[int], *, close: bool = False) -> None:
    a, seqs_a = _bound_with_requests(kinds)
    b, seqs_b = _bound_with_requests(kinds)
    assert seqs_a == seqs_b
    # indexes into the requests, or past them: a sequence number nobody sent
    chosen = [seqs_a[i] if i < len(seqs_a) else 10_000 + i for i in pick]
    if close:
        a.close()
        b.close()
        a.data_to_send()
        b.data_to_send()
    assert a.acknowledge_all(chosen) == _one_by_one(b, chosen)
    assert a.data_to_send() == b.data_to_send()
    assert a.statistics() == b.statistics()
    assert a._pending_in == b._pending_in
    assert a.events() == b.events()


@pytest.mark.parametrize("kinds, pick", [
    ("dddd", [0, 1, 2, 3]),
    ("dddd", [3, 1]),
    ("dada", [0, 1, 2, 3]),
    ("dd", [0, 0, 1]),          # the second answer to 0 is refused
    ("dd", [0, 7, 1]),          # 7: never sent
    ("", []),
    ("a", [0]),
])
def test_same_as_one_by_one(kinds: str, pick: list[int]) -> None:
    _same(list(kinds), pick)


def test_closed_session_answers_nothing() -> None:
    _same(list("dd"), [0, 1], close=True)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from("da"), max_size=8),
       st.lists(st.integers(0, 9), max_size=12))
def test_same_as_one_by_one_any_mix(kinds: list[str], pick: list[int]) -> None:
    _same(kinds, pick)


def test_orders_kept() -> None:
    a, seqs = _bound_with_requests(list("ddd"))
    order = list(reversed(seqs))
    a.acknowledge_all(order)
    data = a.data_to_send()
    got = [int.from_bytes(data[i + 12:i + 16], "big") for i in range(0, len(data), 17)]
    assert got == order
    assert list(itertools.chain(got)) == order
