"""The HTTP API's wire types (DESIGN.md "HTTP API"), the `Backend` it calls, and its faults.

Request bodies are msgspec Structs with ``forbid_unknown_fields``: decoding validates types,
enums, lengths and purely syntactic patterns, and a failure names the JSON path of the
field. Anything that needs data (is this number valid in that country? is there
consent?) is the backend's job, and a rule's "no" is a result (``status: rejected`` with a
reason code), not an HTTP error.

Field names are the public contract: add fields, never rename them. Responses always
carry every field (``null`` when unknown) so clients can rely on the keys being present.

This module imports no I/O, so the pipeline can implement `Backend` without trio or h11.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any, Literal, Protocol

import msgspec
from msgspec import Meta, Struct, field

__all__ = [
    "MAX_BATCH_HARD",
    "MAX_TEXT_CHARS",
    "MAX_TEXT_CHARS_HARD",
    "ApiError",
    "Backend",
    "Backpressure",
    "BatchIn",
    "ClicksOut",
    "ConsentIn",
    "ConsentOut",
    "ErrorBody",
    "ErrorDetail",
    "ErrorSegmentLine",
    "ErrorSummary",
    "EventOut",
    "EventsOut",
    "FeatureDisabled",
    "HealthOut",
    "HistoryEntry",
    "InvalidRequest",
    "KeywordSegmentLine",
    "LinkClicksOut",
    "MessageIn",
    "MessageResult",
    "MessageStatusOut",
    "OptinErrorBody",
    "OptinStartIn",
    "OptinStartOut",
    "OptinVerifyIn",
    "OptinVerifyOut",
    "PartOut",
    "PreviewIn",
    "PreviewLink",
    "PreviewOut",
    "RateLimited",
    "ReadyOut",
    "RecentSend",
    "RecipientConsent",
    "RecipientOut",
    "Replacement",
    "StoreFull",
    "StoreUnavailable",
    "SubmitResponse",
    "SubscriberSegmentLine",
]

# --- limits -------------------------------------------------------------------------

#: Default longest text, in characters (code points). 1,600 is the common provider limit
#: (Twilio and others): 10 concatenated GSM-7 parts at 153, 25 UCS-2 parts at 67.
MAX_TEXT_CHARS = 1600
#: The schema's hard cap; the configured limit (`Api(max_text_chars=...)`, default
#: `MAX_TEXT_CHARS`) is checked after decoding and can only be lower.
MAX_TEXT_CHARS_HARD = 10_000
#: The schema's hard cap on one batch; the configured ``[api] max_batch`` (default 1000)
#: is checked after decoding.
MAX_BATCH_HARD = 10_000

# --- syntactic patterns (checked at the edge; validity is the backend's) ----------------

#: E.164: "+", a country code that does not start with 0, at most 15 digits in all (ITU-T
#: E.164 §6.1); 7 digits minimum excludes short codes, which are not recipients.
E164 = r"^\+[1-9][0-9]{6,14}$"
#: A recipient: E.164, or a national number (digits with the usual separators) that needs
#: ``country`` to be read.
PHONE = r"^(\+[1-9][0-9]{6,14}|[0-9(][0-9 ().\-]{2,30})$"
#: A sender id: a number (up to 15 digits), or alphanumeric of at most 11 characters
#: (the GSM 03.40 TP-OA limit for alphanumeric originators).
SENDER = r"^(\+?[0-9]{1,15}|[A-Za-z0-9][A-Za-z0-9 .&_\-]{0,10})$"
COUNTRY = r"^[A-Z]{2}$"
SNAKE = r"^[a-z][a-z0-9_]{0,63}$"

Phone = Annotated[str, Meta(pattern=PHONE, description="E.164 (+...), or national with country")]
E164Phone = Annotated[str, Meta(pattern=E164, description="E.164, e.g. +14155550100")]
Country = Annotated[str, Meta(pattern=COUNTRY, description="ISO 3166-1 alpha-2, e.g. US")]
Sender = Annotated[str, Meta(pattern=SENDER)]
Ident = Annotated[str, Meta(min_length=1, max_length=128)]
Text = Annotated[str, Meta(min_length=1, max_length=MAX_TEXT_CHARS_HARD)]
AwareTime = Annotated[datetime, Meta(tz=True, description="RFC 3339 with an offset")]
Kind = Literal["campaign", "flow", "transactional"]
Bypass = Literal["quiet_hours", "smart_sending"]
Metadata = Annotated[dict[str, Any], Meta(max_length=64)]
Vars = Annotated[dict[str, Annotated[str, Meta(max_length=1024)]], Meta(max_length=64)]
Count = Annotated[int, Meta(ge=0)]
Language = Annotated[str, Meta(pattern=r"^[a-z]{2}$", description="ISO 639-1, e.g. fr")]

# --- requests -----------------------------------------------------------------------


class _In(Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    pass


class MessageIn(_In, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """One message to send (``POST /v1/messages``, alone or inside a batch)."""

    to: Phone
    #: Sender id; absent = the route's default.
    from_: Sender | None = field(default=None, name="from")
    #: Required when ``to`` is national (not "+...").
    country: Country | None = None
    text: Text
    #: Which rules apply; a campaign gets all of them, so it is the default.
    kind: Kind = "campaign"
    campaign_id: Ident | None = None
    flow_id: Ident | None = None
    #: e.g. ``abandoned_cart``, ``welcome``, ``browse_abandonment``.
    flow_type: Annotated[str, Meta(pattern=SNAKE)] | None = None
    trigger_id: Ident | None = None
    #: When the trigger happened (for abandoned carts: the abandonment time).
    trigger_at: AwareTime | None = None
    bypass: Annotated[list[Bypass], Meta(max_length=2)] = []
    #: Replace look-alike characters to stay in GSM-7; null = the policy's default.
    smart_encoding: bool | None = None
    idempotency_key: Ident | None = None
    #: Echoed in the events about this message.
    metadata: Metadata | None = None
    #: Template variables: ``{{ name }}`` or ``{{ name | default: "x" }}`` in ``text``
    #: (docs/marketing.md); a missing one rejects the message with ``missing_variable``.
    vars: Vars | None = None
    #: Replace http(s) URLs by branded short links; null = ``[links] shorten_links``.
    shorten_links: bool | None = None


class BatchIn(_In, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """``{"messages": [...]}``: up to ``[api] max_batch`` (default 1000) messages."""

    messages: Annotated[list[MessageIn], Meta(min_length=1, max_length=MAX_BATCH_HARD)]


class PreviewIn(_In, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """``POST /v1/messages/preview``: how a text would be encoded; nothing is sent."""

    text: Text
    smart_encoding: bool | None = None
    #: Template variables, as in ``MessageIn``.
    vars: Vars | None = None
    #: As in ``MessageIn``: the preview shows the shortened text (placeholder tokens).
    shorten_links: bool | None = None
    #: Sender id: picks the short-link domain.
    from_: Sender | None = field(default=None, name="from")


class ConsentIn(_In, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """``POST /v1/consent``: record a consent change for one phone number."""

    phone: Phone
    action: Literal["subscribe", "unsubscribe", "confirm"]
    #: Required when ``phone`` is national.
    country: Country | None = None
    #: Where it came from, e.g. ``web_form``, ``checkout``, ``keyword``, ``support``.
    source: Ident | None = None
    #: For ``subscribe``: send a confirmation and wait for ``confirm`` before marketing.
    double_opt_in: bool = False
    #: When it happened; absent = now.
    at: AwareTime | None = None
    #: The recipient's language (ISO 639-1), for the subscriber segment.
    language: Language | None = None


class OptinStartIn(_In, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """``POST /v1/optin/start``: send an opt-in code to ``phone``."""

    phone: Phone
    #: Required when ``phone`` is national.
    country: Country | None = None
    #: Where the sign-up happened (recorded on the consent), e.g. ``checkout``.
    source: Ident
    #: Brand in the code SMS; absent = ``[optin] default_brand``.
    brand: Annotated[str, Meta(pattern=SENDER)] | None = None
    #: Language of the code SMS (and the recipient's); absent = ``[optin] default_language``.
    language: Language | None = None


class OptinVerifyIn(_In, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """``POST /v1/optin/verify``: the code the recipient typed."""

    challenge_id: Annotated[str, Meta(min_length=1, max_length=64)]
    code: Annotated[str, Meta(min_length=1, max_length=32)]


# --- responses ----------------------------------------------------------------------


class _Out(Struct, kw_only=True):
    pass


class MessageResult(_Out, kw_only=True):
    """The outcome for one submitted message, in request order."""

    id: str
    status: Literal["queued", "scheduled", "rejected"]
    #: A stable lower_snake_case reason code when rejected or scheduled by a rule.
    reason: str | None = None
    defer_until: datetime | None = None
    segments: int | None = None
    #: ``gsm7`` or ``ucs2``.
    encoding: str | None = None


class SubmitResponse(_Out, kw_only=True):
    """The answer to ``POST /v1/messages``: one result per message, in request order."""

    results: list[MessageResult]


MessageStatus = Literal[
    "queued", "scheduled", "submitted", "delivered", "partially_delivered", "undelivered",
    "expired", "failed", "rejected", "unknown",
]


class PartOut(_Out, kw_only=True):
    """One SMPP part of a message and what the carrier said about it."""

    part: int
    carrier: str | None = None
    carrier_message_id: str | None = None
    status: str
    submitted_at: datetime | None = None
    done_at: datetime | None = None
    #: The receipt's ``stat`` (DELIVRD, UNDELIV, ...).
    receipt_stat: str | None = None
    #: The receipt's ``err`` or the submit_sm_resp command_status, as received.
    error_code: str | None = None
    error_class: str | None = None
    attempts: int = 0


class HistoryEntry(_Out, kw_only=True):
    """One status change of a message."""

    at: datetime
    status: str
    detail: str | None = None


class LinkClicksOut(_Out, kw_only=True):
    """One short link of a message and its recorded clicks."""

    url: str
    short_url: str | None = None
    clicks: int = 0


class ClicksOut(_Out, kw_only=True):
    """Clicks on a message's short links."""

    total: int = 0
    first_at: datetime | None = None
    last_at: datetime | None = None
    links: list[LinkClicksOut] = []


