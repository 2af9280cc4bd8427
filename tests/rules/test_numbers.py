"""Number facts: region, zone candidates, NANP state table."""

from __future__ import annotations

import pytest

from rules import NumberFacts, number_facts
from rules.npa import NPA_STATE
from rules.numbers import state_for_npa
from tests.rules import helpers as h


@pytest.mark.parametrize(("e164", "region", "state", "zones"), [
    (h.FL, "US", "FL", ("America/New_York",)),
    (h.NY, "US", "NY", ("America/New_York",)),
    (h.OK, "US", "OK", ("America/Chicago",)),
    (h.MD, "US", "MD", ("America/New_York",)),
    (h.TX, "US", "TX", ("America/Chicago",)),
    (h.AL, "US", "AL", ("America/Chicago",)),
    (h.ID, "US", "ID", ("America/Boise", "America/Los_Angeles")),
    (h.FR, "FR", None, ("Europe/Paris",)),
    (h.GB, "GB", None, ("Europe/Guernsey", "Europe/Isle_of_Man", "Europe/Jersey",
                        "Europe/London")),
    ("+14165550123", "CA", "ON", ("America/Toronto",)),
    ("+17875550123", "PR", None, ("America/Puerto_Rico",)),
])
def test_number_facts(e164: str, region: str, state: str | None,
                      zones: tuple[str, ...]) -> None:
    assert number_facts(e164) == NumberFacts(valid=True, region=region, zones=zones,
                                             state=state)


def test_multi_zone_countries() -> None:
    assert len(number_facts(h.AU).zones) == 8
    assert len(number_facts(h.RU).zones) > 10


@pytest.mark.parametrize("bad", ["", "+", "hello", "+1555", "+9991234567", "0612345678"])
def test_invalid(bad: str) -> None:
    assert not number_facts(bad).valid


def test_capped_and_quiet_states_complete() -> None:
    def npas(state: str) -> set[int]:
        return {n for n, (r, s) in NPA_STATE.items() if r == "US" and s == state}
    assert npas("FL") >= {239, 305, 321, 352, 386, 407, 561, 727, 754, 772, 786, 813, 850,
                          863, 904, 941, 954}
    assert npas("OK") >= {405, 539, 580, 918}
    assert npas("MD") >= {240, 301, 410, 443, 667}
    assert npas("TX") >= {210, 214, 512, 713, 817, 972}
    assert state_for_npa(907) == ("US", "AK")
    assert state_for_npa(999) is None


@pytest.mark.slow  # ~2 s: 6,400 phonenumbers lookups
def test_npa_table_matches_installed_phonenumbers() -> None:
    from tests.rules.npa_source import derive
    assert derive() == NPA_STATE
