"""`preview()`: what a text would cost, served as is by `POST /v1/messages/preview`."""

from __future__ import annotations

import msgspec

from gateway.encoding.options import EncodingOptions
from gateway.encoding.segment import Encoding, capacity, layout
from gateway.encoding.smart import Replacement

__all__ = ["Preview", "preview"]


class Preview(msgspec.Struct, frozen=True):
    """Encodes to `{encoding, segments, characters, per_segment, remaining, replaced}`.

    Counts are in the units the carrier counts: GSM septets (an extension character
    counts 2), UTF-16 code units (an emoji outside the BMP counts 2), or Latin-1 octets.
    - characters: units of the whole text (after smart replacements);
    - per_segment: capacity of one segment (160/70/140 single, 153/67/134 multipart ...);
    - remaining: units still free in the last segment;
    - replaced: [{from, to, count}] smart replacements applied.
    `segments` may exceed the carrier's max_parts: preview never rejects.
    """

    encoding: Encoding
    segments: int
    characters: int
    per_segment: int
    remaining: int
    replaced: tuple[Replacement, ...] = ()


def preview(text: str, options: EncodingOptions, *, country: str | None = None,
            smart: bool | None = None) -> Preview:
    """Encoding, segment count and room left for `text`, exactly as `plan()` would split it."""
    if not text:
        cap = capacity("gsm7", 0)
        return Preview("gsm7", 0, 0, cap, cap)
    lay = layout(text, options, country=country, smart=smart)
    return Preview(lay.encoding, len(lay.chunks), sum(lay.units), lay.cap,
                   lay.cap - lay.units[-1], lay.replaced)
