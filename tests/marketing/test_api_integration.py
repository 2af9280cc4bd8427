"""Issue 9 through the HTTP API over real sockets: the real backend (``GatewayBackend`` on
the pipeline's ``Accepter``, a ``MemoryStore``) behind ``Api``, and the short-link
listener on the same store. The wall clock is injected (opt-in expiry, click buckets);
every wait is a bounded poll."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import msgspec
import pytest
import trio

from gateway.api import Api
from gateway.backend import GatewayBackend
from gateway.config import GatewayConfig
from gateway.http import Server, serve
from gateway.marketing.config import LinksConfig, OptinConfig
from gateway.marketing.redirect import LinkServer, serve_links
from gateway.pipeline import Accepter, RecipientCache
from gateway.store import KeywordEntry, MemoryStore, RecipientRecord, WriteBatch, open_memory_store
from gateway.store.marketing import StoreMarketing
from tests.api.client import Reply, request
from tests.pipeline.conftest import make_config

T0 = 1_780_000_000.0
FR = "+33612345678"
FR2 = "+33612345679"
DE = "+4915112345678"
DOMAIN = "go.example.com"
CODE = "482913"


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@dataclass
class Env:
    store: MemoryStore
    backend: GatewayBackend
    api: Server
    links: LinkServer
    clock: Clock

    async def call(self, method: str, target: str, **kw: Any) -> Reply:
        return await request(self.api.port, method, target, **kw)

    async def click(self, url: str, method: str = "GET") -> Reply:
        assert url.startswith(f"https://{DOMAIN}/")
        return await request(self.links.port, method, url[len(f"https://{DOMAIN}"):],
                             headers=[("user-agent", "Mozilla/5.0 test")])

    async def events(self, type_: str) -> list[dict[str, Any]]:
        reply = await self.call("GET", "/v1/events?limit=1000")
        return [e for e in reply.json()["events"] if e["type"] == type_]


def _config(optin: bool = True, **optin_kw: Any) -> GatewayConfig:
    cfg = make_config()
    return msgspec.structs.replace(
        cfg, links=LinksConfig(domains={"*": DOMAIN, "Other": "o.example.org"}),
        optin=OptinConfig(secret=b"s" * 32, default_brand="Acme", **optin_kw)
        if optin else None)


@pytest.fixture
async def env_factory(nursery: trio.Nursery) -> AsyncIterator[Callable[..., Any]]:
    async def make(**kw: Any) -> Env:
        clock = Clock()
        cfg = _config(**kw)
        store = await nursery.start(_memory_store)
        rc = RecipientCache(store, policy=cfg.rules)
        backend = GatewayBackend(cfg, store, Accepter(store, cfg, rc), rc, clock=clock)
        backend.marketing._new_code = lambda digits: CODE
        api = await nursery.start(functools.partial(serve, Api(backend), port=0))
        links = await nursery.start(functools.partial(
            serve_links, StoreMarketing(store), port=0, clock=clock, flush_interval=0.005))
        return Env(store, backend, api, links, clock)

    yield make


async def _memory_store(*, task_status: trio.TaskStatus[MemoryStore]) -> None:
    async with open_memory_store() as store:
        task_status.started(store)
        await trio.sleep_forever()


async def _wait(check: Callable[[], Any]) -> Any:
    while True:
        got = await check()
        if got:
            return got
        await trio.sleep(0.005)


# --- templates and short links --------------------------------------------------------


async def test_rendered_and_shortened_text_is_stored_and_clicks_are_recorded(
        env_factory: Callable[..., Any]) -> None:
    with trio.fail_after(10):
        env: Env = await env_factory()
        reply = await env.call("POST", "/v1/messages", json={
            "to": FR, "kind": "transactional", "campaign_id": "spring", "flow_id": "f1",
            "text": 'Hi {{ first_name | default: "there" }}! Sale: '
                    "https://shop.example/sale?utm=sms (and https://shop.example/sale?utm=sms)",
            "vars": {"first_name": "Ann"}})
        assert reply.status == 202, reply.json()
        [result] = reply.json()["results"]
        rec = env.store.get_message(result["id"])
        assert rec is not None
        prefix = f"Hi Ann! Sale: https://{DOMAIN}/"
        assert rec.text.startswith(prefix)
        token = rec.text[len(prefix):len(prefix) + 8]
        short = f"https://{DOMAIN}/{token}"
        assert rec.text == f"Hi Ann! Sale: {short} (and {short})"  # one token per URL
        assert result["segments"] == 1
        link = env.backend.marketing_store.get_link(token)
        assert link is not None and (link.message_id, link.phone, link.campaign_id) == (
            rec.id, FR, "spring")

        # before any click: the link is listed with 0 clicks
        status = (await env.call("GET", f"/v1/messages/{rec.id}")).json()
        assert status["clicks"] == {"total": 0, "first_at": None, "last_at": None, "links": [
            {"url": "https://shop.example/sale?utm=sms", "short_url": short, "clicks": 0}]}

        head = await env.click(short, "HEAD")
        assert head.status == 302  # HEAD: same answer, no click
        for _ in range(3):  # a double tap in one bucket is one click
            got = await env.click(short)
            assert got.status == 302
            assert got.headers["location"] == "https://shop.example/sale?utm=sms"
        assert (await env.click(f"https://{DOMAIN}/Zz9Zz9Zz")).status == 404

        clicked = await _wait(lambda: env.events("link_clicked"))
        assert len(clicked) == 1
        ev = clicked[0]
        assert (ev["message_id"], ev["phone"]) == (rec.id, FR)
        assert ev["data"]["url"] == "https://shop.example/sale?utm=sms"
        assert (ev["data"]["campaign_id"], ev["data"]["flow_id"]) == ("spring", "f1")
        assert ev["data"]["user_agent"] == "Mozilla/5.0 test"

        env.clock.now += 60  # next bucket: a new click
        assert (await env.click(short)).status == 302

        async def two() -> dict[str, Any] | None:
            body = (await env.call("GET", f"/v1/messages/{rec.id}")).json()
            return body if body["clicks"]["total"] == 2 else None

        body = await _wait(two)
        assert body["clicks"]["links"][0]["clicks"] == 2
        assert body["clicks"]["first_at"] < body["clicks"]["last_at"]


async def test_shorten_links_false_and_sender_domain(env_factory: Callable[..., Any]) -> None:
    with trio.fail_after(10):
        env: Env = await env_factory()
        reply = await env.call("POST", "/v1/messages", json={"messages": [
            {"to": FR, "kind": "transactional", "text": "See https://a.example/x",
             "shorten_links": False},
            {"to": FR2, "kind": "transactional", "text": "See https://a.example/x",
             "from": "Other"}]})
        a, b = reply.json()["results"]
        rec_a, rec_b = env.store.get_message(a["id"]), env.store.get_message(b["id"])
        assert rec_a is not None and rec_a.text == "See https://a.example/x"
        assert rec_b is not None and rec_b.text.startswith("See https://o.example.org/")
        assert (await env.call("GET", f"/v1/messages/{a['id']}")).json()["clicks"] is None


async def test_template_errors_reject_with_stable_reasons(
        env_factory: Callable[..., Any]) -> None:
    with trio.fail_after(10):
        env: Env = await env_factory()
        reply = await env.call("POST", "/v1/messages", json={"messages": [
            {"to": FR, "kind": "transactional", "text": "Hi {{ first_name }}"},
            {"to": FR, "kind": "transactional", "text": "Hi {{ first_name"},
            {"to": FR, "kind": "transactional", "text": "Hi {{ first_name | default: 'you' }}"},
        ]})
        assert reply.status == 202
        missing, syntax, ok = reply.json()["results"]
        assert (missing["status"], missing["reason"]) == ("rejected", "missing_variable")
        assert (syntax["status"], syntax["reason"]) == ("rejected", "template_syntax")
        assert ok["status"] == "queued"
        rec = env.store.get_message(ok["id"])
        assert rec is not None and rec.text == "Hi you"
        detail = (await env.call("GET", f"/v1/messages/{missing['id']}")).json()
        assert detail["status"] == "rejected" and "vars.first_name" in detail["history"][0][
            "detail"]
        # a single rejected message: 200, like every rule rejection
        one = await env.call("POST", "/v1/messages", json={
            "to": FR, "kind": "transactional", "text": "{{ x }}"})
        assert one.status == 200 and one.json()["results"][0]["reason"] == "missing_variable"


async def test_preview_shows_rendered_and_shortened(env_factory: Callable[..., Any]) -> None:
    with trio.fail_after(10):
        env: Env = await env_factory()
        reply = await env.call("POST", "/v1/messages/preview", json={
            "text": "Hi {{ n }}: https://shop.example/a-very-long-path/with/many/segments",
            "vars": {"n": "Bo"}})
        body = reply.json()
        assert reply.status == 200
        assert body["rendered_text"] == \
            "Hi Bo: https://shop.example/a-very-long-path/with/many/segments"
        assert body["text"].startswith(f"Hi Bo: https://{DOMAIN}/")
        assert body["characters"] == len(body["text"])
        [link] = body["links"]
        assert link["url"] == "https://shop.example/a-very-long-path/with/many/segments"
        assert body["text"].endswith(link["short_url"])
        assert env.backend.marketing_store.get_link(link["short_url"][-8:]) is None
        bad = await env.call("POST", "/v1/messages/preview", json={"text": "Hi {{ n }}"})
        assert bad.status == 400
        assert bad.json()["error"]["code"] == "missing_variable"
        assert bad.json()["error"]["field"] == "vars.n"


# --- opt-in codes ---------------------------------------------------------------------


async def _start(env: Env, phone: str = FR, **kw: Any) -> Reply:
    return await env.call("POST", "/v1/optin/start",
                          json={"phone": phone, "source": "checkout", **kw})


async def _verify(env: Env, challenge: str, code: str) -> Reply:
    return await env.call("POST", "/v1/optin/verify",
                          json={"challenge_id": challenge, "code": code})


async def test_optin_start_sends_the_code_and_verify_subscribes(
        env_factory: Callable[..., Any]) -> None:
    with trio.fail_after(10):
        env: Env = await env_factory()
        reply = await _start(env, language="fr", brand="Shop")
        assert reply.status == 202
        body = reply.json()
        challenge = body["challenge_id"]
        assert body["expires_at"] == "2026-05-28T20:36:40Z"  # T0 + 10 min
        # the code went out as a transactional message (queued in the outbox)
        [sent] = [env.store.get_message(e.message_id) for e in env.store.due_outbox(1e12, 10)]
        assert sent is not None and sent.kind == "transactional" and sent.to == FR
        assert sent.text == f"Shop : votre code est {CODE}. Il expire dans 10 min."
        stored = env.backend.marketing_store.get_challenge(challenge)
        assert stored is not None and CODE.encode() not in stored.code_hash  # hashed

        wrong = await _verify(env, challenge, "000000")
        assert wrong.status == 422
        assert wrong.json() == {"error": {"code": "wrong_code", "message": "the code is wrong",
                                          "field": None}, "attempts_left": 4}
        ok = await _verify(env, challenge, CODE[:3] + " " + CODE[3:])
        assert ok.status == 200 and ok.json() == {"status": "ok", "attempts_left": 4}
        again = await _verify(env, challenge, CODE)  # a client retry: still ok, no change
        assert again.status == 200

        recipient = (await env.call("GET", f"/v1/recipients/%2B{FR[1:]}")).json()
        assert recipient["consent"]["state"] == "subscribed"
        assert recipient["consent"]["source"] == "checkout"
        assert recipient["consent"]["double_opt_in"] is True
        rec = env.store.get_recipient(FR)
        assert rec is not None and rec.double_opt_in == "confirmed" and rec.language == "fr"
        consent = await env.events("consent")
        assert len(consent) == 1 and consent[0]["status"] == "subscribed"


async def test_optin_expiry_with_injected_clock(env_factory: Callable[..., Any]) -> None:
    with trio.fail_after(10):
        env: Env = await env_factory()
        challenge = (await _start(env)).json()["challenge_id"]
        env.clock.now += 601
        expired = await _verify(env, challenge, CODE)
        assert expired.status == 410
        assert expired.json()["error"]["code"] == "expired"
        assert expired.json()["attempts_left"] == 5
        rec = env.store.get_recipient(FR)
        assert rec is None or rec.consent != "subscribed"


async def test_optin_attempt_limit(env_factory: Callable[..., Any]) -> None:
    with trio.fail_after(10):
        env: Env = await env_factory()
        challenge = (await _start(env)).json()["challenge_id"]
        lefts = []
        for _ in range(5):
            r = await _verify(env, challenge, "111111")
            assert r.status == 422
            lefts.append(r.json()["attempts_left"])
        assert lefts == [4, 3, 2, 1, 0]
        locked = await _verify(env, challenge, CODE)  # even the right code, now
        assert locked.status == 429
        assert locked.json()["error"]["code"] == "too_many_attempts"
        assert locked.json()["attempts_left"] == 0


async def test_optin_concurrent_wrong_guesses_each_cost_an_attempt(
        env_factory: Callable[..., Any]) -> None:
    with trio.fail_after(10):
        env: Env = await env_factory()
        challenge = (await _start(env)).json()["challenge_id"]
        async with trio.open_nursery() as n:
            for _ in range(4):
                n.start_soon(_verify, env, challenge, "222222")
        stored = env.backend.marketing_store.get_challenge(challenge)
        assert stored is not None and stored.attempts == 4


async def test_optin_failures_have_one_shape(env_factory: Callable[..., Any]) -> None:
    with trio.fail_after(10):
        env: Env = await env_factory()
        unknown = await _verify(env, "no-such-challenge", CODE)
        assert unknown.status == 404
        assert set(unknown.json()) == {"error", "attempts_left"}
        assert unknown.json()["error"]["code"] == "unknown_challenge"
        # start answers the same for a number the gateway knows (subscribed) and one it
        # has never seen
        batch = WriteBatch()
        batch.put_recipient(RecipientRecord(phone=FR2, consent="subscribed"))
        await env.store.commit(batch)
        a, b = (await _start(env, FR)).json(), (await _start(env, FR2)).json()
        assert set(a) == set(b) == {"challenge_id", "expires_at"}


async def test_optin_start_rate_limits(env_factory: Callable[..., Any]) -> None:
    with trio.fail_after(10):
        env: Env = await env_factory(per_number_per_hour=2, per_ip_per_hour=4)
        assert [(await _start(env, FR)).status for _ in range(3)] == [202, 202, 429]
        limited = await _start(env, FR)
        assert limited.json()["error"]["code"] == "rate_limited"
        assert int(limited.headers["retry-after"]) == 3600
        # the address limit: 2 more numbers from the same client address, then 429
        assert [(await _start(env, n)).status for n in (FR2, DE, "+33612345670")] == [
            202, 202, 429]
        env.clock.now += 3601
        assert (await _start(env, FR)).status == 202


async def test_optin_disabled(env_factory: Callable[..., Any]) -> None:
    with trio.fail_after(10):
        env: Env = await env_factory(optin=False)
        reply = await _start(env)
        assert reply.status == 404 and reply.json()["error"]["code"] == "not_enabled"


# --- segments -------------------------------------------------------------------------


def _ndjson(reply: Reply) -> list[dict[str, Any]]:
    assert reply.status == 200
    assert reply.headers["content-type"] == "application/x-ndjson"
    return [msgspec.json.decode(line) for line in reply.body.splitlines() if line]


async def test_keyword_segment(env_factory: Callable[..., Any]) -> None:
    with trio.fail_after(10):
        env: Env = await env_factory()
        day = 86400.0
        batch = WriteBatch()
        batch.put_recipient(RecipientRecord(phone=FR, consent="subscribed", keywords=(
            KeywordEntry(at=T0 - 40 * day, keyword="JOIN", kind="opt_in"),
            KeywordEntry(at=T0 - 2 * day, keyword="join", kind="opt_in"),
            KeywordEntry(at=T0 - day, keyword="Join!", kind="opt_in"))))
        batch.put_recipient(RecipientRecord(phone=FR2, keywords=(
            KeywordEntry(at=T0 - 50 * day, keyword="JOIN", kind="opt_in"),)))
        batch.put_recipient(RecipientRecord(phone=DE, keywords=(
            KeywordEntry(at=T0 - day, keyword="STOP", kind="opt_out"),)))
        await env.store.commit(batch)
        lines = _ndjson(await env.call("GET", "/v1/segments/keyword?word=JOIN&days=30"))
        assert lines == [{"phone": FR, "keyword": "join", "last_at": "2026-05-27T20:26:40Z",
                          "count": 2, "consent": "subscribed"}]
        assert [x["phone"] for x in _ndjson(await env.call(
            "GET", "/v1/segments/keyword?word=join&days=60"))] == [FR, FR2]
        assert _ndjson(await env.call("GET", "/v1/segments/keyword?word=nothing")) == []
        missing = await env.call("GET", "/v1/segments/keyword")
        assert missing.status == 400 and missing.json()["error"]["field"] == "word"


async def test_subscriber_segment(env_factory: Callable[..., Any]) -> None:
    with trio.fail_after(10):
        env: Env = await env_factory()
        batch = WriteBatch()
        batch.put_recipient(RecipientRecord(phone=FR, consent="subscribed", language="fr",
                                            consent_source="web", consent_at=T0))
        batch.put_recipient(RecipientRecord(phone=FR2, consent="subscribed", keywords=(
            KeywordEntry(at=T0, keyword="ARRET", kind="opt_out", language="fr"),
            KeywordEntry(at=T0, keyword="JOIN", kind="opt_in", language="en"))))
        batch.put_recipient(RecipientRecord(phone="+33612345670", consent="unsubscribed",
                                            language="fr"))
        batch.put_recipient(RecipientRecord(phone=DE, consent="subscribed", language="de"))
        await env.store.commit(batch)
        fr = _ndjson(await env.call("GET", "/v1/segments/subscribers?country=FR"))
        assert [(x["phone"], x["country"], x["language"]) for x in fr] == [
            (FR, "FR", "fr"), (FR2, "FR", "en")]
        assert fr[0]["source"] == "web"
        fr_fr = _ndjson(await env.call("GET", "/v1/segments/subscribers?country=FR&language=fr"))
        assert [x["phone"] for x in fr_fr] == [FR]
        everyone = _ndjson(await env.call("GET", "/v1/segments/subscribers"))
        assert [x["phone"] for x in everyone] == [FR, FR2, DE]
        bad = await env.call("GET", "/v1/segments/subscribers?country=fr")
        assert bad.status == 400 and bad.json()["error"]["field"] == "country"
        # the consent API records a language too
        await env.call("POST", "/v1/consent", json={"phone": DE, "action": "subscribe",
                                                    "language": "en"})
        en = _ndjson(await env.call("GET", "/v1/segments/subscribers?language=en"))
        assert [x["phone"] for x in en] == [FR2, DE]
