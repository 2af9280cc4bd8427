"""Delivery receipt texts as carriers send them, with the values we must read from them.

Shared by the receipt parser tests and by anyone who needs realistic receipts (simulator,
pipeline tests). Sources: SMPP 3.4 Appendix B, domain.md §1.7-1.8 and the carrier
references cited there ([S11]-[S14], [S41]).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Sample:
    """One receipt text and the fields parse_receipt_text must return (None = no receipt)."""

    name: str
    text: str | bytes
    expect: dict[str, Any] | None = field(default=None)


D = datetime

SAMPLES: list[Sample] = [
    Sample("appendix b", "id:0123456789 sub:001 dlvrd:001 submit date:0610191018 "
           "done date:0610191019 stat:DELIVRD err:000 text:Hello, world",
           {"id": "0123456789", "sub": 1, "dlvrd": 1, "submit_date": D(2006, 10, 19, 10, 18),
            "done_date": D(2006, 10, 19, 10, 19), "stat": "DELIVRD", "err": "000",
            "text": "Hello, world", "state": "DELIVRD"}),
    Sample("kannel", "id:1603202138 sub:001 dlvrd:001 submit date:1603201542 "
           "done date:1603201542 stat:DELIVRD err:000 text:Test message",
           {"id": "1603202138", "state": "DELIVRD", "done_date": D(2016, 3, 20, 15, 42)}),
    Sample("node-smpp simulator", "id:660df48587c60 sub:001 dlvrd:001 submit date:2611221539 "
           "done date:2611221539 stat:DELIVRD err:000 text:Hello world",
           {"id": "660df48587c60", "sub": 1, "dlvrd": 1, "submit_date": D(2026, 11, 22, 15, 39),
            "stat": "DELIVRD", "err": "000", "text": "Hello world", "state": "DELIVRD"}),
    Sample("vonage decimal receipt id", "id:792633534722627192 sub:001 dlvrd:000 "
           "submit date:2401101200 done date:2401101203 stat:UNDELIV err:004 text:",
           {"id": "792633534722627192", "dlvrd": 0, "stat": "UNDELIV", "err": "004", "text": "",
            "state": "UNDELIV"}),
    Sample("cardboardfish", "id:1234567890 sub:001 dlvrd:001 submit date:1201011200 "
           "done date:1201011201 stat:DELIVRD err:000 Text:Good morning",
           {"id": "1234567890", "text": "Good morning", "state": "DELIVRD"}),
    Sample("cardboardfish hex id (3.3 bind)", "id:00B8BE19 sub:001 dlvrd:000 submit date:1201011200"
           " done date:1201011201 stat:EXPIRED err:000 Text:",
           {"id": "00B8BE19", "state": "EXPIRED"}),
    Sample("twilio smpp absent", "id:SM7f0c0e4b1e6a4f21b3c3b2a7c8d9e0f1 sub:001 dlvrd:000 "
           "submit date:2405011015 done date:2405011020 stat:UNDELIV err:001 text:Your code",
           {"id": "SM7f0c0e4b1e6a4f21b3c3b2a7c8d9e0f1", "err": "001", "state": "UNDELIV"}),
    Sample("upper case keys", "ID:ABC123 SUB:001 DLVRD:000 SUBMIT DATE:2501011200 "
           "DONE DATE:2501011201 STAT:REJECTD ERR:069 TEXT:Promo",
           {"id": "ABC123", "sub": 1, "dlvrd": 0, "submit_date": D(2025, 1, 1, 12, 0),
            "done_date": D(2025, 1, 1, 12, 1), "stat": "REJECTD", "err": "069", "text": "Promo",
            "state": "REJECTD"}),
    Sample("lower case stat", "id:7 stat:delivrd err:0",
           {"id": "7", "stat": "DELIVRD", "state": "DELIVRD", "text": None, "sub": None}),
    Sample("missing text", "id:998877 sub:001 dlvrd:001 submit date:2501011200 "
           "done date:2501011201 stat:DELIVRD err:000",
           {"id": "998877", "text": None, "err": "000", "state": "DELIVRD"}),
    Sample("uuid id (jasmin)", "id:a2f0d3c6-6a1f-4b4e-9e0c-3f2d8c1b7a55 sub:001 dlvrd:001 "
           "submit date:2503031200 done date:2503031200 stat:DELIVRD err:000 text:x",
           {"id": "a2f0d3c6-6a1f-4b4e-9e0c-3f2d8c1b7a55", "state": "DELIVRD"}),
    Sample("seconds in dates", "id:42 sub:001 dlvrd:001 submit date:260122153912 "
           "done date:260122154005 stat:DELIVRD err:000 text:hi",
           {"submit_date": D(2026, 1, 22, 15, 39, 12), "done_date": D(2026, 1, 22, 15, 40, 5)}),
    Sample("four-digit year", "id:42 submit date:20260122153912 done date:20260122154005 "
           "stat:DELIVRD", {"submit_date": D(2026, 1, 22, 15, 39, 12)}),
    Sample("underscored date keys", "id:42 sub:001 dlvrd:001 submit_date:2601221539 "
           "done_date:2601221540 stat:DELIVRD err:000 text:x",
           {"submit_date": D(2026, 1, 22, 15, 39), "done_date": D(2026, 1, 22, 15, 40)}),
    Sample("extra spaces", "id: 123   sub:001  dlvrd:001   submit date: 2601221539  "
           "done date:2601221540 stat:  DELIVRD   err: 000 text:  spaced out  ",
           {"id": "123", "sub": 1, "submit_date": D(2026, 1, 22, 15, 39), "stat": "DELIVRD",
            "err": "000", "text": "spaced out"}),
    Sample("other order", "stat:EXPIRED err:027 id:42 done date:2601221540 sub:001 dlvrd:000",
           {"id": "42", "stat": "EXPIRED", "err": "027", "dlvrd": 0, "state": "EXPIRED",
            "done_date": D(2026, 1, 22, 15, 40)}),
    Sample("text mentions id:", "id:77 sub:001 dlvrd:001 submit date:2601221539 "
           "done date:2601221540 stat:DELIVRD err:000 text:Your id: 12 stat: ok",
           {"id": "77", "stat": "DELIVRD", "text": "Your id: 12 stat: ok"}),
    Sample("non-standard FAILED", "id:5 stat:FAILED err:1", {"stat": "FAILED", "state": "UNDELIV"}),
    Sample("long DELIVERED", "id:5 stat:DELIVERED", {"state": "DELIVRD"}),
    Sample("non-standard NULL", "id:5 stat:NULL", {"state": "UNKNOWN"}),
    Sample("unknown stat never success", "id:5 stat:DELIVRDX err:000", {"state": "UNKNOWN"}),
    Sample("ACCEPTD", "id:5 stat:ACCEPTD", {"state": "ACCEPTD"}),
    Sample("ENROUTE", "id:5 stat:ENROUTE", {"state": "ENROUTE"}),
    Sample("missing stat", "id:5 sub:001 dlvrd:001", {"id": "5", "stat": None, "state": "UNKNOWN"}),
    Sample("stat only", "stat:UNDELIV err:005", {"id": None, "state": "UNDELIV"}),
    Sample("bad date", "id:5 submit date:2613451299 done date:26 stat:DELIVRD",
           {"submit_date": None, "done_date": None, "state": "DELIVRD"}),
    Sample("bytes with NUL", b"id:abc sub:001 dlvrd:001 stat:DELIVRD err:000 text:x\x00",
           {"id": "abc", "text": "x", "state": "DELIVRD"}),
    Sample("latin-1 bytes", b"id:9 stat:DELIVRD text:caf\xe9", {"text": "café"}),
    Sample("mo text", "Hello, see you at 10:30", None),
    Sample("mo STOP", "STOP", None),
    Sample("empty", "", None),
    Sample("binary garbage", b"\xff\xfe\x00\x01\x80", None),
    Sample("id-like words", "paid:5 valid:3 stats:ok", None),
]
