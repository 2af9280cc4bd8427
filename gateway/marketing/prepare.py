"""The accept hook: the text a message is checked, encoded and counted with (pure).

Order (docs/marketing.md): render the template with ``vars`` -> shorten the links ->
(then the pipeline) rules -> encoding. Rules (``starts_with_link``, shorteners, opt-out
marker) and segment counting therefore see exactly the text that is sent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

import msgspec

from gateway.marketing.links import TOKEN_ALPHABET, TOKEN_LENGTH, LinkRecord, shorten
from gateway.marketing.store import LinkTarget
from gateway.marketing.templates import TemplateError, render

__all__ = ["Prepared", "link_targets", "placeholder_tokens", "prepare_text"]


class Prepared(msgspec.Struct, frozen=True, kw_only=True):
    """A message text ready for the rules: ``text`` is what will be sent."""

    #: Rendered and shortened: what rules, encoding and segment counting see.
    text: str
    #: Rendered, links as written (``POST /v1/messages/preview`` shows both).
    rendered: str
    #: One per distinct shortened URL (store them with `link_targets`).
    links: tuple[LinkRecord, ...] = ()


def prepare_text(
    text: str,
    vars: Mapping[str, str] | None,
    *,
    shorten_links: bool,
    domain: str | None,
    make_token: Callable[[], str],
) -> Prepared | TemplateError:
    """Render ``text`` with ``vars``, then (if ``shorten_links`` and a ``domain`` is
    configured for the sender) replace its http(s) URLs by branded short links."""
    rendered = render(text, vars)
    if isinstance(rendered, TemplateError):
        return rendered
    if not shorten_links or not domain:
        return Prepared(text=rendered, rendered=rendered)
    short, links = shorten(rendered, domain, make_token)
    return Prepared(text=short, rendered=rendered, links=tuple(links))


def link_targets(
    links: tuple[LinkRecord, ...] | list[LinkRecord], *, message_id: str, phone: str,
    now: float, campaign_id: str | None = None, flow_id: str | None = None,
) -> list[LinkTarget]:
    """The ``links`` records to write in the message's accept batch."""
    return [LinkTarget(token=r.token, url=r.url, message_id=message_id, phone=phone,
                       created_at=now, campaign_id=campaign_id, flow_id=flow_id)
            for r in links]


def placeholder_tokens() -> Callable[[], str]:
    """A ``make_token`` for previews: distinct tokens of the real length (so segment
    counts match), not random and never stored."""
    counter: Iterator[int] = iter(range(1, 1 << 30))

    def make() -> str:
        n = next(counter)
        digits = ""
        while n:
            n, r = divmod(n, len(TOKEN_ALPHABET))
            digits = TOKEN_ALPHABET[r] + digits
        return digits.rjust(TOKEN_LENGTH, "x")

    return make
