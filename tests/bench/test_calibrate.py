"""bench/_calibrate.py: the VM-speed workload (pure; no timing threshold asserted)."""

from __future__ import annotations

from types import ModuleType

from tests.bench.helpers import load_bench


def _module() -> ModuleType:
    return load_bench("_calibrate")


def test_the_workload_is_deterministic_and_does_the_work() -> None:
    c = _module()
    # Same input, same result: nothing in it depends on the clock or on randomness.
    assert c._workload(500) == c._workload(500)
    # Each iteration encodes and decodes a record: the total counts its encoded bytes.
    rec = c._Rec("m00000001", "+14155550001", "sending", (1, 2), 0.001)
    raw = c._ENC.encode(rec)
    assert c._DEC.decode(raw) == rec
    assert c._workload(1) == c._step(0, {}) + 1


def test_calibrate_reports_microseconds_per_iteration() -> None:
    c = _module()
    got = c.calibrate(iterations=200, repeats=2)
    assert isinstance(got, float) and 0 < got < 1_000
    assert c.REFERENCE_US > 0
