"""Quiet hours: allowed local sending windows per country and state, across zone candidates.

Data: ``config/quiet_hours.toml`` decoded by ``load_quiet_hours`` into a ``QuietHoursTable``
(the built-in ``DEFAULT_TABLE`` is the same data, so ``Policy()`` is compliant on its own;
a test keeps the two equal). A state window is always intersected with its country window,
so a state entry can only make things stricter (TCPA 08-21 stays the floor in the US).

Semantics (domain.md §3.2, §3.3, §3.6):
- a window is ``[start, end)`` in local wall-clock time: 20:59:59 is inside 08:00-21:00,
  21:00:00 is not;
- a closed weekday (``sun = "closed"``) or a day on the named holiday calendar is closed;
- several zone candidates -> only instants open in *every* zone (latest local opening to
  earliest local close);
- no candidate zone, or an empty intersection -> the fallback: the country's
  ``fallback_zone`` (else the policy's) with the window shortened to the fallback window;
- outcome: DEFER until the next allowed instant, never a drop.

Hot path: schedules are compiled once per (table, region, state, zones) and cached with
their ZoneInfo objects; a decision then costs one ``astimezone`` per candidate zone.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from rules.holidays import CALENDARS, is_holiday
from rules.model import Action, Bypass, Decision, Message, MessageKind, Reason, RecipientFacts

if TYPE_CHECKING:
    from rules.policy import Policy, QuietHoursPolicy

__all__ = [
    "DEFAULT_TABLE",
    "CountryWindow",
    "QuietHoursTable",
    "Schedule",
    "Window",
    "check",
    "compile_window",
    "load_quiet_hours",
    "next_allowed",
    "parse_span",
    "validate_table",
    "zone_or_error",
]

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class Window(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One jurisdiction's allowed window in local time."""

    #: Daily opening and closing, ``HH:MM`` (``24:00`` allowed as an end).
    start: str = "08:00"
    end: str = "21:00"
    #: Per-weekday overrides: ``mon``..``sun`` -> ``"HH:MM-HH:MM"`` or ``"closed"``.
    days: dict[str, str] = {}
    #: Holiday calendar closing whole days: ``"none"``, ``"fr"``, ``"us_federal"``.
    holidays: str = "none"
    #: Where the rule comes from (free text, for reviewers).
    source: str = ""


