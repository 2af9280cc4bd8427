"""What the marketing features persist, the store interfaces they use, and an in-memory
implementation for tests and the sandbox.

Same conventions as ``gateway.store`` (records.py): frozen msgspec Structs encoded as
msgpack arrays (append fields at the end with defaults, never reorder), float epoch
seconds, sync reads (one short read transaction each), ``await commit_*`` for small
batches (atomic, durable when it returns, group-committed). The LMDB implementation will
live in ``gateway/store`` (named DBs in docs/marketing.md); ``MemoryMarketingStore`` is
the reference semantics both must pass.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final, Protocol

import msgspec
import trio

from gateway.marketing.optin import Challenge, RecentStarts

__all__ = [
    "LINK_CLICKED",
    "Click",
    "ClickEventData",
    "LinkStore",
    "LinkTarget",
    "MemoryMarketingStore",
    "MessageClicks",
    "OptinStore",
    "TokenTakenError",
    "unique_token_maker",
]

#: Event type appended to the feed for each recorded click (the issue's name).
LINK_CLICKED: Final = "link_clicked"


class _Record(msgspec.Struct, frozen=True, array_like=True):
    """Base of the persisted records (frozen msgpack array)."""


class LinkTarget(_Record, frozen=True):
    """``links`` DB: token -> where it goes and whom it identifies."""

    token: str
    url: str
    message_id: str
    phone: str
    created_at: float
    campaign_id: str | None = None
    flow_id: str | None = None


class Click(_Record, frozen=True):
    """``clicks`` DB: (token, bucket) -> the first click of that token in that bucket."""

    token: str
    #: ``int(at // click_bucket_s)``: a click is recorded once per (token, bucket).
    bucket: int
    at: float
    message_id: str
    phone: str
    url: str
    campaign_id: str | None = None
    flow_id: str | None = None
    #: Truncated; link-preview bots and security scanners show up here.
    user_agent: str | None = None


class MessageClicks(_Record, frozen=True):
    """``message_clicks`` DB: message id -> its click summary (``GET /v1/messages/{id}``)."""

    clicks: int = 0
    first_at: float | None = None
    last_at: float | None = None
    #: token -> recorded clicks
    by_token: dict[str, int] = {}


class ClickEventData(msgspec.Struct, kw_only=True, omit_defaults=True):
    """``Event.data`` of a ``link_clicked`` event (message_id and phone are Event fields)."""

    token: str
    url: str
    campaign_id: str | None = None
    flow_id: str | None = None
    user_agent: str | None = None


class TokenTakenError(Exception):
    """``commit_links`` found a token already pointing elsewhere: the batch is not applied
    (draw new tokens and retry; with 47-bit tokens this is rare, see links.py)."""


class LinkStore(Protocol):
    """Short links and their clicks."""

    def get_link(self, token: str) -> LinkTarget | None:
        """The link behind ``token``, or None."""
        ...

    def get_message_clicks(self, message_id: str) -> MessageClicks | None:
        """A message's click summary, or None if it has none."""
        ...

    async def commit_links(self, links: Sequence[LinkTarget]) -> None:
        """Store new links atomically (put-if-absent; `TokenTakenError` on a clash)."""
        ...

    async def commit_clicks(self, clicks: Sequence[Click]) -> int:
        """Record clicks once per (token, bucket), update message summaries and append a
        ``link_clicked`` event per newly recorded click, in one transaction; return how
        many were new. Idempotent: re-committing a batch after a failure records nothing
        twice (the sink delivers at least once)."""
        ...


class OptinStore(Protocol):
    """Opt-in challenges and the start log the rate limits read."""

    def get_challenge(self, challenge_id: str) -> Challenge | None:
        """The challenge, or None (unknown or purged)."""
        ...

    def recent_starts(self, phone: str, ip: str | None, since: float) -> RecentStarts:
        """Start times after ``since`` for ``phone`` and for ``ip``."""
        ...

    async def commit_start(self, challenge: Challenge, ip: str | None,
                           keep_s: float = 0.0) -> None:
        """Store a new challenge and log the start for its phone and ``ip``; log entries
        of the same phone / ip older than ``keep_s`` (the rate limit's window) may go."""
        ...

    async def commit_challenge(self, challenge: Challenge) -> None:
        """Write back a challenge after a verify (attempts, verified_at)."""
        ...


