"""Marketing features around the message pipeline: personalisation templates, branded
short links with click tracking, and smart opt-in codes (docs/marketing.md).

``templates``, ``links``, ``optin`` and ``prepare`` are pure (no I/O, clock or
randomness: ``tests/marketing/test_purity.py``); ``tokens`` draws the randomness,
``store`` defines what is persisted, ``redirect`` serves the links over ``gateway.http``.
The package namespace re-exports the pure API; import ``gateway.marketing.redirect``
for the listener.
"""

from gateway.marketing.links import (
    LinkRecord,
    find_urls,
    is_public_shortener,
    shorten,
    to_location,
)
from gateway.marketing.optin import (
    Challenge,
    OptinPolicy,
    RecentStarts,
    Refused,
    Started,
    VerifyResult,
    start,
    verify,
)
from gateway.marketing.prepare import Prepared, link_targets, prepare_text
from gateway.marketing.templates import TemplateError, compile_template, render

__all__ = [
    "Challenge",
    "LinkRecord",
    "OptinPolicy",
    "Prepared",
    "RecentStarts",
    "Refused",
    "Started",
    "TemplateError",
    "VerifyResult",
    "compile_template",
    "find_urls",
    "is_public_shortener",
    "link_targets",
    "prepare_text",
    "render",
    "shorten",
    "start",
    "to_location",
    "verify",
]
