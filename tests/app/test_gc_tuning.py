"""``gateway.app`` process tuning: the GC setting of ``smsgw run`` ($SMSGW_GC) and the
recipient cache size ($SMSGW_RECIPIENT_CACHE)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from gateway.app import GC_ENV, GC_THRESHOLDS, tune_gc


@pytest.fixture
def restore_gc() -> Iterator[None]:
    old = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*old)


def test_default_thresholds_and_freeze(restore_gc: None, monkeypatch: pytest.MonkeyPatch,
                                       ) -> None:
    monkeypatch.delenv(GC_ENV, raising=False)
    assert tune_gc() == GC_THRESHOLDS
    assert gc.get_threshold() == GC_THRESHOLDS
    assert gc.get_freeze_count() > 0


def test_explicit_thresholds_from_env(restore_gc: None, monkeypatch: pytest.MonkeyPatch,
                                      ) -> None:
    monkeypatch.setenv(GC_ENV, "5000, 20, 30")
    assert tune_gc() == (5000, 20, 30)
    assert gc.get_threshold() == (5000, 20, 30)


def test_off_leaves_gc_alone(restore_gc: None) -> None:
    before = gc.get_threshold()
    assert tune_gc("off") is None
    assert gc.get_threshold() == before


@pytest.mark.parametrize("bad", ["1,2", "a,b,c", "1,-2,3"])
def test_bad_setting_is_an_error(restore_gc: None, bad: str) -> None:
    with pytest.raises(ValueError, match=GC_ENV):
        tune_gc(bad)


def test_recipient_cache_size_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.app import RECIPIENT_CACHE_ENV, recipient_cache_size
    from gateway.pipeline.recipients import DEFAULT_MAX_SIZE, ENTRY_BYTES

    monkeypatch.delenv(RECIPIENT_CACHE_ENV, raising=False)
    assert recipient_cache_size() == DEFAULT_MAX_SIZE
    assert recipient_cache_size("1234") == 1234
    assert recipient_cache_size("60MB") == 60_000_000 // ENTRY_BYTES
    monkeypatch.setenv(RECIPIENT_CACHE_ENV, "77")
    assert recipient_cache_size() == 77
    for bad in ("0", "x", "-5mb"):
        with pytest.raises(ValueError, match=RECIPIENT_CACHE_ENV):
            recipient_cache_size(bad)
