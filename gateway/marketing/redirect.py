"""The short-link listener (``[links] listen``): ``GET /{token}`` -> 302 to the original URL.

Request path, in order of cost: method check, per-address miss limit, token shape (no
store lookup for ``/wp-login.php``), one sync store read (an LMDB read transaction is a
few microseconds), the cached ASCII ``Location``, and for GET an in-memory click record.
Nothing on the request path awaits the disk: clicks go to a `ClickSink` whose ``run``
task commits them in batches in the same nursery (bench/links.py measures the result).

Clicks:

- recorded once per (token, bucket) where ``bucket = int(now // click_bucket_s)``: a
  double tap, a browser retry or a reload within the bucket is one click. The in-memory
  de-duplication forgets after a restart; the store de-duplicates by the same key, so a
  restart or a re-committed batch never counts twice;
- only GET counts. HEAD gets the same answer without a click: link scanners use it;
- delivery to the store is at least once while the process runs (a failed commit is
  retried with backoff, the store ignores clicks it has); the few clicks buffered at a
  crash (one flush interval) are lost, a deliberate trade for a redirect that never waits
  on fsync. On a graceful stop the sink flushes what it holds;
- link previews (iMessage, WhatsApp) and mail/SMS security scanners fetch links too; their
  user agent is kept on the click so reports can filter them.

Unknown tokens: 404 with a small HTML page. Misses are counted per client address per
minute; past ``misses_per_minute`` the address gets 429 on *every* request until the
minute ends, so a valid token can't be told from an unknown one by a guesser (links.py
has the guessing math). Behind carrier-grade NAT many phones share an address, hence a
generous default. Put the listener behind a proxy only with care: then the client
address is the proxy's (trusted ``X-Forwarded-For`` is an integration item).
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Final

import msgspec
import trio

from gateway.http import Limits, Request, Response, Server, serve
from gateway.marketing.links import is_token, to_location
from gateway.marketing.store import Click, LinkStore, LinkTarget

__all__ = [
    "LINK_LIMITS",
    "ClickSink",
    "ClickSinkStats",
    "LinkServer",
    "RedirectHandler",
    "RedirectStats",
    "serve_links",
]

log = logging.getLogger("gateway.marketing.redirect")

#: The link listener faces the internet (phones), not upstream systems: small heads, no
#: bodies, short timeouts, many connections.
LINK_LIMITS: Final = Limits(max_header_bytes=8 * 1024, max_body_bytes=1024,
                            header_timeout=5.0, body_timeout=5.0, idle_timeout=15.0,
                            write_timeout=10.0, max_connections=4096, shutdown_grace=2.0)

_NO_STORE: Final = (b"cache-control", b"no-store")
_NO_REFERRER: Final = (b"referrer-policy", b"no-referrer")
_HTML: Final = (b"content-type", b"text/html; charset=utf-8")
_TEXT: Final = (b"content-type", b"text/plain; charset=utf-8")
_NOT_FOUND_BODY: Final = (
    b'<!doctype html><html lang="en"><meta charset="utf-8">'
    b'<meta name="viewport" content="width=device-width,initial-scale=1">'
    b"<title>Link not found</title><body style=\"font-family:sans-serif;margin:2em\">"
    b"<h1>Link not found</h1><p>This link is not valid or has expired.</p></body></html>\n")
_ROBOTS: Final = b"User-agent: *\nDisallow: /\n"
_MAX_UA: Final = 200
#: Bound of the per-address miss table; cleared when full (a flood of spoofed addresses
#: can't spoof TCP, so this is many real clients: forgetting them is the safe side).
_MAX_TRACKED: Final = 100_000


@functools.lru_cache(maxsize=65_536)
def _location(url: str) -> bytes | None:
    loc = to_location(url)
    return loc.encode("ascii") if loc is not None else None


def _not_found() -> Response:
    return Response(404, _NOT_FOUND_BODY, (_HTML, _NO_STORE))


def _text_error(status: int, code: str, message: str) -> Response:
    """Server-made errors (400, 408, 413, 431, 500) on the link listener: plain text, not
    the API's JSON (the client is a phone's browser)."""
    return Response(status, f"{message}\n".encode(), (_TEXT, _NO_STORE))


# --- clicks ---------------------------------------------------------------------------


class ClickSinkStats(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot of the sink (``statistics()``)."""

    pending: int
    committed: int
    recorded: int
    flushes: int
    flush_failures: int
    dropped: int


