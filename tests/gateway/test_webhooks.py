"""gateway.webhooks: signed batches from the event feed, in order, at least once.

The receiver is the project's own HTTP server on 127.0.0.1:0 and checks every signature;
the store is the memory fake (no threads), so ``autojump_clock`` makes backoff and
timeouts instant. The app-level tests (LMDB, the whole gateway) are in
tests/app/test_webhooks_app.py.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import msgspec
import pytest
import trio

from gateway.config import ConfigError, Secret, WebhookConfig, load_config_bytes
from gateway.http import HttpClient, HttpTimeout, Limits, Request, Response, serve
from gateway.store import Event, MemoryStore, WriteBatch
from gateway.store.cursors import get_cursor, list_cursors, set_cursor
from gateway.webhooks import (
    DEAD_LETTER,
    SIGNATURE_HEADER,
    WebhookSender,
    sign,
    verify_signature,
)

SECRET = "s3cret-s3cret-s3cret"
Script = Callable[[Request, int], Any]


class Receiver:
    """Answers ``script(request, n)`` (a status, or a coroutine result); records batches."""

    def __init__(self, script: Script | None = None) -> None:
        self.script = script
        self.calls = 0
        self.batches: list[list[dict[str, Any]]] = []
        self.deliveries: list[str] = []
        self.bad_signatures = 0
        self.got = trio.Event()

    async def __call__(self, request: Request) -> Response:
        self.calls += 1
        n = self.calls
        if not verify_signature(SECRET.encode(), request.header(SIGNATURE_HEADER.lower().encode()),
                                request.body, now=time.time()):
            self.bad_signatures += 1
            return Response(401, b"bad signature")
        status = 200
        if self.script is not None:
            got = self.script(request, n)
            if hasattr(got, "__await__"):
                got = await got
            status = int(got)
        if 200 <= status < 300:
            self.batches.append(json.loads(request.body))
            self.deliveries.append((request.header(b"x-smsgw-delivery") or b"").decode())
            self.got.set()
            self.got = trio.Event()
        return Response(status, b"" if status < 300 else b"nope")

    @property
    def ids(self) -> list[int]:
        return [int(e["id"]) for b in self.batches for e in b]


@asynccontextmanager
async def receiving(receiver: Receiver) -> AsyncIterator[int]:
    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve, receiver)
        yield server.port
        nursery.cancel_scope.cancel()


def hook(port: int, **kw: Any) -> WebhookConfig:
    base: dict[str, Any] = {"name": "crm", "url": f"http://127.0.0.1:{port}/hook",
                            "secret": Secret(SECRET), "backoff_min_s": 1.0,
                            "backoff_max_s": 30.0, "timeout_s": 5.0, "start_from": "beginning"}
    base.update(kw)
    return WebhookConfig(**base)


async def add_events(store: MemoryStore, n: int, type_: str = "message.status",
                     at: float | None = None) -> None:
    batch = WriteBatch()
    for i in range(n):
        batch.append_event(Event(0, at if at is not None else time.time(), type_, f"m{i}",
                                 "+14155550100", "queued", b'{"kind":"campaign"}'))
    await store.commit(batch)


async def wait_for(check: Callable[[], bool]) -> None:
    while not check():  # noqa: ASYNC110 - polls state of other tasks (autojump clock: free)
        await trio.sleep(0.01)


# ---------------------------------------------------------------------------- signatures

def test_sign_and_verify() -> None:
    body = b'[{"id":"1"}]'
    header = sign(b"k" * 20, body, 1_700_000_000)
    assert header.startswith("t=1700000000,v1=")
    assert verify_signature(b"k" * 20, header, body, now=1_700_000_100)
    assert verify_signature(b"k" * 20, header.encode(), body, now=1_700_000_000 - 299)


@pytest.mark.parametrize("mutate", [
    lambda h, b: (h, b + b" "),                       # body changed
    lambda h, b: (h.replace("t=1700000000", "t=1700000001"), b),  # timestamp changed
    lambda h, b: (h[:-1] + ("0" if h[-1] != "0" else "1"), b),   # mac changed
    lambda h, b: ("v1=" + h.partition("v1=")[2], b),  # no timestamp
    lambda h, b: (h.partition(",")[0], b),           # no mac
    lambda h, b: (None, b),
])
def test_verify_refuses_tampering(mutate: Callable[[str, bytes], tuple[Any, bytes]]) -> None:
    body = b'[{"id":"1"}]'
    header, body2 = mutate(sign(b"k" * 20, body, 1_700_000_000), body)
    assert not verify_signature(b"k" * 20, header, body2, now=1_700_000_000)


def test_verify_replay_window_and_rotation() -> None:
    body = b"[]"
    header = sign(b"new-secret-new-secret", body, 1000)
    assert not verify_signature(b"new-secret-new-secret", header, body, now=1000 + 301)
    assert verify_signature(b"new-secret-new-secret", header, body, now=1000 + 600,
                            tolerance_s=600)
    assert not verify_signature(b"other-secret-other", header, body, now=1000)
    old = sign(b"old-secret-old-secret", body, 1000).partition(",")[2]
    assert verify_signature(b"new-secret-new-secret", f"{header},{old}", body, now=1000)


# -------------------------------------------------------------------------------- config

def _cfg(extra: str, env: dict[str, str] | None = None) -> Any:
    return load_config_bytes("[[webhooks]]\nname = \"crm\"\n" + extra,
                             env={"WH": SECRET} if env is None else env)


def test_config_resolves_secret_from_env_and_file(tmp_path: Any) -> None:
    c = _cfg('url = "https://hooks.example.com/x"\nsecret_env = "WH"\nevents = ["message."]')
    h = c.webhooks[0]
    assert h.secret is not None and h.secret.reveal() == SECRET
    assert SECRET not in repr(h)
    (tmp_path / "wh.secret").write_text(SECRET + "\n")
    c = load_config_bytes('[[webhooks]]\nname = "a"\nurl = "http://127.0.0.1:1/"\n'
                          'secret_file = "wh.secret"\n', env={}, base_dir=tmp_path)
    assert c.webhooks[0].secret == Secret(SECRET)


@pytest.mark.parametrize(("extra", "env", "path"), [
    ('url = "https://x.example/h"', None, "webhooks[0].secret_env"),
    ('url = "https://x.example/h"\nsecret_env = "NOPE"', None, "webhooks[0].secret_env"),
    ('url = "https://x.example/h"\nsecret_env = "WH"', {"WH": "short"},
     "webhooks[0].secret_env"),
    ('url = "https://x.example/h"\nsecret = "inline-secret-inline"', None,
     "webhooks[0].secret"),
    ('url = "ftp://x.example/h"\nsecret_env = "WH"', None, "webhooks[0].url"),
    ('url = "http://hooks.example.com/h"\nsecret_env = "WH"', None, "webhooks[0].url"),
    ('url = "https://x.example/h"\nsecret_env = "WH"\nbackoff_min_s = 9.0\n'
     'backoff_max_s = 1.0', None, "webhooks[0].backoff_min_s"),
    ('url = "https://x.example/h"\nsecret_env = "WH"\nbatch_max = 0', None,
     "webhooks[0].batch_max"),
    ('url = "https://x.example/h"\nsecret_env = "WH"\ncolour = 1', None,
     "webhooks[0].colour"),
])
def test_config_errors_name_the_field(extra: str, env: dict[str, str] | None,
                                      path: str) -> None:
    with pytest.raises(ConfigError) as info:
        _cfg(extra, env)
    assert info.value.path == path


def test_config_plain_http_beyond_loopback_needs_opt_in_and_disabled_needs_no_secret(
) -> None:
    c = _cfg('url = "http://hooks.internal/h"\nsecret_env = "WH"\nallow_plain_http = true')
    assert c.webhooks[0].allow_plain_http
    c = _cfg('url = "https://x.example/h"\nsecret_env = "UNSET"\nenabled = false')
    assert c.webhooks[0].secret is None
    with pytest.raises(ConfigError, match="duplicate"):
        load_config_bytes('[[webhooks]]\nname = "a"\nurl = "http://127.0.0.1:1/"\n'
                          'secret_env = "WH"\n[[webhooks]]\nname = "a"\n'
                          'url = "http://127.0.0.1:2/"\nsecret_env = "WH"\n',
                          env={"WH": SECRET})


# --------------------------------------------------------------------------- the cursors

async def test_cursor_moves_forward_only_and_records_events() -> None:
    store = MemoryStore()
    assert get_cursor(store, "a") is None
    b = WriteBatch()
    set_cursor(b, "a", 5)
    await store.commit(b)
    b = WriteBatch()
    set_cursor(b, "a", 3, [Event(0, 1.0, "x", None, None, None, b"")])
    result = await store.commit(b)
    assert get_cursor(store, "a") == 5
    assert result.event_seqs == (1,)
    assert list_cursors(store) == {"a": 5}
    with pytest.raises(ValueError):
        set_cursor(WriteBatch(), "a", -1)


# ---------------------------------------------------------------------------- the client

async def test_client_keeps_the_connection_alive_and_times_out(
        autojump_clock: trio.testing.MockClock) -> None:
    slow = trio.Event()

    async def handler(request: Request) -> Response:
        if request.body == b"slow":
            await slow.wait()
        return Response(200, b"ok " + request.body)

    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve, handler)
        async with HttpClient(f"http://127.0.0.1:{server.port}/p?q=1", timeout=2.0) as client:
            for i in range(3):
                r = await client.post(str(i).encode())
                assert (r.status, r.body) == (200, f"ok {i}".encode())
            assert client.connections_opened == 1
            with pytest.raises(HttpTimeout):
                await client.post(b"slow")
            r = await client.post(b"after")
            assert r.status == 200
            assert client.connections_opened == 2
        nursery.cancel_scope.cancel()


async def test_client_reconnects_when_the_server_closed_an_idle_connection(
        autojump_clock: trio.testing.MockClock) -> None:
    async def handler(request: Request) -> Response:
        return Response(204)

    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            lambda task_status: serve(handler, limits=Limits(idle_timeout=1.0),
                                      task_status=task_status))
        async with HttpClient(f"http://127.0.0.1:{server.port}/", timeout=5.0) as client:
            assert (await client.post(b"a")).status == 204
            await trio.sleep(5)  # the server closes the idle connection
            assert (await client.post(b"b")).status == 204
            assert client.connections_opened == 2
        nursery.cancel_scope.cancel()


# ---------------------------------------------------------------------------- the sender

async def test_events_delivered_in_order_in_batches_signed(
        autojump_clock: trio.testing.MockClock) -> None:
    store = MemoryStore()
    await add_events(store, 25)
    rx = Receiver()
    async with receiving(rx) as port, trio.open_nursery() as nursery:
        sender = await nursery.start(WebhookSender(hook(port, batch_max=10), store).run)
        with trio.fail_after(30):
            await wait_for(lambda: len(rx.ids) == 25)
            await add_events(store, 3)
            await wait_for(lambda: len(rx.ids) == 28)
        assert rx.ids == list(range(1, 29))
        assert [len(b) for b in rx.batches[:3]] == [10, 10, 5]
        assert rx.deliveries[:3] == ["1-10", "11-20", "21-25"]
        first = rx.batches[0][0]
        assert first["type"] == "message.status" and first["message_id"] == "m0"
        assert first["data"] == {"kind": "campaign"}  # the GET /v1/events shape
        assert rx.bad_signatures == 0
        await wait_for(lambda: sender.statistics().lag_events == 0)
        st = sender.statistics()
        assert (st.delivered_events, st.cursor, st.head, st.lag_seconds) == (28, 28, 28, 0.0)
        assert get_cursor(store, "webhook:crm") == 28
        nursery.cancel_scope.cancel()


async def test_filter_by_type_prefix(autojump_clock: trio.testing.MockClock) -> None:
    store = MemoryStore()
    await add_events(store, 2, "message.status")
    await add_events(store, 2, "mo")
    await add_events(store, 2, "consent")
    rx = Receiver()
    async with receiving(rx) as port, trio.open_nursery() as nursery:
        sender = await nursery.start(
            WebhookSender(hook(port, events=("mo", "consent")), store).run)
        with trio.fail_after(30):
            await wait_for(lambda: len(rx.ids) == 4)
            await wait_for(lambda: sender.statistics().cursor == 6)
        assert rx.ids == [3, 4, 5, 6]
        nursery.cancel_scope.cancel()


async def test_outage_503_then_recovery_loses_nothing(
        autojump_clock: trio.testing.MockClock) -> None:
    store = MemoryStore()
    await add_events(store, 5)
    down_until = trio.current_time() + 60.0
    rx = Receiver(lambda req, n: 503 if trio.current_time() < down_until else 200)
    async with receiving(rx) as port, trio.open_nursery() as nursery:
        sender = await nursery.start(WebhookSender(hook(port, batch_max=2), store).run)
        await trio.sleep(30)
        await add_events(store, 3)  # more events during the outage
        st = sender.statistics()
        assert st.delivered_events == 0 and st.failures["http_5xx"] >= 3
        assert st.lag_events == 8 and st.lag_seconds > 0 and st.state == "backoff"
        assert get_cursor(store, "webhook:crm") == 0
        with trio.fail_after(120):
            await wait_for(lambda: len(rx.ids) == 8)
        assert rx.ids == list(range(1, 9))
        # backoff is capped: the first success comes at most backoff_max_s after the end
        assert trio.current_time() < down_until + 31
        nursery.cancel_scope.cancel()


async def test_timeouts_and_connection_errors_are_retried(
        autojump_clock: trio.testing.MockClock) -> None:
    store = MemoryStore()
    await add_events(store, 1)

    async def script(req: Request, n: int) -> int:
        if n == 1:
            await trio.sleep(100)  # longer than timeout_s
        return 200

    rx = Receiver(script)
    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve, rx)
        port = server.port
        sender = await nursery.start(WebhookSender(hook(port, timeout_s=2.0), store).run)
        with trio.fail_after(60):
            await wait_for(lambda: len(rx.ids) == 1)
        assert sender.statistics().failures == {"timeout": 1}
        nursery.cancel_scope.cancel()

    # nobody listens on that port any more: connection refused, retried
    rx2 = Receiver()
    async with trio.open_nursery() as nursery:
        await add_events(store, 1)
        sender = await nursery.start(WebhookSender(hook(port), store).run)
        await trio.sleep(10)
        assert sender.statistics().failures.get("connect", 0) >= 2
        nursery.cancel_scope.cancel()
    assert rx2.calls == 0


async def test_restart_resumes_from_the_stored_cursor(
        autojump_clock: trio.testing.MockClock) -> None:
    store = MemoryStore()
    await add_events(store, 4)
    rx = Receiver()
    async with receiving(rx) as port:
        async with trio.open_nursery() as nursery:
            await nursery.start(WebhookSender(hook(port, batch_max=2), store).run)
            with trio.fail_after(30):
                await wait_for(lambda: len(rx.ids) == 4)
                await wait_for(lambda: get_cursor(store, "webhook:crm") == 4)
            nursery.cancel_scope.cancel()
        await add_events(store, 2)  # while the sender is down
        async with trio.open_nursery() as nursery:
            await nursery.start(WebhookSender(hook(port, batch_max=2), store).run)
            with trio.fail_after(30):
                await wait_for(lambda: len(rx.ids) == 6)
            nursery.cancel_scope.cancel()
    assert rx.ids == [1, 2, 3, 4, 5, 6]  # nothing twice, nothing lost


async def test_a_cursor_behind_an_emptied_feed_moves_on_instead_of_spinning(
        autojump_clock: trio.testing.MockClock) -> None:
    # Events 3..6 were pruned (retention, while this endpoint was out of the config) and
    # nothing newer exists: the feed is empty after the cursor, but the store's last
    # sequence number is past it, so waiting for events returns at once. The sender spun
    # on that without a checkpoint and froze the whole event loop.
    store = MemoryStore()
    await add_events(store, 6)
    prune = WriteBatch()
    set_cursor(prune, "webhook:crm", 2)
    prune.delete_events_through(6)
    await store.commit(prune)
    rx = Receiver()
    async with receiving(rx) as port, trio.open_nursery() as nursery:
        await nursery.start(WebhookSender(hook(port), store).run)
        with trio.fail_after(300):  # virtual seconds: real sockets under an autojump clock
            await wait_for(lambda: get_cursor(store, "webhook:crm") == 6)
            await add_events(store, 1)
            await wait_for(lambda: len(rx.ids) == 1)
        nursery.cancel_scope.cancel()
    assert rx.ids == [7]


async def test_stop_during_a_post_sends_that_batch_again(
        autojump_clock: trio.testing.MockClock) -> None:
    store = MemoryStore()
    await add_events(store, 2)
    hold = trio.Event()

    async def script(req: Request, n: int) -> int:
        if n == 1:
            await hold.wait()
        return 200

    rx = Receiver(script)
    async with receiving(rx) as port:
        async with trio.open_nursery() as nursery:
            await nursery.start(WebhookSender(hook(port), store).run)
            await wait_for(lambda: rx.calls == 1)
            nursery.cancel_scope.cancel()  # the app stops while the POST is in flight
        hold.set()
        await trio.sleep(1)
        async with trio.open_nursery() as nursery:
            await nursery.start(WebhookSender(hook(port), store).run)
            with trio.fail_after(30):
                await wait_for(lambda: len(rx.ids) >= 2 and get_cursor(store, "webhook:crm") == 2)
            nursery.cancel_scope.cancel()
    # at least once: the batch the receiver may have processed is delivered again
    assert rx.ids[-2:] == [1, 2]


async def test_new_endpoint_starts_at_the_end_by_default(
        autojump_clock: trio.testing.MockClock) -> None:
    store = MemoryStore()
    await add_events(store, 3)
    rx = Receiver()
    async with receiving(rx) as port, trio.open_nursery() as nursery:
        await nursery.start(WebhookSender(hook(port, start_from="end"), store).run)
        assert get_cursor(store, "webhook:crm") == 3
        await add_events(store, 1)
        with trio.fail_after(30):
            await wait_for(lambda: len(rx.ids) == 1)
        assert rx.ids == [4]
        nursery.cancel_scope.cancel()


async def test_refused_batches_wait_by_default(autojump_clock: trio.testing.MockClock) -> None:
    store = MemoryStore()
    await add_events(store, 2)
    rx = Receiver(lambda req, n: 400)
    async with receiving(rx) as port, trio.open_nursery() as nursery:
        sender = await nursery.start(WebhookSender(hook(port, backoff_max_s=5.0), store).run)
        await trio.sleep(600)
        st = sender.statistics()
        assert st.failures["http_4xx"] > 50 and st.cursor == 0 and st.dead_lettered_events == 0
        assert st.last_status == 400
        nursery.cancel_scope.cancel()


async def test_dead_letter_after_n_refusals(autojump_clock: trio.testing.MockClock) -> None:
    store = MemoryStore()
    await add_events(store, 3)
    rx = Receiver(lambda req, n: 422 if json.loads(req.body)[0]["id"] == "1" else 200)
    async with receiving(rx) as port, trio.open_nursery() as nursery:
        sender = await nursery.start(
            WebhookSender(hook(port, batch_max=1, dead_letter_after=3), store).run)
        with trio.fail_after(60):
            await wait_for(lambda: len(rx.ids) == 2)
            await wait_for(lambda: sender.statistics().cursor == 4)
        assert rx.ids == [2, 3]  # its own dead-letter event (4) is not sent to it
        st = sender.statistics()
        assert st.dead_lettered_events == 1 and st.failures == {"http_4xx": 2}
        dead = store.get_event(4)
        assert dead is not None and dead.type == DEAD_LETTER
        assert msgspec.json.decode(dead.data) == {
            "webhook": "crm", "first_id": "1", "last_id": "1", "events": 1,
            "http_status": 422, "attempts": 3}
        nursery.cancel_scope.cancel()


async def test_413_splits_the_batch(autojump_clock: trio.testing.MockClock) -> None:
    store = MemoryStore()
    await add_events(store, 8)
    rx = Receiver(lambda req, n: 413 if len(json.loads(req.body)) > 2 else 200)
    async with receiving(rx) as port, trio.open_nursery() as nursery:
        await nursery.start(WebhookSender(hook(port, batch_max=8), store).run)
        with trio.fail_after(30):
            await wait_for(lambda: len(rx.ids) == 8)
            await wait_for(lambda: get_cursor(store, "webhook:crm") == 8)
        assert rx.ids == list(range(1, 9))
        assert [len(b) for b in rx.batches] == [2, 2, 2, 2]
        nursery.cancel_scope.cancel()


async def test_slow_receiver_does_not_hold_up_writers(
        autojump_clock: trio.testing.MockClock) -> None:
    store = MemoryStore()
    never = trio.Event()

    async def script(req: Request, n: int) -> int:
        await never.wait()
        return 200

    rx = Receiver(script)
    async with receiving(rx) as port, trio.open_nursery() as nursery:
        sender = await nursery.start(WebhookSender(hook(port, timeout_s=1000.0), store).run)
        await add_events(store, 1)
        await wait_for(lambda: rx.calls == 1)
        t0 = trio.current_time()
        for _ in range(100):  # the pipeline keeps appending while the POST hangs
            await add_events(store, 10)
        assert trio.current_time() - t0 < 1.0
        assert store.last_event_seq() == 1001
        assert sender.statistics().lag_events == 1001
        nursery.cancel_scope.cancel()


async def test_cursor_commit_failure_is_counted_and_retried_later(
        autojump_clock: trio.testing.MockClock) -> None:
    from gateway.store import StoreUnavailableError

    store = MemoryStore()
    await add_events(store, 2)
    rx = Receiver()
    async with receiving(rx) as port, trio.open_nursery() as nursery:
        sender = await nursery.start(WebhookSender(hook(port, batch_max=1), store).run)
        store.fail_commits(StoreUnavailableError("disk gone"))
        with trio.fail_after(30):
            await wait_for(lambda: len(rx.ids) == 2)
        assert sender.statistics().cursor_commit_failures >= 1
        store.fail_commits(None)
        await add_events(store, 1)
        with trio.fail_after(30):
            await wait_for(lambda: get_cursor(store, "webhook:crm") == 3)
        nursery.cancel_scope.cancel()


@pytest.mark.slow
async def test_client_https_verifies_the_certificate(tmp_path: Any) -> None:
    import ssl

    from gateway.http import HttpConnectError
    from tests.gateway.test_bind import make_cert

    cert, key = make_cert(tmp_path, "hooks")
    other, _ = make_cert(tmp_path, "other")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    bodies: list[bytes] = []

    async def handle(stream: trio.SSLStream[trio.SocketStream]) -> None:
        data = b""
        try:
            while b"\r\n\r\n" not in data:
                data += await stream.receive_some(65536)
            head, _, body = data.partition(b"\r\n\r\n")
            length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length")))
            while len(body) < length:
                body += await stream.receive_some(65536)
            bodies.append(body)
            await stream.send_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            await stream.aclose()
        except trio.BrokenResourceError:
            pass  # the client refused our certificate

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            [listener] = await nursery.start(functools.partial(
                trio.serve_ssl_over_tcp, handle, 0, server_ctx, host="127.0.0.1"))
            port = listener.transport_listener.socket.getsockname()[1]
            async with HttpClient(f"https://127.0.0.1:{port}/h", ca_file=cert) as good:
                r = await good.post(b"[1]")
                assert (r.status, r.body) == (200, b"ok")
            async with HttpClient(f"https://127.0.0.1:{port}/h", ca_file=other) as bad:
                with pytest.raises(HttpConnectError, match="TLS"):
                    await bad.post(b"[2]")
            assert bodies == [b"[1]"]
            nursery.cancel_scope.cancel()
