"""gateway.api over a real socket, against the FakeBackend."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
import trio
import trio.testing

from gateway.api import Api
from gateway.api_types import (
    Backpressure,
    ErrorSegmentLine,
    InvalidRequest,
    StoreFull,
    StoreUnavailable,
)
from gateway.http import Limits, Server
from tests.api.client import Reply, start_server
from tests.api.conftest import Net
from tests.api.fake import T0, FakeBackend, recipient

TO = "+14155550100"


@pytest.fixture
def backend() -> FakeBackend:
    return FakeBackend()


async def start(nursery: trio.Nursery, backend: FakeBackend, **api: Any) -> tuple[Server, Api]:
    app = Api(backend, **api)
    return await start_server(nursery, app, Limits(linger=0.2)), app


async def call(net: Net, server: Server, method: str, target: str, **kwargs: Any) -> Reply:
    client = await net.client(server.port)
    return await client.request(method, target, **kwargs)


def msg(text: str = "Hello", **fields: Any) -> dict[str, Any]:
    return {"to": TO, "text": text, **fields}


def error(reply: Reply) -> tuple[int, str, str | None]:
    body = reply.json()["error"]
    assert set(body) == {"code", "message", "field"}
    return reply.status, body["code"], body["field"]


# --- POST /v1/messages -------------------------------------------------------------------

async def test_single_message_is_accepted_with_202(
        net: Net, nursery: trio.Nursery, backend: FakeBackend) -> None:
    with trio.fail_after(5):
        server, _ = await start(nursery, backend)
        extra: dict[str, Any] = {
            "from": "Shop", "kind": "flow", "flow_type": "abandoned_cart",
            "trigger_at": "2026-01-01T11:00:00-05:00", "metadata": {"order": 7},
            "bypass": ["quiet_hours"], "idempotency_key": "k1"}
        reply = await call(net, server, "POST", "/v1/messages", json={**msg(), **extra})
        assert reply.status == 202
        assert reply.headers["content-type"] == "application/json"
        assert reply.json() == {"results": [{
            "id": "m1", "status": "queued", "reason": None, "defer_until": None,
            "segments": 1, "encoding": "gsm7"}]}
        [[sent]] = backend.batches
        assert (sent.from_, sent.kind, sent.flow_type, sent.metadata) == (
            "Shop", "flow", "abandoned_cart", {"order": 7})
        assert sent.trigger_at is not None and sent.trigger_at.utcoffset() is not None


async def test_batch_results_are_in_request_order(
        net: Net, nursery: trio.Nursery, backend: FakeBackend) -> None:
    with trio.fail_after(5):
        server, _ = await start(nursery, backend)
        texts = ["a", "REJECT b", "LATER c", "d", "REJECT e"]
        reply = await call(net, server, "POST", "/v1/messages",
                           json={"messages": [msg(t) for t in texts]})
        assert reply.status == 202
        results = reply.json()["results"]
        assert [r["status"] for r in results] == [
            "queued", "rejected", "scheduled", "queued", "rejected"]
        assert [r["id"] for r in results] == ["m1", "m2", "m3", "m4", "m5"]
        assert results[1]["reason"] == "opted_out"
        assert results[2]["defer_until"] == "2026-01-01T21:00:00Z"
        assert [m.text for m in backend.batches[0]] == texts


async def test_all_rejected_is_200(
        net: Net, nursery: trio.Nursery, backend: FakeBackend) -> None:
    with trio.fail_after(5):
        server, _ = await start(nursery, backend)
        reply = await call(net, server, "POST", "/v1/messages",
                           json={"messages": [msg("REJECT"), msg("REJECT too")]})
        assert reply.status == 200
        assert {r["status"] for r in reply.json()["results"]} == {"rejected"}


BAD_BODIES = [
    # (body, code, field)
    ({"messages": [msg(), msg(), msg(), {"to": "call me", "text": "x"}]},
     "invalid_field", "messages[3].to"),
    ({"messages": [msg(), msg(frm="x")]}, "unknown_field", "messages[1].frm"),
    (msg(colour="red"), "unknown_field", "colour"),
    ({"to": TO}, "missing_field", "text"),
    (msg(""), "invalid_field", "text"),
    (msg(kind="newsletter"), "invalid_field", "kind"),
    (msg(trigger_at="2026-01-01T11:00:00"), "invalid_field", "trigger_at"),
    (msg(trigger_at="yesterday"), "invalid_field", "trigger_at"),
    (msg(bypass=["consent"]), "invalid_field", "bypass[0]"),
    (msg(**{"from": "ThisSenderIsTooLong"}), "invalid_field", "from"),
    (msg(country="usa"), "invalid_field", "country"),
    ({"to": "(415) 555-0100", "text": "x"}, "missing_field", "country"),
    ({"messages": [msg(), {"to": "4155550100", "text": "x"}]},
     "missing_field", "messages[1].country"),
    ({"messages": []}, "invalid_field", "messages"),
    ([msg()], "invalid_field", None),
    (msg(smart_encoding="yes"), "invalid_field", "smart_encoding"),
]


@pytest.mark.parametrize(("body", "code", "field"), BAD_BODIES)
async def test_bad_message_is_400_with_field_path(
        net: Net, nursery: trio.Nursery, backend: FakeBackend,
        body: Any, code: str, field: str | None) -> None:
    with trio.fail_after(5):
        server, _ = await start(nursery, backend)
        reply = await call(net, server, "POST", "/v1/messages", json=body)
        assert error(reply) == (400, code, field)
        assert backend.batches == []


@pytest.mark.parametrize("raw", [b'{"to": "+14155550100", "text": ', b"\xff\xfe",
                                 b'{"to": "+14155550100", "text": "\xc3("}', b"",
                                 b'{"messages": [1}'])
async def test_invalid_json_or_utf8_is_400_invalid_json(
        net: Net, nursery: trio.Nursery, backend: FakeBackend, raw: bytes) -> None:
    with trio.fail_after(5):
        server, _ = await start(nursery, backend)
        reply = await call(net, server, "POST", "/v1/messages", body=raw,
                           headers=[("content-type", "application/json")])
        assert error(reply) == (400, "invalid_json", None)


async def test_configured_limits_text_and_batch(
        net: Net, nursery: trio.Nursery, backend: FakeBackend) -> None:
    with trio.fail_after(5):
        server, _ = await start(nursery, backend, max_text_chars=10, max_batch=2)
        reply = await call(net, server, "POST", "/v1/messages",
                           json={"messages": [msg("ok"), msg("x" * 11)]})
        assert error(reply) == (400, "invalid_field", "messages[1].text")
        reply = await call(net, server, "POST", "/v1/messages",
                           json={"messages": [msg(), msg(), msg()]})
        assert error(reply) == (400, "invalid_field", "messages")
        reply = await call(net, server, "POST", "/v1/messages/preview",
                           json={"text": "y" * 11})
        assert error(reply) == (400, "invalid_field", "text")


async def test_body_must_be_declared_json(
        net: Net, nursery: trio.Nursery, backend: FakeBackend) -> None:
    with trio.fail_after(5):
        server, _ = await start(nursery, backend)
        body = msgspec.json.encode(msg())
        reply = await call(net, server, "POST", "/v1/messages", body=body,
                           headers=[("content-type", "text/plain")])
        assert error(reply) == (415, "unsupported_media_type", None)
        reply = await call(net, server, "POST", "/v1/messages", body=body,
                           headers=[("content-type", "application/json; charset=utf-8")])
        assert reply.status == 202


async def test_body_over_limit_is_413(
        net: Net, nursery: trio.Nursery, backend: FakeBackend) -> None:
    with trio.fail_after(5):
        app = Api(backend)
        server = await start_server(nursery, app, Limits(max_body_bytes=1000, linger=0.2))
        reply = await call(net, server, "POST", "/v1/messages", json=msg("x" * 1000))
        assert error(reply) == (413, "body_too_large", None)


@pytest.mark.parametrize(("fault", "status", "code"), [
    (Backpressure(1.2), 429, "backpressure"),
    (StoreUnavailable("lmdb closed"), 503, "store_unavailable"),
    (StoreFull("map full"), 507, "store_full"),
    (InvalidRequest("not a valid US number", field="to"), 400, "invalid_field"),
    (RuntimeError("bug"), 500, "internal_error"),
])
async def test_backend_faults_map_to_status_codes(
        net: Net, nursery: trio.Nursery, backend: FakeBackend,
        fault: Exception, status: int, code: str) -> None:
    with trio.fail_after(5):
        server, _ = await start(nursery, backend)
        client = await net.client(server.port)
        backend.fail_with = fault
        reply = await client.request("POST", "/v1/messages", json=msg())
        assert error(reply)[:2] == (status, code)
        if status == 429:
            assert reply.headers["retry-after"] == "2"
        # the connection and the server carry on
        assert (await client.request("POST", "/v1/messages", json=msg())).status == 202


# --- other endpoints -------------------------------------------------------------------

async def test_get_message_and_404(
        net: Net, nursery: trio.Nursery, backend: FakeBackend) -> None:
    with trio.fail_after(5):
        server, _ = await start(nursery, backend)
        client = await net.client(server.port)
        await client.request("POST", "/v1/messages", json=msg(metadata={"a": 1}))
        reply = await client.request("GET", "/v1/messages/m1")
        assert reply.status == 200
        body = reply.json()
        assert (body["id"], body["status"], body["metadata"]) == ("m1", "queued", {"a": 1})
        assert body["parts"][0]["part"] == 1
        assert body["history"][0]["status"] == "queued"
        assert error(await client.request("GET", "/v1/messages/m9"))[:2] == (404, "not_found")


async def test_preview(net: Net, nursery: trio.Nursery, backend: FakeBackend) -> None:
    with trio.fail_after(5):
        server, _ = await start(nursery, backend)
        reply = await call(net, server, "POST", "/v1/messages/preview",
                           json={"text": "x" * 200, "smart_encoding": True})
        assert reply.json() == {"encoding": "gsm7", "segments": 2, "characters": 200,
                                "per_segment": 153, "replaced": [], "rendered_text": None,
                                "text": None, "links": []}


async def test_consent(net: Net, nursery: trio.Nursery, backend: FakeBackend) -> None:
    with trio.fail_after(5):
        server, _ = await start(nursery, backend)
        reply = await call(net, server, "POST", "/v1/consent", json={
            "phone": TO, "action": "subscribe", "source": "web_form", "double_opt_in": True,
            "at": "2026-01-01T12:00:00Z"})
        assert reply.status == 200
        assert (reply.json()["state"], reply.json()["changed"]) == ("pending", True)
        assert backend.consents[0].double_opt_in is True
        reply = await call(net, server, "POST", "/v1/consent",
                           json={"phone": TO, "action": "stop"})
        assert error(reply) == (400, "invalid_field", "action")


@pytest.mark.parametrize("target", ["/v1/recipients/+14155550100",
                                    "/v1/recipients/%2B14155550100"])
async def test_recipient_by_e164(net: Net, nursery: trio.Nursery, backend: FakeBackend,
                                 target: str) -> None:
    with trio.fail_after(5):
        server, _ = await start(nursery, backend)
        backend.recipients[TO] = recipient(TO)
        reply = await call(net, server, "GET", target)
        assert reply.status == 200
        assert reply.json()["zones"] == ["America/New_York"]
        assert reply.json()["delivery_errors"]["in_segment"] is False


async def test_recipient_404_and_bad_phone(
        net: Net, nursery: trio.Nursery, backend: FakeBackend) -> None:
    with trio.fail_after(5):
        server, _ = await start(nursery, backend)
        reply = await call(net, server, "GET", "/v1/recipients/+14155550199")
        assert error(reply)[:2] == (404, "not_found")
        reply = await call(net, server, "GET", "/v1/recipients/4155550100")
        assert error(reply) == (400, "invalid_field", "phone")


async def test_unknown_route_404_and_wrong_method_405(
        net: Net, nursery: trio.Nursery, backend: FakeBackend) -> None:
    with trio.fail_after(5):
        server, _ = await start(nursery, backend)
        assert error(await call(net, server, "GET", "/v2/messages"))[:2] == (404, "not_found")
        assert error(await call(net, server, "GET", "/v1/messages/"))[:2] == (404, "not_found")
        reply = await call(net, server, "GET", "/v1/messages")
        assert error(reply)[:2] == (405, "method_not_allowed")
        assert reply.headers["allow"] == "POST"
        reply = await call(net, server, "DELETE", "/v1/messages/m1")
        assert (reply.status, reply.headers["allow"]) == (405, "GET")


async def test_health_and_readiness(
        net: Net, nursery: trio.Nursery, backend: FakeBackend) -> None:
    with trio.fail_after(5):
        server, _ = await start(nursery, backend)
        client = await net.client(server.port)
        assert (await client.request("GET", "/healthz")).json() == {"status": "ok"}
        reply = await client.request("GET", "/readyz")
        assert (reply.status, reply.json()["ready"]) == (200, True)
        backend.readiness = (False, "no bind for carrier sandbox")
        reply = await client.request("GET", "/readyz")
        assert (reply.status, reply.json()) == (
            503, {"ready": False, "detail": "no bind for carrier sandbox"})
        backend.healthy = False
        reply = await client.request("GET", "/healthz")
        assert (reply.status, reply.json()) == (503, {"status": "unhealthy"})


# --- auth ------------------------------------------------------------------------------

async def test_bearer_auth_on_v1_only(
        net: Net, nursery: trio.Nursery, backend: FakeBackend) -> None:
    with trio.fail_after(5):
        server, _ = await start(nursery, backend, tokens=["s3cret", "other"])
        client = await net.client(server.port)
        reply = await client.request("POST", "/v1/messages", json=msg())
        assert error(reply)[:2] == (401, "unauthorized")
        assert reply.headers["www-authenticate"] == 'Bearer realm="smsgw"'
        reply = await client.request("POST", "/v1/messages", json=msg(), token="wrong")
        assert reply.status == 401
        assert 'error="invalid_token"' in reply.headers["www-authenticate"]
        reply = await client.request("GET", "/v1/nothing", token="wrong")
        assert reply.status == 401  # unknown routes do not leak past auth
        reply = await client.request("POST", "/v1/messages", json=msg(),
                                     headers=[("authorization", "Basic czNjcmV0")])
        assert reply.status == 401
        assert (await client.request("POST", "/v1/messages", json=msg(),
                                     token="s3cret")).status == 202
        assert (await client.request("GET", "/v1/messages/m1", token="other")).status == 200
        assert (await client.request("GET", "/healthz")).status == 200
        assert (await client.request("GET", "/readyz")).status == 200
        assert backend.batches and len(backend.batches) == 1


@pytest.mark.parametrize(("host", "status"), [
    ("127.0.0.1:8080", 200), ("localhost", 200), ("LOCALHOST:1", 200), ("[::1]:8080", 200),
    ("attacker.example", 403), ("attacker.example:8080", 403), ("127.0.0.1.nip.io", 403),
])
async def test_tokenless_api_answers_loopback_hosts_only(
        net: Net, nursery: trio.Nursery, backend: FakeBackend, host: str, status: int) -> None:
    # DNS rebinding: a page on attacker.example re-pointed at 127.0.0.1 sends its own Host.
    backend.recipients[TO] = recipient(TO)
    with trio.fail_after(5):
        server, _ = await start(nursery, backend)
        client = await net.client(server.port)
        reply = await client.request("GET", f"/v1/recipients/{TO}", headers=[("host", host)])
        assert reply.status == status
        if status == 403:
            assert error(reply)[:2] == (403, "host_not_allowed")
        assert (await client.request("GET", "/healthz", headers=[("host", host)])).status == 200


async def test_host_and_media_type_checks_hold_for_each_value_on_one_api(
        net: Net, nursery: trio.Nursery, backend: FakeBackend) -> None:
    # The API remembers its verdict per Host and per Content-Type value (up to 64 each):
    # on one Api, every value must still get its own answer, also past the 64th.
    backend.recipients[TO] = recipient(TO)
    body = msgspec.json.encode(msg())
    with trio.fail_after(20):
        server, _ = await start(nursery, backend)
        client = await net.client(server.port)
        hosts = [("localhost:1", 200), ("attacker.example", 403)] * 2
        hosts += [(f"h{i}.example", 403) for i in range(70)] + [("127.0.0.1:9", 200)]
        for host, status in hosts:
            reply = await client.request("GET", f"/v1/recipients/{TO}", headers=[("host", host)])
            assert reply.status == status, host
        types = [("application/json", 202), ("text/plain", 415)] * 2
        types += [(f"text/x{i}", 415) for i in range(70)] + [("application/ld+json", 202)]
        for media, status in types:
            reply = await client.request("POST", "/v1/messages", body=body,
                                         headers=[("content-type", media)])
            assert reply.status == status, media


async def test_with_tokens_any_host_is_fine(
        net: Net, nursery: trio.Nursery, backend: FakeBackend) -> None:
    backend.recipients[TO] = recipient(TO)
    with trio.fail_after(5):
        server, _ = await start(nursery, backend, tokens=["t"])
        reply = await call(net, server, "GET", f"/v1/recipients/{TO}", token="t",
                           headers=[("host", "gateway.internal:8080")])
        assert reply.status == 200


# --- NDJSON segment --------------------------------------------------------------------

def line(phone: str, errors: int = 2) -> ErrorSegmentLine:
    return ErrorSegmentLine(phone=phone, last_error_at=T0, error_class="unreachable",
                            errors=errors)


async def test_error_segment_streams_lines_as_produced(
        net: Net, nursery: trio.Nursery, backend: FakeBackend) -> None:
    send, receive = trio.open_memory_channel[ErrorSegmentLine](0)
    backend.segment = [line("+14155550100"), line("+14155550101")]
    backend.segment_feed = receive
    with trio.fail_after(5):
        server, _ = await start(nursery, backend)
        client = await net.client(server.port)
        await client.send_request("GET", "/v1/segments/sms-errors?days=30")
        status, headers = await client.read_head()
        assert (status, headers["content-type"]) == (200, "application/x-ndjson")
        first = await client.read_piece()
        assert first is not None
        assert msgspec.json.decode(first) == {
            "phone": "+14155550100", "last_error_at": "2026-01-01T12:00:00Z",
            "error_class": "unreachable", "errors": 2}
        assert (await client.read_piece() or b"").startswith(b'{"phone":"+14155550101"')
        # the producer has not finished: a line sent now arrives now
        await send.send(line("+14155550102", 5))
        assert b'"errors":5' in (await client.read_piece() or b"")
        await send.aclose()
        assert await client.read_piece() is None
        assert backend.segment_closed.is_set()


async def test_error_segment_client_leaving_closes_the_producer(
        net: Net, nursery: trio.Nursery, backend: FakeBackend) -> None:
    send, receive = trio.open_memory_channel[ErrorSegmentLine](100)
    backend.segment = [line("+14155550100")]
    backend.segment_feed = receive
    with trio.fail_after(5):
        server, _ = await start(nursery, backend)
        client = await net.client(server.port)
        await client.send_request("GET", "/v1/segments/sms-errors")
        await client.read_head()
        await client.read_piece()
        await client.aclose()
        # Writes to the closed connection fail (after a RST, at the latest the second
        # one); the server then closes the backend's iterator.
        for i in range(100):
            if backend.segment_closed.is_set():
                break
            send.send_nowait(line(f"+1415555{i:04d}"))
            await trio.testing.wait_all_tasks_blocked()
        await backend.segment_closed.wait()


async def test_error_segment_faults_before_first_line_are_status_codes(
        net: Net, nursery: trio.Nursery, backend: FakeBackend) -> None:
    with trio.fail_after(5):
        server, _ = await start(nursery, backend)
        backend.fail_with = StoreUnavailable("store closed")
        reply = await call(net, server, "GET", "/v1/segments/sms-errors")
        assert error(reply)[:2] == (503, "store_unavailable")
        reply = await call(net, server, "GET", "/v1/segments/sms-errors?days=0")
        assert error(reply) == (400, "invalid_field", "days")
        reply = await call(net, server, "GET", "/v1/segments/sms-errors?days=7")
        assert (reply.status, reply.body) == (200, b"")


# --- events long-poll ------------------------------------------------------------------

async def test_events_long_poll_returns_when_an_event_arrives(
        net: Net, nursery: trio.Nursery, backend: FakeBackend,
        autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(100):
        server, _ = await start(nursery, backend)
        backend.add_event("message.status", "m1")
        client = await net.client(server.port)
        reply = await client.request("GET", "/v1/events?limit=10")
        assert [e["id"] for e in reply.json()["events"]] == ["1"]
        assert reply.json()["next"] == "1"

        async def later() -> None:
            await trio.sleep(4)
            backend.add_event("mo")

        nursery.start_soon(later)
        start_time = trio.current_time()
        reply = await client.request("GET", "/v1/events?after=1&wait=20")
        assert 4 <= trio.current_time() - start_time < 5
        assert [(e["id"], e["type"]) for e in reply.json()["events"]] == [("2", "mo")]

        start_time = trio.current_time()
        reply = await client.request("GET", "/v1/events?after=2&wait=10")
        assert trio.current_time() - start_time == pytest.approx(10)
        assert reply.json() == {"events": [], "next": "2", "pruned": 0}


async def test_events_wait_is_capped_and_params_checked(
        net: Net, nursery: trio.Nursery, backend: FakeBackend,
        autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(100):
        server, _ = await start(nursery, backend, max_wait=3)
        client = await net.client(server.port)
        start_time = trio.current_time()
        reply = await client.request("GET", "/v1/events?wait=60")
        assert reply.status == 200
        assert trio.current_time() - start_time == pytest.approx(3)
        for query, field in [("limit=0", "limit"), ("limit=abc", "limit"),
                             ("wait=-1", "wait"), ("after=", "after")]:
            reply = await client.request("GET", f"/v1/events?{query}")
            assert error(reply) == (400, "invalid_field", field)


# --- statistics ------------------------------------------------------------------------

async def test_statistics_per_route(
        net: Net, nursery: trio.Nursery, backend: FakeBackend) -> None:
    with trio.fail_after(5):
        server, app = await start(nursery, backend)
        client = await net.client(server.port)
        await client.request("POST", "/v1/messages", json=msg())
        await client.request("POST", "/v1/messages", json={"to": TO})
        await client.request("GET", "/nowhere")
        stats = app.statistics()
        submit = stats["POST /v1/messages"]
        assert (submit.requests, submit.statuses) == (2, {202: 1, 400: 1})
        assert 0 < submit.seconds_max <= submit.seconds_total
        assert stats["unmatched"].statuses == {404: 1}
        assert stats["GET /healthz"].requests == 0


