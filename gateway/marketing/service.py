"""The marketing features on the pipeline (trio): the accept hook's text preparation,
opt-in codes, keyword and subscriber segments, click summaries (docs/marketing.md).

``TextPreparer`` is what ``Accepter`` and the preview call per message (render the
template, shorten the links, the link records to write with the message).
``MarketingService`` is what ``GatewayBackend`` delegates the marketing routes to: it
owns the opt-in lock (verifies and starts are serialised, so two concurrent wrong guesses
cost two attempts and two concurrent starts both count), sends codes through the
``Accepter`` as ``transactional`` messages, and grants consent in the same commit as the
verified challenge.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

import msgspec
import phonenumbers
import trio

from gateway.api_types import (
    ClicksOut,
    ErrorDetail,
    FeatureDisabled,
    KeywordSegmentLine,
    LinkClicksOut,
    MessageIn,
    OptinErrorBody,
    OptinStartIn,
    OptinStartOut,
    OptinVerifyIn,
    OptinVerifyOut,
    RateLimited,
    SubscriberSegmentLine,
)
from gateway.marketing.config import LinksConfig, OptinConfig
from gateway.marketing.links import find_urls, host_of, is_token, short_url
from gateway.marketing.optin import Refused, code_message, start, verify
from gateway.marketing.templates import TemplateError
from gateway.marketing.textprep import TextPreparer
from gateway.marketing.tokens import new_challenge_id, new_code
from gateway.pipeline.events import ConsentData, consent_event
from gateway.store import RecipientRecord, WriteBatch
from gateway.store.marketing import StoreMarketing, put_challenge
from rules.keywords import normalize

if TYPE_CHECKING:
    from gateway.pipeline.accept import Accepter
    from gateway.pipeline.recipients import RecipientCache

__all__ = ["MarketingService", "TextPreparer", "recipient_language", "with_language"]

log = logging.getLogger("gateway.marketing")

_replace = msgspec.structs.replace
_VERIFY_MESSAGE: Final = {
    "wrong_code": "the code is wrong",
    "expired": "the code has expired: start again",
    "too_many_attempts": "too many wrong codes: start again",
    "unknown_challenge": "no such challenge (or it was purged): start again",
}


def _dt(t: float | None) -> datetime | None:
    return None if t is None else datetime.fromtimestamp(t, UTC)


class _Confirmed:
    """The recipient after a verified code: subscribed, double opt-in confirmed (pure)."""

    __slots__ = ("at", "language", "source")

    def __init__(self, source: str, at: float, language: str | None) -> None:
        self.source, self.at, self.language = source, at, language

    def __call__(self, rec: RecipientRecord) -> RecipientRecord:
        return _replace(rec, consent="subscribed", consent_source=self.source,
                        consent_at=self.at, double_opt_in="confirmed",
                        double_opt_in_at=self.at, opt_out_confirmed=False,
                        language=self.language or rec.language, updated_at=self.at)


def _consent_state(rec: RecipientRecord | None) -> str:
    if rec is None:
        return "unknown"
    if rec.consent in ("subscribed", "unsubscribed"):
        return rec.consent
    return "pending" if rec.double_opt_in == "pending" else "unknown"


@functools.lru_cache(maxsize=4096)
def _norm(keyword: str) -> str:
    return normalize(keyword)


@functools.lru_cache(maxsize=65_536)
def _region(phone: str) -> str | None:
    try:
        return phonenumbers.region_code_for_number(phonenumbers.parse(phone, None))
    except phonenumbers.NumberParseException:
        return None


def recipient_language(rec: RecipientRecord) -> str | None:
    """The recipient's language: set by an opt-in, else that of its last opt-in keyword."""
    if rec.language:
        return rec.language
    for k in reversed(rec.keywords):
        if k.kind == "opt_in" and k.language:
            return k.language
    return None


