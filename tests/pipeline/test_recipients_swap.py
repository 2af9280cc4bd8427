"""The recipient write-through op (``SWAP``): the same stored record as the general
``UPDATE`` with ``_TxnFn``, whatever the store holds when the transaction runs."""

from __future__ import annotations

import msgspec
import pytest

from gateway.pipeline import RecipientCache
from gateway.pipeline.recipients import _TxnFn
from gateway.store import MemoryStore, RecipientRecord, WriteBatch
from gateway.store.batch import RECIPIENT_DECODER, SWAP, UPDATE
from gateway.store.kv import Db
from tests.pipeline.conftest import LA, NOW

_enc = msgspec.msgpack.Encoder().encode


def add_send(r: RecipientRecord) -> RecipientRecord:
    return msgspec.structs.replace(r, marketing_sends=(*r.marketing_sends, NOW),
                                   updated_at=NOW)


CACHED = RecipientRecord(phone=LA, consent="subscribed", region="US", state="CA",
                         zones=("America/Los_Angeles",), marketing_sends=(NOW - 9,))

# What the store holds when the transaction runs.
STATES: dict[str, RecipientRecord | None] = {
    "the cached record": CACHED,
    "changed behind the cache": msgspec.structs.replace(CACHED, consent="unsubscribed"),
    "absent": None,
    "stored without number facts": msgspec.structs.replace(
        CACHED, region=None, state=None, zones=()),
}


def _stored_after(op: tuple[object, ...], held: RecipientRecord | None) -> bytes | None:
    store = MemoryStore()
    if held is not None:
        seed = WriteBatch()
        seed.put_recipient(held)
        store.commit_sync(seed)
    batch = WriteBatch()
    batch.ops.append(op)
    store.commit_sync(batch)
    rec = store.get_recipient(LA)
    return None if rec is None else _enc(rec)


@pytest.mark.parametrize("state", list(STATES))
def test_swap_op_writes_what_the_general_update_writes(state: str) -> None:
    held = STATES[state]
    store = MemoryStore()
    seed = WriteBatch()
    seed.put_recipient(CACHED)
    store.commit_sync(seed)
    rc = RecipientCache(store)
    new, op = rc.update_op(LA, add_send)
    assert op[0] == SWAP and new == add_send(CACHED)
    general = (UPDATE, Db.RECIPIENTS, LA.encode(), _TxnFn(add_send, CACHED), RECIPIENT_DECODER)
    got = _stored_after(op, held)
    assert got == _stored_after(general, held)
    assert got is not None
    if state == "the cached record":
        assert got == _enc(new)  # the new bytes as the cache made them
    if state == "changed behind the cache":
        assert RECIPIENT_DECODER.decode(got).consent == "unsubscribed"


def test_swap_expects_the_bytes_as_read_also_in_an_older_layout() -> None:
    # A record written before RecipientRecord gained its last field (a shorter msgpack
    # array): the cache expects the bytes it read, not a re-encoding, so the first write
    # after an upgrade still takes the fast path, and the store ends up with the new bytes.
    full = _enc(CACHED)
    assert full[:3] == b"\xdc\x00\x11"  # array16 of 17 fields
    short = b"\xdc\x00\x10" + full[3:-1]  # the same record without its last (None) field
    assert full[-1:] == b"\xc0"
    store = MemoryStore()
    store.commit_sync(_raw_put(short))
    assert store.get_recipient(LA) == CACHED  # the older layout reads as the same record
    rc = RecipientCache(store)
    new, op = rc.update_op(LA, add_send)
    assert op[0] == SWAP and op[3] == short and op[4] == _enc(new)
    batch = WriteBatch()
    batch.ops.append(op)
    store.commit_sync(batch)
    assert store.get_recipient(LA) == new == add_send(CACHED)
    # The next write of the same record expects what this one wrote.
    newer, op2 = rc.update_op(LA, add_send)
    assert op2[0] == SWAP and op2[3] == _enc(new) and op2[4] == _enc(newer)


def test_a_recipient_the_store_does_not_hold_is_written_with_the_general_update() -> None:
    rc = RecipientCache(MemoryStore())
    new, op = rc.update_op(LA, add_send)
    assert op[0] == UPDATE and isinstance(op[3], _TxnFn)
    store = rc._store
    batch = WriteBatch()
    batch.ops.append(op)
    store.commit_sync(batch)
    assert store.get_recipient(LA) == new
    # Once written, the cache knows the bytes: the next write is a SWAP that hits.
    _, op2 = rc.update_op(LA, add_send)
    assert op2[0] == SWAP and op2[3] == _enc(new)


def _raw_put(raw: bytes) -> WriteBatch:
    from gateway.store.batch import PUT

    batch = WriteBatch()
    batch.ops.append((PUT, Db.RECIPIENTS, LA.encode(), raw))
    return batch
