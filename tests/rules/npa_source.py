"""Derive the NANP area-code -> state/province table from phonenumbers' geocoder data.

Run ``python -m tests.rules.npa_source > rules/npa.py`` to regenerate ``rules/npa.py``;
``test_numbers.py`` checks the committed table still agrees with the installed data.
"""

from collections import Counter

import phonenumbers
from phonenumbers import geocoder

STATES = {
    "Alabama": "AL", "Alaska": "AK", "Arizona": "AZ", "Arkansas": "AR", "California": "CA",
    "Colorado": "CO", "Connecticut": "CT", "Delaware": "DE", "Florida": "FL", "Georgia": "GA",
    "Hawaii": "HI", "Idaho": "ID", "Illinois": "IL", "Indiana": "IN", "Iowa": "IA",
    "Kansas": "KS", "Kentucky": "KY", "Louisiana": "LA", "Maine": "ME", "Maryland": "MD",
    "Massachusetts": "MA", "Michigan": "MI", "Minnesota": "MN", "Mississippi": "MS",
    "Missouri": "MO", "Montana": "MT", "Nebraska": "NE", "Nevada": "NV", "New Hampshire": "NH",
    "New Jersey": "NJ", "New Mexico": "NM", "New York": "NY", "North Carolina": "NC",
    "North Dakota": "ND", "Ohio": "OH", "Oklahoma": "OK", "Oregon": "OR", "Pennsylvania": "PA",
    "Rhode Island": "RI", "South Carolina": "SC", "South Dakota": "SD", "Tennessee": "TN",
    "Texas": "TX", "Utah": "UT", "Vermont": "VT", "Virginia": "VA", "Washington State": "WA",
    "Washington D.C.": "DC", "West Virginia": "WV", "Wisconsin": "WI", "Wyoming": "WY",
    "Alberta": "AB", "British Columbia": "BC", "British Colombia": "BC", "Manitoba": "MB",
    "New Brunswick": "NB", "Newfoundland and Labrador": "NL", "Nova Scotia/Prince Edward Island":
    "NS", "Ontario": "ON", "Quebec": "QC", "Saskatchewan": "SK",
    "Northwest Territories/Nunavut/Yukon": "NT",
}
EXCHANGES = ("234", "456", "555", "567", "789", "321", "868", "902")


def _code(description: str) -> str | None:
    if ", " in description:
        return description.rsplit(", ", 1)[1]
    return STATES.get(description)


def derive() -> dict[int, tuple[str, str]]:
    """NPA -> (region, state code) by majority over a few exchanges."""
    out: dict[int, tuple[str, str]] = {}
    for npa in range(200, 1000):
        votes: Counter[tuple[str, str]] = Counter()
        for exch in EXCHANGES:
            num = phonenumbers.parse(f"+1{npa}{exch}1234")
            region = phonenumbers.region_code_for_number(num)
            if region not in ("US", "CA") or not phonenumbers.is_valid_number(num):
                continue
            code = _code(geocoder.description_for_valid_number(num, "en"))
            if code:
                votes[(region, code)] += 1
        if votes:
            out[npa] = votes.most_common(1)[0][0]
    return out


def render(table: dict[int, tuple[str, str]]) -> str:
    lines = [
        '"""NANP area code (NPA) -> (region, state or province), generated from phonenumbers\'',
        "geocoder data by ``tests/rules/npa_source.py`` (do not edit by hand).",
        "",
        "Area codes are where a number was *allocated*; a ported or moved number keeps its NPA,",
        "a risk the state rules accept (domain.md §3.6).",
        '"""',
        "",
        "NPA_STATE: dict[int, tuple[str, str]] = {",
    ]
    row: list[str] = []
    for npa in sorted(table):
        region, code = table[npa]
        row.append(f'{npa}: ("{region}", "{code}"),')
        if len(row) == 4:
            lines.append("    " + " ".join(row))
            row = []
    if row:
        lines.append("    " + " ".join(row))
    lines.append("}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render(derive()), end="")
