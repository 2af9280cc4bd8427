"""Shared builders for the rules tests: real config files, facts, messages, UTC times."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from rules import (
    ConsentStatus,
    KeywordSets,
    Message,
    MessageKind,
    NumberFacts,
    QuietHoursTable,
    RecipientFacts,
    load_keyword_sets,
    load_quiet_hours,
    number_facts,
)

CONFIG = Path(__file__).resolve().parents[2] / "config"

# One number per situation (checked in test_numbers.py).
FL = "+13055550123"  # Miami, America/New_York, state FL
NY = "+12125550123"  # New York, America/New_York, state NY
OK = "+14055550123"  # Oklahoma City, America/Chicago, state OK
MD = "+14105550123"  # Baltimore, state MD
TX = "+12145550123"  # Dallas, America/Chicago, state TX
AL = "+12055550123"  # Birmingham, America/Chicago, state AL
ID = "+12085550123"  # Idaho: America/Boise + America/Los_Angeles
CA_LA = "+13105550123"  # Los Angeles
FR = "+33612345678"  # mobile, Europe/Paris
GB = "+447400123456"  # mobile, London + Crown dependencies (all UTC+0/+1)
AU = "+61412345678"  # mobile, eight zones
RU = "+79161234567"  # mobile, sixteen zones


@cache
def keyword_sets() -> KeywordSets:
    """config/keywords.toml, as the gateway loads it."""
    return load_keyword_sets((CONFIG / "keywords.toml").read_bytes())


@cache
def quiet_hours_table() -> QuietHoursTable:
    """config/quiet_hours.toml, as the gateway loads it."""
    return load_quiet_hours((CONFIG / "quiet_hours.toml").read_bytes())


@cache
def nf(e164: str) -> NumberFacts:
    return number_facts(e164)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def facts(e164: str = FL, **kw: Any) -> RecipientFacts:
    kw.setdefault("consent", ConsentStatus.SUBSCRIBED)
    kw.setdefault("number", nf(e164))
    return RecipientFacts(phone=e164, **kw)


def msg(kind: MessageKind = MessageKind.CAMPAIGN, to: str = FL,
        text: str = "Acme: 20% off today. Reply STOP to opt out", **kw: Any) -> Message:
    if kind is MessageKind.FLOW:
        kw.setdefault("flow_id", "f1")
    if kind is MessageKind.CAMPAIGN:
        kw.setdefault("campaign_id", "c1")
    return Message(kind=kind, to_e164=to, text=text, **kw)