class MessageStatusOut(_Out, kw_only=True):
    """``GET /v1/messages/{id}``."""

    id: str
    status: MessageStatus
    to: str | None = None
    kind: str | None = None
    reason: str | None = None
    defer_until: datetime | None = None
    segments: int | None = None
    encoding: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    parts: list[PartOut] = []
    history: list[HistoryEntry] = []
    metadata: dict[str, Any] | None = None
    #: Short-link clicks (one per link per ``[links] click_bucket_s``); null = no links.
    clicks: ClicksOut | None = None


class Replacement(_Out, kw_only=True):
    """A smart-encoding substitution: ``char`` became ``replacement`` ``count`` times."""

    char: str
    replacement: str
    count: int


class PreviewLink(_Out, kw_only=True):
    """A URL of the text and the short link that would replace it."""

    url: str
    short_url: str


class PreviewOut(_Out, kw_only=True):
    """``POST /v1/messages/preview``: how the text would be sent."""

    encoding: str
    segments: int
    characters: int
    #: Characters per segment for this encoding and segmentation.
    per_segment: int
    replaced: list[Replacement] = []
    #: The text after templating, links as written.
    rendered_text: str | None = None
    #: What would be sent: rendered, links shortened (placeholder tokens).
    text: str | None = None
    #: The links that would be shortened.
    links: list[PreviewLink] = []


