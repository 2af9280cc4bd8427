"""RecipientCache (write-through, LRU, facts once) and message ids."""

from __future__ import annotations

import msgspec

from gateway.pipeline import IdGenerator, RecipientCache
from gateway.pipeline.ids import ID_LENGTH, id_time
from gateway.store import MemoryStore, RecipientRecord, WriteBatch
from rules.model import ConsentStatus
from tests.pipeline.conftest import LA, LA2, NOW, NY, put_recipients


def test_ids_unique_sortable_and_timed() -> None:
    g = IdGenerator(random_part=7)
    a = g.many(1000, NOW)
    b = [g.next(NOW - 5) for _ in range(3)]  # clock stepped back: still increasing
    ids = a + b + g.many(2, NOW + 1)
    assert len(set(ids)) == len(ids) and ids == sorted(ids)
    assert all(len(i) == ID_LENGTH for i in ids)
    assert id_time(a[0]) == NOW and id_time(ids[-1]) == NOW + 1


async def test_load_once_facts_and_invalid(mem_store: MemoryStore) -> None:
    await put_recipients(mem_store, [LA])
    rc = RecipientCache(mem_store)
    recs = rc.get_many([LA, NY, "+15550000000"])
    assert set(recs) == {LA, NY} and rc.loads == 1
    assert recs[NY].region == "US" and not rc.is_stored(NY) and rc.is_stored(LA) is False
    assert not rc.is_valid("+15550000000")
    f = rc.facts(LA)
    assert f.consent is ConsentStatus.SUBSCRIBED and f.number is not None
    assert rc.facts(LA) is f  # converted once
    rc.get_many([LA, NY])
    assert rc.loads == 1


async def test_update_write_through_composes_with_store(mem_store: MemoryStore) -> None:
    await put_recipients(mem_store, [LA])
    rc = RecipientCache(mem_store)
    rc.load([LA])
    # Someone changed the store behind the cache's back: the txn applies fn to that.
    b0 = WriteBatch()
    b0.put_recipient(RecipientRecord(phone=LA, consent="unsubscribed"))
    await mem_store.commit(b0)
    batch = WriteBatch()
    new = rc.update(LA, lambda r: msgspec.structs.replace(r, marketing_sends=(NOW,)), batch)
    assert new.marketing_sends == (NOW,) and new.consent == "subscribed"
    await mem_store.commit(batch)
    stored = mem_store.get_recipient(LA)
    assert stored is not None and stored.consent == "unsubscribed"
    assert stored.marketing_sends == (NOW,) and stored.region == "US"  # facts filled in
    # A new recipient is created from its fresh record in the txn.
    b2 = WriteBatch()
    rc.update(NY, lambda r: msgspec.structs.replace(r, consent="subscribed"), b2)
    await mem_store.commit(b2)
    ny = mem_store.get_recipient(NY)
    assert ny is not None and ny.consent == "subscribed" and ny.state == "NY"


async def test_lru_bound_pins_and_invalidate(mem_store: MemoryStore) -> None:
    rc = RecipientCache(mem_store, max_size=2)
    rc.pin([LA])
    rc.load([LA])
    rc.load([NY])
    rc.load([LA2])
    assert len(rc) == 2 and LA in rc and NY not in rc  # LA pinned, NY the oldest
    rc.unpin([LA])
    rc.invalidate([LA])
    assert LA not in rc
    assert rc.statistics()["size"] == 1


async def test_facts_stored_is_facts_and_is_stored_in_one(mem_store: MemoryStore) -> None:
    await put_recipients(mem_store, [LA], region="US", state="CA",
                         zones=("America/Los_Angeles",))
    rc = RecipientCache(mem_store)
    la = rc.facts_stored(LA)
    ny = rc.facts_stored(NY)
    assert la is not None and ny is not None
    assert la == (rc.facts(LA), True) and la[0] is rc.facts(LA)
    assert ny == (rc.facts(NY), False)
    assert rc.facts_stored("+15550000000") is None
    assert rc.facts_stored("+15550000000") is None and not rc.is_valid("+15550000000")


def test_txn_fn_returns_the_cached_result_when_the_store_holds_the_base() -> None:
    # The writer-thread shortcut: fn is pure, so fn(stored) == fn(base) when they are equal.
    from gateway.pipeline.recipients import _TxnFn

    calls: list[RecipientRecord] = []

    def fn(r: RecipientRecord) -> RecipientRecord:
        calls.append(r)
        return msgspec.structs.replace(r, marketing_sends=(*r.marketing_sends, NOW))

    base = RecipientRecord(phone=LA, consent="subscribed", region="US", state="CA",
                           zones=("America/Los_Angeles",), marketing_sends=(NOW - 1,))
    new = fn(base)
    calls.clear()
    tf = _TxnFn(fn, base, new)
    stored = msgspec.msgpack.decode(msgspec.msgpack.encode(base), type=RecipientRecord)
    assert tf(stored) is new and calls == []
    # The store changed behind the cache: fn runs on what it holds (the general path).
    other = msgspec.structs.replace(stored, consent="unsubscribed")
    assert tf(other) == fn(other) and tf(other).consent == "unsubscribed"
    assert calls and all(c is other for c in calls)
    # Without a cached result, or with no stored record: fn as before.
    assert _TxnFn(fn, base)(stored) == new
    fresh = tf(None)
    assert fresh is not None and fresh.marketing_sends == (NOW,) and fresh.consent == "none"
