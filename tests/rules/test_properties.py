"""Hypothesis properties: quiet-hour openings are allowed and earliest; keyword matching
survives noise; normalization is idempotent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rules import KeywordKind, Policy, classify, normalize
from rules.quiet_hours import DEFAULT_TABLE, _is_open, _schedule_for, next_allowed
from tests.rules.helpers import keyword_sets

ZONES = ["America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles",
         "America/Anchorage", "Pacific/Honolulu", "Europe/Paris", "Europe/London",
         "Asia/Kolkata", "Australia/Lord_Howe", "Australia/Perth", "Indian/Cocos",
         "Asia/Kathmandu"]
JURISDICTIONS = [("US", None), ("US", "FL"), ("US", "TX"), ("US", "AL"), ("US", "RI"),
                 ("CA", None), ("FR", None), ("GB", None)]
TIMES = st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2028, 12, 31),
                     timezones=st.just(UTC))


@pytest.mark.slow  # ~1.3 s: 400 examples
@settings(max_examples=400, deadline=None)
@given(now=TIMES, zones=st.lists(st.sampled_from(ZONES), min_size=1, max_size=3,
                                 unique=True),
       where=st.sampled_from(JURISDICTIONS))
def test_next_allowed_is_allowed_and_earliest(now: datetime, zones: list[str],
                                              where: tuple[str, str | None]) -> None:
    sched = _schedule_for(DEFAULT_TABLE, *where)
    zis = tuple(ZoneInfo(z) for z in zones)
    t = next_allowed(sched, zis, now, horizon_days=14)
    if t is None:
        return  # empty intersection: the engine's fallback takes over
    assert t >= now
    assert all(_is_open(sched, t.astimezone(z)) for z in zis)
    if t > now:
        before = t - timedelta(seconds=1)
        assert not all(_is_open(sched, before.astimezone(z)) for z in zis)


NOISE = st.text(alphabet=" !?.,;:…🛑😀👋\u200b\t", max_size=4)


@settings(max_examples=200, deadline=None)
@given(word=st.sampled_from(["STOP", "stop", "Stop", "ARRÊT", "arret", "UNSUBSCRIBE",
                             "No Más", "ＳＴＯＰ", "cancel", "Quit"]),
       left=NOISE, right=NOISE, country=st.sampled_from(["US", "FR", "GB", "", "DE"]))
def test_opt_out_survives_punctuation_and_emoji(word: str, left: str, right: str,
                                                country: str) -> None:
    m = classify(f"{left}{word}{right}", country, keyword_sets(), Policy())
    assert m.kind is KeywordKind.OPT_OUT


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=200))
def test_normalize_idempotent_and_classify_total(text: str) -> None:
    n = normalize(text)
    assert normalize(n) == n
    assert n == n.strip()
    assert "  " not in n
    m = classify(text, "US", keyword_sets(), Policy())
    assert m.normalized == n
    assert (m.keyword is None) is (m.kind is KeywordKind.NONE)
