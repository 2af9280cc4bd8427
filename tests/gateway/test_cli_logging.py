"""gateway.logging (set up by `smsgw run`): fields, text and JSON lines, phone masking."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from gateway.logging import configure_logging, get_logger, mask_phone, mask_phones_in


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    buf = io.StringIO()
    yield buf
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
    root.setLevel(level)


@pytest.mark.parametrize(("value", "masked"), [
    ("+33612345678", "+3361*****78"),
    ("+447700900123", "+4477******23"),
    ("33612345678", "3361*****78"),
    ("+33 6 12 34 56 78", "+3361*****78"),
    ("+1234567", "+1234*67"),
    ("12345", "12345"),          # short code: not personal
    ("ACME", "ACME"),            # alphanumeric sender
    ("", ""),
    ("order 1234567", "order 1234567"),
])
def test_mask_phone(value: str, masked: str) -> None:
    assert mask_phone(value) == masked


def test_mask_phones_in_text() -> None:
    assert (mask_phones_in("to +33612345678, id 1795361967996000, from +447700900123.")
            == "to +3361*****78, id 1795361967996000, from +4477******23.")
    assert mask_phones_in("x+33612345678") == "x+33612345678"  # inside a token: left alone
    assert mask_phones_in("code +123") == "code +123"


def test_text_lines(stream: io.StringIO) -> None:
    configure_logging("debug", stream=stream)
    log = get_logger("gateway.test").bind(carrier="acme")
    log.warning("submit to +33612345678 rejected", to="+33612345678", status=88,
                text="hi there", empty="")
    log.debug("queued %d", 3)
    line, second = stream.getvalue().splitlines()
    assert line.endswith(" WARNING gateway.test submit to +3361*****78 rejected carrier=acme "
                         'to=+3361*****78 status=88 text="hi there" empty=""')
    assert line[:24].endswith("Z") and line[10] == "T"
    assert second.endswith("DEBUG gateway.test queued 3 carrier=acme")


def test_json_lines(stream: io.StringIO) -> None:
    configure_logging("info", json=True, stream=stream)
    log = get_logger("gateway.test")
    log.info("receipt", source_addr="447700900123", level="x", msg="y", data=b"\x01")
    log.debug("hidden")
    logging.getLogger("plain").warning("plain +447700900123")
    first, second = (json.loads(x) for x in stream.getvalue().splitlines())
    assert first["level"] == "info" and first["msg"] == "receipt"
    assert first["logger"] == "gateway.test"
    assert first["source_addr"] == "4477******23"
    assert (first["level_"], first["msg_"], first["data"]) == ("x", "y", "01")
    assert second == {"ts": second["ts"], "level": "warning", "logger": "plain",
                      "msg": "plain +4477******23"}


def test_exceptions_are_logged(stream: io.StringIO) -> None:
    configure_logging("info", json=True, stream=stream)
    try:
        1 / 0  # noqa: B018
    except ZeroDivisionError:
        get_logger("t").exception("boom", to="+33612345678")
    obj = json.loads(stream.getvalue())
    assert "ZeroDivisionError" in obj["exc"] and obj["to"] == "+3361*****78"


def test_masking_can_be_turned_off(stream: io.StringIO) -> None:
    configure_logging("info", mask_phones=False, stream=stream)
    get_logger("t").info("to +33612345678", to="+33612345678")
    assert stream.getvalue().count("+33612345678") == 2


def test_configure_is_idempotent(stream: io.StringIO) -> None:
    root = logging.getLogger()
    before = len(root.handlers)
    configure_logging("info", stream=stream)
    configure_logging("warning", stream=stream)
    assert len(root.handlers) == before + 1
    assert root.level == logging.WARNING
    log = get_logger("t")
    assert not log.is_enabled_for(logging.INFO)
    log.info("dropped")
    log.error("kept")
    log.critical("kept too")
    assert [line.split(" ")[1] for line in stream.getvalue().splitlines()] == [
        "ERROR", "CRITICAL"]
