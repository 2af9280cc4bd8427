"""``[links]`` and ``[optin]``: the marketing sections of the gateway config
(docs/marketing.md "Configuration"); ``gateway.config`` embeds them and calls
``validate_marketing`` after decoding, so errors name the field path like every other
section's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated

import msgspec

from gateway.marketing.links import valid_domain
from gateway.marketing.optin import DEFAULT_CODE_TEMPLATES, MIN_SECRET, OptinPolicy
from gateway.marketing.templates import TemplateError, compile_template

if TYPE_CHECKING:
    from gateway.config import ConfigError

__all__ = ["LinksConfig", "OptinConfig", "validate_marketing"]

#: ``domains`` key of the default domain.
DEFAULT_DOMAIN_KEY = "*"


class LinksConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[links]``: branded short links and the redirect listener."""

    #: The public redirect listener, ``host:port``; absent = no listener (links are still
    #: shortened when a domain is configured: something else may serve them).
    listen: str | None = None
    #: Default for messages without ``shorten_links``.
    shorten_links: bool = True
    #: A click is recorded once per token per bucket of this many seconds.
    click_bucket_s: Annotated[float, msgspec.Meta(gt=0, le=86_400)] = 60.0
    #: Unknown tokens per client address per minute before 429.
    misses_per_minute: Annotated[int, msgspec.Meta(ge=1)] = 120
    #: Sender id (``from``) -> short-link domain; ``"*"`` = the default. No domain = no
    #: shortening.
    domains: dict[str, str] = {}

    def domain_for(self, sender: str | None) -> str | None:
        """The short-link domain of ``sender`` (or the default)."""
        d = self.domains
        if sender is not None:
            hit = d.get(sender)
            if hit is not None:
                return hit
        return d.get(DEFAULT_DOMAIN_KEY)

    @property
    def address(self) -> tuple[str, int] | None:
        """``listen`` as ``(host, port)``, None when off."""
        if self.listen is None:
            return None
        from gateway.config import parse_listen

        return parse_listen(self.listen)


class OptinConfig(OptinPolicy, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[optin]``: smart opt-in codes (``OptinPolicy``'s limits plus these). Present =
    enabled; then ``secret_env`` must name a set variable of at least 16 bytes."""

    #: Environment variable with the HMAC secret for the codes (required).
    secret_env: str | None = None
    #: Brand in the code SMS when the request names none.
    default_brand: Annotated[str, msgspec.Meta(min_length=1, max_length=40)] = "smsgw"
    #: Language of the code SMS when the request names none.
    default_language: str = "en"
    #: Language -> code SMS template (vars: ``brand``, ``code``, ``minutes``); merged over
    #: the built-in en/fr/es/de.
    templates: dict[str, str] = msgspec.field(default_factory=dict)
    #: Resolved from ``secret_env`` at load time (never in the file).
    secret: bytes = b""

    def all_templates(self) -> dict[str, str]:
        """Built-in templates with the configured ones on top."""
        return {**DEFAULT_CODE_TEMPLATES, **self.templates}

    def policy(self) -> OptinPolicy:
        """The limits as the pure ``optin`` module takes them."""
        return OptinPolicy(code_ttl_s=self.code_ttl_s, max_attempts=self.max_attempts,
                           per_number_per_hour=self.per_number_per_hour,
                           per_ip_per_hour=self.per_ip_per_hour, window_s=self.window_s,
                           code_digits=self.code_digits)

    def __repr__(self) -> str:  # never show the secret
        return f"OptinConfig(secret_env={self.secret_env!r}, ...)"


def validate_marketing(links: LinksConfig, optin: OptinConfig | None,
                       env: Mapping[str, str],
                       error: type[ConfigError]) -> tuple[LinksConfig, OptinConfig | None]:
    """Check both sections; resolve the opt-in secret from ``env``. Raises ``error(path,
    reason)`` (``gateway.config.ConfigError``)."""
    if links.listen is not None:
        from gateway.config import parse_listen

        try:
            parse_listen(links.listen)
        except ValueError as e:
            raise error("links.listen", str(e)) from None
    for key, domain in links.domains.items():
        if not valid_domain(domain):
            raise error(f"links.domains.{key}", f"{domain!r} is not a lower-case host name "
                        "(e.g. go.example.com)")
    if optin is None:
        return links, None
    if optin.code_digits < 4 or optin.code_digits > 10:
        raise error("optin.code_digits", "must be between 4 and 10")
    for name, limit in (("max_attempts", optin.max_attempts),
                        ("per_number_per_hour", optin.per_number_per_hour),
                        ("per_ip_per_hour", optin.per_ip_per_hour)):
        if limit < 1:
            raise error(f"optin.{name}", "must be at least 1")
    if optin.code_ttl_s <= 0 or optin.window_s <= 0:
        raise error("optin.code_ttl_s" if optin.code_ttl_s <= 0 else "optin.window_s",
                    "must be positive")
    for lang, text in optin.templates.items():
        compiled = compile_template(text)
        if isinstance(compiled, TemplateError):
            raise error(f"optin.templates.{lang}", f"template syntax: {compiled.detail}")
        if "{{ code }}" not in text.replace("{{code}}", "{{ code }}"):
            raise error(f"optin.templates.{lang}", "must contain {{ code }}")
    if not optin.secret_env:
        raise error("optin.secret_env", "required when [optin] is present: the environment "
                    f"variable holding the code secret (at least {MIN_SECRET} bytes)")
    value = env.get(optin.secret_env)
    if value is None:
        raise error("optin.secret_env",
                    f"environment variable {optin.secret_env!r} is not set")
    secret = value.encode()
    if len(secret) < MIN_SECRET:
        raise error("optin.secret_env", f"environment variable {optin.secret_env!r} holds "
                    f"{len(secret)} bytes; at least {MIN_SECRET} are required")
    return links, msgspec.structs.replace(optin, secret=secret)
