"""Delivery error classes (domain.md §4) and the error summary the segment reads."""

from __future__ import annotations

import pytest

from rules import ErrorClass, ErrorSummary, classify_delivery_error
from rules.delivery_errors import (
    TWILIO_API,
    TWILIO_SMPP_ERR,
    VONAGE,
    parse_network_error_code,
    record_delivered,
    record_error,
)
from tests.rules.helpers import utc

E = ErrorClass
GSM = 3


@pytest.mark.parametrize(("stat", "err", "nec", "cmap", "expected"), [
    ("DELIVRD", "000", None, None, None),
    ("ENROUTE", None, None, None, None),
    ("ACCEPTD", None, None, None, None),
    ("DELETED", None, None, None, None),  # administrative: no penalty
    ("EXPIRED", None, None, None, E.TEMPORARY_UNREACHABLE),
    ("REJECTD", None, None, None, E.FILTERED),
    ("UNKNOWN", None, None, None, E.UNKNOWN),
    ("UNDELIV", None, None, None, E.UNKNOWN),
    ("NOROUTE", None, None, None, E.UNKNOWN),  # non-standard: unknown, never success
    ("undeliv", None, (GSM, 1), None, E.PERMANENT),  # MAP unknownSubscriber
    ("UNDELIV", None, (GSM, 5), None, E.DISCONNECTED),
    ("UNDELIV", None, (GSM, 11), None, E.PERMANENT),
    ("UNDELIV", None, (GSM, 13), None, E.PERMANENT),
    ("UNDELIV", None, (GSM, 6), None, E.TEMPORARY_UNREACHABLE),
    ("UNDELIV", None, (GSM, 27), None, E.TEMPORARY_UNREACHABLE),
    ("UNDELIV", None, (GSM, 31), None, E.TEMPORARY_UNREACHABLE),
    ("UNDELIV", None, (GSM, 34), None, E.TEMPORARY_NETWORK),
    ("UNDELIV", None, (GSM, 51), None, E.TEMPORARY_NETWORK),
    ("UNDELIV", None, (GSM, 999), None, E.UNKNOWN),
    ("UNDELIV", None, (8, 1), None, E.UNKNOWN),  # MC-specific type: not MAP
    ("UNDELIV", "001", None, TWILIO_SMPP_ERR, E.TEMPORARY_UNREACHABLE),
    ("UNDELIV", "005", None, TWILIO_SMPP_ERR, E.PERMANENT),
    ("UNDELIV", "5", None, TWILIO_SMPP_ERR, E.PERMANENT),  # zero padding differs
    ("UNDELIV", "30003", None, TWILIO_API, E.TEMPORARY_UNREACHABLE),
    ("UNDELIV", "30005", None, TWILIO_API, E.DISCONNECTED),
    ("UNDELIV", "30006", None, TWILIO_API, E.PERMANENT),
    ("UNDELIV", "30007", None, TWILIO_API, E.FILTERED),
    ("UNDELIV", "30008", None, TWILIO_API, E.UNKNOWN),
    ("UNDELIV", "006", None, VONAGE, E.FILTERED),
    ("UNDELIV", "2", (GSM, 1), VONAGE, E.TEMPORARY_UNREACHABLE),  # carrier map first
    ("UNDELIV", "77", (GSM, 6), VONAGE, E.TEMPORARY_UNREACHABLE),  # then MAP
])
def test_classify(stat: str, err: str | None, nec: tuple[int, int] | None,
                  cmap: dict[str, ErrorClass] | None, expected: ErrorClass | None) -> None:
    assert classify_delivery_error(stat, err, nec, cmap) is expected


def test_parse_network_error_code() -> None:
    assert parse_network_error_code(b"\x03\x00\x1b") == (3, 27)
    assert parse_network_error_code(b"\x03\x1b") is None


def test_record_error_and_delivered() -> None:
    s = ErrorSummary()
    s = record_error(s, E.TEMPORARY_UNREACHABLE, utc(2026, 1, 1))
    s = record_error(s, E.TEMPORARY_UNREACHABLE, utc(2026, 1, 5))
    s = record_error(s, E.DISCONNECTED, utc(2026, 1, 3))  # out of order
    assert s.last_temporary_at == utc(2026, 1, 5)
    assert (s.unreachable_count, s.disconnected_count) == (2, 1)
    assert record_error(s, E.FILTERED, utc(2026, 2, 1)) is s
    p = record_error(s, E.PERMANENT, utc(2026, 2, 1))
    assert p.permanent and p.permanent_at == utc(2026, 2, 1)
    assert record_error(p, E.PERMANENT, utc(2026, 3, 1)).permanent_at == utc(2026, 2, 1)
    d = record_delivered(s, utc(2026, 2, 2))
    assert d.last_delivered_at == utc(2026, 2, 2)
    assert record_delivered(d, utc(2026, 2, 1)) is d
    t = record_error(ErrorSummary(), E.TEMPORARY_NETWORK, utc(2026, 1, 1))
    assert (t.last_temporary_at, t.unreachable_count) == (utc(2026, 1, 1), 0)
