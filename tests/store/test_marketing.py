"""The marketing tables (gateway/store/marketing.py) behave like ``MemoryMarketingStore``
(the reference semantics) on both stores."""

from __future__ import annotations

import msgspec
import pytest

from gateway.marketing.optin import Challenge
from gateway.marketing.store import Click, LinkTarget, MemoryMarketingStore, TokenTakenError
from gateway.store import KeywordEntry, RecipientRecord, Store, WriteBatch
from gateway.store.marketing import StoreMarketing, add_links, put_challenge

from .conftest import Harness


def _link(token: str, url: str = "https://shop.example/a", mid: str = "m1") -> LinkTarget:
    return LinkTarget(token=token, url=url, message_id=mid, phone="+33612345678",
                      created_at=1000.0, campaign_id="c1")


def _click(token: str, bucket: int, at: float, mid: str = "m1") -> Click:
    return Click(token=token, bucket=bucket, at=at, message_id=mid, phone="+33612345678",
                 url="https://shop.example/a", campaign_id="c1", user_agent="UA")


def _challenge(cid: str = "ch1", at: float = 1000.0) -> Challenge:
    return Challenge(id=cid, phone="+33612345678", source="web", brand="Acme",
                     created_at=at, expires_at=at + 600, code_hash=b"h" * 32)


async def test_links_put_if_absent(store: Store) -> None:
    ms = StoreMarketing(store)
    ref = MemoryMarketingStore()
    for s in (ms, ref):
        await s.commit_links([_link("Abc12345")])
        await s.commit_links([_link("Abc12345")])  # the same value again: fine
        with pytest.raises(TokenTakenError):
            await s.commit_links([_link("Abc12345", url="https://other.example/")])
        assert s.get_link("Abc12345") == _link("Abc12345")
        assert s.get_link("nope0000") is None


async def test_links_in_a_message_batch(store: Store) -> None:
    ms = StoreMarketing(store)
    batch = WriteBatch()
    add_links(batch, [_link("Tok00001"), _link("Tok00002", url="https://b.example/")])
    await store.commit(batch)
    assert ms.get_link("Tok00002") is not None
    taken = WriteBatch()
    add_links(taken, [_link("Tok00003"), _link("Tok00001", url="https://x.example/")])
    with pytest.raises(TokenTakenError):
        await store.commit(taken)
    assert ms.get_link("Tok00003") is None  # all or nothing


async def test_clicks_once_per_bucket_with_events(store: Store) -> None:
    ms = StoreMarketing(store)
    ref = MemoryMarketingStore()
    before = store.last_event_seq()
    batches = [[_click("T1aaaaaa", 5, 300.0), _click("T1aaaaaa", 5, 301.0)],
               [_click("T1aaaaaa", 5, 302.0), _click("T1aaaaaa", 6, 360.0),
                _click("T2aaaaaa", 6, 361.0, mid="m2")]]
    got = [await ms.commit_clicks(b) for b in batches]
    want = [await ref.commit_clicks(b) for b in batches]
    assert got == want == [1, 2]
    assert ms.get_message_clicks("m1") == ref.get_message_clicks("m1")
    assert ms.get_message_clicks("m2") == ref.get_message_clicks("m2")
    mc = ms.get_message_clicks("m1")
    assert mc is not None and mc.clicks == 2 and mc.first_at == 300.0 and mc.last_at == 360.0
    events = store.events_after(before, 100)
    assert [(e.type, e.message_id) for e in events] == [
        ("link_clicked", "m1"), ("link_clicked", "m1"), ("link_clicked", "m2")]
    assert [msgspec.json.decode(e.data) for e in events] == [
        msgspec.json.decode(d) for *_, d in ref.events]
    assert await ms.commit_clicks(batches[0]) == 0  # re-committed: nothing twice


async def test_optin_starts_and_challenges(store: Store) -> None:
    ms = StoreMarketing(store)
    ref = MemoryMarketingStore()
    for s in (ms, ref):
        await s.commit_start(_challenge("a", 1000.0), "10.0.0.1")
        await s.commit_start(_challenge("b", 1000.0), "10.0.0.1")  # same millisecond
        await s.commit_start(_challenge("c", 2000.0), None)
    for since in (0.0, 999.0, 1000.0, 1500.0, 2500.0):
        a = ms.recent_starts("+33612345678", "10.0.0.1", since)
        b = ref.recent_starts("+33612345678", "10.0.0.1", since)
        assert (len(a.number), len(a.ip)) == (len(b.number), len(b.ip)), since
    assert ms.get_challenge("a") == _challenge("a", 1000.0)
    # read-modify-write: attempts never go down, verified_at is kept
    await ms.commit_challenge(msgspec.structs.replace(_challenge("a"), attempts=2))
    await ms.commit_challenge(msgspec.structs.replace(_challenge("a"), attempts=1,
                                                      verified_at=1100.0))
    batch = WriteBatch()
    put_challenge(batch, msgspec.structs.replace(_challenge("a"), attempts=1))
    await store.commit(batch)
    got = ms.get_challenge("a")
    assert got is not None and got.attempts == 2 and got.verified_at == 1100.0


async def test_start_log_pruned(store: Store) -> None:
    ms = StoreMarketing(store)
    await ms.commit_start(_challenge("a", 1000.0), "ip")
    await ms.commit_start(_challenge("b", 1000.0 + 3 * 3600), "ip")
    starts = ms.recent_starts("+33612345678", "ip", 0.0)
    assert len(starts.number) == 1 and len(starts.ip) == 1


async def test_iter_recipients_in_chunks(store: Store, harness: Harness) -> None:
    batch = WriteBatch()
    for i in range(25):
        kw = (KeywordEntry(at=float(i), keyword="JOIN", kind="opt_in", language="fr"),) \
            if i % 3 == 0 else ()
        batch.put_recipient(RecipientRecord(phone=f"+3361234{i:04d}", keywords=kw))
    await store.commit(batch)
    ms = StoreMarketing(store)
    chunks = list(ms.iter_recipients(lambda r: bool(r.keywords), chunk=4))
    phones = [r.phone for c in chunks for r in c]
    assert phones == [f"+3361234{i:04d}" for i in range(0, 25, 3)]
    assert all(len(c) <= 4 for c in chunks)
    assert harness.kind in ("lmdb", "memory")
