"""Routing table: longest E.164 prefix, ordered failover, no_route (pure)."""

from __future__ import annotations

import pytest

from gateway.config import RouteConfig
from gateway.pipeline.routing import NO_ROUTE, Router


def router(*routes: tuple[str, tuple[str, ...]]) -> Router:
    return Router([RouteConfig(prefix=p, carriers=cs) for p, cs in routes])


R = router(("+", ("world",)), ("+33", ("fr1", "fr2")), ("+336", ("mobile_fr", "fr1")),
           ("+1", ("us",)))


@pytest.mark.parametrize(("number", "expected"), [
    ("+33612345678", ("mobile_fr", "fr1")),
    ("+33112345678", ("fr1", "fr2")),
    ("+14155550100", ("us",)),
    ("+447700900123", ("world",)),
    ("+33", ("fr1", "fr2")),
    ("+3", ("world",)),
])
def test_longest_prefix_wins(number: str, expected: tuple[str, ...]) -> None:
    assert R.route(number) == expected


def test_matched_prefix() -> None:
    assert R.matched_prefix("+33612345678") == "+336"
    assert R.matched_prefix("+447700900123") == "+"
    assert router(("+33", ("a",))).matched_prefix("+44") is None


@pytest.mark.parametrize("number", [
    "+33612345678", "+33112345678", "+14155550100", "+447700900123", "+33", "+3", "+", "",
    "33612345678",
])
def test_lookup_is_route_and_matched_prefix_in_one(number: str) -> None:
    for r in (R, router(("+33", ("a",))), router(("+33", ())), Router([])):
        hit = r.lookup(number)
        prefix = r.matched_prefix(number)
        if prefix is None:
            assert hit is None
            assert r.route(number) == ()
        else:
            assert hit == (prefix, r.route(number))


def test_pick_fails_over_to_next_live_carrier() -> None:
    live = {"fr1"}
    assert R.pick("+33612345678", live.__contains__) == "fr1"
    assert R.pick("+33112345678", live.__contains__) == "fr1"
    live = {"fr2"}
    assert R.pick("+33112345678", live.__contains__) == "fr2"
    # the longer prefix's carriers only: fr2 is not a failover of +336
    assert R.pick("+33612345678", live.__contains__) is None
    assert R.has_route("+33612345678")


def test_first_carrier_preferred_when_all_live() -> None:
    assert R.pick("+33612345678", lambda _: True) == "mobile_fr"


def test_no_route() -> None:
    r = router(("+33", ("fr1",)))
    assert r.route("+447700900123") == ()
    assert r.pick("+447700900123", lambda _: True) is None
    assert not r.has_route("+447700900123")
    assert NO_ROUTE == "no_route"


def test_empty_table_routes_nothing() -> None:
    assert Router([]).route("+33612345678") == ()


def test_duplicate_prefix_refused() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        router(("+33", ("a",)), ("+33", ("b",)))


def test_carriers_named() -> None:
    assert R.carriers == {"world", "fr1", "fr2", "mobile_fr", "us"}
