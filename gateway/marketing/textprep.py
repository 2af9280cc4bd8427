"""The accept hook's text preparation (docs/marketing.md "Integration" 3): render the
template, shorten the links, and the link records stored in the message's own batch.
Used by ``gateway.pipeline.accept.Accepter`` per message and by the preview."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from gateway.api_types import PreviewLink
from gateway.marketing.config import LinksConfig
from gateway.marketing.links import short_url
from gateway.marketing.prepare import Prepared, link_targets, placeholder_tokens, prepare_text
from gateway.marketing.store import LinkStore, unique_token_maker
from gateway.marketing.templates import TemplateError
from gateway.marketing.tokens import new_token
from gateway.store import WriteBatch
from gateway.store.marketing import add_links

__all__ = ["TextPreparer"]


class TextPreparer:
    """Render -> shorten for one message (``prepare``), and the link records to store
    with it (``add_links``). ``link_store`` is read to skip tokens already in use."""

    def __init__(self, links: LinksConfig, link_store: LinkStore,
                 make_token: Callable[[], str] = new_token) -> None:
        self._cfg = links
        self._make = unique_token_maker(link_store, make_token)
        #: The last text passed through unchanged, and its Prepared (immutable): a
        #: campaign prepares one text for many recipients.
        self._plain: Prepared | None = None

    def prepare(self, text: str, vars: Mapping[str, str] | None, shorten_links: bool | None,
                sender: str | None) -> Prepared | TemplateError:
        """The text to check, encode and send (``Prepared.text``), or why it can't be."""
        cfg = self._cfg
        shorten = cfg.shorten_links if shorten_links is None else shorten_links
        if "{{" not in text and (not shorten or "://" not in text
                                 or not cfg.domain_for(sender)):
            # The common case, nothing to do: no placeholder, and no link to shorten or
            # no short-link domain for the sender (what ``prepare_text`` answers then).
            plain = self._plain
            if plain is None or plain.text != text:
                plain = self._plain = Prepared(text=text, rendered=text)
            return plain
        return prepare_text(text, vars, shorten_links=shorten,
                            domain=cfg.domain_for(sender), make_token=self._make)

    def preview(self, text: str, vars: Mapping[str, str] | None, shorten_links: bool | None,
                sender: str | None) -> tuple[Prepared | TemplateError, list[PreviewLink]]:
        """Like ``prepare`` with placeholder tokens (of the real length; nothing stored)."""
        shorten = self._cfg.shorten_links if shorten_links is None else shorten_links
        domain = self._cfg.domain_for(sender)
        p = prepare_text(text, vars, shorten_links=shorten, domain=domain,
                         make_token=placeholder_tokens())
        if isinstance(p, TemplateError) or domain is None:
            return p, []
        return p, [PreviewLink(url=r.url, short_url=short_url(domain, r.token))
                   for r in p.links]

    @staticmethod
    def add_links(batch: WriteBatch, prepared: Prepared, *, message_id: str, phone: str,
                  now: float, campaign_id: str | None, flow_id: str | None) -> None:
        """Write the message's links into its accept batch (put-if-absent)."""
        if prepared.links:
            add_links(batch, link_targets(prepared.links, message_id=message_id, phone=phone,
                                          now=now, campaign_id=campaign_id, flow_id=flow_id))
