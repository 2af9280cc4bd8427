"""The values the store persists: msgspec Structs encoded as msgpack arrays.

Conventions (all records):

* **Times are float epoch seconds** (``time.time()`` style, UTC). Keys that must sort by
  time (outbox, errors) turn them into integer milliseconds (see ``keys.py``); readers get
  ``ms / 1000`` back, so a time survives a round trip through a key to the millisecond.
* ``array_like=True``: a record is a msgpack array in field order, about half the size of a
  map and faster to decode. The price is positional schema evolution, so the rule is:
  **append new fields at the end, always with a default; never reorder, rename the
  position of, or remove a field.** Old records then decode with the default, and an older
  reader ignores trailing fields it does not know.
* Records are ``frozen``; change one with ``msgspec.structs.replace``. Collections are
  tuples where the record owns a sequence, so a record read from the (memory) store can be
  shared without copying.
* Enumerated values (status, kind, consent, error class) are plain ``str``: the store keeps
  them and does not interpret them; their vocabularies belong to the pipeline and rules.
* JSON blobs the API echoes back (message metadata, event data) are stored as the JSON
  text in ``bytes`` (``b""`` = none), ready to embed with ``msgspec.Raw``.
"""

from __future__ import annotations

import msgspec

__all__ = [
    "CarrierIdRecord",
    "CommitResult",
    "ErrorEntry",
    "ErrorSummary",
    "Event",
    "HistoryEntry",
    "IdempotencyRecord",
    "KeywordEntry",
    "Lease",
    "MessageRecord",
    "OutboxEntry",
    "PartRecord",
    "PhoneErrors",
    "RecipientRecord",
    "SendEntry",
    "StoreStats",
    "UnknownPart",
]