class MarketingService:
    """Opt-in, segments and click summaries for ``GatewayBackend`` (module doc).

    ``phone(raw, country)`` normalises and validates a number (raising the API's
    ``InvalidRequest``); ``commit(batch, phones)`` is the backend's commit (cache pinning,
    store faults as API faults); ``clock`` is epoch seconds.
    """

    def __init__(self, store: StoreMarketing, links: LinksConfig, optin: OptinConfig | None,
                 *, accepter: Accepter, recipients: RecipientCache,
                 phone: Callable[[str, str | None], str],
                 commit: Callable[[WriteBatch, Iterable[str]], Awaitable[None]],
                 clock: Callable[[], float] = time.time,
                 new_code: Callable[[int], str] = new_code,
                 new_challenge_id: Callable[[], str] = new_challenge_id) -> None:
        self.store = store
        self._links = links
        self._optin = optin
        self._accepter = accepter
        self._recipients = recipients
        self._phone = phone
        self._commit = commit
        self._clock = clock
        self._new_code = new_code
        self._new_challenge_id = new_challenge_id
        self._lock = trio.Lock()
        self.stats: dict[str, int] = {"starts": 0, "starts_refused": 0, "verified": 0,
                                      "verify_failed": 0}

    # --- opt-in -------------------------------------------------------------------

    def _config(self) -> OptinConfig:
        if self._optin is None:
            raise FeatureDisabled("opt-in codes are not configured ([optin])")
        return self._optin

    async def optin_start(self, request: OptinStartIn, client_ip: str | None,
                          ) -> OptinStartOut:
        """Open a challenge and send its code (transactional SMS through the Accepter).

        The answer is the same whether or not the number is known, subscribed or even
        reachable (a code the rules reject is only logged)."""
        cfg = self._config()
        phone = self._phone(request.phone, request.country)
        brand = request.brand or cfg.default_brand
        language = request.language or cfg.default_language
        policy = cfg.policy()
        code = self._new_code(policy.code_digits)
        async with self._lock:
            now = self._clock()
            state = self.store.recent_starts(phone, client_ip, now - policy.window_s)
            result = start(phone, source=request.source, ip=client_ip, now=now, code=code,
                           challenge_id=self._new_challenge_id(), state=state,
                           secret=cfg.secret, policy=policy, brand=brand)
            if isinstance(result, Refused):
                self.stats["starts_refused"] += 1
                raise RateLimited(result.retry_after)
            challenge = _replace(result.challenge, language=language)
            await self.store.commit_start(challenge, client_ip, keep_s=policy.window_s)
        self.stats["starts"] += 1
        text = code_message(cfg.all_templates(), language, code=code, brand=brand,
                            ttl_s=policy.code_ttl_s)
        if isinstance(text, TemplateError):  # config validation makes this unlikely
            raise RuntimeError(f"opt-in template: {text.detail}")
        results = await self._accepter.accept(
            [MessageIn(to=phone, text=text, kind="transactional", shorten_links=False)], now)
        if results[0].status == "rejected":
            log.warning("opt-in code not sent: %s", results[0].reason)
        return OptinStartOut(challenge_id=challenge.id,
                             expires_at=datetime.fromtimestamp(challenge.expires_at, UTC))

    async def optin_verify(self, request: OptinVerifyIn) -> OptinVerifyOut | OptinErrorBody:
        """Check the code; the first success subscribes the recipient (same commit)."""
        cfg = self._config()
        async with self._lock:
            now = self._clock()
            challenge = self.store.get_challenge(request.challenge_id)
            result = verify(challenge, request.code, now, cfg.secret, cfg.policy())
            batch = WriteBatch()
            phones: list[str] = []
            if result.challenge is not None:
                put_challenge(batch, result.challenge)
            if result.first and challenge is not None:
                phone = challenge.phone
                before = self._recipients.get(phone)
                self._recipients.update(phone, _Confirmed(challenge.source, now,
                                                          challenge.language), batch)
                batch.append_event(consent_event(now, phone, "subscribed", ConsentData(
                    action="confirm", source=challenge.source,
                    previous=_consent_state(before), double_opt_in="confirmed")))
                phones.append(phone)
            if batch:
                await self._commit(batch, phones)
        if result.outcome == "ok":
            self.stats["verified"] += 1
            return OptinVerifyOut(status="ok", attempts_left=result.attempts_left)
        self.stats["verify_failed"] += 1
        return OptinErrorBody(error=ErrorDetail(code=result.outcome,
                                                message=_VERIFY_MESSAGE[result.outcome]),
                              attempts_left=result.attempts_left)

    # --- segments -----------------------------------------------------------------

    async def keyword_segment(self, word: str, days: int) -> AsyncIterator[KeywordSegmentLine]:
        """Recipients with an MO keyword equal to ``word`` (after ``rules.keywords.normalize``)
        in the last ``days`` days; chunked reads, a checkpoint between chunks."""
        want = _norm(word)
        since = self._clock() - days * 86400.0

        def keep(rec: RecipientRecord) -> bool:
            return any(k.at >= since and _norm(k.keyword) == want for k in rec.keywords)

        async for rec in self._scan(keep):
            hits = [k for k in rec.keywords if k.at >= since and _norm(k.keyword) == want]
            yield KeywordSegmentLine(phone=rec.phone, keyword=want,
                                     last_at=datetime.fromtimestamp(hits[-1].at, UTC),
                                     count=len(hits), consent=_consent_state(rec))

    async def subscriber_segment(self, country: str | None, language: str | None,
                                 ) -> AsyncIterator[SubscriberSegmentLine]:
        """Subscribed recipients of ``country`` (from the number) speaking ``language``."""
        def keep(rec: RecipientRecord) -> bool:
            if rec.consent != "subscribed":
                return False
            if country is not None and (rec.region or _region(rec.phone)) != country:
                return False
            return language is None or recipient_language(rec) == language

        async for rec in self._scan(keep):
            yield SubscriberSegmentLine(
                phone=rec.phone, country=rec.region or _region(rec.phone),
                language=recipient_language(rec), source=rec.consent_source,
                subscribed_at=_dt(rec.consent_at),
                double_opt_in=rec.double_opt_in == "confirmed")

    async def _scan(self, keep: Callable[[RecipientRecord], bool],
                    ) -> AsyncIterator[RecipientRecord]:
        chunks = self.store.iter_recipients(keep, 500)
        while True:
            chunk = next(chunks, None)
            if chunk is None:
                return
            for rec in chunk:
                yield rec
            await trio.lowlevel.checkpoint()

    # --- clicks -------------------------------------------------------------------

    def clicks(self, message_id: str, text: str) -> ClicksOut | None:
        """The click summary of a message, with every short link in its ``text``."""
        summary = self.store.get_message_clicks(message_id)
        by_token: dict[str, int] = dict(summary.by_token) if summary is not None else {}
        links: list[LinkClicksOut] = []
        if "://" in text:
            seen: set[str] = set()
            for m in find_urls(text):
                host = host_of(m.url)
                token = m.url.rsplit("/", 1)[-1]
                if host is None or token in seen or not is_token(token) \
                        or m.url != short_url(host, token):
                    continue
                link = self.store.get_link(token)
                if link is None or link.message_id != message_id:
                    continue
                seen.add(token)
                links.append(LinkClicksOut(url=link.url, short_url=m.url,
                                           clicks=by_token.get(token, 0)))
        if summary is None and not links:
            return None
        return ClicksOut(total=summary.clicks if summary else 0,
                         first_at=_dt(summary.first_at) if summary else None,
                         last_at=_dt(summary.last_at) if summary else None, links=links)

    def statistics(self) -> dict[str, Any]:
        """Opt-in counters for metrics."""
        return dict(self.stats)


class _WithLanguage:
    __slots__ = ("fn", "language")

    def __init__(self, fn: Callable[[RecipientRecord], RecipientRecord], language: str) -> None:
        self.fn, self.language = fn, language

    def __call__(self, rec: RecipientRecord) -> RecipientRecord:
        new = self.fn(rec)
        return new if new.language == self.language else _replace(new, language=self.language)


def with_language(fn: Callable[[RecipientRecord], RecipientRecord], language: str | None,
                  ) -> Callable[[RecipientRecord], RecipientRecord]:
    """``fn`` that also records the recipient's language (``POST /v1/consent``)."""
    return fn if language is None else _WithLanguage(fn, language)
