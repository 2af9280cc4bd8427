"""Review of session 5 (38fd9d3): retention of the marketing databases.

The opt-in start log is what the start rate limit reads (``[optin] window_s``, any
positive number of seconds, 3600 by default). The sweep deleted every entry older than
``START_LOG_KEEP_S`` (2 h) whatever the configured window, so with ``window_s`` above 2 h
a number's start was forgotten by the next sweep while the limit still had to count it:
``per_number_per_hour = 1`` with ``window_s = 6 h`` let a second code go to the same
number 3 h after the first. (Before 38fd9d3 an entry was only dropped when a later start
for the same key was logged.)
"""

from __future__ import annotations

import pytest
import trio

from gateway.config import GatewayConfig
from gateway.marketing import optin
from gateway.marketing.config import OptinConfig
from gateway.marketing.optin import Challenge, Refused
from gateway.retention import DAY, Retention, RetentionSettings
from gateway.store import MemoryStore
from gateway.store.marketing import START_LOG_KEEP_S, StoreMarketing
from tests.store.helpers import no_retention_pauses

NOW = 1_790_000_000.0
SECRET = b"0123456789abcdef"
PHONE = "+15550000042"


def _challenge(cid: str, at: float, policy: optin.OptinPolicy) -> Challenge:
    return Challenge(id=cid, phone=PHONE, source="web", brand="B", created_at=at,
                     expires_at=at + policy.code_ttl_s, code_hash=b"h" * 32)


@pytest.mark.parametrize("window_h", [1.0, 6.0, 24.0])
async def test_a_sweep_keeps_the_starts_the_configured_window_counts(
        window_h: float, monkeypatch: pytest.MonkeyPatch) -> None:
    no_retention_pauses(monkeypatch)
    cfg = GatewayConfig(optin=OptinConfig(window_s=window_h * 3600, per_number_per_hour=1,
                                          secret=SECRET))
    assert cfg.optin is not None
    policy = cfg.optin.policy()
    store = MemoryStore()
    mk = StoreMarketing(store)
    with trio.fail_after(10):
        await mk.commit_start(_challenge("c1", NOW, policy), None)
        # The next sweep comes after the 2 h the start log keeps, inside the window.
        later = NOW + max(START_LOG_KEEP_S, policy.window_s / 2) + 60
        retention = Retention(store, RetentionSettings.from_config(cfg), clock=lambda: later)
        await retention.sweep()
        state = mk.recent_starts(PHONE, None, later - policy.window_s)
        got = optin.start(PHONE, source="web", ip=None, now=later, code="123456",
                          challenge_id="c2", state=state, secret=SECRET, policy=policy)
        if later - NOW < policy.window_s:
            # the first start is still inside the window: the limit of one refuses
            assert isinstance(got, Refused) and got.limit == "number", got
        else:
            assert not isinstance(got, Refused)
        # entries older than the window (and the 2 h) still go
        much_later = NOW + max(START_LOG_KEEP_S, policy.window_s) + DAY
        retention = Retention(store, RetentionSettings.from_config(cfg),
                              clock=lambda: much_later)
        await retention.sweep()
        assert mk.recent_starts(PHONE, None, 0.0).number == ()


@pytest.mark.parametrize("window_h", [1.0, 6.0])
async def test_logging_a_start_keeps_the_earlier_starts_the_window_counts(
        window_h: float) -> None:
    # The per-key clean-up when a start is logged kept 2 h only: with ``window_s = 6 h``
    # and a limit of 2 per number, the third code 3 h after the first went out (the first
    # start was dropped by the second's logging). ``commit_start(keep_s=window_s)``.
    cfg = GatewayConfig(optin=OptinConfig(window_s=window_h * 3600, per_number_per_hour=2,
                                          secret=SECRET))
    assert cfg.optin is not None
    policy = cfg.optin.policy()
    mk = StoreMarketing(MemoryStore())
    with trio.fail_after(10):
        t1, t2 = NOW, NOW + 2.5 * 3600
        for cid, at in (("c1", t1), ("c2", t2)):
            await mk.commit_start(_challenge(cid, at, policy), None, keep_s=policy.window_s)
        later = t2 + 600  # 2 h 50 min after the first start
        state = mk.recent_starts(PHONE, None, later - policy.window_s)
        got = optin.start(PHONE, source="web", ip=None, now=later, code="123456",
                          challenge_id="c3", state=state, secret=SECRET, policy=policy)
        if later - t1 < policy.window_s:  # both earlier starts count: the limit of 2 refuses
            assert isinstance(got, Refused) and got.limit == "number", got
            assert len(state.number) == 2
        else:  # the first is outside the window: one counts, a second is allowed
            assert not isinstance(got, Refused), got
