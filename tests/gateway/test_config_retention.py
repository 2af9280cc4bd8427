"""gateway.config: the retention keys of ``[store]`` (defaults, the shipped file, and every
invalid kind naming its field)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import ConfigError, GatewayConfig, load_config, load_config_bytes
from gateway.retention import DAY, RetentionSettings

ROOT = Path(__file__).resolve().parents[2]


def load(text: str) -> GatewayConfig:
    return load_config_bytes(text, env={})


def test_defaults_and_the_shipped_file_agree() -> None:
    st = load("").store
    assert (st.retention_days, st.events_retention_days, st.idempotency_retention_days,
            st.errors_retention_days, st.retention_interval_s,
            st.links_retention_days) == (30, 7, 0, 30, 3600.0, 90)
    shipped = load_config(ROOT / "config" / "gateway.toml", env={}).store
    assert (shipped.retention_days, shipped.events_retention_days,
            shipped.idempotency_retention_days, shipped.errors_retention_days,
            shipped.retention_interval_s, shipped.links_retention_days) == (30, 7, 0, 30,
                                                                             3600.0, 90)


def test_settings_from_config() -> None:
    cfg = load("""
[store]
retention_days = 10
events_retention_days = 2
idempotency_retention_days = 1
errors_retention_days = 45
retention_interval_s = 600
links_retention_days = 60
[pipeline]
carrier_id_ttl_s = 3600
[rules.error_segment]
sticky_count = 3
[[webhooks]]
name = "crm"
url = "http://127.0.0.1:9/h"
secret_env = "S"
enabled = false
""")
    s = RetentionSettings.from_config(cfg)
    assert s == RetentionSettings(messages_s=10 * DAY, events_s=2 * DAY, idempotency_s=DAY,
                                  errors_s=45 * DAY, receipt_window_s=3600.0, sticky_count=3,
                                  interval_s=600.0, webhooks=("crm",), links_s=60 * DAY)
    assert s.enabled


def test_zero_switches_each_off() -> None:
    cfg = load("[store]\nretention_days = 0\nevents_retention_days = 0\n"
               "errors_retention_days = 0\nidempotency_retention_days = 5\n"
               "links_retention_days = 0\n")
    s = RetentionSettings.from_config(cfg)
    assert (s.messages_s, s.events_s, s.errors_s, s.idempotency_s, s.links_s) == (
        0, 0, 0, 5 * DAY, 0)
    assert s.enabled  # claims alone still go
    links = load("[store]\nretention_days = 0\nevents_retention_days = 0\n"
                 "errors_retention_days = 0\n")
    assert RetentionSettings.from_config(links).enabled  # links alone still go
    off = load("[store]\nretention_days = 0\nevents_retention_days = 0\n"
               "errors_retention_days = 0\nlinks_retention_days = 0\n")
    assert not RetentionSettings.from_config(off).enabled


@pytest.mark.parametrize(("toml", "days"), [
    ("", 30),
    ("[store]\nerrors_retention_days = 10", 30),  # never shorter than the window
    ("[rules.error_segment]\ndays = 45", 45),  # a longer window raises it
    ("[store]\nerrors_retention_days = 90\n[rules.error_segment]\ndays = 45", 90),
    ("[store]\nerrors_retention_days = 0\n[rules.error_segment]\ndays = 45", 0),
])
def test_errors_retention_is_at_least_the_segment_window(toml: str, days: int) -> None:
    assert RetentionSettings.from_config(load(toml)).errors_s == days * DAY


INVALID = [
    ("negative days", "[store]\nretention_days = -1", "store.retention_days", ">= 0"),
    ("fractional days", "[store]\nevents_retention_days = 1.5",
     "store.events_retention_days", "expected `int`"),
    ("absurd days", "[store]\nerrors_retention_days = 100000", "store.errors_retention_days",
     "<= 36500"),
    ("negative link days", "[store]\nlinks_retention_days = -3",
     "store.links_retention_days", ">= 0"),
    ("interval zero", "[store]\nretention_interval_s = 0", "store.retention_interval_s",
     ">= 1"),
    ("typo", "[store]\nretention_day = 3", "store.retention_day", "unknown key"),
    ("claims outlive messages", "[store]\nretention_days = 7\nidempotency_retention_days = 8",
     "store.idempotency_retention_days", "goes with its message"),
]


@pytest.mark.parametrize(("toml", "path", "reason"), [c[1:] for c in INVALID],
                         ids=[c[0] for c in INVALID])
def test_invalid_retention_names_the_field(toml: str, path: str, reason: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(toml)
    assert info.value.path == path, str(info.value)
    assert reason in info.value.reason, str(info.value)
