"""Policy defaults, decoding from the [rules] TOML table, and the stable reason codes."""

from __future__ import annotations

import msgspec
import pytest

from rules import Policy, Reason
from rules.policy import with_quiet_hours
from rules.quiet_hours import DEFAULT_TABLE, QuietHoursTable
from tests.rules.helpers import quiet_hours_table


def test_defaults() -> None:
    p = Policy()
    assert p.smart_sending.hours == 24
    assert p.frequency_caps.max_messages == 3
    assert p.frequency_caps.states == {"US": ("FL", "OK", "MD")}
    assert p.cart.window_hours == 48
    assert p.cart.double_opt_in_regions == ("US",)
    assert p.flows.once_per_trigger == ("abandoned_cart",)
    assert p.error_segment.days == 30
    assert p.content.opt_out_mode == "append"
    assert p.keywords.opt_out_match["US"] == "contains"
    assert p.keywords.opt_out_match_default == "exact"
    assert not p.consent.transactional_requires_consent
    assert p.quiet_hours.table == DEFAULT_TABLE
    assert set(p.keywords.replies) >= {"en", "fr", "es", "de", "it", "pt", "nl"}
    assert set(p.content.opt_out_text) >= {"en", "fr", "es", "de", "it", "pt", "nl"}


def test_empty_table_decodes_to_defaults() -> None:
    assert msgspec.toml.decode(b"", type=Policy) == Policy()


def test_decode_nested() -> None:
    p = msgspec.toml.decode(b"""
[smart_sending]
hours = 12
[frequency_caps.states]
US = ["FL", "OK", "MD", "TX"]
[content]
opt_out_mode = "reject"
brand_prefix = { FR = "Acme:" }
[keywords.opt_out_match]
GB = "contains"
""", type=Policy)
    assert p.smart_sending.hours == 12
    assert p.frequency_caps.states["US"] == ("FL", "OK", "MD", "TX")
    assert p.content.brand_prefix == {"FR": "Acme:"}
    assert p.keywords.opt_out_match == {"GB": "contains"}


@pytest.mark.parametrize(("toml", "path"), [
    (b"[smart_sending]\nhourz = 1\n", "$.smart_sending"),
    (b"[smart_sending]\nhours = 0\n", "$.smart_sending.hours"),
    (b'[content]\nopt_out_mode = "maybe"\n', "$.content.opt_out_mode"),
    (b"[nope]\n", "nope"),
    (b'[quiet_hours]\nfallback_zone = "Nowhere/Land"\n', "fallback_zone"),
])
def test_errors_name_the_path(toml: bytes, path: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=path.replace("$", r"\$")):
        msgspec.toml.decode(toml, type=Policy)


def test_with_quiet_hours() -> None:
    table = QuietHoursTable()
    p = with_quiet_hours(Policy(), table)
    assert p.quiet_hours.table is table
    assert with_quiet_hours(Policy(), quiet_hours_table()).quiet_hours.table == DEFAULT_TABLE


def test_reason_codes_are_stable() -> None:
    # Codes are added, never renamed or reused (DESIGN.md). Extend this list; never edit it.
    assert {r.value for r in Reason} >= {
        "ok", "opted_out", "no_consent", "double_opt_in_required", "cart_window_expired",
        "flow_limit_reached", "quiet_hours", "smart_sending", "state_frequency_cap",
        "error_segment", "starts_with_link", "too_many_segments", "undeliverable_number",
        "invalid_number", "no_route", "missing_opt_out", "missing_brand_prefix",
        "public_link_shortener", "missing_trigger", "no_send_window", "send_window_expired",
    }
    for r in Reason:
        assert r.value == r.name.lower()


def test_values_round_trip_for_the_store() -> None:
    """Facts and decisions are stored as msgpack and sent as JSON: both round-trip."""
    from rules import Decision, RecipientFacts, evaluate
    from tests.rules.helpers import FL, facts, msg, utc
    p = Policy()
    assert msgspec.json.decode(msgspec.json.encode(p), type=Policy) == p
    f = facts(FL, flow_marks=frozenset({"f1:t1"}), marketing_sends=(utc(2026, 3, 1),))
    d = evaluate(msg(to=FL), f, p, utc(2026, 3, 4, 16, 0))
    for typ, value in ((RecipientFacts, f), (Decision, d)):
        assert msgspec.msgpack.decode(msgspec.msgpack.encode(value), type=typ) == value
        assert msgspec.json.decode(msgspec.json.encode(value), type=typ) == value