class ClickSink:
    """Buffers clicks in memory; ``run`` commits them in batches (at least once).

    ``add`` is synchronous and O(1): the redirect handler never awaits the store.
    """

    def __init__(
        self,
        commit: Callable[[Sequence[Click]], Awaitable[int]],
        *,
        interval: float = 0.05,
        max_batch: int = 2000,
        max_pending: int = 200_000,
        max_backoff: float = 5.0,
    ) -> None:
        self._commit = commit
        self._interval = interval
        self._max_batch = max_batch
        self._max_pending = max_pending
        self._max_backoff = max_backoff
        self._pending: list[Click] = []
        self._wakeup = trio.Event()
        self._committed = 0
        self._recorded = 0
        self._flushes = 0
        self._failures = 0
        self._dropped = 0

    def add(self, click: Click) -> bool:
        """Queue ``click``; False if it was dropped because the store is far behind."""
        if len(self._pending) >= self._max_pending:
            self._dropped += 1
            return False
        self._pending.append(click)
        self._wakeup.set()
        return True

    async def _flush_once(self) -> None:
        batch = self._pending[: self._max_batch]
        recorded = await self._commit(batch)
        # add() only appends, so the batch is still the front of the list
        del self._pending[: len(batch)]
        self._committed += len(batch)
        self._recorded += recorded
        self._flushes += 1

    async def flush(self) -> None:
        """Commit everything pending now (raises if the store does)."""
        while self._pending:
            await self._flush_once()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Commit batches until cancelled; on the way out, flush what is left (bounded)."""
        task_status.started()
        backoff = self._interval
        try:
            while True:
                if not self._pending:
                    self._wakeup = trio.Event()
                    await self._wakeup.wait()
                await trio.sleep(self._interval)  # let a batch gather
                try:
                    while self._pending:
                        await self._flush_once()
                    backoff = self._interval
                except Exception:
                    self._failures += 1
                    log.exception("click commit failed; retrying in %.2f s", backoff)
                    await trio.sleep(backoff)
                    backoff = min(backoff * 2, self._max_backoff)
        finally:
            if self._pending:
                with trio.CancelScope(shield=True), trio.move_on_after(2.0):
                    try:
                        await self.flush()
                    except Exception:
                        log.exception("final click flush failed; %d clicks lost",
                                      len(self._pending))

    def statistics(self) -> ClickSinkStats:
        """Counters for metrics."""
        return ClickSinkStats(pending=len(self._pending), committed=self._committed,
                              recorded=self._recorded, flushes=self._flushes,
                              flush_failures=self._failures, dropped=self._dropped)


# --- the handler ------------------------------------------------------------------------


class RedirectStats(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot of the redirect handler (``statistics()``)."""

    redirects: int
    head_redirects: int
    clicks: int
    clicks_deduplicated: int
    not_found: int
    malformed: int
    bad_target: int
    rate_limited: int
    method_not_allowed: int


