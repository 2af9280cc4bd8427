"""Facts from a phone number alone: region, zone candidates, US/CA state.

``number_facts`` costs 25-65 us (phonenumbers parse + validation + zone lookup), so the
caller computes it ONCE per recipient and caches it in ``RecipientFacts.number`` (the store
keeps it in the ``recipients`` record). The engine falls back to computing it when absent.
"""

from __future__ import annotations

import phonenumbers
from phonenumbers import timezone as pn_timezone

from rules.model import NumberFacts
from rules.npa import NPA_STATE

__all__ = ["NANP_REGIONS", "number_facts", "state_for_npa"]

#: Regions sharing country code 1 whose state comes from the NPA table.
NANP_REGIONS = frozenset({"US", "CA"})
_UNKNOWN_ZONE = "Etc/Unknown"


def state_for_npa(npa: int) -> tuple[str, str] | None:
    """(region, state/province) for a US/CA area code, or None when unknown."""
    return NPA_STATE.get(npa)


def number_facts(e164: str) -> NumberFacts:
    """Region, zone candidates and US/CA state of an E.164 number (``+`` and digits).

    Zones come from ``phonenumbers.timezone.time_zones_for_number``: a longest-prefix match
    for geographic numbers (all of NANP), the whole country's list for others (UK, AU, RU
    mobiles), ``Etc/Unknown`` -> no candidates (domain.md §3.6). The state comes from the
    area code (``rules/npa.py``), which is where the number was allocated.
    """
    try:
        num = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return NumberFacts(valid=False)
    if not phonenumbers.is_valid_number(num):
        return NumberFacts(valid=False, region=phonenumbers.region_code_for_number(num) or "")
    region = phonenumbers.region_code_for_number(num) or ""
    zones = tuple(z for z in pn_timezone.time_zones_for_number(num) if z != _UNKNOWN_ZONE)
    state: str | None = None
    if num.country_code == 1 and region in NANP_REGIONS:
        hit = state_for_npa(int(str(num.national_number)[:3]))
        if hit is not None and hit[0] == region:
            state = hit[1]
    return NumberFacts(valid=True, region=region, zones=zones, state=state)
