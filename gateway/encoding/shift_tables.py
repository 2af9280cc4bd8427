"""National language single shift tables (3GPP TS 23.038 annex A.2).

A single shift table replaces the default extension table for the characters sent as
ESC + code (each costs 2 septets). The receiver learns which table applies from the UDH
information element 0x24 (National Language Single Shift, 1 octet: the language id).
Only Turkish, Spanish and Portuguese are implemented: the Latin-script languages whose
tables extend the default alphabet with accented letters. 0x0D (CR2) and 0x1B (SS2) are
left out: we never send them.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

__all__ = ["IEI_LOCKING_SHIFT", "IEI_SINGLE_SHIFT", "LANGUAGE_IDS", "SINGLE_SHIFT"]

IEI_SINGLE_SHIFT: Final = 0x24
"""UDH information element: National Language Single Shift (3GPP TS 23.040 §9.2.3.24.15)."""
IEI_LOCKING_SHIFT: Final = 0x25
"""UDH information element: National Language Locking Shift (3GPP TS 23.040 §9.2.3.24.16)."""

LANGUAGE_IDS: Final = MappingProxyType({"turkish": 1, "spanish": 2, "portuguese": 3})
"""Language name (as in EncodingOptions.national_languages) -> national language id."""

# The characters every one of these three tables shares with the default extension table.
_COMMON: Final = {
    0x0A: "\f", 0x14: "^", 0x28: "{", 0x29: "}", 0x2F: "\\",
    0x3C: "[", 0x3D: "~", 0x3E: "]", 0x40: "|", 0x65: "€",
}

# A.2.1 Turkish National Language Single Shift Table
_TURKISH: Final = {
    **_COMMON,
    0x47: "Ğ", 0x49: "İ", 0x53: "Ş", 0x63: "ç", 0x67: "ğ", 0x69: "ı", 0x73: "ş",
}

# A.2.2 Spanish National Language Single Shift Table
_SPANISH: Final = {
    **_COMMON,
    0x09: "ç", 0x41: "Á", 0x49: "Í", 0x4F: "Ó", 0x55: "Ú",
    0x61: "á", 0x69: "í", 0x6F: "ó", 0x75: "ú",
}

# A.2.3 Portuguese National Language Single Shift Table. Its Greek capitals (0x12-0x19)
# duplicate the basic table, where they cost one septet, so the encoder never uses them.
_PORTUGUESE: Final = {
    **_COMMON,
    0x05: "ê", 0x09: "ç", 0x0B: "Ô", 0x0C: "ô", 0x0E: "Á", 0x0F: "á",
    0x12: "Φ", 0x13: "Γ", 0x15: "Ω", 0x16: "Π", 0x17: "Ψ", 0x18: "Σ", 0x19: "Θ",
    0x1F: "Ê", 0x41: "À", 0x49: "Í", 0x4F: "Ó", 0x55: "Ú", 0x5B: "Ã", 0x5C: "Õ",
    0x61: "Â", 0x69: "í", 0x6F: "ó", 0x75: "ú", 0x7B: "ã", 0x7C: "õ", 0x7F: "â",
}

SINGLE_SHIFT: Final = MappingProxyType({
    1: MappingProxyType(_TURKISH),
    2: MappingProxyType(_SPANISH),
    3: MappingProxyType(_PORTUGUESE),
})
"""Language id -> {extension code: character}."""
