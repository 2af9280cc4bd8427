"""Event payloads: what the durable feed says about each change (``GET /v1/events``).

An event is a ``gateway.store.records.Event`` appended in the SAME write batch as the
change it describes, so the feed never shows a change that was not committed, nor misses
one that was. ``Event.data`` holds a JSON object (the payload Structs below, encoded with
``omit_defaults``). The API serves it as ``EventOut``: the payload's ``reason`` and
``metadata`` keys are lifted to the top-level fields of the same name (see
:func:`split_data`), everything else stays under ``data``.

Types (stable strings, added never renamed):

* ``message.status``: a message changed status (accepted as queued/scheduled/rejected,
  submitted, delivered, failed ...); ``StatusData``.
* ``receipt``: a delivery receipt matched a message part; ``ReceiptData``.
* ``receipt.unmatched``: a receipt no part is known for; ``ReceiptData``.
* ``mo``: an inbound message; ``MoData``.
* ``consent``: a recipient's consent changed (API, keyword, opt-in code); ``ConsentData``.
* ``link_clicked``: a short link was clicked (once per link per ``[links] click_bucket_s``);
  ``gateway.marketing.store.ClickEventData`` (token, url, campaign/flow ids, user agent),
  appended by the click sink's commit (the issue's name; the other types use dots).
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from gateway.store.records import Event

__all__ = [
    "CONSENT",
    "LINK_CLICKED",
    "MESSAGE_STATUS",
    "MO",
    "RECEIPT",
    "RECEIPT_UNMATCHED",
    "ConsentData",
    "MoData",
    "ReceiptData",
    "StatusData",
    "consent_event",
    "decode_data",
    "encode_data",
    "metadata_raw",
    "mo_event",
    "receipt_event",
    "split_data",
    "status_event",
]

MESSAGE_STATUS: Final = "message.status"
RECEIPT: Final = "receipt"
RECEIPT_UNMATCHED: Final = "receipt.unmatched"
MO: Final = "mo"
CONSENT: Final = "consent"
LINK_CLICKED: Final = "link_clicked"


class _Data(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    pass


class StatusData(_Data, kw_only=True, omit_defaults=True):
    """``message.status``: the new status is ``Event.status``."""

    reason: str | None = None
    detail: str | None = None
    #: Epoch seconds, for ``scheduled``.
    defer_until: float | None = None
    segments: int | None = None
    encoding: str | None = None
    kind: str | None = None
    campaign_id: str | None = None
    flow_id: str | None = None
    carrier: str | None = None
    #: The part that caused the change, when one did (1-based like SMPP segments).
    part: int | None = None
    #: The message's metadata as the client sent it (JSON object text).
    metadata: msgspec.Raw | None = None


class ReceiptData(_Data, kw_only=True, omit_defaults=True):
    """``receipt`` / ``receipt.unmatched``."""

    carrier: str
    carrier_message_id: str
    stat: str
    err: str | None = None
    part: int | None = None
    error_class: str | None = None
    done_at: float | None = None
    metadata: msgspec.Raw | None = None
    #: True when no carrier id matched the receipt and it was reconciled with a part
    #: whose submit got no answer (same carrier and destination, submit time; see
    #: gateway.pipeline.inbound ``_reconcile``). Absent otherwise.
    reconciled: bool | None = None


class MoData(_Data, kw_only=True, omit_defaults=True):
    """``mo``: an inbound text (after reassembly) and what it triggered."""

    carrier: str
    to: str
    text: str
    keyword: str | None = None
    keyword_kind: str | None = None
    consent_change: str | None = None
    reply_message_id: str | None = None


class ConsentData(_Data, kw_only=True, omit_defaults=True):
    """``consent``: ``Event.status`` is the new consent state."""

    action: str
    source: str | None = None
    previous: str | None = None
    double_opt_in: str | None = None
    reason: str | None = None


_encode = msgspec.json.Encoder().encode
_decode_obj = msgspec.json.Decoder(dict[str, Any]).decode


def encode_data(data: _Data) -> bytes:
    """Payload Struct -> the JSON text stored in ``Event.data``."""
    return _encode(data)


def decode_data(data: bytes) -> dict[str, Any]:
    """``Event.data`` -> a dict (empty for ``b""``)."""
    return _decode_obj(data) if data else {}


def split_data(data: bytes) -> tuple[str | None, dict[str, Any] | None, dict[str, Any] | None]:
    """``(reason, metadata, rest)`` of an event's data, as the API shows them."""
    if not data:
        return None, None, None
    d = _decode_obj(data)
    reason = d.pop("reason", None)
    metadata = d.pop("metadata", None)
    return reason, metadata, (d or None)


def _raw(metadata: bytes) -> msgspec.Raw | None:
    return msgspec.Raw(metadata) if metadata else None


def status_event(at: float, message_id: str, phone: str | None, status: str,
                 data: StatusData | None = None) -> Event:
    """A ``message.status`` event."""
    return Event(0, at, MESSAGE_STATUS, message_id, phone, status,
                 _encode(data) if data is not None else b"")


def receipt_event(at: float, message_id: str | None, phone: str | None, status: str | None,
                  data: ReceiptData) -> Event:
    """A ``receipt`` event, or ``receipt.unmatched`` when ``message_id`` is None."""
    kind = RECEIPT if message_id is not None else RECEIPT_UNMATCHED
    return Event(0, at, kind, message_id, phone, status, _encode(data))


def mo_event(at: float, phone: str, data: MoData) -> Event:
    """An ``mo`` event."""
    return Event(0, at, MO, None, phone, None, _encode(data))


def consent_event(at: float, phone: str, state: str, data: ConsentData) -> Event:
    """A ``consent`` event (``state``: the consent after the change)."""
    return Event(0, at, CONSENT, None, phone, state, _encode(data))


def metadata_raw(metadata: bytes) -> msgspec.Raw | None:
    """A message record's metadata as a payload field (None when absent)."""
    return _raw(metadata)
