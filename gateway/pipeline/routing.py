"""Routing: which carrier a number goes to (pure; no trio, no clock).

``[[routes]]`` map E.164 prefixes to ordered carrier lists (DESIGN.md "Config"): the
longest matching prefix wins, and its carriers are tried in order, so the second one is
the failover of the first. Whether a carrier can take work right now (a live bind) is
the caller's knowledge, passed in as a predicate: the router itself holds no state.

A number that matches no prefix has no route (reason code ``no_route``); a route whose
carriers are all down is *not* ``no_route``: the message waits in the outbox.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Final, Protocol

__all__ = ["NO_ROUTE", "RouteLike", "Router"]

#: The stable reason code (rules.model.Reason spelling) for a number no route matches.
NO_ROUTE: Final = "no_route"


class RouteLike(Protocol):
    """What the router needs of a route (``gateway.config.RouteConfig`` fits)."""

    @property
    def prefix(self) -> str: ...

    @property
    def carriers(self) -> tuple[str, ...]: ...


class Router:
    """Longest-prefix routing table built once from the configured routes.

    ``prefix`` is ``"+"`` followed by digits; ``"+"`` alone matches every number.
    Lookups cost one dict probe per distinct prefix length (at most 16).
    """

    __slots__ = ("_by_prefix", "_lengths")

    def __init__(self, routes: Iterable[RouteLike]) -> None:
        table: dict[str, tuple[str, ...]] = {}
        for r in routes:
            if r.prefix in table:
                raise ValueError(f"duplicate route prefix {r.prefix!r}")
            table[r.prefix] = tuple(r.carriers)
        self._by_prefix = table
        # Longest first: the first hit is the longest match.
        self._lengths = tuple(sorted({len(p) for p in table}, reverse=True))

    def route(self, e164: str) -> tuple[str, ...]:
        """The ordered carriers for ``e164`` (empty: no route)."""
        hit = self.lookup(e164)
        return () if hit is None else hit[1]

    def lookup(self, e164: str) -> tuple[str, tuple[str, ...]] | None:
        """``(matched prefix, ordered carriers)`` for ``e164`` in one probe, or None when
        no prefix matches (:meth:`route` and :meth:`matched_prefix` read it; the dispatcher
        and the accepter need both)."""
        table = self._by_prefix
        n = len(e164)
        for length in self._lengths:
            if length <= n:
                prefix = e164[:length]
                hit = table.get(prefix)
                if hit is not None:
                    return prefix, hit
        return None

    def matched_prefix(self, e164: str) -> str | None:
        """The prefix that routes ``e164`` (for records and logs), or None."""
        hit = self.lookup(e164)
        return None if hit is None else hit[0]

    def has_route(self, e164: str) -> bool:
        """True when some prefix matches ``e164``."""
        return bool(self.route(e164))

    def pick(self, e164: str, live: Callable[[str], bool]) -> str | None:
        """The first carrier of ``e164``'s route with ``live(carrier)`` true.

        None when no carrier of the route is live *or* when there is no route; tell the
        two apart with :meth:`has_route` (the first waits, the second is ``no_route``).
        """
        for name in self.route(e164):
            if live(name):
                return name
        return None

    @property
    def carriers(self) -> frozenset[str]:
        """Every carrier named by some route."""
        return frozenset(c for cs in self._by_prefix.values() for c in cs)
