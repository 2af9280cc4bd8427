"""The per-message ``WriteBatch`` builders have their key helpers written out (session 5):
each against the helper in ``keys.py`` (the general path) on the same inputs, errors
included."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.store import CarrierIdRecord, Lease, WriteBatch
from gateway.store.batch import DELETE, EVENT, MESSAGE_DECODER, PUT, UPDATE
from gateway.store.keys import carrier_key, check_key, outbox_key
from gateway.store.kv import Db

from .helpers import event, message

_encode = msgspec.msgpack.Encoder().encode

# Short and long texts, NUL and non-ASCII included: keys past 511 bytes and carrier keys
# with a second NUL must fail the same way.
_text = st.one_of(st.text(max_size=12), st.text(min_size=120, max_size=200),
                  st.just(""), st.just("a\0b"), st.just("é" * 256))
_due = st.one_of(st.floats(allow_nan=False, allow_infinity=False, width=64),
                 st.floats(-1e3, 4e9), st.just(-0.0), st.just(0.0005), st.just(0.0015))


def _result(fn: Callable[[], Any]) -> Any:
    try:
        return ("ok", fn())
    except Exception as exc:  # the same type and message as the general path
        return ("raised", type(exc), str(exc))


def _op(build: Callable[[WriteBatch], object]) -> tuple[Any, ...]:
    batch = WriteBatch()
    build(batch)
    (op,) = batch.ops
    return op


@settings(max_examples=400, deadline=None)
@given(due=_due, mid=_text)
def test_outbox_keys_are_outbox_key(due: float, mid: str) -> None:
    lease = Lease("c1", (0,), 1.0)
    want = _result(lambda: outbox_key(due, mid))
    assert _result(lambda: _op(lambda b: b.outbox_add(due, mid))) == (
        want if want[0] == "raised" else ("ok", (PUT, Db.OUTBOX, want[1], b"")))
    assert _result(lambda: _op(lambda b: b.outbox_add(due, mid, lease))) == (
        want if want[0] == "raised" else ("ok", (PUT, Db.OUTBOX, want[1], _encode(lease))))
    assert _result(lambda: _op(lambda b: b.outbox_remove(due, mid))) == (
        want if want[0] == "raised" else ("ok", (DELETE, Db.OUTBOX, want[1])))


@settings(max_examples=300, deadline=None)
@given(carrier=_text, cid=_text, mid=st.text(max_size=8), part=st.integers(0, 300),
       at=st.floats(allow_nan=False))
def test_carrier_id_key_and_value(carrier: str, cid: str, mid: str, part: int,
                                  at: float) -> None:
    want = _result(lambda: carrier_key(carrier, cid))
    got = _result(lambda: _op(lambda b: b.put_carrier_id(carrier, cid, mid, part, at)))
    if want[0] == "raised":
        assert got == want
    else:
        value = _encode(CarrierIdRecord(message_id=mid, part=part, at=at))
        assert got == ("ok", (PUT, Db.CARRIER_IDS, want[1], value))


@settings(max_examples=200, deadline=None)
@given(mid=_text)
def test_message_keys(mid: str) -> None:
    want = _result(lambda: check_key(mid.encode(), "message id"))

    def fn(old: Any) -> Any:
        return old

    got = _result(lambda: _op(lambda b: b.update_message(mid, fn)))
    assert got == (want if want[0] == "raised"
                   else ("ok", (UPDATE, Db.MESSAGES, want[1], fn, MESSAGE_DECODER)))
    if want[0] == "ok":
        rec = message(mid)
        assert _op(lambda b: b.put_message(rec)) == (PUT, Db.MESSAGES, want[1], _encode(rec))
    else:
        with pytest.raises(want[1], match="message id"):
            WriteBatch().put_message(message(mid))


def test_append_event_returns_the_index_among_events() -> None:
    batch = WriteBatch()
    assert batch.append_event(event()) == 0
    batch.put_message(message("m"))
    assert batch.append_event(event()) == 1
    assert batch.append_event(event()) == 2
    assert [op[0] for op in batch.ops] == [EVENT, PUT, EVENT, EVENT]
