"""Rule 7: message structure for marketing messages (domain.md §3.5, §3.3).

Checks (campaigns and flows):
- ``starts_with_link``: the text (after the brand prefix) must not start with a link;
- ``public_link_shortener``: no bit.ly-style public shorteners (AT&T and T-Mobile block
  them; use a branded domain);
- ``missing_brand_prefix``: a country's required brand prefix, when ``brand_prefix_mode``
  is ``reject`` (``prepend`` adds it instead);
- ``missing_opt_out``: no opt-out instruction, when ``opt_out_mode`` is ``reject``
  (``append`` adds the localized text instead; it counts in the segments).

``final_text`` builds the text the encoder receives; the engine puts it in the SEND.
Regexes are compiled once per ContentPolicy object.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import TYPE_CHECKING

from rules.model import Action, Decision, Message, Reason, RecipientFacts

if TYPE_CHECKING:
    from rules.policy import ContentPolicy, Policy

__all__ = ["brand_prefix_for", "check", "final_text", "has_opt_out", "starts_with_link"]

# A leading link: a scheme, "www.", or a bare domain with a path or a common TLD.
_LEADING_LINK = re.compile(
    r"(?:[a-z][a-z0-9+.-]*://|www\.|"
    r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9-]+)*\."
    r"(?:[a-z]{2,24}/|(?:com|net|org|io|co|shop|store|app|ly|gl|me|info|biz|us|uk|fr|de|es"
    r"|it|nl|eu|ca)(?![\w-])))",
    re.IGNORECASE,
)

_STARTS_LINK = Decision(action=Action.REJECT, reason=Reason.STARTS_WITH_LINK,
                        detail="marketing text starts with a link")
_SHORTENER = Decision(action=Action.REJECT, reason=Reason.PUBLIC_LINK_SHORTENER,
                      detail="public link shortener; use a branded domain")
_NO_OPT_OUT = Decision(action=Action.REJECT, reason=Reason.MISSING_OPT_OUT,
                       detail="marketing text without an opt-out instruction")
_NO_BRAND = Decision(action=Action.REJECT, reason=Reason.MISSING_BRAND_PREFIX,
                     detail="marketing text without the required brand prefix")


class _Compiled:
    """Per-ContentPolicy matchers. Substring prefilters (``in`` on the case-folded text)
    keep the common case (no shortener, marker present or absent) well under a microsecond;
    the regex only confirms word boundaries on a hit."""

    def __init__(self, cp: ContentPolicy) -> None:
        self.policy = cp  # keeps the object alive so its id is not reused
        # accented forms are listed in the policy (ARRET and ARRÊT): the text is only
        # case-folded here, not accent-folded, to keep this on the hot path cheap
        variants = {marker.casefold() for marker in cp.opt_out_markers}
        # prefilter: drop variants containing another one ("stop" covers "stopp")
        subs = [v for v in variants if not any(o != v and o in v for o in variants)]
        order = {m.casefold(): i for i, m in enumerate(cp.opt_out_markers)}
        self.marker_subs = tuple(sorted(subs, key=lambda v: (order.get(v, len(order)), v)))
        alternatives = "|".join(re.escape(v) for v in sorted(variants, key=len, reverse=True))
        self.markers = re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)")
        self.hosts = tuple(h.casefold() for h in cp.blocked_link_domains)
        self.shorteners: re.Pattern[str] | None = None
        if self.hosts:
            hosts = "|".join(re.escape(h) for h in self.hosts)
            # a host, not a path segment: at the start, after a space/bracket/quote or "://"
            self.shorteners = re.compile(
                rf"(?:^|(?<=[\s(\[<\"'])|(?<=://))(?:www\.)?(?:{hosts})(?![\w-])")
        self.memo: dict[str, tuple[bool, bool, bool]] = {}
        #: ``final_text`` per (text, region, language), memoised like ``analyze``.
        self.finals: dict[tuple[str, str, str | None], str] = {}

    def has_marker(self, folded: str) -> bool:
        for sub in self.marker_subs:
            if sub in folded:
                return self.markers.search(folded) is not None
        return False

    def has_shortener(self, folded: str) -> bool:
        if self.shorteners is None:
            return False
        for host in self.hosts:
            if host in folded:
                return self.shorteners.search(folded) is not None
        return False

    def analyze(self, text: str) -> tuple[bool, bool, bool]:
        """(starts with a link, has a public shortener, has an opt-out marker), memoised
        per text: a campaign sends one text to many recipients."""
        hit = self.memo.get(text)
        if hit is None:
            folded = text.casefold()
            hit = (starts_with_link(text), self.has_shortener(folded), self.has_marker(folded))
            if len(self.memo) >= 4096:
                self.memo.clear()
            self.memo[text] = hit
        return hit

    __slots__ = ("finals", "hosts", "marker_subs", "markers", "memo", "policy", "shorteners")


_CACHE: dict[int, _Compiled] = {}


def _compiled(cp: ContentPolicy) -> _Compiled:
    c = _CACHE.get(id(cp))
    if c is None or c.policy is not cp:
        if len(_CACHE) > 32:
            _CACHE.clear()
        c = _CACHE[id(cp)] = _Compiled(cp)
    return c


def brand_prefix_for(cp: ContentPolicy, region: str) -> str:
    """The required brand prefix for a region (``"*"`` = every region), or ``""``."""
    return cp.brand_prefix.get(region) or cp.brand_prefix.get("*", "")


def _has_prefix(text: str, prefix: str) -> bool:
    return text.lstrip().casefold().startswith(prefix.strip().casefold())


def starts_with_link(text: str) -> bool:
    """Whether the first non-blank token of ``text`` is a link."""
    return _LEADING_LINK.match(text.lstrip()) is not None


def has_opt_out(text: str, policy: Policy) -> bool:
    """Whether ``text`` carries an opt-out instruction (a marker word such as STOP)."""
    return _compiled(policy.content).has_marker(text.casefold())


def check(message: Message, facts: RecipientFacts, policy: Policy,
          now: datetime) -> Decision | None:
    """Reject marketing text with a structural problem."""
    cp = policy.content
    if not cp.enabled:
        return None
    text = message.text
    region = facts.number.region if facts.number is not None else ""
    prefix = brand_prefix_for(cp, region) if cp.brand_prefix else ""
    body = text
    if prefix:
        if _has_prefix(text, prefix):
            body = text.lstrip()[len(prefix.strip()):]
        elif cp.brand_prefix_mode == "reject":
            return _NO_BRAND
    comp = _compiled(cp)
    link, shortener, marker = comp.analyze(text)
    if body is not text:
        link = starts_with_link(body)
    if cp.reject_leading_link and link:
        return _STARTS_LINK
    if shortener:
        return _SHORTENER
    if cp.opt_out_mode == "reject" and not marker:
        return _NO_OPT_OUT
    return None


def final_text(message: Message, facts: RecipientFacts, policy: Policy) -> str:
    """The marketing text with the brand prefix and the opt-out instruction applied."""
    cp = policy.content
    text = message.text
    if not cp.enabled:
        return text
    region = facts.number.region if facts.number is not None else ""
    comp = _compiled(cp)
    # Memoised (a campaign: one text, many recipients); the same object comes back, so
    # later uses of it (hashing, comparisons) are cheap too.
    key = (text, region, message.language)
    hit = comp.finals.get(key)
    if hit is not None:
        return hit
    if cp.brand_prefix and cp.brand_prefix_mode == "prepend":
        prefix = brand_prefix_for(cp, region)
        if prefix and not _has_prefix(text, prefix):
            text = f"{prefix.rstrip()} {text.lstrip()}"
    if cp.opt_out_mode == "append" and not comp.analyze(text)[2]:
        lang = message.language or cp.country_language.get(region) or cp.default_language
        instruction = cp.opt_out_text.get(lang) or cp.opt_out_text.get(cp.default_language)
        if instruction:
            text = f"{text.rstrip()}\n{instruction}"
    if len(comp.finals) >= 4096:
        comp.finals.clear()
    comp.finals[key] = text
    return text
