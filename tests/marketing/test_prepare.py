"""gateway.marketing.prepare (the accept hook) and the purity of the pure modules."""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path

from gateway.marketing.links import TOKEN_LENGTH, is_token
from gateway.marketing.prepare import Prepared, link_targets, placeholder_tokens, prepare_text
from gateway.marketing.templates import TemplateError

ROOT = Path(__file__).resolve().parents[2]
PURE = ["templates.py", "links.py", "optin.py", "prepare.py"]
FORBIDDEN = {"trio", "socket", "lmdb", "prometheus_client", "time", "random", "asyncio",
             "threading", "os", "subprocess", "h11", "secrets", "gateway.http",
             "gateway.store", "gateway.marketing.redirect", "gateway.marketing.tokens"}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_pure_modules_import_no_io() -> None:
    offenders = {}
    for name in PURE:
        imported = _imports(ROOT / "gateway" / "marketing" / name)
        bad = {m for m in imported if m in FORBIDDEN or m.split(".")[0] in FORBIDDEN}
        if bad:
            offenders[name] = sorted(bad)
    assert offenders == {}


def test_render_then_shorten() -> None:
    # the link comes from a variable: rendering happens first, so it is shortened too
    prepared = prepare_text("Acme: {{ greeting | default: 'Hi' }} {{ link }}",
                            {"link": "https://x.com/a"}, shorten_links=True,
                            domain="s.acme.com", make_token=lambda: "tok00001")
    assert prepared == Prepared(text="Acme: Hi https://s.acme.com/tok00001",
                                rendered="Acme: Hi https://x.com/a",
                                links=prepared.links if isinstance(prepared, Prepared) else ())
    assert isinstance(prepared, Prepared) and len(prepared.links) == 1


def test_no_shortening_when_off_or_without_a_domain() -> None:
    for shorten_links, domain in ((False, "s.acme.com"), (True, None), (True, "")):
        prepared = prepare_text("https://x.com/a", None, shorten_links=shorten_links,
                                domain=domain, make_token=lambda: "tok00001")
        assert prepared == Prepared(text="https://x.com/a", rendered="https://x.com/a")


def test_template_errors_pass_through() -> None:
    result = prepare_text("{{ nope }}", {}, shorten_links=True, domain="s.io",
                          make_token=lambda: "tok00001")
    assert isinstance(result, TemplateError) and result.reason == "missing_variable"


def test_preview_tokens_have_the_real_length_and_are_distinct() -> None:
    make = placeholder_tokens()
    tokens = [make() for _ in range(200)]
    assert len(set(tokens)) == 200
    assert all(len(t) == TOKEN_LENGTH and is_token(t) for t in tokens)
    text = " ".join(f"https://x.com/{i}" for i in range(3))
    prepared = prepare_text(text, None, shorten_links=True, domain="s.io",
                            make_token=placeholder_tokens())
    assert isinstance(prepared, Prepared)
    assert prepared.text == ("https://s.io/xxxxxxx1 https://s.io/xxxxxxx2 "
                             "https://s.io/xxxxxxx3")


def test_link_targets() -> None:
    prepared = prepare_text("https://x.com/a https://y.com/b", None, shorten_links=True,
                            domain="s.io", make_token=placeholder_tokens())
    assert isinstance(prepared, Prepared)
    targets = link_targets(prepared.links, message_id="m1", phone="+1", now=5.0,
                           campaign_id="c", flow_id="f")
    assert [(t.token, t.url, t.message_id, t.phone, t.created_at, t.campaign_id, t.flow_id)
            for t in targets] == [
        ("xxxxxxx1", "https://x.com/a", "m1", "+1", 5.0, "c", "f"),
        ("xxxxxxx2", "https://y.com/b", "m1", "+1", 5.0, "c", "f")]


def test_text_preparer_fast_path_answers_like_prepare_text() -> None:
    # TextPreparer.prepare skips prepare_text when nothing can change (no placeholder; no
    # link, shortening off, or no domain for the sender) and keeps the last such answer:
    # differential against prepare_text over the combinations.
    import itertools

    from gateway.marketing.config import LinksConfig
    from gateway.marketing.store import MemoryMarketingStore
    from gateway.marketing.textprep import TextPreparer

    def counter() -> Callable[[], str]:
        n = iter(range(1, 1000))
        return lambda: f"tok{next(n):04d}"

    texts = ["Plain sale", "Sale at https://acme.example/s now", "Hi {{ name }}",
             "Hi {{ name }} https://acme.example/s", "Hi {{ missing }}"]
    domains = [{}, {"*": "go.acme.example"}, {"ACME": "a.example"}, {"*": ""}]
    for text, shorten, domain_map, sender in itertools.product(
            texts, [None, True, False], domains, [None, "ACME"]):
        cfg = LinksConfig(domains=domain_map)
        prep = TextPreparer(cfg, MemoryMarketingStore(), make_token=counter())
        want = prepare_text(text, {"name": "Ann"}, shorten_links=cfg.shorten_links
                            if shorten is None else shorten, domain=cfg.domain_for(sender),
                            make_token=counter())
        for attempt in range(2):  # the second time from the kept answer when it applies
            got = prep.prepare(text, {"name": "Ann"}, shorten, sender)
            if isinstance(want, Prepared) and want.links and attempt:
                continue  # shortened again: new tokens
            assert got == want
