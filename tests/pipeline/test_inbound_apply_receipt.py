"""``_apply_receipt`` (pure): a receipt that sets no part status (an intermediate one, or a
state without a part status) records what the carrier said and keeps the part's status."""

from __future__ import annotations

import pytest

from gateway.pipeline.inbound import _apply_receipt
from gateway.store import MessageRecord, PartRecord


def _rec(*statuses: str) -> MessageRecord:
    return MessageRecord(
        id="m1", created_at=1.0, to="+33612345601", text="hi", kind="transactional",
        status="submitted",
        parts=tuple(PartRecord(i, carrier="c1", status=s) for i, s in enumerate(statuses)))


@pytest.mark.parametrize("status", [None, "delivered"])
def test_receipt_fields_and_status(status: str | None) -> None:
    old = _rec("accepted", "accepted")
    got = _apply_receipt(old, (0, status, "ENROUTE" if status is None else "DELIVRD", "000",
                               5.0, None, 9.0))
    assert got is not None
    new, _ = got
    p = new.parts[0]
    assert p.status == (status or "accepted")
    assert (p.receipt_stat, p.receipt_err, p.done_at, p.error_class) == (
        "ENROUTE" if status is None else "DELIVRD", "000", 5.0, None)
    assert p.carrier == "c1" and new.parts[1] == old.parts[1]
    assert new.updated_at == 9.0
