"""The marketing tables (docs/marketing.md "Store") over the store's ``KvTxn``.

``StoreMarketing(store)`` implements ``gateway.marketing.store.LinkStore`` and
``OptinStore`` on any store with ``read(fn)`` and ``commit(batch)`` (``LmdbStore``,
``MemoryStore``, the app's ``TimedStore``): reads are one short read transaction each,
writes are ``WriteBatch.run_in_txn`` functions, so they run inside the writer's
transaction (read-modify-write without lost updates) and group-commit with everything
else. ``add_links`` / ``put_challenge`` write into a caller's batch, so short links are
stored with their message and a verified challenge with the consent it grants.

| DB | key | value |
|---|---|---|
| ``links`` | token | ``LinkTarget`` (put-if-absent; ``TokenTakenError`` on a clash) |
| ``clicks`` | token ``\\0`` bucket (8 bytes BE) | ``Click`` (an existing key = duplicate) |
| ``message_clicks`` | message id | ``MessageClicks`` |
| ``optin_challenges`` | challenge id | ``Challenge`` |
| ``optin_starts`` | ``p:``phone / ``i:``ip, ``\\0``, ms (8 bytes BE), n (2) | ``b""`` |

Segments (``iter_recipients``) walk the ``recipients`` DB in key order, ``chunk`` records
per read transaction, none held between chunks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, Final, Protocol, TypeVar

import msgspec

from gateway.marketing.optin import Challenge, RecentStarts
from gateway.marketing.store import (
    LINK_CLICKED,
    Click,
    ClickEventData,
    LinkTarget,
    MessageClicks,
    TokenTakenError,
)

from .batch import WriteBatch
from .keys import from_ms, to_ms
from .kv import Db, KvTxn
from .records import Event, RecipientRecord

__all__ = ["StoreMarketing", "add_links", "put_challenge"]

T = TypeVar("T")

_encode = msgspec.msgpack.Encoder().encode
_json = msgspec.json.Encoder().encode
LINK: Final = msgspec.msgpack.Decoder(LinkTarget)
MESSAGE_CLICKS: Final = msgspec.msgpack.Decoder(MessageClicks)
CHALLENGE: Final = msgspec.msgpack.Decoder(Challenge)
RECIPIENT: Final = msgspec.msgpack.Decoder(RecipientRecord)
#: Start-log entries older than this are pruned when a start for the same key is logged.
START_LOG_KEEP_S: Final = 2 * 3600.0


class _Base(Protocol):
    def read(self, fn: Callable[[KvTxn], Any]) -> Any: ...

    async def commit(self, batch: WriteBatch) -> Any: ...


def _start_prefix(kind: bytes, value: str) -> bytes:
    return kind + value.encode() + b"\0"


def _times(tx: KvTxn, prefix: bytes, since: float) -> list[float]:
    out: list[float] = []
    n = len(prefix)
    for key, _ in tx.scan(Db.OPTIN_STARTS, prefix + (to_ms(since) + 1).to_bytes(8, "big")):
        if not key.startswith(prefix) or len(key) != n + 10:
            break
        out.append(from_ms(int.from_bytes(key[n:n + 8], "big")))
    return out


def _log_start(tx: KvTxn, prefix: bytes, at: float, keep_s: float) -> None:
    stamp = prefix + to_ms(at).to_bytes(8, "big")
    n = 0
    while not tx.add(Db.OPTIN_STARTS, stamp + n.to_bytes(2, "big"), b""):
        n += 1  # two starts in one millisecond: both count, at their own time
    # Older entries of this key go, but never one the rate limit's window still counts.
    cutoff = prefix + to_ms(at - max(keep_s, START_LOG_KEEP_S)).to_bytes(8, "big")
    old = [k for k, _ in _take_while(tx.scan(Db.OPTIN_STARTS, prefix), cutoff)]
    for k in old:
        tx.delete(Db.OPTIN_STARTS, k)


def _take_while(items: Iterator[tuple[bytes, bytes]], below: bytes,
                ) -> Iterator[tuple[bytes, bytes]]:
    for item in items:
        if item[0] >= below:
            return
        yield item


class _AddLinks:
    __slots__ = ("links",)

    def __init__(self, links: Sequence[LinkTarget]) -> None:
        self.links = links

    def __call__(self, tx: KvTxn) -> Sequence[Event]:
        for link in self.links:
            value = _encode(link)
            key = link.token.encode()
            if not tx.add(Db.LINKS, key, value) and tx.get(Db.LINKS, key) != value:
                raise TokenTakenError(link.token)
        return ()


def add_links(batch: WriteBatch, links: Sequence[LinkTarget]) -> None:
    """Store ``links`` with the rest of ``batch`` (put-if-absent: a token already held by
    another link fails the batch with ``TokenTakenError``)."""
    if links:
        batch.run_in_txn(_AddLinks(links))


class _Clicks:
    __slots__ = ("clicks", "new")

    def __init__(self, clicks: Sequence[Click]) -> None:
        self.clicks = clicks
        self.new = 0

    def __call__(self, tx: KvTxn) -> Sequence[Event]:
        self.new = 0  # may run again when the group is retried
        events: list[Event] = []
        summaries: dict[str, MessageClicks] = {}
        for c in self.clicks:
            key = c.token.encode() + b"\0" + max(c.bucket, 0).to_bytes(8, "big")
            if not tx.add(Db.CLICKS, key, _encode(c)):
                continue
            self.new += 1
            old = summaries.get(c.message_id)
            if old is None:
                raw = tx.get(Db.MESSAGE_CLICKS, c.message_id.encode())
                old = MESSAGE_CLICKS.decode(raw) if raw is not None else MessageClicks()
            by_token = dict(old.by_token)
            by_token[c.token] = by_token.get(c.token, 0) + 1
            summaries[c.message_id] = MessageClicks(
                clicks=old.clicks + 1,
                first_at=c.at if old.first_at is None else min(old.first_at, c.at),
                last_at=c.at if old.last_at is None else max(old.last_at, c.at),
                by_token=by_token)
            data = ClickEventData(token=c.token, url=c.url, campaign_id=c.campaign_id,
                                  flow_id=c.flow_id, user_agent=c.user_agent)
            events.append(Event(seq=0, at=c.at, type=LINK_CLICKED, message_id=c.message_id,
                                phone=c.phone, data=_json(data)))
        for mid, summary in summaries.items():
            tx.put(Db.MESSAGE_CLICKS, mid.encode(), _encode(summary))
        return events


class _PutChallenge:
    __slots__ = ("challenge", "ip", "keep_s", "new")

    def __init__(self, challenge: Challenge, ip: str | None, new: bool,
                 keep_s: float = 0.0) -> None:
        self.challenge = challenge
        self.ip = ip
        self.new = new
        self.keep_s = keep_s

    def __call__(self, tx: KvTxn) -> Sequence[Event]:
        ch = self.challenge
        key = ch.id.encode()
        if self.new:
            tx.put(Db.OPTIN_CHALLENGES, key, _encode(ch))
            _log_start(tx, _start_prefix(b"p:", ch.phone), ch.created_at, self.keep_s)
            if self.ip:
                _log_start(tx, _start_prefix(b"i:", self.ip), ch.created_at, self.keep_s)
            return ()
        raw = tx.get(Db.OPTIN_CHALLENGES, key)
        if raw is not None:
            # Read-modify-write: attempts never go down, a verification is never undone.
            old = CHALLENGE.decode(raw)
            ch = msgspec.structs.replace(
                ch, attempts=max(ch.attempts, old.attempts),
                verified_at=old.verified_at if old.verified_at is not None
                else ch.verified_at)
        tx.put(Db.OPTIN_CHALLENGES, key, _encode(ch))
        return ()


def put_challenge(batch: WriteBatch, challenge: Challenge) -> None:
    """Write back ``challenge`` after a verify, in ``batch`` (attempts = max of stored and
    new; ``verified_at`` kept once set)."""
    batch.run_in_txn(_PutChallenge(challenge, None, new=False))


class _RecipientChunk:
    __slots__ = ("keep", "max_records", "start")

    def __init__(self, start: bytes, max_records: int,
                 keep: Callable[[RecipientRecord], bool]) -> None:
        self.start, self.max_records, self.keep = start, max_records, keep

    def __call__(self, tx: KvTxn) -> tuple[list[RecipientRecord], bytes | None]:
        out: list[RecipientRecord] = []
        for n, (key, value) in enumerate(tx.scan(Db.RECIPIENTS, self.start)):
            if n >= self.max_records:
                return out, key
            rec = RECIPIENT.decode(value)
            if self.keep(rec):
                out.append(rec)
        return out, None


class StoreMarketing:
    """``LinkStore`` + ``OptinStore`` (+ recipient scans) over a store (module doc)."""

    def __init__(self, store: _Base) -> None:
        self._store = store

    # --- links --------------------------------------------------------------------

    def get_link(self, token: str) -> LinkTarget | None:
        """The link behind ``token``, or None."""
        raw = self._store.read(lambda tx: tx.get(Db.LINKS, token.encode()))
        return None if raw is None else LINK.decode(raw)

    def get_message_clicks(self, message_id: str) -> MessageClicks | None:
        """A message's click summary, or None."""
        raw = self._store.read(lambda tx: tx.get(Db.MESSAGE_CLICKS, message_id.encode()))
        return None if raw is None else MESSAGE_CLICKS.decode(raw)

    async def commit_links(self, links: Sequence[LinkTarget]) -> None:
        """Store new links atomically (put-if-absent)."""
        batch = WriteBatch()
        add_links(batch, links)
        if batch:
            await self._store.commit(batch)

    async def commit_clicks(self, clicks: Sequence[Click]) -> int:
        """Record clicks once per (token, bucket), summaries and ``link_clicked`` events in
        one transaction; the number of new clicks."""
        if not clicks:
            return 0
        op = _Clicks(clicks)
        batch = WriteBatch()
        batch.run_in_txn(op)
        await self._store.commit(batch)
        return op.new

    # --- opt-in -------------------------------------------------------------------

    def get_challenge(self, challenge_id: str) -> Challenge | None:
        """The challenge, or None."""
        raw = self._store.read(lambda tx: tx.get(Db.OPTIN_CHALLENGES, challenge_id.encode()))
        return None if raw is None else CHALLENGE.decode(raw)

    def recent_starts(self, phone: str, ip: str | None, since: float) -> RecentStarts:
        """Start times after ``since`` for ``phone`` and ``ip`` (one read txn)."""
        def read(tx: KvTxn) -> RecentStarts:
            by_phone = _times(tx, _start_prefix(b"p:", phone), since)
            by_ip = _times(tx, _start_prefix(b"i:", ip), since) if ip else []
            return RecentStarts(tuple(by_phone), tuple(by_ip))
        result: RecentStarts = self._store.read(read)
        return result

    async def commit_start(self, challenge: Challenge, ip: str | None,
                           keep_s: float = 0.0) -> None:
        """Store a new challenge and log the start for its phone and ``ip``; that key's
        entries older than ``keep_s`` (at least ``START_LOG_KEEP_S``) go."""
        batch = WriteBatch()
        batch.run_in_txn(_PutChallenge(challenge, ip, new=True, keep_s=keep_s))
        await self._store.commit(batch)

    async def commit_challenge(self, challenge: Challenge) -> None:
        """Write back a challenge after a verify (read-modify-write, see put_challenge)."""
        batch = WriteBatch()
        put_challenge(batch, challenge)
        await self._store.commit(batch)

    # --- segments -----------------------------------------------------------------

    def iter_recipients(self, keep: Callable[[RecipientRecord], bool],
                        chunk: int = 1000) -> Iterator[list[RecipientRecord]]:
        """Recipients for which ``keep`` is true, in phone order, in chunks (``chunk``
        records visited per read transaction; no transaction held between chunks)."""
        pos: bytes | None = b""
        while pos is not None:
            found, pos = self._store.read(_RecipientChunk(pos, max(1, chunk), keep))
            if found:
                yield found
