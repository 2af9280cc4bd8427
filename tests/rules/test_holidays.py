"""Holiday calendars: Easter-based French holidays and US federal observances."""

from __future__ import annotations

from datetime import date

import pytest

from rules.holidays import easter_sunday, france, is_holiday, us_federal


@pytest.mark.parametrize(("year", "easter"), [
    (2024, date(2024, 3, 31)), (2025, date(2025, 4, 20)), (2026, date(2026, 4, 5)),
    (2027, date(2027, 3, 28)), (2038, date(2038, 4, 25)), (2000, date(2000, 4, 23)),
])
def test_easter(year: int, easter: date) -> None:
    assert easter_sunday(year) == easter


def test_france_2026() -> None:
    assert france(2026) == {
        date(2026, 1, 1), date(2026, 4, 6), date(2026, 5, 1), date(2026, 5, 8),
        date(2026, 5, 14), date(2026, 5, 25), date(2026, 7, 14), date(2026, 8, 15),
        date(2026, 11, 1), date(2026, 11, 11), date(2026, 12, 25),
    }


def test_us_federal_2026() -> None:
    days = us_federal(2026)
    for d in (date(2026, 1, 1), date(2026, 1, 19), date(2026, 2, 16), date(2026, 5, 25),
              date(2026, 6, 19), date(2026, 7, 3), date(2026, 7, 4), date(2026, 9, 7),
              date(2026, 10, 12), date(2026, 11, 11), date(2026, 11, 26),
              date(2026, 12, 25)):
        assert d in days, d
    assert date(2026, 7, 6) not in days


def test_us_observed_new_year_on_previous_december() -> None:
    # 2028-01-01 is a Saturday: observed Friday 2027-12-31.
    assert date(2027, 12, 31) in us_federal(2027)


def test_is_holiday() -> None:
    assert is_holiday("fr", date(2026, 7, 14))
    assert not is_holiday("fr", date(2026, 7, 13))
    assert not is_holiday("none", date(2026, 7, 14))
    assert is_holiday("us_federal", date(2026, 7, 4))