class CountryWindow(Window, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A country's window, its state overrides and its fallback zone."""

    #: Zone used when the number gives no candidate or the candidates never overlap.
    fallback_zone: str | None = None
    #: Window (``HH:MM-HH:MM``) used with ``fallback_zone``; None = the policy's.
    fallback_window: str | None = None
    #: State/province code (``FL``, ``QC``) -> a window, intersected with the country's.
    states: dict[str, Window] = {}


class QuietHoursTable(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The whole quiet-hours data file."""

    #: Countries without an entry.
    default: Window = Window()
    #: ISO 3166 region -> window.
    countries: dict[str, CountryWindow] = {}


class Schedule(msgspec.Struct, frozen=True):
    """A compiled window: per weekday (Mon=0) ``(start_s, end_s)`` seconds or None = closed."""

    days: tuple[tuple[int, int] | None, ...]
    holidays: tuple[str, ...] = ()

    def intersect(self, other: Schedule) -> Schedule:
        """Instants allowed by both (day-wise latest start, earliest end; holidays united)."""
        days: list[tuple[int, int] | None] = []
        for a, b in zip(self.days, other.days, strict=True):
            if a is None or b is None or max(a[0], b[0]) >= min(a[1], b[1]):
                days.append(None)
            else:
                days.append((max(a[0], b[0]), min(a[1], b[1])))
        hol = tuple(dict.fromkeys(self.holidays + other.holidays))
        return Schedule(tuple(days), hol)


def _parse_hhmm(text: str, where: str) -> int:
    hh, sep, mm = text.strip().partition(":")
    if not sep or not hh.isdigit() or not mm.isdigit() or len(mm) != 2:
        raise ValueError(f"{where}: expected HH:MM, got {text!r}")
    secs = int(hh) * 3600 + int(mm) * 60
    if int(mm) >= 60 or secs > 86400:
        raise ValueError(f"{where}: time out of range: {text!r}")
    return secs


def parse_span(text: str, where: str = "window") -> tuple[int, int] | None:
    """``"HH:MM-HH:MM"`` -> (start_s, end_s); ``"closed"`` -> None. Raises ValueError."""
    if text.strip().lower() == "closed":
        return None
    a, sep, b = text.partition("-")
    if not sep:
        raise ValueError(f"{where}: expected HH:MM-HH:MM or 'closed', got {text!r}")
    start, end = _parse_hhmm(a, where), _parse_hhmm(b, where)
    if start >= end:
        raise ValueError(f"{where}: start must be before end: {text!r}")
    return start, end


def compile_window(window: Window, where: str = "window") -> Schedule:
    """Validate and compile a Window. Raises ValueError naming ``where``."""
    base = parse_span(f"{window.start}-{window.end}", where)
    days: list[tuple[int, int] | None] = [base] * 7
    for name, span in window.days.items():
        key = name.strip().lower()[:3]
        if key not in WEEKDAYS:
            raise ValueError(f"{where}.days: unknown weekday {name!r}")
        days[WEEKDAYS.index(key)] = parse_span(span, f"{where}.days.{name}")
    hol: tuple[str, ...] = ()
    if window.holidays not in ("none", ""):
        if window.holidays not in CALENDARS:
            raise ValueError(f"{where}.holidays: unknown calendar {window.holidays!r}")
        hol = (window.holidays,)
    return Schedule(tuple(days), hol)


def zone_or_error(name: str, where: str) -> ZoneInfo:
    """The ZoneInfo for ``name``; ValueError naming ``where`` when unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"{where}: unknown time zone {name!r}") from exc


def validate_table(table: QuietHoursTable) -> None:
    """Compile every entry once so a bad file fails at load, with the path of the field."""
    compile_window(table.default, "default")
    for code, country in table.countries.items():
        where = f"countries.{code}"
        compile_window(country, where)
        if country.fallback_zone is not None:
            zone_or_error(country.fallback_zone, f"{where}.fallback_zone")
        if country.fallback_window is not None:
            parse_span(country.fallback_window, f"{where}.fallback_window")
        for state, win in country.states.items():
            compile_window(win, f"{where}.states.{state}")


def load_quiet_hours(data: bytes | str) -> QuietHoursTable:
    """Decode and validate ``config/quiet_hours.toml`` (the caller reads the file).

    Raises ``msgspec.ValidationError`` (type errors, unknown keys, with the path) or
    ``ValueError`` (bad times, zones, calendars, with the path).
    """
    table = msgspec.toml.decode(data, type=QuietHoursTable)
    validate_table(table)
    return table


# --- evaluation ---------------------------------------------------------------------------


def _is_open(sched: Schedule, local: datetime) -> bool:
    span = sched.days[local.weekday()]
    if span is None:
        return False
    secs = local.hour * 3600 + local.minute * 60 + local.second
    if not span[0] <= secs < span[1]:
        return False
    if sched.holidays:
        day = local.date()
        for cal in sched.holidays:
            if is_holiday(cal, day):
                return False
    return True


def _local_instant(day: date, secs: int, zone: ZoneInfo) -> datetime:
    # fold=0: in a spring-forward gap the wall time maps past the gap (still inside the
    # window); in a fall-back overlap the first occurrence (the earliest) is used.
    if secs >= 86400:
        return datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone)
    return datetime.combine(day, time(secs // 3600, secs % 3600 // 60), tzinfo=zone)


def _next_open_in_zone(sched: Schedule, zone: ZoneInfo, t: datetime,
                       horizon_days: int) -> datetime | None:
    """Earliest instant >= t open in this zone, or None within the horizon."""
    local = t.astimezone(zone)
    if _is_open(sched, local):
        return t
    today = local.date()
    secs = local.hour * 3600 + local.minute * 60 + local.second
    for offset in range(horizon_days + 1):
        day = today + timedelta(days=offset)
        span = sched.days[day.weekday()]
        if span is None or (offset == 0 and secs >= span[1]):
            continue
        if sched.holidays and any(is_holiday(c, day) for c in sched.holidays):
            continue
        start = _local_instant(day, span[0], zone).astimezone(t.tzinfo)
        return max(start, t)
    return None


def next_allowed(sched: Schedule, zones: tuple[ZoneInfo, ...], now: datetime,
                 horizon_days: int = 14) -> datetime | None:
    """Earliest instant >= now allowed in every zone, or None (empty or beyond the horizon).

    Moves ``t`` to the next opening of each zone that is closed at ``t`` until all zones
    agree; each move only goes forward, so it ends at the latest local opening inside the
    earliest common window, or gives up past the horizon.
    """
    limit = now + timedelta(days=horizon_days)
    t = now
    for _ in range(16 * (len(zones) + 1)):
        moved = False
        for zone in zones:
            nt = _next_open_in_zone(sched, zone, t, horizon_days)
            if nt is None or nt > limit:
                return None
            if nt != t:
                t = nt
                moved = True
        if not moved:
            return t
    return None


# --- the built-in table (same data as config/quiet_hours.toml) ------------------------------

_STRICT_8_20 = "Stricter state window 08:00-20:00"

DEFAULT_TABLE = QuietHoursTable(
    default=Window(start="08:00", end="21:00",
                   source="No national rule known: the TCPA window as a conservative default"),
    countries={
        "US": CountryWindow(
            start="08:00", end="21:00",
            source="TCPA 47 CFR 64.1200(c)(1): no solicitations before 08:00 or after 21:00",
            fallback_zone="America/New_York", fallback_window="14:00-20:00",
            states={
                "FL": Window(start="08:00", end="20:00", source="Fla. Stat. 501.616(6)(b)"),
                "OK": Window(start="08:00", end="20:00", source="Okla. tit. 15 775C.4"),
                "MD": Window(start="08:00", end="20:00", source=_STRICT_8_20),
                "WA": Window(start="08:00", end="20:00", source="RCW 80.36.390"),
                "NJ": Window(start="08:00", end="20:00", source=_STRICT_8_20),
                "MA": Window(start="08:00", end="20:00", source=_STRICT_8_20),
                "MS": Window(start="08:00", end="20:00", source=_STRICT_8_20),
                "AL": Window(start="08:00", end="20:00", days={"sun": "closed"},
                             holidays="us_federal",
                             source="08:00-20:00, no Sundays or holidays"),
                "LA": Window(start="08:00", end="20:00", days={"sun": "closed"},
                             holidays="us_federal",
                             source="08:00-20:00, no Sundays or holidays"),
                "CT": Window(start="09:00", end="20:00", source="09:00-20:00"),
                "MI": Window(start="09:00", end="21:00", source="09:00-21:00"),
                "MN": Window(start="09:00", end="21:00", source="09:00-21:00"),
                "NM": Window(start="09:00", end="21:00", source="09:00-21:00"),
                "KY": Window(start="10:00", end="21:00", source="10:00-21:00"),
                "TX": Window(start="09:00", end="21:00", days={"sun": "12:00-21:00"},
                             source="TX SB 140: 09-21 Mon-Sat, 12-21 Sun"),
                "RI": Window(start="09:00", end="18:00",
                             days={"sat": "10:00-17:00", "sun": "10:00-17:00"},
                             source="RI: 09-18 weekdays, 10-17 weekends"),
            },
        ),
        "CA": CountryWindow(
            start="09:00", end="21:30", days={"sat": "10:00-18:00", "sun": "10:00-18:00"},
            source="CRTC Unsolicited Telecommunications Rules: 09:00-21:30 weekdays, "
                   "10:00-18:00 weekends",
            fallback_zone="America/Toronto", fallback_window="13:00-18:00",
        ),
        "FR": CountryWindow(
            start="08:00", end="20:00", days={"sun": "closed"}, holidays="fr",
            source="Strictest reading of SMS providers/CNIL/Esendex: 08-20 Mon-Sat, "
                   "no Sundays or public holidays (domain.md 3.3)",
            fallback_zone="Europe/Paris",
        ),
    },
)


# --- the rule -----------------------------------------------------------------------------


class _Plan:
    """Compiled quiet hours for one (region, state, zones) under one policy.

    Memoises the last answer: a batch evaluates many recipients with the same ``now``, and
    every recipient with the same plan gets the same opening.
    """

    __slots__ = ("_memo", "fallback", "fallback_zone", "open_at", "schedule", "zones")

    def __init__(self, zones: tuple[ZoneInfo, ...], schedule: Schedule,
                 fallback_zone: ZoneInfo, fallback: Schedule) -> None:
        self.zones = zones
        self.schedule = schedule
        self.fallback_zone = fallback_zone
        self.fallback = fallback
        self._memo: tuple[datetime, int, datetime | None, bool] | None = None
        #: The last instant found open in every zone (``check``'s fast path, memoised:
        #: a batch checks many recipients of one plan at the same ``now``).
        self.open_at: datetime | None = None

    def next_allowed(self, now: datetime, horizon_days: int) -> tuple[datetime | None, bool]:
        """(earliest allowed instant or None, whether the fallback was used)."""
        memo = self._memo
        if memo is not None and memo[0] == now and memo[1] == horizon_days:
            return memo[2], memo[3]
        t: datetime | None = None
        fallback = False
        if self.zones:
            t = next_allowed(self.schedule, self.zones, now, horizon_days)
        if t is None:
            fallback = True
            t = next_allowed(self.fallback, (self.fallback_zone,), now, horizon_days)
        self._memo = (now, horizon_days, t, fallback)
        return t, fallback


# id(QuietHoursPolicy) -> (the policy, kept alive so the id is not reused; plans by key).
# Memoisation only: the result depends on the arguments alone.
_PLANS: dict[int, tuple[QuietHoursPolicy, dict[tuple[str, str | None, tuple[str, ...]], _Plan]]]
_PLANS = {}


def _schedule_for(table: QuietHoursTable, region: str, state: str | None) -> Schedule:
    country = table.countries.get(region)
    if country is None:
        return compile_window(table.default, "default")
    sched = compile_window(country, f"countries.{region}")
    if state is not None and state in country.states:
        sched = sched.intersect(compile_window(country.states[state],
                                               f"countries.{region}.states.{state}"))
    return sched


def plan_for(qp: QuietHoursPolicy, region: str, state: str | None,
             zones: tuple[str, ...]) -> _Plan:
    """The compiled plan for a recipient (cached per policy object)."""
    entry = _PLANS.get(id(qp))
    if entry is None or entry[0] is not qp:
        if len(_PLANS) > 32:
            _PLANS.clear()
        entry = (qp, {})
        _PLANS[id(qp)] = entry
    key = (region, state, zones)
    plan = entry[1].get(key)
    if plan is None:
        sched = _schedule_for(qp.table, region, state)
        country = qp.table.countries.get(region)
        fb_zone = (country.fallback_zone if country and country.fallback_zone
                   else qp.fallback_zone)
        fb_span = (country.fallback_window if country and country.fallback_window
                   else qp.fallback_window)
        span = parse_span(fb_span, "fallback_window")
        fb = sched.intersect(Schedule((span,) * 7))
        plan = _Plan(tuple(zone_or_error(z, "zone") for z in zones), sched,
                     zone_or_error(fb_zone, "fallback_zone"), fb)
        entry[1][key] = plan
    return plan


_DETAIL = "outside the local sending window"
_FALLBACK_DETAIL = "outside the fallback sending window (zone unknown or windows disjoint)"
_APPLIES = {MessageKind.CAMPAIGN: "campaigns", MessageKind.FLOW: "flows",
            MessageKind.TRANSACTIONAL: "transactional"}
# An enum member as a global (``EnumClass.MEMBER`` costs ~50 ns on 3.11; runs per message).
_BYPASS = Bypass.QUIET_HOURS


def check(message: Message, facts: RecipientFacts, policy: Policy,
          now: datetime) -> Decision | None:
    """Rule 2: defer (``quiet_hours``) until every candidate zone's window is open.

    Bypass ``quiet_hours`` (the first welcome message) skips it. Transactional messages
    only when ``quiet_hours.transactional``. The engine turns a deferral past a cart's or
    message's deadline into a rejection.
    """
    qp = policy.quiet_hours
    if not qp.enabled or _BYPASS in message.bypass:
        return None
    flag = _APPLIES.get(message.kind)
    if flag is None or not getattr(qp, flag):
        return None
    num = facts.number
    if num is None:  # the engine always fills it; be safe for direct callers
        return None
    plan = plan_for(qp, num.region, num.state, num.zones)
    if plan.zones:
        # fast path: open now in every candidate zone (one astimezone per zone)
        if plan.open_at == now:
            return None
        sched = plan.schedule
        for zone in plan.zones:
            if not _is_open(sched, now.astimezone(zone)):
                break
        else:
            plan.open_at = now
            return None
    t, fallback = plan.next_allowed(now, qp.horizon_days)
    if t is None:
        return Decision(action=Action.REJECT, reason=Reason.NO_SEND_WINDOW,
                        detail=f"no allowed window within {qp.horizon_days} days")
    if t == now:
        return None
    return Decision(action=Action.DEFER, reason=Reason.QUIET_HOURS, defer_until=t,
                    detail=_FALLBACK_DETAIL if fallback else _DETAIL)
