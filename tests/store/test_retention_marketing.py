"""Retention of the marketing databases (short links, clicks, click summaries, opt-in
challenges and the opt-in start log) on both stores: the pure decisions, a whole sweep,
and the in-transaction re-checks (a record that changed since the chunk was read stays)."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
import trio

from gateway.marketing.optin import Challenge
from gateway.marketing.store import Click, LinkTarget, MessageClicks
from gateway.retention import (
    CHALLENGE_GRACE_S,
    DAY,
    KINDS,
    Retention,
    RetentionSettings,
    challenge_check,
    challenge_prunable,
    click_check,
    click_prunable,
    link_check,
    link_prunable,
    message_clicks_check,
    message_clicks_prunable,
    start_prunable,
)
from gateway.store import MessageRecord, PartRecord, Store, WriteBatch
from gateway.store.kv import Db, KvTxn
from gateway.store.marketing import (
    CHALLENGE,
    LINK,
    MESSAGE_CLICKS,
    START_LOG_KEEP_S,
    StoreMarketing,
    add_links,
)
from gateway.store.retention import (
    CLICK,
    PruneRecords,
    start_chunk,
)

from .helpers import no_retention_pauses

TIMEOUT = 10
NOW = 1_790_000_000.0
L90 = 90 * DAY
_encode = msgspec.msgpack.Encoder().encode


# pure decisions ----------------------------------------------------------------------------


@pytest.mark.parametrize(("age_days", "retention_days", "expected"), [
    (91, 90, True), (89, 90, False), (90.001, 90, True), (0, 90, False), (2, 1, True),
])
def test_link_and_click_prunable(age_days: float, retention_days: float, expected: bool) -> None:
    at = NOW - age_days * DAY
    link = LinkTarget(token="t", url="https://e.x/", message_id="m", phone="+1", created_at=at)
    click = Click(token="t", bucket=0, at=at, message_id="m", phone="+1", url="https://e.x/")
    assert link_prunable(link, NOW, retention_days * DAY) is expected
    assert click_prunable(click, NOW, retention_days * DAY) is expected


@pytest.mark.parametrize(("status", "expected"), [
    (None, True),  # the message is gone
    ("delivered", True), ("submitted", True), ("failed", True), ("rejected", True),
    ("queued", False), ("scheduled", False),  # its SMS may still go out with the link
])
def test_an_old_link_stays_while_its_message_may_still_be_sent(status: str | None,
                                                                expected: bool) -> None:
    old = link("t", "m", 100)
    msg = None if status is None else MessageRecord(
        id="m", created_at=NOW - 100 * DAY, to="+1", text="t", kind="campaign", status=status)
    assert link_prunable(old, NOW, L90, msg) is expected
    assert link_prunable(link("t", "m", 10), NOW, L90, msg) is False  # young: never


@pytest.mark.parametrize(("sent_days_ago", "expected"), [(10, False), (89, False), (91, True)])
def test_a_link_counts_from_its_message_s_sending_while_the_message_is_stored(
        sent_days_ago: float, expected: bool) -> None:
    # a campaign deferred for 100 days after its links were made, then sent
    sent = NOW - sent_days_ago * DAY
    msg = MessageRecord(id="m", created_at=NOW - 100 * DAY, to="+1", text="t",
                        kind="campaign", status="delivered", updated_at=sent)
    assert link_prunable(link("t", "m", 100), NOW, L90, msg) is expected


@pytest.mark.parametrize(("last_days_ago", "message_exists", "expected"), [
    (100, False, True),  # message gone, links dead: the summary goes
    (100, True, False),  # the message still answers GET /v1/messages/{id} with it
    (10, False, False),  # its links may still be clicked
    (None, False, True),  # no click recorded at all
    (None, True, False),
])
def test_message_clicks_prunable(last_days_ago: float | None, message_exists: bool,
                                 expected: bool) -> None:
    last = None if last_days_ago is None else NOW - last_days_ago * DAY
    rec = MessageClicks(clicks=1 if last else 0, first_at=last, last_at=last)
    assert message_clicks_prunable(rec, message_exists, NOW, L90) is expected


@pytest.mark.parametrize(("expired_ago_s", "expected"), [
    (CHALLENGE_GRACE_S + 1, True), (CHALLENGE_GRACE_S - 1, False), (-600, False),
])
def test_challenge_prunable(expired_ago_s: float, expected: bool) -> None:
    assert challenge_prunable(challenge("c", expires_at=NOW - expired_ago_s), NOW) is expected


@pytest.mark.parametrize(("age_s", "expected"), [
    (START_LOG_KEEP_S + 1, True), (START_LOG_KEEP_S - 1, False), (0, False),
])
def test_start_prunable(age_s: float, expected: bool) -> None:
    assert start_prunable(NOW - age_s, NOW) is expected


# a sweep on both stores --------------------------------------------------------------------


def challenge(cid: str, *, expires_at: float, phone: str = "+15550000001",
              created_at: float | None = None) -> Challenge:
    return Challenge(id=cid, phone=phone, source="web", brand="B",
                     created_at=expires_at - 600 if created_at is None else created_at,
                     expires_at=expires_at, code_hash=b"h" * 32)


def link(token: str, mid: str, age_days: float) -> LinkTarget:
    return LinkTarget(token=token, url=f"https://shop.example/{token}", message_id=mid,
                      phone="+15550000009", created_at=NOW - age_days * DAY)


def click(token: str, mid: str, age_days: float, bucket: int = 0) -> Click:
    return Click(token=token, bucket=bucket, at=NOW - age_days * DAY, message_id=mid,
                 phone="+15550000009", url=f"https://shop.example/{token}")


def click_key(c: Click) -> bytes:
    return c.token.encode() + b"\0" + c.bucket.to_bytes(8, "big")


class _Put:
    """Stored marketing data as an older run left it (no events, no summaries computed)."""

    def __init__(self, rows: list[tuple[Db, bytes, bytes]]) -> None:
        self.rows = rows

    def __call__(self, tx: KvTxn) -> tuple[()]:
        for db, key, value in self.rows:
            tx.put(db, key, value)
        return ()


async def put_rows(store: Store, rows: list[tuple[Db, bytes, bytes]]) -> None:
    batch = WriteBatch()
    batch.run_in_txn(_Put(rows))
    await store.commit(batch)


def done_message(mid: str, age_days: float) -> MessageRecord:
    return MessageRecord(id=mid, created_at=NOW - age_days * DAY, to="+15550000009", text="t",
                         kind="campaign", status="delivered",
                         parts=(PartRecord(0, status="delivered"),))


def raw(store: Store, db: Db, key: bytes) -> bytes | None:
    got: bytes | None = store.read(lambda tx: tx.get(db, key))
    return got


async def seed(store: Store) -> None:
    b = WriteBatch()
    # ids sort by creation time (the sweep stops at the first young message)
    b.put_message(done_message("0a0001", 40))  # goes with retention_days = 30
    b.put_message(done_message("zz0001", 1))
    # a campaign held back for 100 days (an outage, say): its link must still work
    b.put_message(MessageRecord(id="0a0000", created_at=NOW - 100 * DAY, to="+15550000009",
                                text="t", kind="campaign", status="queued",
                                parts=(PartRecord(0, status="pending"),)))
    add_links(b, [link("old", "0a0001", 100), link("young", "zz0001", 1),
                  link("held", "0a0000", 100)])
    await store.commit(b)
    summary_old = MessageClicks(clicks=1, first_at=NOW - 100 * DAY, last_at=NOW - 100 * DAY,
                                by_token={"old": 1})
    summary_recent = MessageClicks(clicks=1, first_at=NOW - 5 * DAY, last_at=NOW - 5 * DAY,
                                   by_token={"x": 1})
    clicks = [click("old", "0a0001", 100), click("young", "zz0001", 1)]
    await put_rows(store, [
        *[(Db.CLICKS, click_key(c), _encode(c)) for c in clicks],
        (Db.MESSAGE_CLICKS, b"0a0001", _encode(summary_old)),  # its message goes this sweep
        (Db.MESSAGE_CLICKS, b"zz0001", _encode(summary_old)),  # its message stays
        (Db.MESSAGE_CLICKS, b"m-gone-recent", _encode(summary_recent)),  # clicked lately
        (Db.MESSAGE_CLICKS, b"m-gone-old", _encode(summary_old)),
    ])
    mk = StoreMarketing(store)
    # a challenge that expired two days ago (its start is old too), one an hour ago, a live one
    await mk.commit_start(challenge("c-old", expires_at=NOW - 2 * DAY, phone="+15550000001"),
                          "192.0.2.1")
    await mk.commit_start(challenge("c-recent", expires_at=NOW - 3600, phone="+15550000002"),
                          None)
    await mk.commit_start(challenge("c-live", expires_at=NOW + 300, phone="+15550000003"),
                          "192.0.2.3")


@pytest.mark.slow  # LMDB: a handful of fsynced commits
async def test_a_sweep_prunes_old_marketing_data_and_keeps_the_rest(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    # (no autojump clock: it would jump while the LMDB writer thread works)
    no_retention_pauses(monkeypatch)
    mk = StoreMarketing(store)
    with trio.fail_after(TIMEOUT):
        await seed(store)
        retention = Retention(store, RetentionSettings(
            messages_s=30 * DAY, events_s=0, errors_s=0, links_s=L90), clock=lambda: NOW)
        await retention.sweep()
        pruned = retention.stats.pruned
        assert {k: pruned[k] for k in KINDS[5:10]} == {
            "links": 1, "clicks": 1, "message_clicks": 2, "optin_challenges": 1,
            "optin_starts": 2}  # c-old's phone and ip (c-recent's start is 70 min old)
        assert pruned["messages"] == 1
        assert mk.get_link("old") is None and mk.get_link("young") is not None
        assert mk.get_link("held") is not None
        old_click, young_click = click("old", "0a0001", 100), click("young", "zz0001", 1)
        assert raw(store, Db.CLICKS, click_key(old_click)) is None
        assert raw(store, Db.CLICKS, click_key(young_click)) is not None
        assert [mid for mid in ("0a0001", "zz0001", "m-gone-recent", "m-gone-old")
                if mk.get_message_clicks(mid) is not None] == ["zz0001", "m-gone-recent"]
        assert [cid for cid in ("c-old", "c-recent", "c-live")
                if mk.get_challenge(cid) is not None] == ["c-recent", "c-live"]
        starts = store.read(lambda tx: start_chunk(tx, b"", 100))[0]
        assert sorted(key[:key.index(b"\0")] for key, _ in starts) == [
            b"i:192.0.2.3", b"p:+15550000002", b"p:+15550000003"]
        again = dict(pruned)
        await retention.sweep()  # nothing left to do
        assert retention.stats.pruned == again


@pytest.mark.slow
async def test_links_kept_forever_at_zero_but_challenges_still_go(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    no_retention_pauses(monkeypatch)
    mk = StoreMarketing(store)
    with trio.fail_after(TIMEOUT):
        await seed(store)
        retention = Retention(store, RetentionSettings(
            messages_s=0, events_s=0, errors_s=0, links_s=0), clock=lambda: NOW)
        await retention.sweep()
        assert mk.get_link("old") is not None
        assert mk.get_message_clicks("m-gone-old") is not None
        assert mk.get_challenge("c-old") is None
        assert retention.stats.pruned["links"] == retention.stats.pruned["clicks"] == 0


# the in-transaction re-checks ----------------------------------------------------------------


async def run_op(store: Store, op: Any) -> None:
    batch = WriteBatch()
    batch.run_in_txn(op)
    await store.commit(batch)


async def test_prune_ops_recheck_inside_the_write_txn(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        b = WriteBatch()
        b.put_message(done_message("m-back", 1))  # a summary's message that exists (again)
        add_links(b, [link("tok", "m1", 1)])  # put again under the token: young
        await store.commit(b)
        young_click = click("c", "m1", 1)
        summary_recent = MessageClicks(clicks=2, first_at=NOW - 100 * DAY, last_at=NOW - DAY,
                                       by_token={"c": 2})
        old_summary = MessageClicks(clicks=1, first_at=NOW - 100 * DAY, last_at=NOW - 100 * DAY)
        await put_rows(store, [
            (Db.CLICKS, click_key(young_click), _encode(young_click)),
            (Db.MESSAGE_CLICKS, b"m-clicked", _encode(summary_recent)),
            (Db.MESSAGE_CLICKS, b"m-back", _encode(old_summary)),
            (Db.MESSAGE_CLICKS, b"m-gone", _encode(old_summary)),
        ])
        await StoreMarketing(store).commit_start(challenge("ch", expires_at=NOW - 60), None)
        ops = [PruneRecords(Db.LINKS, LINK, [b"tok", b"missing"], link_check(NOW, L90)),
               PruneRecords(Db.CLICKS, CLICK, [click_key(young_click)], click_check(NOW, L90)),
               PruneRecords(Db.MESSAGE_CLICKS, MESSAGE_CLICKS,
                            [b"m-clicked", b"m-back", b"m-gone"],
                            message_clicks_check(NOW, L90)),
               PruneRecords(Db.OPTIN_CHALLENGES, CHALLENGE, [b"ch"], challenge_check(NOW))]
        for op in ops:
            await run_op(store, op)
        assert [op.deleted for op in ops] == [0, 0, 1, 0]
        mk = StoreMarketing(store)
        assert mk.get_link("tok") is not None and mk.get_challenge("ch") is not None
        assert mk.get_message_clicks("m-clicked") is not None
        assert mk.get_message_clicks("m-back") is not None
        assert mk.get_message_clicks("m-gone") is None


async def test_prune_links_rechecks_the_message_inside_the_write_txn(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        b = WriteBatch()
        b.put_message(MessageRecord(id="m-retry", created_at=NOW - 100 * DAY, to="+1",
                                    text="t", kind="campaign", status="queued"))
        b.put_message(done_message("m-sent", 100))
        add_links(b, [link("a", "m-retry", 100), link("b", "m-sent", 100),
                      link("c", "m-gone", 100)])
        await store.commit(b)
        op = PruneRecords(Db.LINKS, LINK, [b"a", b"b", b"c"], link_check(NOW, L90))
        await run_op(store, op)
        assert op.deleted == 2
        mk = StoreMarketing(store)
        assert [t for t in "abc" if mk.get_link(t) is not None] == ["a"]