class ConsentOut(_Out, kw_only=True):
    """The recipient's consent after ``POST /v1/consent``."""

    phone: str
    state: str
    changed: bool
    source: str | None = None
    double_opt_in: bool = False
    updated_at: datetime | None = None


class RecipientConsent(_Out, kw_only=True):
    """A recipient's consent.

    ``state``: ``subscribed``, ``pending`` (double opt-in), ``unsubscribed`` or ``unknown``.
    """

    state: str
    source: str | None = None
    double_opt_in: bool = False
    updated_at: datetime | None = None


class RecentSend(_Out, kw_only=True):
    """A message recently sent to the recipient (what frequency rules look at)."""

    message_id: str
    at: datetime
    kind: str
    campaign_id: str | None = None
    flow_id: str | None = None
    status: str | None = None


class ErrorSummary(_Out, kw_only=True):
    """The recipient's delivery errors (what the error segment is built from)."""

    errors: int = 0
    last_error_at: datetime | None = None
    error_class: str | None = None
    #: Whether the recipient is in the SMS error segment (excluded from campaigns).
    in_segment: bool = False


class RecipientOut(_Out, kw_only=True):
    """``GET /v1/recipients/{phone}``."""

    phone: str
    consent: RecipientConsent
    #: IANA time zones the number may be in (quiet hours use all of them).
    zones: list[str] = []
    recent_sends: list[RecentSend] = []
    delivery_errors: ErrorSummary = msgspec.field(default_factory=ErrorSummary)


