"""Shared test helpers: decode a plan back to text, and an independent reference splitter."""

from __future__ import annotations

import gsm0338  # noqa: F401  (registers the "gsm03.38" codec)
import regex

from gateway.encoding import EncodingOptions, Reassembler, SegmentPlan, parse_mo

GRAPHEME = regex.compile(r"\X")


def decode_plan(p: SegmentPlan, options: EncodingOptions) -> str:
    """Decode every part in order through the MO path (parse_mo + Reassembler)."""
    r = Reassembler(ttl=60, dcs0=options.dcs0)
    out: str | None = None
    for part in p.parts:
        frag = parse_mo(part.short_message, part.esm_class, p.data_coding,
                        packed=options.gsm_packing == "packed", dcs0=options.dcs0,
                        sar=part.sar, message_payload=part.payload)
        got = r.add("+1555", frag, now=0.0)
        if got is not None:
            assert out is None, "completed twice"
            out = got
    assert out is not None, "never completed"
    return out


def gsm_cost(cluster: str) -> int:
    """Septets of a cluster according to the independent gsm0338 codec."""
    return len(cluster.encode("gsm03.38"))


def ucs2_cost(cluster: str) -> int:
    return len(cluster.encode("utf-16-be")) // 2


def reference_segments(text: str, encoding: str, single: int, multi: int) -> int:
    """Greedy over grapheme clusters, written independently of gateway.encoding.segment.

    A cluster longer than a whole part starts a new part and is cut between code points.
    """
    cost = {"gsm7": gsm_cost, "ucs2": ucs2_cost, "latin1": len}[encoding]
    clusters = GRAPHEME.findall(text)
    if sum(cost(c) for c in clusters) <= single:
        return 1
    parts, used = 1, 0
    for c in clusters:
        k = cost(c)
        if k > multi:
            if used:
                parts, used = parts + 1, 0
            for ch in c:
                kc = cost(ch)
                if used + kc > multi:
                    parts, used = parts + 1, 0
                used += kc
        elif used + k > multi:
            parts, used = parts + 1, k
        else:
            used += k
    return parts
