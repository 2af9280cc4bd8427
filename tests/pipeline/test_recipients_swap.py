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
