"""Start the short-link listener in the gateway's nursery (``[links] listen``) and export
its statistics to the metrics collector (docs/marketing.md "The listener")."""

from __future__ import annotations

import functools
from typing import Any

import trio

from gateway.marketing.config import LinksConfig
from gateway.marketing.redirect import LinkServer, serve_links
from gateway.store.marketing import StoreMarketing

__all__ = ["read_links", "start_links"]


def read_links(f: Any, server: Any) -> None:
    """Metrics reader (``GatewayCollector.register(..., reader=)``) of a ``LinkServer``."""
    h = server.handler.statistics()
    s = server.sink.statistics()
    f.counter("smsgw_link_redirects", "Short-link redirects (GET).").add_metric(
        [], float(h.redirects))
    f.counter("smsgw_link_head_redirects", "Short-link HEAD answers (no click).").add_metric(
        [], float(h.head_redirects))
    clicks = f.counter("smsgw_link_clicks", "Clicks by result (recorded once per token and "
                       "bucket; dedup = same bucket again).", ["result"])
    clicks.add_metric(["recorded"], float(h.clicks))
    clicks.add_metric(["dedup"], float(h.clicks_deduplicated))
    f.counter("smsgw_link_not_found", "Unknown or malformed short-link tokens.").add_metric(
        [], float(h.not_found + h.malformed))
    f.counter("smsgw_link_rate_limited",
              "Requests refused (429) after too many misses from an address.").add_metric(
        [], float(h.rate_limited))
    f.gauge("smsgw_link_click_sink_pending", "Clicks waiting for their commit.").add_metric(
        [], float(s.pending))
    f.counter("smsgw_link_click_sink_dropped",
              "Clicks dropped because the store fell too far behind.").add_metric(
        [], float(s.dropped))
    f.counter("smsgw_link_click_sink_flush_failures", "Click commits that failed (retried)."
              ).add_metric([], float(s.flush_failures))


async def start_links(nursery: trio.Nursery, store: Any, links: LinksConfig,
                      metrics: Any) -> LinkServer | None:
    """``serve_links`` on ``[links] listen`` (None when unset), registered for metrics."""
    address = links.address
    if address is None:
        return None
    host, port = address
    server: LinkServer = await nursery.start(functools.partial(
        serve_links, StoreMarketing(store), host=host, port=port,
        click_bucket_s=links.click_bucket_s, misses_per_minute=links.misses_per_minute))
    from gateway.metrics import _http_server_reader  # the HTTP server series, as for the API

    metrics.collector.register("links", lambda: server, reader=read_links)
    metrics.collector.register("links_server", server.server.statistics,
                               reader=_http_server_reader("links"))
    return server
