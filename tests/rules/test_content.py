"""Rule 7: message structure (leading link, shorteners, opt-out text, brand prefix)."""

from __future__ import annotations

import msgspec
import pytest

from rules import Action, MessageKind, Policy, Reason, evaluate
from rules.content import has_opt_out, starts_with_link
from tests.rules.helpers import FR, NY, facts, msg, utc

NOW = utc(2026, 3, 4, 16, 0)  # 11:00 ET, 17:00 Paris (Wednesday)
P = Policy()


@pytest.mark.parametrize(("text", "expected"), [
    ("https://acme.example/sale", True),
    ("  http://acme.example", True),
    ("www.acme.com is live", True),
    ("acme.com/sale today", True),
    ("Acme.com: new drop", True),
    ("shop.acme.fr", True),
    ("Acme: sale at https://acme.example", False),
    ("Hello there. Sale!", False),
    ("Hi.There big sale", False),
    ("20% off today", False),
])
def test_starts_with_link(text: str, expected: bool) -> None:
    assert starts_with_link(text) is expected


@pytest.mark.parametrize(("text", "reason"), [
    ("https://acme.example/s 20% off", Reason.STARTS_WITH_LINK),
    ("Acme: 20% off https://bit.ly/abc", Reason.PUBLIC_LINK_SHORTENER),
    ("Acme: 20% off tinyurl.com/x", Reason.PUBLIC_LINK_SHORTENER),
    ("Acme: 20% off https://acme.example/bit.ly", Reason.OK),
    ("Acme: 20% off at.company", Reason.OK),
    ("Acme: 20% off", Reason.OK),
])
def test_reject_checks(text: str, reason: Reason) -> None:
    assert evaluate(msg(to=NY, text=text), facts(NY), P, NOW).reason is reason


def test_transactional_and_replies_are_not_checked() -> None:
    m = msg(MessageKind.TRANSACTIONAL, to=NY, text="https://acme.example/track/1")
    d = evaluate(m, facts(NY), P, NOW)
    assert d.action is Action.SEND
    assert d.text == "https://acme.example/track/1"  # nothing appended


@pytest.mark.parametrize(("text", "has"), [
    ("Reply STOP to opt out", True),
    ("stop=opt out", True),
    ("STOP au 36180", True),
    ("Répondez ARRÊT", True),
    ("Nonstop deals", False),
    ("Unstoppable deals", False),
    ("Sale today", False),
])
def test_has_opt_out(text: str, has: bool) -> None:
    assert has_opt_out(text, P) is has


@pytest.mark.parametrize(("to", "language", "text", "expected"), [
    (NY, None, "Acme: sale", "Acme: sale\nReply STOP to opt out"),
    (NY, None, "Acme: sale  ", "Acme: sale\nReply STOP to opt out"),
    (NY, None, "Acme: sale. Reply STOP to end", "Acme: sale. Reply STOP to end"),
    (FR, None, "Acme : soldes", "Acme : soldes\nRépondez STOP pour vous désinscrire"),
    (NY, "es", "Acme: oferta", "Acme: oferta\nResponde STOP para darte de baja"),
])
def test_append_opt_out(to: str, language: str | None, text: str, expected: str) -> None:
    d = evaluate(msg(to=to, text=text, language=language), facts(to), P, NOW)
    assert d.action is Action.SEND
    assert d.text == expected


def test_reject_missing_opt_out() -> None:
    policy = msgspec.convert({"content": {"opt_out_mode": "reject"}}, Policy)
    assert evaluate(msg(to=NY, text="Acme: sale"), facts(NY), policy,
                    NOW).reason is Reason.MISSING_OPT_OUT
    ok = evaluate(msg(to=NY, text="Acme: sale. STOP to end"), facts(NY), policy, NOW)
    assert ok.text == "Acme: sale. STOP to end"


def test_opt_out_off() -> None:
    policy = msgspec.convert({"content": {"opt_out_mode": "off"}}, Policy)
    assert evaluate(msg(to=NY, text="Acme: sale"), facts(NY), policy, NOW).text == "Acme: sale"


BRANDED = {"content": {"brand_prefix": {"FR": "Acme:"}}}


@pytest.mark.parametrize(("mode", "to", "text", "reason", "out"), [
    ("prepend", FR, "Soldes. STOP au 36180", Reason.OK, "Acme: Soldes. STOP au 36180"),
    ("prepend", FR, "ACME: Soldes. STOP", Reason.OK, "ACME: Soldes. STOP"),
    ("prepend", NY, "Sale. STOP to end", Reason.OK, "Sale. STOP to end"),
    ("reject", FR, "Soldes. STOP", Reason.MISSING_BRAND_PREFIX, None),
    ("reject", FR, "Acme: Soldes. STOP", Reason.OK, "Acme: Soldes. STOP"),
    ("reject", FR, "Acme: https://acme.fr STOP", Reason.STARTS_WITH_LINK, None),
    ("off", FR, "Soldes. STOP", Reason.OK, "Soldes. STOP"),
])
def test_brand_prefix(mode: str, to: str, text: str, reason: Reason, out: str | None) -> None:
    policy = msgspec.convert({"content": {**BRANDED["content"], "brand_prefix_mode": mode}},
                             Policy)
    d = evaluate(msg(to=to, text=text), facts(to), policy, NOW)
    assert d.reason is reason
    assert d.text == out


def test_star_prefix_applies_everywhere() -> None:
    policy = msgspec.convert({"content": {"brand_prefix": {"*": "Acme:"}}}, Policy)
    assert evaluate(msg(to=NY, text="Sale. STOP"), facts(NY), policy,
                    NOW).text == "Acme: Sale. STOP"


def test_disabled() -> None:
    policy = msgspec.convert({"content": {"enabled": False}}, Policy)
    d = evaluate(msg(to=NY, text="https://bit.ly/x"), facts(NY), policy, NOW)
    assert d.action is Action.SEND
    assert d.text == "https://bit.ly/x"
