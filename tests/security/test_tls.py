"""SMPP over TLS to carriers: certificate verification is on by default and means it.

tests/gateway/test_bind.py::test_tls_to_the_carrier covers "right CA binds, wrong CA is
refused". Added here: no CA file at all (the system trust store) refuses a self-signed
SMSC; a certificate that chains to the CA but names another host is refused; and
``tls_verify = false`` (documented for test SMSCs only) does bind, so the switch is the
only way to skip verification.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from gateway.carriers import Carrier
from tests.gateway.test_bind import make_cert, settings, sim

pytestmark = pytest.mark.slow


async def failure_of(carrier: Carrier) -> str:
    async with trio.open_nursery() as nursery:
        await nursery.start(carrier.run)
        await carrier.wait_until(lambda c: c.failures >= 1)
        assert not carrier.live_binds
        await carrier.shutdown()
    return carrier.last_failure or ""


async def test_self_signed_smsc_without_ca_file_is_refused(tmp_path: Path) -> None:
    cert, key = make_cert(tmp_path, "smsc")
    async with sim(certfile=cert, keyfile=key) as server:
        with trio.fail_after(20):
            cause = await failure_of(Carrier(settings(port=server.port, tls=True,
                                                      backoff_initial=5.0)))
    assert "TLS handshake" in cause and "certificate verify failed" in cause


async def test_certificate_for_another_host_is_refused(tmp_path: Path) -> None:
    cert, key = make_cert(tmp_path, "smsc")  # valid for localhost / 127.0.0.1 only
    async with sim(certfile=cert, keyfile=key) as server:
        with trio.fail_after(20):
            cause = await failure_of(Carrier(settings(
                port=server.port, tls=True, ca_file=cert, tls_server_hostname="smsc.evil.example",
                backoff_initial=5.0)))
    assert "TLS handshake" in cause and "match" in cause.lower()


async def test_verification_off_is_an_explicit_switch(tmp_path: Path) -> None:
    cert, key = make_cert(tmp_path, "smsc")
    async with sim(certfile=cert, keyfile=key) as server:
        carrier = Carrier(settings(port=server.port, tls=True, tls_verify=False))
        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                await nursery.start(carrier.run)
                await carrier.wait_bound()
                await carrier.shutdown()
