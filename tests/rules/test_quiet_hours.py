"""Quiet hours: windows per country/state, DST, multi-zone intersections, fallbacks."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import msgspec
import pytest

from rules import Action, Bypass, MessageKind, NumberFacts, Policy, Reason, evaluate
from rules.policy import with_quiet_hours
from rules.quiet_hours import (
    DEFAULT_TABLE,
    CountryWindow,
    QuietHoursTable,
    Schedule,
    Window,
    compile_window,
    load_quiet_hours,
    next_allowed,
    parse_span,
)
from tests.rules.helpers import (
    AL,
    AU,
    CA_LA,
    FL,
    FR,
    GB,
    ID,
    NY,
    OK,
    RU,
    TX,
    facts,
    msg,
    quiet_hours_table,
    utc,
)

P = Policy()
NYC = ZoneInfo("America/New_York")
PARIS = ZoneInfo("Europe/Paris")
CHI = ZoneInfo("America/Chicago")


def local(zone: ZoneInfo, *args: int) -> datetime:
    return datetime(*args, tzinfo=zone)  # type: ignore[misc]


def decide(to: str, now: datetime, kind: MessageKind = MessageKind.CAMPAIGN,
           policy: Policy = P, **kw: object):  # type: ignore[no-untyped-def]
    return evaluate(msg(kind, to=to, **kw), facts(to), policy, now)  # type: ignore[arg-type]


def test_config_file_equals_builtin_table() -> None:
    assert quiet_hours_table() == DEFAULT_TABLE


# (number, local time, expected action, expected local opening or None)
CASES = [
    # TCPA 08-21 (NY): 20:59 in, 21:00 out, 07:59 out, 08:00 in
    (NY, (2026, 3, 4, 20, 59), Action.SEND, None),
    (NY, (2026, 3, 4, 20, 59, 59), Action.SEND, None),
    (NY, (2026, 3, 4, 21, 0), Action.DEFER, (2026, 3, 5, 8, 0)),
    (NY, (2026, 3, 4, 7, 59), Action.DEFER, (2026, 3, 4, 8, 0)),
    (NY, (2026, 3, 4, 8, 0), Action.SEND, None),
    (NY, (2026, 3, 4, 23, 30), Action.DEFER, (2026, 3, 5, 8, 0)),
    # Sundays are fine under the TCPA
    (NY, (2026, 3, 8, 12, 0), Action.SEND, None),
    # FL/OK: 08-20
    (FL, (2026, 3, 4, 19, 59), Action.SEND, None),
    (FL, (2026, 3, 4, 20, 0), Action.DEFER, (2026, 3, 5, 8, 0)),
    (OK, (2026, 3, 4, 20, 30), Action.DEFER, (2026, 3, 5, 8, 0)),
    # TX: 09-21 Mon-Sat, 12-21 Sunday
    (TX, (2026, 3, 7, 9, 0), Action.SEND, None),
    (TX, (2026, 3, 8, 9, 0), Action.DEFER, (2026, 3, 8, 12, 0)),
    (TX, (2026, 3, 8, 12, 0), Action.SEND, None),
    # AL: no Sundays; Saturday 20:00 -> Monday 08:00
    (AL, (2026, 3, 7, 20, 0), Action.DEFER, (2026, 3, 9, 8, 0)),
    (AL, (2026, 3, 8, 10, 0), Action.DEFER, (2026, 3, 9, 8, 0)),
    # AL: federal holidays closed (Thanksgiving 2026-11-26)
    (AL, (2026, 11, 26, 10, 0), Action.DEFER, (2026, 11, 27, 8, 0)),
    # AL: observed Independence Day (2026-07-04 is a Saturday -> Friday 07-03 observed)
    (AL, (2026, 7, 3, 10, 0), Action.DEFER, (2026, 7, 6, 8, 0)),
]


@pytest.mark.parametrize(("to", "at", "action", "opens"), CASES)
def test_us_windows(to: str, at: tuple[int, ...], action: Action,
                    opens: tuple[int, ...] | None) -> None:
    zone = CHI if to in (OK, TX, AL) else NYC
    d = decide(to, local(zone, *at).astimezone(ZoneInfo("UTC")))
    assert d.action is action
    if opens is None:
        assert d.defer_until is None
    else:
        assert d.reason is Reason.QUIET_HOURS
        assert d.defer_until is not None
        assert d.defer_until.astimezone(zone) == local(zone, *opens)
        assert d.defer_until.tzinfo is not None


FR_CASES = [
    ((2026, 3, 4, 19, 59), Action.SEND, None),  # Wednesday
    ((2026, 3, 4, 20, 0), Action.DEFER, (2026, 3, 5, 8, 0)),
    ((2026, 3, 7, 20, 0), Action.DEFER, (2026, 3, 9, 8, 0)),  # Saturday night -> Monday
    ((2026, 3, 8, 11, 0), Action.DEFER, (2026, 3, 9, 8, 0)),  # Sunday
    ((2026, 7, 14, 11, 0), Action.DEFER, (2026, 7, 15, 8, 0)),  # Bastille Day
    ((2026, 4, 5, 11, 0), Action.DEFER, (2026, 4, 7, 8, 0)),  # Easter Sunday + Monday
    ((2026, 5, 14, 11, 0), Action.DEFER, (2026, 5, 15, 8, 0)),  # Ascension (Thursday)
    ((2026, 5, 23, 21, 0), Action.DEFER, (2026, 5, 26, 8, 0)),  # Sat -> Sun -> Whit Monday
    ((2026, 12, 24, 20, 30), Action.DEFER, (2026, 12, 26, 8, 0)),  # Christmas
    ((2026, 3, 9, 8, 0), Action.SEND, None),
]


@pytest.mark.parametrize(("at", "action", "opens"), FR_CASES)
def test_france(at: tuple[int, ...], action: Action, opens: tuple[int, ...] | None) -> None:
    d = decide(FR, local(PARIS, *at))
    assert d.action is action
    if opens is not None:
        assert d.defer_until is not None
        assert d.defer_until.astimezone(PARIS) == local(PARIS, *opens)


def test_france_transactional_is_exempt() -> None:
    d = decide(FR, local(PARIS, 2026, 3, 8, 11, 0), kind=MessageKind.TRANSACTIONAL)
    assert d.action is Action.SEND


def test_transactional_when_configured() -> None:
    policy = msgspec.convert({"quiet_hours": {"transactional": True}}, Policy)
    d = decide(FR, local(PARIS, 2026, 3, 8, 11, 0), kind=MessageKind.TRANSACTIONAL,
               policy=policy)
    assert d.reason is Reason.QUIET_HOURS


def test_dst_spring_forward_new_york() -> None:
    # 2026-03-08 02:00 EST -> 03:00 EDT. 21:30 EST on the 7th (02:30 UTC on the 8th)
    # defers to 08:00 EDT = 12:00 UTC, not 13:00 UTC.
    d = decide(NY, utc(2026, 3, 8, 2, 30))
    assert d.defer_until == utc(2026, 3, 8, 12, 0)
    # 20:59 EDT on the 8th is 00:59 UTC on the 9th: open
    assert decide(NY, utc(2026, 3, 9, 0, 59)).action is Action.SEND
    assert decide(NY, utc(2026, 3, 9, 1, 0)).reason is Reason.QUIET_HOURS


def test_dst_fall_back_new_york() -> None:
    # 2026-11-01 02:00 EDT -> 01:00 EST. Opening on the 1st is 08:00 EST = 13:00 UTC.
    d = decide(NY, utc(2026, 11, 1, 5, 0))
    assert d.defer_until == utc(2026, 11, 1, 13, 0)
    # 20:59 EST on Nov 1 = 01:59 UTC Nov 2: open; 21:00 EST = 02:00 UTC: closed
    assert decide(NY, utc(2026, 11, 2, 1, 59)).action is Action.SEND
    assert decide(NY, utc(2026, 11, 2, 2, 0)).action is Action.DEFER


def test_dst_paris() -> None:
    # 2026-03-29: CET -> CEST. Monday 30th 07:30 CEST = 05:30 UTC -> 06:00 UTC.
    d = decide(FR, utc(2026, 3, 30, 5, 30))
    assert d.defer_until == utc(2026, 3, 30, 6, 0)


def test_multi_zone_intersection_idaho() -> None:
    # Boise (Mountain) and Los Angeles (Pacific): open only 08:00 Pacific .. 21:00 Mountain
    boise, la = ZoneInfo("America/Boise"), ZoneInfo("America/Los_Angeles")
    # 07:30 Pacific = 08:30 Mountain: Boise open, LA closed -> 08:00 Pacific
    d = decide(ID, local(la, 2026, 3, 4, 7, 30))
    assert d.defer_until is not None
    assert d.defer_until.astimezone(la) == local(la, 2026, 3, 4, 8, 0)
    # 20:30 Pacific = 21:30 Mountain: LA open, Boise closed -> next day 08:00 Pacific
    d = decide(ID, local(la, 2026, 3, 4, 20, 30))
    assert d.defer_until is not None
    assert d.defer_until.astimezone(la) == local(la, 2026, 3, 5, 8, 0)
    # 19:59 Pacific = 20:59 Mountain: both open
    assert decide(ID, local(boise, 2026, 3, 4, 20, 59)).action is Action.SEND


def test_multi_zone_intersection_australia() -> None:
    # Eight zones, Indian/Cocos (UTC+6:30) .. Lord Howe (UTC+11 in March): the window
    # opens at 08:00 on Cocos (the latest local opening) = 01:30 UTC.
    d = decide(AU, utc(2026, 3, 4, 22, 0))
    assert d.defer_until == utc(2026, 3, 5, 1, 30)
    # and closes at 21:00 on Lord Howe (UTC+11 in March) = 10:00 UTC
    assert decide(AU, utc(2026, 3, 5, 9, 59)).action is Action.SEND
    assert decide(AU, utc(2026, 3, 5, 10, 0)).action is Action.DEFER


def test_multi_zone_intersection_russia() -> None:
    # RU+KZ: Europe/Bucharest (UTC+2) .. Asia/Kamchatka/Anadyr (UTC+12): windows 08-21
    # overlap from 08:00 UTC+2 (06:00 UTC) to 21:00 UTC+12 (09:00 UTC).
    d = decide(RU, utc(2026, 3, 4, 3, 0))
    assert d.defer_until == utc(2026, 3, 4, 6, 0)
    assert decide(RU, utc(2026, 3, 4, 8, 59)).action is Action.SEND
    assert decide(RU, utc(2026, 3, 4, 9, 0)).action is Action.DEFER


def test_gb_default_window() -> None:
    assert decide(GB, utc(2026, 1, 10, 20, 59)).action is Action.SEND
    assert decide(GB, utc(2026, 1, 10, 21, 0)).defer_until == utc(2026, 1, 11, 8, 0)


def test_unknown_zone_uses_country_fallback() -> None:
    # A US number with no zone candidates: America/New_York 14:00-20:00 (Klaviyo AK/HI).
    f = facts(NY, number=NumberFacts(valid=True, region="US", zones=(), state=None))
    d = evaluate(msg(to=NY), f, P, local(NYC, 2026, 3, 4, 9, 0))
    assert d.defer_until is not None
    assert d.defer_until.astimezone(NYC) == local(NYC, 2026, 3, 4, 14, 0)
    assert "fallback" in d.detail
    assert evaluate(msg(to=NY), f, P, local(NYC, 2026, 3, 4, 19, 59)).action is Action.SEND


def test_disjoint_zones_use_fallback() -> None:
    # UTC+0, UTC+8, UTC-8: each pair overlaps, all three never do (08-21 local).
    zones = ("Europe/London", "Asia/Shanghai", "America/Los_Angeles")
    f = facts(NY, number=NumberFacts(valid=True, region="US", zones=zones))
    d = evaluate(msg(to=NY), f, P, local(NYC, 2026, 3, 4, 9, 0))
    assert d.defer_until is not None
    assert d.defer_until.astimezone(NYC) == local(NYC, 2026, 3, 4, 14, 0)


def test_unknown_country_unknown_zone_uses_policy_fallback() -> None:
    f = facts(NY, number=NumberFacts(valid=True, region="ZZ", zones=()))
    d = evaluate(msg(to=NY), f, P, utc(2026, 3, 4, 7, 0))
    assert d.defer_until == utc(2026, 3, 4, 10, 0)  # UTC 10:00-18:00
    assert evaluate(msg(to=NY), f, P, utc(2026, 3, 4, 17, 59)).action is Action.SEND
    assert evaluate(msg(to=NY), f, P, utc(2026, 3, 4, 18, 0)).action is Action.DEFER


def test_bypass_welcome_message() -> None:
    d = decide(NY, local(NYC, 2026, 3, 4, 23, 0), bypass=frozenset({Bypass.QUIET_HOURS}))
    assert d.action is Action.SEND


def test_flows_switch_and_disabled() -> None:
    late = local(NYC, 2026, 3, 4, 23, 0)
    assert decide(NY, late, kind=MessageKind.FLOW).reason is Reason.QUIET_HOURS
    off = msgspec.convert({"quiet_hours": {"flows": False}}, Policy)
    assert decide(NY, late, kind=MessageKind.FLOW, policy=off).action is Action.SEND
    assert decide(NY, late, policy=off).reason is Reason.QUIET_HOURS
    disabled = msgspec.convert({"quiet_hours": {"enabled": False}}, Policy)
    assert decide(NY, late, policy=disabled).action is Action.SEND


def test_replies_never_wait() -> None:
    from rules import ReplyKind
    d = decide(FR, local(PARIS, 2026, 3, 8, 23, 0), kind=MessageKind.REPLY,
               reply_to=ReplyKind.HELP, text="Help: acme.example")
    assert d.action is Action.SEND


def test_no_window_within_horizon() -> None:
    closed = {d: "closed" for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
    table = QuietHoursTable(countries={"US": CountryWindow(days=closed)})
    policy = with_quiet_hours(P, table)
    d = decide(NY, utc(2026, 3, 4, 15, 0), policy=policy)
    assert d.action is Action.REJECT
    assert d.reason is Reason.NO_SEND_WINDOW


def test_state_window_cannot_loosen_country() -> None:
    table = QuietHoursTable(countries={"US": CountryWindow(
        start="08:00", end="21:00", states={"FL": Window(start="06:00", end="23:00")})})
    policy = with_quiet_hours(P, table)
    assert decide(FL, local(NYC, 2026, 3, 4, 7, 0), policy=policy).action is Action.DEFER
    assert decide(FL, local(NYC, 2026, 3, 4, 22, 0), policy=policy).action is Action.DEFER


def test_ca_weekend_window() -> None:
    # LA (Pacific, state CA = California; not Canada): TCPA window only
    la = ZoneInfo("America/Los_Angeles")
    assert decide(CA_LA, local(la, 2026, 3, 7, 8, 30)).action is Action.SEND


# --- parsing and validation -------------------------------------------------------------

def test_parse_span() -> None:
    assert parse_span("08:00-21:00") == (8 * 3600, 21 * 3600)
    assert parse_span("closed") is None
    assert parse_span("00:00-24:00") == (0, 86400)
    for bad in ("8-21", "21:00-08:00", "08:00", "25:00-26:00", "08:61-09:00"):
        with pytest.raises(ValueError, match="window"):
            parse_span(bad)


def test_compile_window_days_and_holidays() -> None:
    s = compile_window(Window(start="09:00", end="18:00",
                              days={"sat": "10:00-17:00", "Sunday": "closed"},
                              holidays="fr"))
    assert s.days[0] == (9 * 3600, 18 * 3600)
    assert s.days[5] == (10 * 3600, 17 * 3600)
    assert s.days[6] is None
    assert s.holidays == ("fr",)


@pytest.mark.parametrize(("toml", "path"), [
    (b'[default]\nstart = "8"\n', "default"),
    (b'[countries.US.states.FL]\nend = "25:00"\n', "countries.US.states.FL"),
    (b'[countries.FR]\nholidays = "xx"\n', "countries.FR.holidays"),
    (b'[countries.FR]\ndays = { dim = "closed" }\n', "countries.FR.days"),
    (b'[countries.US]\nfallback_zone = "Mars/Base"\n', "countries.US.fallback_zone"),
])
def test_load_errors_name_the_field(toml: bytes, path: str) -> None:
    with pytest.raises(ValueError, match=path.replace(".", r"\.")):
        load_quiet_hours(toml)


def test_load_rejects_unknown_keys() -> None:
    with pytest.raises(msgspec.ValidationError, match="countries"):
        load_quiet_hours(b'[countries.US]\nstrat = "08:00"\n')


def test_policy_validates_embedded_table() -> None:
    with pytest.raises(msgspec.ValidationError, match="fallback_window"):
        msgspec.toml.decode(b'[quiet_hours]\nfallback_window = "9-5"\n', type=Policy)


def test_next_allowed_gives_up_past_horizon() -> None:
    sched = Schedule((None,) * 7)
    assert next_allowed(sched, (NYC,), utc(2026, 1, 1), horizon_days=3) is None


def test_schedule_intersection() -> None:
    a = Schedule(((8 * 3600, 21 * 3600),) * 7)
    b = Schedule(((9 * 3600, 22 * 3600),) * 6 + (None,), ("fr",))
    c = a.intersect(b)
    assert c.days[0] == (9 * 3600, 21 * 3600)
    assert c.days[6] is None
    assert c.holidays == ("fr",)
    assert a.intersect(Schedule(((22 * 3600, 23 * 3600),) * 7)).days[0] is None


def test_deferral_is_aware_and_after_now() -> None:
    now = utc(2026, 3, 4, 3, 0)
    for to in (NY, FL, OK, TX, AL, ID, FR, GB, AU, RU):
        d = decide(to, now)
        if d.action is Action.DEFER:
            assert d.defer_until is not None
            assert now < d.defer_until <= now + timedelta(days=3)