class ErrorSegmentLine(_Out, kw_only=True):
    """One NDJSON line of ``GET /v1/segments/sms-errors``."""

    phone: str
    last_error_at: datetime
    error_class: str
    errors: int


class KeywordSegmentLine(_Out, kw_only=True):
    """One NDJSON line of ``GET /v1/segments/keyword``."""

    phone: str
    keyword: str
    last_at: datetime
    count: int
    consent: str


class SubscriberSegmentLine(_Out, kw_only=True):
    """One NDJSON line of ``GET /v1/segments/subscribers``."""

    phone: str
    country: str | None = None
    language: str | None = None
    source: str | None = None
    subscribed_at: datetime | None = None
    double_opt_in: bool = False


class OptinStartOut(_Out, kw_only=True):
    """``POST /v1/optin/start`` (202): the code is on its way."""

    challenge_id: str
    expires_at: datetime


class OptinVerifyOut(_Out, kw_only=True):
    """``POST /v1/optin/verify`` (200): the recipient is subscribed (double opt-in
    confirmed)."""

    status: Literal["ok"]
    attempts_left: int | None = None


class OptinErrorBody(_Out, kw_only=True):
    """A failed verify: the error (``wrong_code`` 422, ``expired`` 410,
    ``too_many_attempts`` 429, ``unknown_challenge`` 404) and the attempts left."""

    error: ErrorDetail
    attempts_left: int | None = None


class EventOut(_Out, kw_only=True):
    """One entry of the durable event feed."""

    #: The cursor of this event; pass it as ``after`` to read what follows.
    id: str
    #: e.g. ``message.status``, ``message.receipt``, ``mo``, ``consent``.
    type: str
    at: datetime
    message_id: str | None = None
    phone: str | None = None
    status: str | None = None
    reason: str | None = None
    metadata: dict[str, Any] | None = None
    data: dict[str, Any] | None = None


class EventsOut(_Out, kw_only=True):
    """``GET /v1/events``: events after the cursor, oldest first."""

    events: list[EventOut]
    #: Cursor for the next call: unchanged when no event arrived within ``wait``, except
    #: that it moves past events retention removed (counted in ``pruned``).
    next: str
    #: Events after the cursor that are no longer in the feed (removed by retention,
    #: ``[store] events_retention_days``): the first event returned is not the one right
    #: after the cursor. 0 when nothing was missed (and for a call without ``after``).
    pruned: int = 0


class HealthOut(_Out, kw_only=True):
    """``GET /healthz``."""

    status: Literal["ok", "unhealthy"]


class ReadyOut(_Out, kw_only=True):
    """``GET /readyz``: 200 when ready, 503 when not, with the reason in ``detail``."""

    ready: bool
    detail: str = ""


class ErrorDetail(_Out, kw_only=True):
    """What went wrong, and where."""

    #: Stable lower_snake_case code, e.g. ``invalid_json``, ``unknown_field``.
    code: str
    message: str
    #: The offending field's path, e.g. ``messages[3].to``; null when not about a field.
    field: str | None = None


class ErrorBody(_Out, kw_only=True):
    """Every error answer: ``{"error": {"code", "message", "field"}}``."""

    error: ErrorDetail


# --- faults the backend raises (outcomes are values; these are faults) ------------------


