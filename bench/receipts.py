"""Receipt path micro-benchmark: ``parse_receipt`` + ``receipt_lookup_keys`` per receipt.

Prints ONE JSON object: microseconds per receipt (parse + lookup keys, as
``gateway.pipeline.inbound`` calls them) for receipt deliver_sm PDUs shaped like the ones
the node-smpp simulator sends (``/work/shared/peers/smsc_sim.js`` ``buildReceipt``: the
Appendix B text with a 20-char ``text:``, ``receipted_message_id`` + ``message_state``
TLVs, and ``network_error_code`` with ``--dlr-network-error``), plus a text-only receipt
(no TLVs, Kannel style).

Each case cycles through 4,096 distinct receipts (consecutive ids, the dates changing
every 64 receipts, a mix of stats), decoded once by our codec, so the timed loop sees
what the bind hands the inbound processor: a ``DeliverSm`` with ``Tlv`` objects.

    .venv/bin/python bench/receipts.py [--seconds 0.5]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.receipts import parse_receipt, receipt_lookup_keys
from gateway.smpp import (
    DeliverSm,
    decode,
    encode,
    message_state_tlv,
    network_error_code_tlv,
    receipted_message_id_tlv,
)

N = 4096
#: (stat, err, message_state) as the simulator draws them; DELIVRD dominates.
STATS = [("DELIVRD", "000", 2)] * 6 + [("UNDELIV", "001", 5), ("EXPIRED", "000", 3),
                                        ("REJECTD", "069", 8), ("DELIVRD", "000", 2)]
TEXTS = ["Spring sale: 20% off", "Your code is 123456", "Hello world", "Reminder: appt at 3"]
T0 = datetime(2026, 11, 22, 15, 39)


def _date(i: int) -> str:
    return (T0 + timedelta(minutes=i // 64)).strftime("%y%m%d%H%M")


def build(kind: str) -> list[DeliverSm]:
    """N decoded receipt deliver_sm PDUs of one kind (see the module docstring)."""
    out = []
    base = 1_795_361_967_996_000  # Date.now() * 1000, the simulator's first id
    for i in range(N):
        stat, err, ms = STATS[i % len(STATS)]
        n = base + i
        mid = format(n, "x") if kind in ("sim_hex", "sim_hex_nec") else str(n)
        if kind == "text_only_dec":
            mid = str(1_603_202_138 + i)  # 10-digit Kannel-style ids
        text = (f"id:{mid} sub:001 dlvrd:{'001' if stat == 'DELIVRD' else '000'} "
                f"submit date:{_date(i)} done date:{_date(i + 16)} stat:{stat} err:{err} "
                f"text:{TEXTS[i % len(TEXTS)]}")
        tlvs = ()
        if kind != "text_only_dec":
            tlvs = (receipted_message_id_tlv(mid), message_state_tlv(ms))
            if kind == "sim_hex_nec" and err != "000":
                tlvs += (network_error_code_tlv(3, int(err)),)
        pdu = DeliverSm(source_addr_ton=1, source_addr_npi=1, source_addr="447700900123",
                        dest_addr_ton=5, destination_addr="ShopCo", esm_class=0x04,
                        short_message=text.encode("latin-1"), tlvs=tlvs)
        frame = decode(encode(pdu, seq=i + 1))
        assert isinstance(frame.pdu, DeliverSm)
        out.append(frame.pdu)
    return out


def rate(fn: Callable[[], object], seconds: float, per_call: int) -> float:
    """Calls per second of fn (times per_call): the best of many short runs (as codec.py)."""
    best = float("inf")
    deadline = time.perf_counter() + seconds
    while True:
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
        if time.perf_counter() >= deadline:
            break
    return per_call / best


def receipt_path(pdus: list[DeliverSm]) -> Callable[[], object]:
    """One pass over pdus doing what the inbound processor does per receipt."""
    def run() -> None:
        for p in pdus:
            r = parse_receipt(p.esm_class, p.short_message, p.tlvs, data_coding=p.data_coding)
            assert r is not None
            receipt_lookup_keys(r, "auto")
    return run


def parse_only(pdus: list[DeliverSm]) -> Callable[[], object]:
    """parse_receipt alone."""
    def run() -> None:
        for p in pdus:
            parse_receipt(p.esm_class, p.short_message, p.tlvs, data_coding=p.data_coding)
    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=0.5, help="time per measurement")
    args = ap.parse_args()
    us: dict[str, float] = {}
    for kind in ("sim_hex", "sim_dec", "sim_hex_nec", "text_only_dec"):
        pdus = build(kind)
        us[f"{kind}_parse_and_keys"] = round(1e6 / rate(receipt_path(pdus), args.seconds, N), 3)
        us[f"{kind}_parse_only"] = round(1e6 / rate(parse_only(pdus), args.seconds, N), 3)
    print(json.dumps({
        "python": platform.python_version(),
        "unit": "microseconds per receipt (best of repeated passes over 4,096 receipts)",
        "receipts_us": us,
    }))


if __name__ == "__main__":
    main()
