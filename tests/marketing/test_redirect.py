"""gateway.marketing.redirect over real sockets on 127.0.0.1 (port 0, fail_after on every
test, autojump_clock where time matters), with the in-memory store."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
import pytest
import trio
import trio.testing

from gateway.marketing.prepare import Prepared, link_targets, prepare_text
from gateway.marketing.redirect import LINK_LIMITS, ClickSink, LinkServer, serve_links
from gateway.marketing.store import (
    LINK_CLICKED,
    Click,
    LinkTarget,
    MemoryMarketingStore,
    MessageClicks,
    TokenTakenError,
    unique_token_maker,
)
from tests.api.client import Client

T0 = 1_750_000_020.0  # a multiple of 60: buckets start at T0
TOKEN = "aB3dE5gH"
URL = "https://shop.example.com/cart?id=42&utm_source=sms"
#: Keep-alive connections that survive the minutes the autojump clock skips.
PATIENT = msgspec.structs.replace(LINK_LIMITS, idle_timeout=3600.0)


def wall() -> Callable[[], float]:
    return lambda: T0 + trio.current_time()


async def make_store(**extra: LinkTarget) -> MemoryMarketingStore:
    store = MemoryMarketingStore()
    await store.commit_links([
        LinkTarget(token=TOKEN, url=URL, message_id="m1", phone="+14155550100",
                   created_at=T0, campaign_id="c1", flow_id=None),
        LinkTarget(token="idnTok01", url="https://bücher.de/straße", message_id="m2",
                   phone="+33612345678", created_at=T0),
        LinkTarget(token="badTok01", url="javascript:alert(1)", message_id="m3",
                   phone="+33612345678", created_at=T0),
        *extra.values(),
    ])
    return store


async def start_links(nursery: trio.Nursery, store: MemoryMarketingStore,
                      **kwargs: Any) -> LinkServer:
    kwargs.setdefault("clock", wall())
    links: LinkServer = await nursery.start(functools.partial(serve_links, store, **kwargs))
    return links


async def test_redirect_head_404_405_and_robots(nursery: trio.Nursery) -> None:
    with trio.fail_after(5):
        store = await make_store()
        links = await start_links(nursery, store)
        client = await Client.connect(links.port)
        reply = await client.request("GET", f"/{TOKEN}", headers=[("user-agent", "Phone/1")])
        assert reply.status == 302
        assert reply.headers["location"] == URL
        assert reply.headers["cache-control"] == "no-store"
        assert reply.headers["referrer-policy"] == "no-referrer"
        assert reply.body == b""
        # a query string on the short link is ignored
        reply = await client.request("GET", f"/{TOKEN}?x=1")
        assert (reply.status, reply.headers["location"]) == (302, URL)

        head = await client.request("HEAD", "/idnTok01")
        assert head.status == 302
        assert head.headers["location"] == "https://xn--bcher-kva.de/stra%C3%9Fe"

        for path in ("/zzzzzzzz", "/wp-login.php", "/", "/aB3dE5gH/", "/favicon.ico",
                     "/badTok01"):
            reply = await client.request("GET", path)
            assert reply.status == 404, path
            assert reply.headers["content-type"].startswith("text/html")
            assert b"Link not found" in reply.body
        head404 = await client.request("HEAD", "/zzzzzzzz")
        assert (head404.status, head404.body) == (404, b"")

        post = await client.request("POST", f"/{TOKEN}", body=b"x")
        assert (post.status, post.headers["allow"]) == (405, "GET, HEAD")
        robots = await client.request("GET", "/robots.txt")
        assert (robots.status, robots.body) == (200, b"User-agent: *\nDisallow: /\n")
        await client.aclose()

        await links.sink.flush()
        stats = links.handler.statistics()
        assert (stats.redirects, stats.head_redirects, stats.clicks,
                stats.clicks_deduplicated) == (2, 1, 1, 1)
        assert (stats.not_found, stats.malformed, stats.bad_target,
                stats.method_not_allowed) == (2, 4, 1, 1)
        [click] = store.clicks.values()
        assert (click.token, click.message_id, click.phone, click.url, click.campaign_id,
                click.user_agent) == (TOKEN, "m1", "+14155550100", URL, "c1", "Phone/1")
        assert store.events[0][:3] == (LINK_CLICKED, "m1", "+14155550100")
        nursery.cancel_scope.cancel()


async def test_clicks_are_recorded_once_per_bucket(
        nursery: trio.Nursery, autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(600):
        store = await make_store()
        links = await start_links(nursery, store, click_bucket_s=60.0, limits=PATIENT)
        client = await Client.connect(links.port)
        for _ in range(3):  # a double tap and a reload: one click
            assert (await client.request("GET", f"/{TOKEN}")).status == 302
            await trio.sleep(10)
        await trio.sleep(35)  # T0 + 65: the next bucket
        assert (await client.request("GET", f"/{TOKEN}")).status == 302
        assert (await client.request("GET", f"/{TOKEN}")).status == 302
        await trio.sleep(1)  # the sink flushes in the background
        assert sorted(store.clicks) == [(TOKEN, int(T0 // 60)), (TOKEN, int(T0 // 60) + 1)]
        assert store.message_clicks["m1"] == MessageClicks(
            clicks=2, first_at=T0, last_at=T0 + 65, by_token={TOKEN: 2})
        assert [e[0] for e in store.events] == [LINK_CLICKED, LINK_CLICKED]
        stats = links.handler.statistics()
        assert (stats.redirects, stats.clicks, stats.clicks_deduplicated) == (5, 2, 3)
        assert links.sink.statistics().recorded == 2
        await client.aclose()
        nursery.cancel_scope.cancel()


async def test_misses_are_rate_limited_per_address(
        nursery: trio.Nursery, autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(600):
        store = await make_store()
        links = await start_links(nursery, store, misses_per_minute=5, limits=PATIENT)
        client = await Client.connect(links.port)
        for i in range(5):
            assert (await client.request("GET", f"/guess{i:03d}")).status == 404
        # over budget: every request gets 429, valid tokens too (no oracle for a guesser)
        limited = await client.request("GET", f"/{TOKEN}")
        assert limited.status == 429
        assert 1 <= int(limited.headers["retry-after"]) <= 60
        assert (await client.request("GET", "/guess999")).status == 429
        await trio.sleep(60)
        assert (await client.request("GET", f"/{TOKEN}")).status == 302
        assert links.handler.statistics().rate_limited == 2
        await client.aclose()
        nursery.cancel_scope.cancel()


async def test_server_errors_are_plain_text(nursery: trio.Nursery) -> None:
    with trio.fail_after(5):
        links = await start_links(nursery, await make_store())
        stream = await trio.open_tcp_stream("127.0.0.1", links.port)
        await stream.send_all(b"GET /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n\r\n")
        data = b""
        while chunk := await stream.receive_some(65536):
            data += chunk
        assert data.startswith(b"HTTP/1.1 413 ")
        assert b"text/plain" in data
        await stream.aclose()
        nursery.cancel_scope.cancel()


def click(token: str, bucket: int, at: float) -> Click:
    return Click(token=token, bucket=bucket, at=at, message_id="m1", phone="+1", url=URL)


async def test_sink_retries_failed_commits_without_double_counting(
        autojump_clock: trio.testing.MockClock) -> None:
    store = await make_store()
    store.fail_commits = OSError("disk full")
    sink = ClickSink(store.commit_clicks, interval=0.05, max_backoff=1.0)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(sink.run)
            sink.add(click(TOKEN, 1, T0))
            sink.add(click(TOKEN, 1, T0 + 1))  # same bucket: one recorded click
            await trio.sleep(3)
            assert sink.statistics().flush_failures >= 2
            assert store.clicks == {}
            store.fail_commits = None
            await trio.sleep(3)
            assert list(store.clicks) == [(TOKEN, 1)]
            # at least once: a batch committed twice records nothing new
            assert await store.commit_clicks([click(TOKEN, 1, T0)]) == 0
            stats = sink.statistics()
            assert (stats.pending, stats.committed, stats.recorded) == (0, 2, 1)
            nursery.cancel_scope.cancel()


async def test_sink_flushes_what_it_holds_when_cancelled(
        autojump_clock: trio.testing.MockClock) -> None:
    store = await make_store()
    sink = ClickSink(store.commit_clicks, interval=10.0)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(sink.run)
            sink.add(click(TOKEN, 7, T0))
            await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
    assert list(store.clicks) == [(TOKEN, 7)]


async def test_sink_drops_past_its_bound() -> None:
    async def never(clicks: Sequence[Click]) -> int:  # pragma: no cover - not run
        raise AssertionError

    sink = ClickSink(never, max_pending=2)
    assert [sink.add(click(TOKEN, i, T0)) for i in range(3)] == [True, True, False]
    assert (sink.statistics().pending, sink.statistics().dropped) == (2, 1)


async def test_link_store_put_if_absent_and_unique_tokens() -> None:
    store = await make_store()
    same = store.links[TOKEN]
    await store.commit_links([same])  # the same record again is fine (a retried batch)
    other = LinkTarget(token=TOKEN, url="https://evil.example/", message_id="m9", phone="+1",
                       created_at=T0)
    with pytest.raises(TokenTakenError):
        await store.commit_links([other])
    assert store.links[TOKEN] == same
    draws = iter([TOKEN, "idnTok01", "fresh001"])
    make = unique_token_maker(store, lambda: next(draws))
    assert make() == "fresh001"
    with pytest.raises(RuntimeError):
        unique_token_maker(store, lambda: TOKEN, tries=3)()


async def test_accept_hook_to_click_end_to_end(nursery: trio.Nursery) -> None:
    """prepare_text -> link_targets -> commit_links -> GET the short link -> click."""
    with trio.fail_after(5):
        store = MemoryMarketingStore()
        prepared = prepare_text(
            "Acme: hi {{ name | default: 'there' }}, your cart: https://shop.example.com/c/9."
            " Reply STOP to opt out", {"name": "Ada"}, shorten_links=True,
            domain="sms.acme.com", make_token=unique_token_maker(store, lambda: "Zz9Zz9Zz"))
        assert isinstance(prepared, Prepared)
        assert prepared.text == ("Acme: hi Ada, your cart: https://sms.acme.com/Zz9Zz9Zz."
                                 " Reply STOP to opt out")
        await store.commit_links(link_targets(prepared.links, message_id="m7",
                                              phone="+14155550100", now=T0,
                                              campaign_id="spring"))
        links = await start_links(nursery, store)
        client = await Client.connect(links.port)
        reply = await client.request("GET", "/Zz9Zz9Zz")
        assert (reply.status, reply.headers["location"]) == (302, "https://shop.example.com/c/9")
        await client.aclose()
        await links.sink.flush()
        summary = store.get_message_clicks("m7")
        assert summary is not None and summary.clicks == 1
        nursery.cancel_scope.cancel()