class _Record(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """Base of every persisted record (frozen msgpack array).

    ``gc=False`` (inherited): records hold only strings, numbers, bytes and other records,
    so they can't be part of a reference cycle, and the cyclic GC need not track them. With
    hundreds of thousands of records alive (cache, in-flight batches), tracking them made
    GC passes cost ~30 us per accepted message (bench/RESULTS.md).
    """


class HistoryEntry(_Record, frozen=True):
    """One status change of a message, in the order they happened."""

    at: float
    status: str
    reason: str | None = None
    detail: str | None = None


class PartRecord(_Record, frozen=True):
    """One segment of a message as submitted to a carrier, with what the carrier said."""

    index: int
    carrier: str | None = None
    carrier_msg_id: str | None = None
    submit_status: int | None = None  # submit_sm_resp command_status
    submitted_at: float | None = None
    receipt_stat: str | None = None  # DELIVRD, UNDELIV, ... from the receipt
    receipt_err: str | None = None
    done_at: float | None = None
    error_class: str | None = None
    status: str = "pending"


class MessageRecord(_Record, frozen=True):
    """A message as accepted: the request, the rules' decision, parts, status and history.

    ``outbox_due`` mirrors the due time of the message's outbox entry (None when it has
    none), so whoever reschedules or acknowledges it can remove the exact outbox key.
    """

    id: str
    created_at: float
    to: str
    text: str
    kind: str  # campaign | flow | transactional | reply
    sender: str | None = None
    campaign_id: str | None = None
    flow_id: str | None = None
    flow_type: str | None = None
    trigger_id: str | None = None
    trigger_at: float | None = None
    metadata: bytes = b""  # JSON text from the request, b"" = none
    smart_encoding: bool = False
    bypass: tuple[str, ...] = ()
    status: str = "queued"
    reason: str | None = None
    defer_until: float | None = None
    encoding: str | None = None  # gsm7 | ucs2 | ...
    data_coding: int = 0
    segments: int = 0
    carrier: str | None = None
    route: str | None = None
    attempts: int = 0
    next_attempt_at: float | None = None
    outbox_due: float | None = None
    parts: tuple[PartRecord, ...] = ()
    history: tuple[HistoryEntry, ...] = ()
    idempotency_key: str | None = None
    updated_at: float | None = None
    #: Concatenation reference the accept step planned with (per-carrier counter), so a
    #: re-plan at dispatch produces the same parts; None for one part.
    ref: int | None = None


class KeywordEntry(_Record, frozen=True):
    """One MO keyword from a recipient: when, the raw keyword, and how it was classified."""

    at: float
    keyword: str
    kind: str  # opt_out | opt_in | help | other
    #: The keyword's language (rules.keywords), when known.
    language: str | None = None


class ErrorSummary(_Record, frozen=True):
    """Running summary of a recipient's delivery errors (the all-time part of the segment)."""

    last_error_at: float | None = None
    last_error_class: str | None = None
    last_temp_error_at: float | None = None
    counts: dict[str, int] = {}  # error class -> count, all time
    permanent: bool = False
    permanent_reason: str | None = None
    #: When the first permanent-class failure was seen.
    permanent_at: float | None = None
    #: Last DELIVRD receipt (membership may lapse on delivery, rules.error_segment).
    last_delivered_at: float | None = None


class SendEntry(_Record, frozen=True):
    """A message recently sent to a recipient (``GET /v1/recipients/{phone}``)."""

    at: float
    message_id: str
    kind: str
    campaign_id: str | None = None
    flow_id: str | None = None


class RecipientRecord(_Record, frozen=True):
    """What the gateway knows about one E.164 number, feeding the rules' recipient facts.

    ``marketing_sends`` holds recent marketing send times, oldest first; whoever appends
    prunes what no rule looks at any more. ``flow_marks`` maps a flow key (for example
    ``"abandoned_cart:<trigger_id>"``) to when it was sent.
    """

    phone: str
    consent: str = "none"  # none | subscribed | unsubscribed
    double_opt_in: str = "none"  # none | pending | confirmed
    consent_source: str | None = None
    consent_at: float | None = None
    region: str | None = None  # ISO 3166-1 alpha-2
    state: str | None = None  # e.g. US state code
    zones: tuple[str, ...] = ()  # candidate IANA time zones
    marketing_sends: tuple[float, ...] = ()
    flow_marks: dict[str, float] = {}
    keywords: tuple[KeywordEntry, ...] = ()
    errors: ErrorSummary = msgspec.field(default_factory=ErrorSummary)
    updated_at: float | None = None
    #: When the double opt-in state last changed.
    double_opt_in_at: float | None = None
    #: The single opt-out confirmation went out since the last opt-out (rules.consent).
    opt_out_confirmed: bool = False
    #: The last few messages accepted for sending to this recipient, oldest first.
    recent: tuple[SendEntry, ...] = ()
    #: Preferred language (ISO 639-1), from an opt-in (code or consent API); the
    #: subscriber segment falls back to the language of the last opt-in keyword.
    language: str | None = None


class ErrorEntry(_Record, frozen=True):
    """One delivery error of a recipient (``errors`` database, keyed by phone and time)."""

    at: float
    error_class: str
    code: str | None = None
    carrier: str | None = None
    message_id: str | None = None
    stat: str | None = None
    permanent: bool = False


class PhoneErrors(msgspec.Struct, frozen=True, gc=False):
    """A recipient's error entries since some time; one item of the error segment scan."""

    phone: str
    entries: tuple[ErrorEntry, ...]


class Event(_Record, frozen=True):
    """One entry of the durable event feed.

    ``seq`` is assigned by the store inside the write transaction (strictly increasing,
    never reused, also across restarts); the value passed to ``append_event`` is ignored.
    """

    seq: int
    at: float
    type: str  # status | receipt | mo | consent | ...
    message_id: str | None = None
    phone: str | None = None
    status: str | None = None
    data: bytes = b""  # JSON text, b"" = none


class CarrierIdRecord(_Record, frozen=True):
    """The message part a carrier message id belongs to."""

    message_id: str
    part: int
    at: float


class IdempotencyRecord(_Record, frozen=True):
    """What a client idempotency key was used for."""

    message_id: str
    at: float
    fingerprint: bytes = b""  # optional digest of the request, to detect key reuse


class OutboxEntry(msgspec.Struct, frozen=True, gc=False):
    """One outbox entry: the message and when it is due (ms precision).

    ``lease`` is the entry's value: b"" for a plain entry, an encoded ``Lease`` while the
    dispatcher has the message's parts in flight.
    """

    due: float
    message_id: str
    lease: bytes = b""


class Lease(_Record, frozen=True):
    """The value of an outbox entry whose parts were handed to a carrier (in flight).

    Written by the dispatcher in the commit that must be durable before the parts can
    reach a bind's socket; the part statuses in the ``MessageRecord`` stay ``pending``
    until the outcome commit. At start-up, the listed parts still ``pending`` are the
    ones a crash left in flight (``unknown``, or sent again with
    ``unknown_outcome = "retry"``).
    """

    carrier: str
    parts: tuple[int, ...]
    at: float


class UnknownPart(_Record, frozen=True):
    """A part whose submit got no answer (status ``unknown``), indexed so that its receipt,
    which the carrier id cannot match, may still find it (``unknown_parts`` database;
    ``gateway.store.unknown_parts``). The key holds the carrier and the destination as
    sent; the times are our clock (epoch seconds)."""

    message_id: str
    part: int
    #: The part was handed to the bind at or after ``sent_at`` (its ``sending`` mark) ...
    sent_at: float
    #: ... and reached the SMSC, if it did, no later than ``until`` (the outcome: response
    #: timeout, connection cut; or the restart that found it ``sending``).
    until: float
    #: When it was indexed (its age for ``[pipeline] carrier_id_ttl_s``).
    at: float


class CommitResult(msgspec.Struct, frozen=True, gc=False):
    """What a committed batch got back: the sequence numbers of its appended events."""

    event_seqs: tuple[int, ...] = ()


class StoreStats(msgspec.Struct, frozen=True, kw_only=True):
    """Counters for metrics, read at scrape time (``Store.statistics()``).

    ``commits`` are batches that committed, ``failed`` those that did not; ``txns`` counts
    write transactions. ``avg_group_size`` (batches per transaction) above 1 is group
    commit at work. Latencies are seconds; ``last_commit_latency`` runs from the call to
    ``commit`` until the transaction was durable, for the batch of the last group that
    waited longest.
    """

    commits: int = 0
    failed: int = 0
    batches: int = 0
    ops: int = 0
    txns: int = 0
    events: int = 0
    avg_group_size: float = 0.0
    max_group_size: int = 0
    avg_batch_ops: float = 0.0
    last_commit_latency: float = 0.0
    last_txn_seconds: float = 0.0
    queue_depth: int = 0
    map_size: int = 0
    map_used: int = 0
    map_grows: int = 0
    durability: str = "memory"
