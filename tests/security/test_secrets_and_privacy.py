"""Secrets never leave the process; phone numbers never leave it unmasked.

One gateway run in-process with a carrier password from ``password_env`` and an API token
from ``token_env``, logging at DEBUG (the most talkative level) into a buffer, traffic
through every kind of path that sees a number (submit, receipt, consent, recipient read,
an MO STOP through the sandbox, wrong tokens). Then:

- neither secret appears in the logs, in ``/metrics``, in ``check-config`` (with
  ``--show``) output, in ``repr``/``str`` of the config, or in any API answer;
- no raw phone number (E.164 or the bare digits SMPP carries) appears in the logs or in
  ``/metrics`` (labels or values);
- the token comparison looks at every configured token (no early exit) through
  ``hmac.compare_digest``.
"""

from __future__ import annotations

import hmac
import io
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from gateway.api import Api
from gateway.app import Gateway, Ready
from gateway.cli import main as cli_main
from gateway.config import load_config_bytes
from gateway.http import Request
from gateway.logging import configure_logging
from tests.api.client import request
from tests.api.fake import FakeBackend
from tests.app.helpers import ROOT, config_text, free_port, poll

PASSWORD = "Pw7#qZ9x"  # SMPP passwords are at most 8 characters
TOKEN = "tok-9f3b2c7e-Secret-Bearer-41d8"
TO = "+14155550123"
MO_FROM = "+14155550188"
CONSENT = "+12125550177"
NUMBERS = [TO, MO_FROM, CONSENT]


def secret_config(store: Path, sandbox_port: int) -> str:
    text = config_text(store, sandbox_port)
    text = text.replace('[api]\n', '[api]\ntoken_env = "SMSGW_TEST_TOKENS"\n', 1)
    # The sandbox must accept the carrier's password; the carrier reads it from the env.
    text = text.replace('[sandbox]\nenabled = true\n',
                        f'[sandbox]\nenabled = true\npassword = "{PASSWORD}"\n', 1)
    text = text.replace('system_id = "sandbox"\npassword = "sandbox"\ndefault_sender',
                        'system_id = "sandbox"\npassword_env = "SMSGW_TEST_PW"\ndefault_sender')
    assert "password_env" in text and "token_env" in text
    return text


ENV = {"SMSGW_TEST_TOKENS": f"other-token-1234, {TOKEN}", "SMSGW_TEST_PW": PASSWORD}


@pytest.fixture
def debug_logs() -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    handler = configure_logging("debug", mask_phones=True, stream=buffer)
    try:
        yield buffer
    finally:
        logging.getLogger().removeHandler(handler)
        logging.getLogger().setLevel(logging.WARNING)


def leaks(text: str) -> list[str]:
    """Secrets and raw numbers (E.164, or the bare digits used on the SMPP wire) in text."""
    found = [s for s in (PASSWORD, TOKEN) if s in text]
    for number in NUMBERS:
        found += [n for n in (number, number[1:]) if n in text]
    return found


@pytest.mark.slow
async def test_no_secret_and_no_raw_number_leaves_the_process(
        tmp_path: Path, debug_logs: io.StringIO, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    text = secret_config(tmp_path / "data", free_port())
    cfg = load_config_bytes(text, env=ENV)
    assert leaks(repr(cfg)) == [] and leaks(str(cfg)) == []
    gw = Gateway(cfg, config_dir=ROOT / "config", handle_signals=False)
    answers: list[bytes] = []
    auth = {"token": TOKEN}
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            ready: Ready = await nursery.start(gw.run)
            port = ready.api_port

            async def call(method: str, target: str, **kw: Any) -> Any:
                reply = await request(port, method, target, **kw)
                answers.append(reply.body)
                return reply

            # Wrong and missing tokens: refused, and the presented value is not echoed.
            assert (await call("GET", "/v1/events")).status == 401
            bad = await call("GET", "/v1/events", token=TOKEN[:-1] + "X")
            assert bad.status == 401
            sent = await call("POST", "/v1/messages", **auth, json={
                "to": TO, "text": f"Code 4321 for {TO}", "kind": "transactional"})
            assert sent.status == 202, sent.body
            message_id = sent.json()["results"][0]["id"]
            ok = await call("POST", "/v1/consent", **auth,
                            json={"phone": CONSENT, "action": "subscribe", "source": "web"})
            assert ok.status == 200, ok.body
            assert (await call("GET", f"/v1/recipients/{CONSENT}", **auth)).status == 200

            async def delivered() -> bool | None:
                body = (await call("GET", f"/v1/messages/{message_id}", **auth)).json()
                return True if body["status"] == "delivered" else None

            await poll(delivered)
            # An MO STOP from a handset, through the sandbox SMSC's control endpoint.
            assert ready.sandbox_control_url is not None
            control_port = int(ready.sandbox_control_url.rsplit(":", 1)[1])
            mo = await request(control_port, "POST", "/mo", json={
                "source_addr": MO_FROM[1:], "destination_addr": "SMSGW", "text": "STOP"})
            assert mo.status == 202, mo.body

            async def mo_seen() -> bool | None:
                events = (await call("GET", "/v1/events?limit=1000", **auth)).json()
                return True if any(e["type"] == "mo" or e.get("phone") == MO_FROM
                                   for e in events["events"]) else None

            await poll(mo_seen)
            assert ready.metrics_port is not None
            scrape = await request(ready.metrics_port, "GET", "/metrics")
            assert scrape.status == 200
            metrics = scrape.body.decode()
            gw.stop()

    logs = debug_logs.getvalue()
    assert "ready" in logs and "stopped" in logs  # the capture worked (root level DEBUG)
    assert leaks(logs) == [], [line for line in logs.splitlines() if leaks(line)][:5]
    assert leaks(metrics) == []
    labels = re.findall(r'="([^"]*)"', metrics)
    assert labels and not [v for v in labels if re.search(r"\d{7,}", v)], "number-like label"
    for body in answers:
        assert PASSWORD.encode() not in body and TOKEN.encode() not in body

    # check-config, with the effective config shown.
    config_file = tmp_path / "gw.toml"
    config_file.write_text(text)
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    capsys.readouterr()
    assert cli_main(["check-config", "-c", str(config_file), "--show"]) == 0
    out = capsys.readouterr()
    assert "Secret(" in out.out  # the secrets are there, masked
    assert leaks(out.out + out.err) == []


async def test_every_token_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr("gateway.api.hmac.compare_digest", spy)
    tokens = ["first-token", TOKEN, "third-token"]
    app = Api(FakeBackend(), tokens=tokens)
    for presented, status in [(TOKEN, 200), ("first-token", 200), ("nope", 401),
                              (TOKEN[:-1], 401)]:
        calls.clear()
        headers = [(b"host", b"gw.example"),
                   (b"authorization", b"Bearer " + presented.encode())]
        response = await app(Request("GET", "/v1/events", headers))
        assert response.status == status
        # No early exit on the first match, no short-cut on length: all three compared.
        assert [known for _, known in calls] == [t.encode() for t in tokens]
        assert isinstance(response.body, bytes) and presented.encode() not in response.body
