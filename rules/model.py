"""The values the rules engine reads and returns.

Everything here is a frozen msgspec Struct or a StrEnum, so a value can be stored (msgpack,
``array_like`` at the store's discretion), sent over the HTTP API and compared in tests.
All datetimes are timezone-aware; the engine works in UTC and converts to the recipient's
zones itself.
"""

from __future__ import annotations

import enum
from datetime import datetime

import msgspec

__all__ = [
    "Action",
    "Bypass",
    "ConsentStatus",
    "Decision",
    "DoubleOptIn",
    "ErrorClass",
    "ErrorSummary",
    "Marks",
    "Message",
    "MessageKind",
    "NumberFacts",
    "Reason",
    "RecipientFacts",
    "ReplyKind",
]


class Reason(enum.StrEnum):
    """Stable reason codes (DESIGN.md "Reason codes"): added or deprecated, never renamed.

    Every Decision carries one, including a SEND (``ok``). Each code maps to one HTTP status
    and one SMPP command_status at the edge; distinct causes never share a code.
    """

    #: The message may go out now.
    OK = "ok"
    #: The recipient revoked consent; only the single opt-out confirmation may still go.
    OPTED_OUT = "opted_out"
    #: A campaign/flow (or a transactional message, when configured) without SMS consent.
    NO_CONSENT = "no_consent"
    #: US abandoned-cart flows need a confirmed double opt-in (domain.md §3.4).
    DOUBLE_OPT_IN_REQUIRED = "double_opt_in_required"
    #: The abandoned-cart message could not go out within the window after ``trigger_at``.
    CART_WINDOW_EXPIRED = "cart_window_expired"
    #: The flow already sent its one message for this trigger.
    FLOW_LIMIT_REACHED = "flow_limit_reached"
    #: Outside the recipient's local window; the Decision carries ``defer_until``.
    QUIET_HOURS = "quiet_hours"
    #: A marketing SMS reached the recipient within the smart-sending window; skipped.
    SMART_SENDING = "smart_sending"
    #: FL/OK/MD-style cap on promotional messages per rolling window.
    STATE_FREQUENCY_CAP = "state_frequency_cap"
    #: A campaign recipient with a recent temporary delivery error (domain.md §4.4).
    ERROR_SEGMENT = "error_segment"
    #: A marketing message starts with a link (domain.md §3.5).
    STARTS_WITH_LINK = "starts_with_link"
    #: Owned by the encoding step (segment limit); listed so the code set is one place.
    TOO_MANY_SEGMENTS = "too_many_segments"
    #: The number is permanently undeliverable (landline, unknown subscriber ...).
    UNDELIVERABLE_NUMBER = "undeliverable_number"
    #: The number does not parse as a valid E.164 number.
    INVALID_NUMBER = "invalid_number"
    #: Owned by the router; listed so the code set is one place.
    NO_ROUTE = "no_route"
    # --- added by the rules engine -------------------------------------------------------
    #: Marketing text without an opt-out instruction while ``opt_out_mode = "reject"``.
    MISSING_OPT_OUT = "missing_opt_out"
    #: Marketing text without the country's brand prefix while ``brand_prefix_mode = "reject"``.
    MISSING_BRAND_PREFIX = "missing_brand_prefix"
    #: A link on a public shortener (bit.ly, tinyurl ...), blocked by US carriers (§3.5).
    PUBLIC_LINK_SHORTENER = "public_link_shortener"
    #: An abandoned-cart flow message without ``trigger_at``: the 48 h window is unknowable.
    MISSING_TRIGGER = "missing_trigger"
    #: No allowed send window within the search horizon (a quiet-hours table closes every day).
    NO_SEND_WINDOW = "no_send_window"
    #: A quiet-hours deferral would pass the message's own ``send_by`` deadline.
    SEND_WINDOW_EXPIRED = "send_window_expired"


class Action(enum.StrEnum):
    """What the pipeline does with the message."""

    SEND = "send"
    DEFER = "defer"
    REJECT = "reject"


class MessageKind(enum.StrEnum):
    """Message kinds select the rules that apply (see ``rules.engine.APPLICABILITY``)."""

    CAMPAIGN = "campaign"
    FLOW = "flow"
    TRANSACTIONAL = "transactional"
    #: An automatic answer to an MO keyword (opt-out/opt-in confirmation, HELP).
    REPLY = "reply"


class ReplyKind(enum.StrEnum):
    """Which keyword a ``reply`` message answers."""

    OPT_OUT = "opt_out"
    OPT_IN = "opt_in"
    HELP = "help"
    CONFIRM = "confirm"
    CONFIRM_REQUEST = "confirm_request"


class Bypass(enum.StrEnum):
    """Rules a single message may skip (HTTP ``bypass``). Nothing else is bypassable."""

    QUIET_HOURS = "quiet_hours"
    SMART_SENDING = "smart_sending"


