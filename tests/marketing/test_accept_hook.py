"""The accept hook in the pipeline: rules and segment counting see the shortened text,
links are stored with the message only when it is not rejected."""

from __future__ import annotations

import msgspec

from gateway.api_types import MessageIn
from gateway.marketing.config import LinksConfig
from gateway.pipeline import Accepter, RecipientCache
from gateway.store import MemoryStore
from gateway.store.marketing import StoreMarketing
from tests.pipeline.conftest import make_config, put_recipients

NOW = 1_780_000_000.0
FR = "+33612345678"
LONG = "https://shop.example/" + "x" * 300


def _accepter(store: MemoryStore) -> Accepter:
    cfg = msgspec.structs.replace(make_config(),
                                  links=LinksConfig(domains={"*": "go.example.com"}))
    rules = msgspec.structs.replace(cfg.rules, quiet_hours=msgspec.structs.replace(
        cfg.rules.quiet_hours, enabled=False))
    cfg = msgspec.structs.replace(cfg, rules=rules)
    return Accepter(store, cfg, RecipientCache(store, policy=cfg.rules))


async def test_segments_and_rules_see_the_short_link() -> None:
    store = MemoryStore()
    await put_recipients(store, [FR])
    acc = _accepter(store)
    long_ok, starts, unshortened = await acc.accept([
        MessageIn(to=FR, text=f"New in: {LONG}", kind="transactional"),
        MessageIn(to=FR, text=f"{LONG} is new", kind="campaign"),
        MessageIn(to=FR, text=f"New in: {LONG}", kind="transactional", shorten_links=False),
    ], NOW)
    assert (long_ok.status, long_ok.segments) == ("queued", 1)  # 300+ chars -> one part
    assert unshortened.segments == 3
    assert (starts.status, starts.reason) == ("rejected", "starts_with_link")
    links = StoreMarketing(store)
    rec = store.get_message(long_ok.id)
    assert rec is not None
    token = rec.text.rsplit("/", 1)[1]
    assert links.get_link(token) is not None
    rejected = store.get_message(starts.id)
    assert rejected is not None and rejected.text.startswith("https://go.example.com/")
    assert links.get_link(rejected.text.split()[0].rsplit("/", 1)[1]) is None  # not stored
