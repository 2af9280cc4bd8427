"""Public holiday calendars, computed (no data files, no clock).

Quiet-hour tables name a calendar (``holidays = "fr"``); a day on it is closed like a
Sunday. Calendars are cached per year: a few dozen dates, computed once.
"""

from __future__ import annotations

from datetime import date, timedelta
from functools import lru_cache

__all__ = ["CALENDARS", "easter_sunday", "france", "is_holiday", "us_federal"]


def easter_sunday(year: int) -> date:
    """Gregorian Easter Sunday (anonymous Gregorian algorithm, Meeus/Jones/Butcher)."""
    a = year % 19
    b, c = divmod(year, 100)
    d, e = divmod(b, 4)
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    ell = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * ell) // 451
    month, day = divmod(h + ell - 7 * m + 114, 31)
    return date(year, month, day + 1)


@lru_cache(maxsize=64)
def france(year: int) -> frozenset[date]:
    """French public holidays (jours fériés, Code du travail L3133-1), metropolitan list.

    Easter Monday, Ascension (Easter + 39) and Whit Monday (Easter + 50) move with Easter.
    Whit Monday is the "journée de solidarité" for many employers but stays a public
    holiday, so marketing SMS stay closed (the strict reading, domain.md §3.3). The
    Alsace-Moselle extras (Good Friday, 26 December) are not included.
    """
    easter = easter_sunday(year)
    return frozenset(
        {
            date(year, 1, 1),
            easter + timedelta(days=1),
            date(year, 5, 1),
            date(year, 5, 8),
            easter + timedelta(days=39),
            easter + timedelta(days=50),
            date(year, 7, 14),
            date(year, 8, 15),
            date(year, 11, 1),
            date(year, 11, 11),
            date(year, 12, 25),
        }
    )


def _nth_weekday(year: int, month: int, weekday: int, n: int) -> date:
    """The n-th (1-based) ``weekday`` (Mon=0) of a month; n = -1 is the last one."""
    if n > 0:
        first = date(year, month, 1)
        return first + timedelta(days=(weekday - first.weekday()) % 7 + 7 * (n - 1))
    nxt = date(year + (month == 12), month % 12 + 1, 1)
    last = nxt - timedelta(days=1)
    return last - timedelta(days=(last.weekday() - weekday) % 7)


def _observed(day: date) -> date:
    """Federal observance (5 U.S.C. 6103): Saturday -> Friday, Sunday -> Monday."""
    if day.weekday() == 5:
        return day - timedelta(days=1)
    if day.weekday() == 6:
        return day + timedelta(days=1)
    return day


@lru_cache(maxsize=64)
def us_federal(year: int) -> frozenset[date]:
    """US federal holidays (5 U.S.C. 6103), both the actual and the observed date.

    Used for AL/LA-style "no Sundays or holidays" rules: both dates are closed, the strict
    reading. New Year's Day of ``year + 1`` observed on 31 December is included.
    """
    fixed = [date(year, 1, 1), date(year, 6, 19), date(year, 7, 4), date(year, 11, 11),
             date(year, 12, 25)]
    days = set(fixed) | {_observed(d) for d in fixed}
    days |= {
        _nth_weekday(year, 1, 0, 3),  # Martin Luther King Jr. Day
        _nth_weekday(year, 2, 0, 3),  # Washington's Birthday
        _nth_weekday(year, 5, 0, -1),  # Memorial Day
        _nth_weekday(year, 9, 0, 1),  # Labor Day
        _nth_weekday(year, 10, 0, 2),  # Columbus Day
        _nth_weekday(year, 11, 3, 4),  # Thanksgiving
    }
    next_new_year = _observed(date(year + 1, 1, 1))
    if next_new_year.year == year:
        days.add(next_new_year)
    return frozenset(d for d in days if d.year == year)


CALENDARS = {"fr": france, "us_federal": us_federal}
"""Calendar names usable in ``config/quiet_hours.toml`` (``holidays = "..."``)."""


def is_holiday(calendar: str, day: date) -> bool:
    """Whether ``day`` is on ``calendar`` (``"none"`` or ``""`` -> never)."""
    fn = CALENDARS.get(calendar)
    return fn is not None and day in fn(day.year)