class RedirectHandler:
    """The ``gateway.http`` handler of the link listener.

    ``clock`` gives wall-clock epoch seconds for click times and buckets (tests pass a
    function of ``trio.current_time()`` to drive it with ``autojump_clock``).
    """

    def __init__(
        self,
        store: LinkStore,
        sink: ClickSink,
        *,
        click_bucket_s: float = 60.0,
        misses_per_minute: int = 120,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._sink = sink
        self._bucket_s = click_bucket_s
        self._max_misses = misses_per_minute
        self._clock = clock
        #: token -> bucket of its last recorded click
        self._seen: dict[str, int] = {}
        self._seen_bucket = -1
        #: address -> (minute, misses)
        self._misses: dict[str, tuple[int, int]] = {}
        self.redirects = 0
        self.head_redirects = 0
        self.clicks = 0
        self.clicks_deduplicated = 0
        self.not_found = 0
        self.malformed = 0
        self.bad_target = 0
        self.rate_limited = 0
        self.method_not_allowed = 0

    def statistics(self) -> RedirectStats:
        """Counters for metrics."""
        return RedirectStats(
            redirects=self.redirects, head_redirects=self.head_redirects, clicks=self.clicks,
            clicks_deduplicated=self.clicks_deduplicated, not_found=self.not_found,
            malformed=self.malformed, bad_target=self.bad_target,
            rate_limited=self.rate_limited, method_not_allowed=self.method_not_allowed)

    def _miss(self, address: str, minute: int) -> None:
        window, count = self._misses.get(address, (minute, 0))
        if window != minute:
            count = 0
        if len(self._misses) >= _MAX_TRACKED and address not in self._misses:
            self._misses.clear()
        self._misses[address] = (minute, count + 1)

    def _limited(self, address: str, minute: int) -> bool:
        entry = self._misses.get(address)
        return entry is not None and entry[0] == minute and entry[1] >= self._max_misses

    def _record(self, request: Request, link: LinkTarget, now: float) -> None:
        token = link.token
        bucket = int(now // self._bucket_s)
        if bucket != self._seen_bucket:
            # a new bucket: forget tokens whose last click is in an older one
            self._seen_bucket = bucket
            self._seen = {t: b for t, b in self._seen.items() if b >= bucket}
        if self._seen.get(token) == bucket:
            self.clicks_deduplicated += 1
            return
        self._seen[token] = bucket
        ua = request.header(b"user-agent")
        self.clicks += 1
        self._sink.add(Click(
            token=token, bucket=bucket, at=now, message_id=link.message_id,
            phone=link.phone, url=link.url, campaign_id=link.campaign_id,
            flow_id=link.flow_id,
            user_agent=ua[:_MAX_UA].decode("latin-1") if ua else None))

    async def __call__(self, request: Request) -> Response:
        method = request.method
        if method not in ("GET", "HEAD"):
            self.method_not_allowed += 1
            return Response(405, b"", ((b"allow", b"GET, HEAD"), _NO_STORE))
        path = request.path
        if path == "/robots.txt":  # keep crawlers from "clicking" links they find
            return Response(200, _ROBOTS, (_TEXT,))
        now = self._clock()
        minute = int(now // 60)
        address = request.client[0] if request.client is not None else ""
        if self._misses and self._limited(address, minute):
            self.rate_limited += 1
            retry = max(1, math.ceil((minute + 1) * 60 - now))
            return Response(429, b"Too many requests\n",
                            (_TEXT, _NO_STORE, (b"retry-after", b"%d" % retry)))
        token = path[1:]
        if not is_token(token):
            self.malformed += 1
            if path != "/favicon.ico":
                self._miss(address, minute)
            return _not_found()
        link = self._store.get_link(token)
        if link is None:
            self.not_found += 1
            self._miss(address, minute)
            return _not_found()
        location = _location(link.url)
        if location is None:  # stored before validation existed, or a bad import
            self.bad_target += 1
            return _not_found()
        if method == "GET":
            self.redirects += 1
            self._record(request, link, now)
        else:
            self.head_redirects += 1
        return Response(302, b"", ((b"location", location), _NO_STORE, _NO_REFERRER))


# --- the listener -----------------------------------------------------------------------


class LinkServer:
    """What ``serve_links`` hands to ``task_status.started``: the HTTP server, the
    handler and the sink, for ports, shutdown and statistics."""

    def __init__(self, server: Server, handler: RedirectHandler, sink: ClickSink) -> None:
        self.server = server
        self.handler = handler
        self.sink = sink

    @property
    def port(self) -> int:
        """The bound port (after ``listen`` with port 0)."""
        return self.server.port


async def serve_links(
    store: LinkStore,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    limits: Limits = LINK_LIMITS,
    click_bucket_s: float = 60.0,
    misses_per_minute: int = 120,
    flush_interval: float = 0.05,
    clock: Callable[[], float] = time.time,
    task_status: trio.TaskStatus[LinkServer] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the link listener and its click sink in one nursery until cancelled.

    Use as ``links = await nursery.start(functools.partial(serve_links, store, port=...))``.
    """
    sink = ClickSink(store.commit_clicks, interval=flush_interval)
    handler = RedirectHandler(store, sink, click_bucket_s=click_bucket_s,
                              misses_per_minute=misses_per_minute, clock=clock)
    async with trio.open_nursery() as nursery:
        await nursery.start(sink.run)
        server: Server = await nursery.start(functools.partial(
            serve, handler, host=host, port=port, limits=limits,
            error_response=_text_error))
        task_status.started(LinkServer(server, handler, sink))
