"""Per-carrier encoding options (embedded in the carrier config).

Everything a carrier may disagree on lives here, so `plan()` needs no other input than the
text, these options, a reference number and (for national shift tables) the destination
country.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

__all__ = [
    "DEFAULT_OPTIONS",
    "Dcs0",
    "EncodingOptions",
    "GsmPacking",
    "Language",
    "Segmentation",
]

Segmentation = Literal["udh8", "udh16", "sar", "payload"]
"""How a long message is split: concatenation UDH with an 8-bit or 16-bit reference
(esm_class UDHI), SAR TLVs (0x020C/0x020E/0x020F), or one PDU with message_payload (0x0424)
that the SMSC splits itself."""

GsmPacking = Literal["unpacked", "packed"]
"""GSM 03.38 in short_message: one septet per octet (the SMPP norm with DCS 0, the SMSC
packs), or packed 8 septets into 7 octets as on the air interface."""

Dcs0 = Literal["gsm", "latin1", "ascii"]
"""What data_coding 0 ("SMSC default alphabet") means to this carrier (SMPP 3.4 §5.2.19
leaves it to the SMSC). "latin1" / "ascii": the SMSC transcodes those octets to GSM 03.38
on air, so only GSM characters that exist in that charset can be sent with DCS 0."""

Language = Literal["turkish", "spanish", "portuguese"]
"""National language single shift tables we implement (3GPP TS 23.038 annex A.2.1-A.2.3)."""

Country = Annotated[str, msgspec.Meta(pattern="^[A-Z]{2}$")]


class EncodingOptions(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How one carrier wants text encoded and segmented.

    - segmentation: see `Segmentation`.
    - gsm_packing: see `GsmPacking`; "packed" requires dcs0 = "gsm".
    - latin1: send text that is not GSM but fits ISO-8859-1 as Latin-1 (DCS 0x03, 8-bit
      limits 140/134/133 octets) instead of UCS-2.
    - dcs0: see `Dcs0`.
    - max_parts: messages needing more parts are rejected (`too_many_segments`), never
      truncated. 1..255 (the UDH total is one octet).
    - smart_encoding: default for the per-message smart-encoding flag (look-alike
      substitution, applied only when the result fits GSM).
    - smart_only_if_fewer_segments: apply the substitution only when it saves segments.
    - national_languages: ISO 3166 alpha-2 country -> single shift table to use for
      destinations in that country when the text needs it (UDH IEI 0x24). Off (empty) by
      default: handset support varies.
    """

    segmentation: Segmentation = "udh8"
    gsm_packing: GsmPacking = "unpacked"
    latin1: bool = False
    dcs0: Dcs0 = "gsm"
    max_parts: Annotated[int, msgspec.Meta(ge=1, le=255)] = 10
    smart_encoding: bool = False
    smart_only_if_fewer_segments: bool = False
    national_languages: dict[Country, Language] = {}

    def __post_init__(self) -> None:
        # Packing only makes sense for GSM septets; a Latin-1/ASCII DCS 0 carries octets.
        if self.gsm_packing == "packed" and self.dcs0 != "gsm":
            raise ValueError("gsm_packing = 'packed' requires dcs0 = 'gsm'")


DEFAULT_OPTIONS = EncodingOptions()
"""udh8, unpacked GSM, DCS 0 = GSM, UCS-2 fallback, at most 10 parts, no smart encoding."""
