"""preview(): the JSON served by POST /v1/messages/preview."""

from __future__ import annotations

import json

import msgspec
import pytest

from gateway.encoding import EncodingOptions, Preview, preview

OPTIONS = EncodingOptions()


def test_json_shape() -> None:
    out = json.loads(msgspec.json.encode(preview("“Hi” there", OPTIONS, smart=True)))
    assert out == {"encoding": "gsm7", "segments": 1, "characters": 10, "per_segment": 160,
                   "remaining": 150, "replaced": [{"from": "“", "to": '"', "count": 1},
                                                  {"from": "”", "to": '"', "count": 1}]}


@pytest.mark.parametrize(("text", "expected"), [
    ("", Preview("gsm7", 0, 0, 160, 160)),
    ("a" * 160, Preview("gsm7", 1, 160, 160, 0)),
    ("a" * 161, Preview("gsm7", 2, 161, 153, 145)),
    ("€", Preview("gsm7", 1, 2, 160, 158)),
    ("😀", Preview("ucs2", 1, 2, 70, 68)),
    ("ж" * 71, Preview("ucs2", 2, 71, 67, 63)),
    ("a" * 2000, Preview("gsm7", 14, 2000, 153, 142)),  # preview never rejects
])
def test_counts(text: str, expected: Preview) -> None:
    assert preview(text, OPTIONS) == expected


def test_last_part_remaining_after_moved_cluster() -> None:
    # 66 units + an emoji that moves: the last part holds 2 + 3 units.
    p = preview("ж" * 66 + "😀" + "ж" * 3, OPTIONS)
    assert (p.segments, p.characters, p.remaining) == (2, 71, 62)


def test_decodes_back() -> None:
    p = preview("ж", OPTIONS)
    assert msgspec.json.decode(msgspec.json.encode(p), type=Preview) == p