class ConsentStatus(enum.StrEnum):
    """SMS marketing consent of a recipient."""

    NONE = "none"
    SUBSCRIBED = "subscribed"
    UNSUBSCRIBED = "unsubscribed"


class DoubleOptIn(enum.StrEnum):
    """Double opt-in state, independent of the consent status."""

    NONE = "none"
    PENDING = "pending"
    CONFIRMED = "confirmed"


class ErrorClass(enum.StrEnum):
    """Delivery error classes (domain.md §4); ``rules.delivery_errors`` assigns them."""

    TEMPORARY_UNREACHABLE = "temporary_unreachable"
    TEMPORARY_NETWORK = "temporary_network"
    DISCONNECTED = "disconnected"
    PERMANENT = "permanent"
    FILTERED = "filtered"
    UNKNOWN = "unknown"


# The value types below are ``gc=False``: plain data (no reference cycles possible), made
# per message on the hot path; untracked, they cost the cyclic GC nothing (bench/RESULTS.md).

class Message(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One outbound message as the rules see it (the HTTP message fields, decoded)."""

    kind: MessageKind
    to_e164: str
    text: str
    campaign_id: str | None = None
    flow_id: str | None = None
    #: e.g. ``abandoned_cart``; selects the cart rules and the per-trigger flow limit.
    flow_type: str | None = None
    trigger_id: str | None = None
    #: For abandoned carts, the abandonment time (start of the 48 h window).
    trigger_at: datetime | None = None
    bypass: frozenset[Bypass] = frozenset()
    #: For ``reply`` messages: which keyword this answers.
    reply_to: ReplyKind | None = None
    #: Language of the text (``en``, ``fr`` ...) for the appended opt-out instruction;
    #: ``None`` = the recipient country's default.
    language: str | None = None
    #: Optional hard deadline: a deferral past it is a rejection (``send_window_expired``).
    send_by: datetime | None = None


class NumberFacts(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """What the number alone tells (``rules.numbers.number_facts``); cache it per recipient."""

    valid: bool
    #: ISO 3166 region of the number (``US``, ``FR`` ...), ``""`` when unknown.
    region: str = ""
    #: IANA zone candidates; empty when unknown (phonenumbers' ``Etc/Unknown``).
    zones: tuple[str, ...] = ()
    #: US state / CA province from the NANP area code, or None.
    state: str | None = None


class ErrorSummary(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Delivery-error history of a recipient, maintained by the receipt path."""

    #: Last failure of class temporary_unreachable, temporary_network, disconnected or unknown.
    last_temporary_at: datetime | None = None
    #: All-time counts (Klaviyo keeps >= 2 of either in the segment for good).
    unreachable_count: int = 0
    disconnected_count: int = 0
    #: A permanent class was seen (landline, unknown subscriber, invalid number).
    permanent: bool = False
    permanent_at: datetime | None = None
    #: Last DELIVRD receipt, to let membership lapse on delivery when configured.
    last_delivered_at: datetime | None = None


class RecipientFacts(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """What the gateway knows about one recipient, loaded by the caller (one read txn/batch)."""

    phone: str
    consent: ConsentStatus = ConsentStatus.NONE
    consent_at: datetime | None = None
    double_opt_in: DoubleOptIn = DoubleOptIn.NONE
    double_opt_in_at: datetime | None = None
    #: The single opt-out confirmation went out since the last opt-out.
    opt_out_confirmed: bool = False
    #: Number facts (region, zones, state); None = computed on the fly (slow, 25-65 us).
    number: NumberFacts | None = None
    #: Send times of recent marketing messages (campaign + flow), ascending. The caller may
    #: load only the last ``max(smart_sending.hours, frequency_caps.window_hours)``.
    marketing_sends: tuple[datetime, ...] = ()
    #: Flow marks (``rules.flows.flow_mark_key``) of flows that already sent for a trigger.
    flow_marks: frozenset[str] = frozenset()
    errors: ErrorSummary = ErrorSummary()


class Marks(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Bookkeeping a SEND must commit in the same write transaction as the message."""

    #: Record a marketing send at this time (smart sending + state caps).
    marketing_send_at: datetime | None = None
    #: Add this flow mark (one message per flow trigger).
    flow_mark: str | None = None
    #: The opt-out confirmation went out.
    opt_out_confirmation: bool = False


NO_MARKS = Marks()


class Decision(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """The engine's answer: send, defer until a time, or reject, with a stable reason."""

    action: Action
    reason: Reason
    #: Set for DEFER only: the earliest UTC time the message may be re-evaluated and sent.
    defer_until: datetime | None = None
    #: A short human explanation (never parsed; the reason code is the contract).
    detail: str = ""
    #: The text to encode (SEND only): brand prefix and opt-out instruction applied.
    text: str | None = None
    #: Bookkeeping to record with the message (SEND only); see ``rules.engine.apply_send``.
    marks: Marks = NO_MARKS