class ApiError(Exception):
    """A fault the API answers with ``status`` and an `ErrorBody`."""

    status = 500
    code = "internal_error"

    def __init__(
        self, message: str, *, field: str | None = None,
        headers: tuple[tuple[bytes, bytes], ...] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.headers = headers


class InvalidRequest(ApiError):
    """Input the schema could not catch (e.g. a phone number that does not parse): 400."""

    status = 400

    def __init__(self, message: str, *, field: str | None = None,
                 code: str = "invalid_field") -> None:
        super().__init__(message, field=field)
        self.code = code


class Backpressure(ApiError):
    """The pipeline is saturated: 429 with ``Retry-After``; the client retries later."""

    status = 429
    code = "backpressure"

    def __init__(self, retry_after: float, message: str = "gateway busy, retry later") -> None:
        seconds = max(1, int(retry_after + 0.999))  # Retry-After is whole seconds
        super().__init__(message, headers=((b"retry-after", b"%d" % seconds),))
        self.retry_after = retry_after


class StoreUnavailable(ApiError):
    """The store cannot be written or read right now: 503; nothing was accepted."""

    status = 503
    code = "store_unavailable"


class RateLimited(ApiError):
    """Too many requests of one kind (opt-in starts per number or address): 429 with
    ``Retry-After``; the body does not say which limit."""

    status = 429
    code = "rate_limited"

    def __init__(self, retry_after: float, message: str = "too many requests, retry later",
                 ) -> None:
        seconds = max(1, int(retry_after + 0.999))
        super().__init__(message, headers=((b"retry-after", b"%d" % seconds),))
        self.retry_after = retry_after


class FeatureDisabled(ApiError):
    """A route whose feature is not configured (e.g. ``[optin]``): 404."""

    status = 404
    code = "not_enabled"


class StoreFull(ApiError):
    """The store is out of space (LMDB map full, disk full): 507; nothing was accepted."""

    status = 507
    code = "store_full"


# --- what the API needs from the rest of the gateway -------------------------------------


class Backend(Protocol):
    """What the API calls; the pipeline implements it (tests use a fake).

    Methods may raise `ApiError` subclasses (`Backpressure`, `StoreUnavailable`,
    `StoreFull`, `InvalidRequest`); anything else is a 500 and is logged.
    """

    async def submit(self, messages: list[MessageIn]) -> list[MessageResult]:
        """Evaluate, encode and durably store a batch; one result per message, in order.

        Returns only after the batch is committed. A rule's refusal is a result
        (``status="rejected"``, ``reason``), never an exception.
        """
        ...

    async def get_message(self, message_id: str) -> MessageStatusOut | None:
        """The message's status, parts and history; None when unknown (404)."""
        ...

    async def preview(self, request: PreviewIn) -> PreviewOut:
        """Encoding and segmentation of a text; nothing is stored or sent."""
        ...

    async def consent(self, request: ConsentIn) -> ConsentOut:
        """Apply and durably record a consent change."""
        ...

    async def get_recipient(self, phone: str) -> RecipientOut | None:
        """What the gateway knows about an E.164 number; None when nothing (404)."""
        ...

    def error_segment(self, days: int) -> AsyncIterator[ErrorSegmentLine]:
        """Recipients with delivery errors in the last ``days`` days, produced lazily.

        An async generator is the natural implementation; it is closed (``aclose``) when
        the client goes away.
        """
        ...

    async def events(self, after: str | None, limit: int, wait: float) -> EventsOut:
        """Up to ``limit`` events after cursor ``after`` (None = from the start).

        When none are available, waits up to ``wait`` seconds for one, then returns what
        it has (possibly nothing, with ``next`` = ``after``).
        """
        ...

    async def optin_start(self, request: OptinStartIn, client_ip: str | None,
                          ) -> OptinStartOut:
        """Send an opt-in code; raises `RateLimited` (429) or `FeatureDisabled` (404)."""
        ...

    async def optin_verify(self, request: OptinVerifyIn) -> OptinVerifyOut | OptinErrorBody:
        """Check a code; ``OptinErrorBody.error.code`` is the failure's outcome."""
        ...

    def keyword_segment(self, word: str, days: int) -> AsyncIterator[KeywordSegmentLine]:
        """Recipients whose MO matched ``word`` in the last ``days`` days (lazily)."""
        ...

    def subscriber_segment(self, country: str | None, language: str | None,
                           ) -> AsyncIterator[SubscriberSegmentLine]:
        """Subscribed recipients, filtered by country and language (lazily)."""
        ...

    async def health(self) -> bool:
        """Whether the process works (event loop turning, writer thread alive)."""
        ...

    async def ready(self) -> tuple[bool, str]:
        """Whether to send traffic here (store open, a bind per routed carrier), and why."""
        ...