def unique_token_maker(store: LinkStore, make: Callable[[], str],
                       tries: int = 8) -> Callable[[], str]:
    """Wrap a token generator so it skips tokens the store already has (one sync read
    each); the put-if-absent in ``commit_links`` catches the remaining race."""

    def make_token() -> str:
        for _ in range(tries):
            token = make()
            if store.get_link(token) is None:
                return token
        raise RuntimeError("no free link token after several tries: lengthen the tokens")

    return make_token


class MemoryMarketingStore:
    """Dicts behind `LinkStore` and `OptinStore`; ``events`` collects what the LMDB store
    would append to the event feed. Commits checkpoint like the real store does."""

    def __init__(self) -> None:
        self.links: dict[str, LinkTarget] = {}
        self.clicks: dict[tuple[str, int], Click] = {}
        self.message_clicks: dict[str, MessageClicks] = {}
        self.challenges: dict[str, Challenge] = {}
        self.starts_by_phone: dict[str, list[float]] = {}
        self.starts_by_ip: dict[str, list[float]] = {}
        #: (type, message_id, phone, data JSON) per appended event
        self.events: list[tuple[str, str, str, bytes]] = []
        #: Set to an exception to make the next commits fail (tests of retry paths).
        self.fail_commits: BaseException | None = None
        self.commits = 0

    # --- links --------------------------------------------------------------------

    def get_link(self, token: str) -> LinkTarget | None:
        return self.links.get(token)

    def get_message_clicks(self, message_id: str) -> MessageClicks | None:
        return self.message_clicks.get(message_id)

    async def _commit(self) -> None:
        await trio.lowlevel.checkpoint()
        if self.fail_commits is not None:
            raise self.fail_commits
        self.commits += 1

    async def commit_links(self, links: Sequence[LinkTarget]) -> None:
        await self._commit()
        for link in links:
            old = self.links.get(link.token)
            if old is not None and old != link:
                raise TokenTakenError(link.token)
        for link in links:
            self.links[link.token] = link

    async def commit_clicks(self, clicks: Sequence[Click]) -> int:
        await self._commit()
        new = 0
        encode = msgspec.json.encode
        for click in clicks:
            key = (click.token, click.bucket)
            if key in self.clicks:
                continue
            self.clicks[key] = click
            new += 1
            old = self.message_clicks.get(click.message_id, MessageClicks())
            by_token = dict(old.by_token)
            by_token[click.token] = by_token.get(click.token, 0) + 1
            self.message_clicks[click.message_id] = MessageClicks(
                clicks=old.clicks + 1,
                first_at=click.at if old.first_at is None else min(old.first_at, click.at),
                last_at=click.at if old.last_at is None else max(old.last_at, click.at),
                by_token=by_token)
            data = ClickEventData(token=click.token, url=click.url,
                                  campaign_id=click.campaign_id, flow_id=click.flow_id,
                                  user_agent=click.user_agent)
            self.events.append((LINK_CLICKED, click.message_id, click.phone, encode(data)))
        return new

    # --- opt-in -------------------------------------------------------------------

    def get_challenge(self, challenge_id: str) -> Challenge | None:
        return self.challenges.get(challenge_id)

    def recent_starts(self, phone: str, ip: str | None, since: float) -> RecentStarts:
        by_phone = [t for t in self.starts_by_phone.get(phone, ()) if t > since]
        by_ip = [t for t in self.starts_by_ip.get(ip, ()) if t > since] if ip else []
        return RecentStarts(tuple(by_phone), tuple(by_ip))

    async def commit_start(self, challenge: Challenge, ip: str | None,
                           keep_s: float = 0.0) -> None:
        await self._commit()
        self.challenges[challenge.id] = challenge
        self.starts_by_phone.setdefault(challenge.phone, []).append(challenge.created_at)
        if ip:
            self.starts_by_ip.setdefault(ip, []).append(challenge.created_at)

    async def commit_challenge(self, challenge: Challenge) -> None:
        await self._commit()
        self.challenges[challenge.id] = challenge
