"""Key encodings: byte order is the order the store promises."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.store import ErrorEntry, MessageRecord, PartRecord, RecipientRecord, WriteBatch
from gateway.store.keys import (
    _U64,
    _no_nul,
    carrier_key,
    check_key,
    error_key,
    event_key,
    from_ms,
    outbox_key,
    pack_event_key,
    parse_error_key,
    parse_event_key,
    parse_outbox_key,
    to_ms,
)

ids = st.text(st.characters(codec="utf-8", exclude_characters="\0"), min_size=1, max_size=40)
phones = st.from_regex(r"\+[1-9][0-9]{1,14}", fullmatch=True)
times = st.floats(min_value=0, max_value=4e9, allow_nan=False)


@given(times, ids)
def test_outbox_key_roundtrip(due: float, mid: str) -> None:
    ms, got = parse_outbox_key(outbox_key(due, mid))
    assert (ms, got) == (to_ms(due), mid)
    assert abs(from_ms(ms) - due) <= 0.0005 + 1e-9 * due
    assert to_ms(from_ms(ms)) == ms


@given(times, ids, times, ids)
def test_outbox_keys_sort_by_due_then_id(d1: float, m1: str, d2: float, m2: str) -> None:
    k1, k2 = outbox_key(d1, m1), outbox_key(d2, m2)
    if to_ms(d1) != to_ms(d2):
        assert (k1 < k2) == (to_ms(d1) < to_ms(d2))
    else:
        assert (k1 < k2) == (m1.encode() < m2.encode())


@given(phones, st.integers(0, 2**63), phones, st.integers(0, 2**63))
def test_error_keys_group_by_phone_then_time(p1: str, t1: int, p2: str, t2: int) -> None:
    k1, k2 = error_key(p1, t1), error_key(p2, t2)
    assert parse_error_key(k1) == (p1, t1)
    if p1 == p2:
        assert (k1 < k2) == (t1 < t2)
    else:
        # every key of one phone sorts on the same side of every key of the other
        assert (k1 < k2) == (error_key(p1, 0) < error_key(p2, 0))
        assert (k1 < k2) == (error_key(p1, 2**64 - 1) < error_key(p2, 2**64 - 1))


@given(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1))
def test_event_keys_sort_by_seq(a: int, b: int) -> None:
    assert parse_event_key(event_key(a)) == a
    assert (event_key(a) < event_key(b)) == (a < b)


def test_carrier_key_refuses_nul_and_long_ids() -> None:
    assert carrier_key("c", "id") == b"c\0id"
    with pytest.raises(ValueError):
        carrier_key("c", "x" * 600)
    assert to_ms(-5.0) == 0


def test_records_are_msgpack_arrays_and_evolve_by_appending() -> None:
    class OldPart(msgspec.Struct, array_like=True):
        index: int
        carrier: str | None = None

    raw = msgspec.msgpack.encode(OldPart(2, "c1"))
    part = msgspec.msgpack.decode(raw, type=PartRecord)
    assert (part.index, part.carrier, part.status) == (2, "c1", "pending")
    # and an older reader ignores fields added after its time
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(part), type=OldPart).carrier == "c1"


@given(
    st.builds(
        MessageRecord,
        id=ids,
        created_at=times,
        to=phones,
        text=st.text(max_size=200),
        kind=st.sampled_from(["campaign", "flow", "transactional"]),
        parts=st.lists(st.builds(PartRecord, index=st.integers(0, 255)), max_size=3).map(tuple),
    ),
    st.builds(
        RecipientRecord,
        phone=phones,
        flow_marks=st.dictionaries(st.text(max_size=10), times, max_size=3),
        marketing_sends=st.lists(times, max_size=5).map(tuple),
    ),
    st.builds(ErrorEntry, at=times, error_class=st.text(max_size=10)),
)
def test_records_roundtrip(m: MessageRecord, r: RecipientRecord, e: ErrorEntry) -> None:
    for rec in (m, r, e):
        assert msgspec.msgpack.decode(msgspec.msgpack.encode(rec), type=type(rec)) == rec


# The hot key builders are written out by hand (no to_ms/check_key/_no_nul calls); these
# are the plain definitions they must agree with, in value and in the error raised.
def _outbox_key_ref(due: float, message_id: str) -> bytes:
    return check_key(_U64.pack(to_ms(due)) + message_id.encode(), "outbox")


def _carrier_key_ref(carrier: str, carrier_msg_id: str) -> bytes:
    return check_key(
        _no_nul(carrier, "carrier") + b"\0" + _no_nul(carrier_msg_id, "carrier message id"),
        "carrier_ids",
    )


def _outcome(fn: object, *args: object) -> object:
    try:
        return fn(*args)  # type: ignore[operator]
    except ValueError as exc:
        return ("ValueError", str(exc))


any_text = st.text(max_size=600) | st.sampled_from(["", "\0", "a\0b", "x" * 503, "x" * 504])


@given(st.floats(min_value=-1e6, max_value=4e12, allow_nan=False) | st.sampled_from(
    [0.0, -0.0005, 0.0005, 0.0015, 0.0025, 1_790_000_000.1235]), any_text)
def test_outbox_key_matches_the_plain_definition(due: float, mid: str) -> None:
    assert _outcome(outbox_key, due, mid) == _outcome(_outbox_key_ref, due, mid)


@given(any_text, any_text)
def test_carrier_key_matches_the_plain_definition(carrier: str, cid: str) -> None:
    assert _outcome(carrier_key, carrier, cid) == _outcome(_carrier_key_ref, carrier, cid)


@given(st.integers(0, 2**64 - 1))
def test_pack_event_key_is_event_key(seq: int) -> None:
    assert pack_event_key(seq) == event_key(seq)


@pytest.mark.parametrize(("key", "n"), [("", 0), ("x" * 512, 512), ("é" * 256, 512)])
def test_batch_refuses_ids_lmdb_cannot_store(key: str, n: int) -> None:
    batch = WriteBatch()
    for add in (lambda: batch.update_message(key, lambda r: r),
                lambda: batch.delete_message(key),
                lambda: batch.delete_recipient(key)):
        with pytest.raises(ValueError, match=f"key must be 1..511 bytes, got {n}"):
            add()
    assert not batch
    batch.update_message("x" * 511, lambda r: r)
    assert batch.ops[0][2] == b"x" * 511
