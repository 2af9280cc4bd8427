"""``[links]`` / ``[optin]`` config validation (field paths), and the app running the
short-link listener with its metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

from gateway.app import Gateway, Ready
from gateway.config import ConfigError, load_config_bytes
from tests.api.client import request
from tests.app.helpers import ROOT, config_text, free_port, poll

SECRET = "0123456789abcdef0123"


def load(text: str, env: dict[str, str] | None = None) -> Any:
    return load_config_bytes(text, env=env or {})


def test_defaults_and_domains() -> None:
    cfg = load('[links.domains]\n"*" = "sms.example.com"\nAcme = "go.acme.com"\n')
    assert cfg.links.listen is None and cfg.links.address is None
    assert cfg.links.shorten_links and cfg.links.click_bucket_s == 60.0
    assert cfg.links.domain_for("Acme") == "go.acme.com"
    assert cfg.links.domain_for("Other") == cfg.links.domain_for(None) == "sms.example.com"
    assert cfg.optin is None
    assert load("").links.domain_for("x") is None


@pytest.mark.parametrize(("text", "env", "path"), [
    ('[links.domains]\nAcme = "Go.Acme.com"\n', {}, "links.domains.Acme"),
    ('[links.domains]\n"*" = "localhost"\n', {}, "links.domains.*"),
    ('[links]\nlisten = "nohost"\n', {}, "links.listen"),
    ("[links]\nclick_bucket_s = 0\n", {}, "links.click_bucket_s"),
    ("[links]\ntoken_length = 8\n", {}, "links.token_length"),
    ("[optin]\n", {}, "optin.secret_env"),
    ('[optin]\nsecret_env = "S"\n', {}, "optin.secret_env"),
    ('[optin]\nsecret_env = "S"\n', {"S": "short"}, "optin.secret_env"),
    ('[optin]\nsecret_env = "S"\ncode_digits = 2\n', {"S": SECRET}, "optin.code_digits"),
    ('[optin]\nsecret_env = "S"\nmax_attempts = 0\n', {"S": SECRET}, "optin.max_attempts"),
    ('[optin]\nsecret_env = "S"\n[optin.templates]\nen = "no code here"\n', {"S": SECRET},
     "optin.templates.en"),
    ('[optin]\nsecret_env = "S"\n[optin.templates]\nen = "{{ code"\n', {"S": SECRET},
     "optin.templates.en"),
])
def test_errors_name_the_field(text: str, env: dict[str, str], path: str) -> None:
    with pytest.raises(ConfigError) as err:
        load(text, env)
    assert err.value.path == path, str(err.value)


def test_optin_secret_from_env_never_shown() -> None:
    cfg = load('[optin]\nsecret_env = "S"\ndefault_brand = "Acme"\n[optin.templates]\n'
               'it = "{{ brand }}: codice {{ code }}"\n', {"S": SECRET})
    assert cfg.optin.secret == SECRET.encode()
    assert SECRET not in repr(cfg.optin) and SECRET not in repr(cfg)
    templates = cfg.optin.all_templates()
    assert set(templates) >= {"en", "fr", "es", "de", "it"}


def test_shipped_config_has_both_sections() -> None:
    text = (ROOT / "config" / "gateway.toml").read_text()
    cfg = load(text)
    assert cfg.links.listen == "127.0.0.1:8081"
    assert "# [optin]" in text and "secret_env" in text


@pytest.mark.slow
async def test_app_serves_links_and_exports_metrics(tmp_path: Path) -> None:
    port = free_port()
    text = config_text(tmp_path / "data", port) + (
        '[links]\nlisten = "127.0.0.1:0"\n[links.domains]\n"*" = "go.example.com"\n')
    cfg = load(text)
    gw = Gateway(cfg, config_dir=ROOT / "config", handle_signals=False)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            ready: Ready = await nursery.start(gw.run)
            assert ready.links_port and ready.links_url == f"http://127.0.0.1:{ready.links_port}"
            reply = await request(ready.api_port, "POST", "/v1/messages", json={
                "to": "+33612345678", "kind": "transactional",
                "text": "Track it: https://shop.example/track/1"})
            assert reply.status == 202, reply.body
            mid = reply.json()["results"][0]["id"]
            status = (await request(ready.api_port, "GET", f"/v1/messages/{mid}")).json()
            [link] = status["clicks"]["links"]
            path = link["short_url"][len("https://go.example.com"):]
            got = await request(ready.links_port, "GET", path)
            assert got.status == 302 and got.headers["location"] == link["url"]
            assert (await request(ready.links_port, "GET", "/robots.txt")).status == 200

            async def counted() -> str | None:
                scrape = (await request(ready.metrics_port, "GET", "/metrics")).body.decode()
                return scrape if 'smsgw_link_clicks_total{result="recorded"} 1.0' in scrape \
                    and "smsgw_link_click_sink_pending 0.0" in scrape else None

            scrape = await poll(counted)
            assert "smsgw_link_redirects_total 1.0" in scrape
            assert 'server="links"' in scrape
            body = (await request(ready.api_port, "GET", f"/v1/messages/{mid}")).json()
            assert body["clicks"]["total"] == 1
            gw.stop()
