"""Benchmark of gateway.encoding.plan against smpplib.gsm.make_parts on the same texts.

Prints one JSON object: plans per second (best of several rounds, one core) per case, for
our planner and for smpplib's splitter (which does less: no smart encoding, no grapheme
handling, a random reference). Goals: >= 300,000 1-part and >= 100,000 3-part GSM plans/s.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from collections.abc import Callable

import smpplib.gsm

from gateway.encoding import EncodingOptions, SegmentPlan, plan

ONE_PART = ("Hi Anna, your order #12345 has shipped! Track it at https://ex.co/t/abc "
            "- reply STOP to opt out.")
THREE_PART = ("Spring sale! Everything in store is 30% off this weekend only, including "
              "new arrivals. Show this message at the till or use code SPRING30 online at "
              "https://shop.example.com/sale before Sunday midnight. Free delivery on orders "
              "over 50 EUR. Questions? Call us on 0800 123 456, Mon-Fri 9am-6pm. Reply STOP "
              "to unsubscribe, HELP for help. Terms apply: see the website for the full "
              "conditions of the offer and the list of participating stores.")
EMOJI = ("🎉 Big news! 👨‍👩‍👧‍👦 Family weekend: kids eat free 🍕🍦 at all our "
         "restaurants 🇫🇷🇩🇪. Book now 👉 https://ex.co/b 👍🏽 Reply STOP to opt out")
SMART = ("“Last chance” — our summer sale ends tonight… Don’t miss 40% off "
         "everything: shop now at https://ex.co/s. Reply STOP to opt out.")

OPTIONS = EncodingOptions()


def _rate(fn: Callable[[], object], rounds: int = 5, min_time: float = 0.2) -> float:
    n = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        dt = time.perf_counter() - t0
        if dt >= min_time:
            break
        n *= 2
    best = dt
    for _ in range(rounds - 1):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, time.perf_counter() - t0)
    return round(n / best)


def main() -> None:
    cases = {"gsm_1_part": (ONE_PART, False), "gsm_3_part": (THREE_PART, False),
             "ucs2_emoji": (EMOJI, False), "smart": (SMART, True)}
    out: dict[str, object] = {"python": sys.version.split()[0], "machine": platform.machine()}
    for name, (text, smart) in cases.items():
        p = plan(text, OPTIONS, ref=1, smart=smart)
        assert isinstance(p, SegmentPlan)
        parts, _, _ = smpplib.gsm.make_parts(text)
        out[name] = {
            "segments": p.segments,
            "encoding": p.encoding,
            "plans_per_s": _rate(lambda t=text, s=smart: plan(t, OPTIONS, ref=1, smart=s)),
            "smpplib_segments": len(parts),
            "smpplib_make_parts_per_s": _rate(lambda t=text: smpplib.gsm.make_parts(t)),
        }
    out["goals"] = {"gsm_1_part": 300_000, "gsm_3_part": 100_000}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
