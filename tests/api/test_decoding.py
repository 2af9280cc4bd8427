"""Request decoding without sockets: field paths, and "garbage in -> 400, never 500"."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.api import Api, field_error
from gateway.api_types import Backpressure, MessageIn
from gateway.http import Request
from tests.api.fake import FakeBackend

JSON = [(b"host", b"127.0.0.1"), (b"content-type", b"application/json")]
APP = Api(FakeBackend())  # built once: hypothesis runs hundreds of examples


@pytest.mark.parametrize(("text", "code", "field"), [
    ("Expected `str`, got `int` - at `$.messages[3].to`", "invalid_field", "messages[3].to"),
    ("Object contains unknown field `frm` - at `$.messages[0]`", "unknown_field",
     "messages[0].frm"),
    ("Object contains unknown field `frm`", "unknown_field", "frm"),
    ("Object missing required field `text`", "missing_field", "text"),
    ("Object missing required field `to` - at `$.messages[12]`", "missing_field",
     "messages[12].to"),
    ("Expected `object`, got `array`", "invalid_field", None),
    ("Expected `str` matching regex '^a$' - at `$.metadata.x`", "invalid_field", "metadata.x"),
])
def test_field_error_paths(text: str, code: str, field: str | None) -> None:
    exc = field_error(msgspec.ValidationError(text))
    assert (exc.status, exc.code, exc.field) == (400, code, field)
    assert " - at " not in exc.message


def test_decoders_reject_naive_trigger_time() -> None:
    with pytest.raises(msgspec.ValidationError, match="timezone"):
        msgspec.json.decode(b'{"to":"+14155550100","text":"x","trigger_at":"2026-01-01T10:00:00"}',
                            type=MessageIn)


def test_backpressure_rounds_retry_after_up() -> None:
    assert Backpressure(0.1).headers == ((b"retry-after", b"1"),)
    assert Backpressure(2.0).headers == ((b"retry-after", b"2"),)
    assert Backpressure(2.01).headers == ((b"retry-after", b"3"),)


KEYS = ["to", "from", "text", "kind", "country", "messages", "bypass", "trigger_at",
        "metadata", "smart_encoding", "x"]
scalars = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
           | st.sampled_from(["+14155550100", "4155550100", "", "campaign", "US", "hi",
                              "2026-01-01T00:00:00Z", "quiet_hours"])
           | st.text(max_size=5))
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=3), inner, max_size=4),
    max_leaves=12)


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(body=values)
async def test_any_json_body_is_answered_without_a_500(body: Any) -> None:
    response = await APP(Request("POST", "/v1/messages", JSON, msgspec.json.encode(body)))
    assert response.status in (200, 202, 400), response
    if response.status == 400:
        assert isinstance(response.body, bytes)
        error = msgspec.json.decode(response.body)["error"]
        assert error["code"] in {"invalid_field", "unknown_field", "missing_field"}
        assert error["field"] is None or isinstance(error["field"], str)


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(body=st.binary(max_size=64))
async def test_any_bytes_body_is_answered_without_a_500(body: bytes) -> None:
    response = await APP(Request("POST", "/v1/messages", JSON, body))
    assert response.status in (200, 202, 400), response


async def test_absurd_nesting_is_400_not_500() -> None:
    body = (b'{"to":"+14155550100","text":"x","metadata":{"a":' + b"[" * 200_000
            + b"]" * 200_000 + b"}}")
    response = await APP(Request("POST", "/v1/messages", JSON, body))
    assert response.status == 400
    assert isinstance(response.body, bytes)
    assert msgspec.json.decode(response.body)["error"]["code"] == "invalid_json"
