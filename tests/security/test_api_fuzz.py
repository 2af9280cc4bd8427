"""Fuzzing the HTTP API from its own OpenAPI document, against the REAL backend.

tests/api fuzzes the decoders against a FakeBackend (``test_decoding``). Here the requests
are generated from ``GET /openapi.json`` itself (every operation, its path and query
parameters and its request body schema, turned into hypothesis strategies), then mutated
(a required key dropped, an unknown key added, a value of the wrong type, a wrong
Content-Type), and sent to ``Api(GatewayBackend(...))`` over a ``MemoryStore``: the real
Accepter, RecipientCache, rules and encoding.

Invariants, per request:
- never a 5xx, and every error body is the documented ``{"error": {...}}``;
- after every 4xx the store is byte-for-byte what it was before (nothing stored from a
  rejected request), and no commit succeeded during that request.

Why not schemathesis: it is not a declared test dependency; the document is small and
msgspec emits plain JSON Schema 2020-12, so a 100-line translation covers it (SECURITY.md
notes schemathesis as a candidate for a fuller, stateful run).
"""

from __future__ import annotations

import string
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, cast
from urllib.parse import quote

import msgspec
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from gateway.api import Api
from gateway.backend import GatewayBackend
from gateway.http import Request
from gateway.pipeline import Accepter, RecipientCache
from gateway.store import CommitResult, MemoryStore, Store, WriteBatch
from tests.api.fake import FakeBackend
from tests.pipeline.conftest import FR, LA, LA2, NOW, NY, make_config

Json = Any
Strategy = st.SearchStrategy[Any]

# The document as served at GET /openapi.json (tests/api/test_openapi checks the two agree);
# it does not depend on the backend.
DOC: dict[str, Any] = Api(FakeBackend(), max_wait=0.0).openapi
SCHEMAS: dict[str, Any] = DOC["components"]["schemas"]

json_scalars = (st.none() | st.booleans() | st.integers(-(2**63), 2**64)
                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12))
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                 max_size=3),
    max_leaves=8)


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref is None:
        return schema
    resolved: dict[str, Any] = SCHEMAS[ref.rsplit("/", 1)[-1]]
    return resolved


def _string(schema: dict[str, Any]) -> Strategy:
    lo, hi = schema.get("minLength", 0), schema.get("maxLength")
    if schema.get("format") == "date-time":
        zones = st.sampled_from([UTC, timezone(timedelta(hours=-7)), timezone(timedelta(hours=5,
                                                                                     minutes=30))])
        aware = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1),
                             timezones=zones).map(lambda d: d.isoformat())
        bad = st.sampled_from(["2026-01-02T17:00:00", "yesterday", ""])
        return st.one_of(aware, aware, aware, bad)
    if "pattern" in schema:
        text = st.from_regex(schema["pattern"], fullmatch=True)
    else:
        text = st.text(min_size=lo, max_size=min(hi if hi is not None else 40, 40))
    if hi is not None:
        text = text.filter(lambda s: lo <= len(s) <= hi)
    return text


def from_schema(schema: dict[str, Any], depth: int = 0) -> Strategy:
    """Values that (mostly) satisfy ``schema``; the mutations below make the invalid ones."""
    schema = _resolve(schema)
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "const" in schema:
        return st.just(schema["const"])
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return st.one_of([from_schema(s, depth) for s in schema[key]])
    kind = schema.get("type")
    if kind == "string":
        return _string(schema)
    if kind == "integer":
        return st.integers(schema.get("minimum", -(2**40)), schema.get("maximum", 2**40))
    if kind == "number":
        return st.floats(schema.get("minimum", -1e9), schema.get("maximum", 1e9))
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "array":
        hi = min(schema.get("maxItems", 3), 3)
        return st.lists(from_schema(schema.get("items", {}), depth + 1),
                        min_size=min(schema.get("minItems", 0), hi), max_size=hi)
    if kind == "object" and "properties" in schema and depth < 3:
        return _object(schema, depth)
    if kind == "object":
        return st.dictionaries(st.text(max_size=8), json_values, max_size=3)
    return json_values


# Regex-generated numbers are almost never valid phone numbers: mix in real ones, so
# requests get past validation into the rules, the store and the events.
PHONES = st.sampled_from([LA, LA2, NY, FR, "+447700900123"])
HINTS: dict[str, Strategy] = {"to": PHONES, "phone": PHONES,
                              "kind": st.sampled_from(["transactional", "transactional",
                                                       "campaign", "flow"])}


def _object(schema: dict[str, Any], depth: int) -> Strategy:
    props: dict[str, Any] = schema["properties"]
    required = set(schema.get("required", ()))

    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        out = {}
        for name, sub in props.items():
            if name in required or draw(st.booleans()):
                strategy = from_schema(sub, depth + 1)
                if name in HINTS and draw(st.integers(0, 3)):
                    strategy = HINTS[name]
                out[name] = draw(strategy)
        return out

    return build()


@st.composite
def mutate(draw: st.DrawFn, value: Json) -> Json:
    """Leave the value valid, or break it the ways clients do."""
    op = draw(st.sampled_from(["keep"] * 5 + ["drop", "unknown", "retype", "replace"]))
    if op == "keep" or not isinstance(value, dict):
        return value if op != "replace" else draw(json_values)
    value = dict(value)
    if op == "drop" and value:
        value.pop(draw(st.sampled_from(sorted(value))))
    elif op == "unknown":
        value[draw(st.sampled_from(["frm", "To", "extra", "messages", "__proto__"]))] = \
            draw(json_values)
    elif op == "retype" and value:
        value[draw(st.sampled_from(sorted(value)))] = draw(json_values)
    elif op == "replace":
        return draw(json_values)
    return value


class RecordingStore:
    """The real MemoryStore; remembers which commits succeeded (public interface only)."""

    def __init__(self, store: MemoryStore) -> None:
        self._store = store
        self.committed = 0

    async def commit(self, batch: WriteBatch) -> CommitResult:
        result = await self._store.commit(batch)
        self.committed += 1
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def snapshot(store: MemoryStore) -> dict[Any, dict[bytes, bytes]]:
    # The fake keeps values encoded exactly as LMDB would: comparing its tables compares
    # what the real store would hold.
    return {db: dict(table.data) for db, table in store._tables.items()}


OPERATIONS = [(path, method.upper(), op) for path, methods in DOC["paths"].items()
              for method, op in methods.items()]
HEADERS = [(b"host", b"127.0.0.1")]
CONTENT_TYPES = [b"application/json", b"application/json", b"application/json",
                 b"application/merge-patch+json", b"text/plain", b""]


@st.composite
def requests(draw: st.DrawFn, known_ids: Callable[[], list[str]]) -> Request:
    path, method, op = draw(st.sampled_from(OPERATIONS))
    target = path
    query = []
    for param in op.get("parameters", ()):
        if param["in"] == "path":
            if param["name"] == "id":
                ids = known_ids()
                use_known = bool(ids) and draw(st.booleans())
                value: str = draw(st.sampled_from(ids) if use_known else st.text(max_size=140))
            else:
                value = draw(st.from_regex(r"^\+[1-9][0-9]{6,14}$", fullmatch=True)
                             | st.text(max_size=20))
            target = target.replace("{" + param["name"] + "}", quote(value, safe=""))
        elif draw(st.booleans()):
            raw = draw(from_schema(param["schema"]) | st.text(string.printable, max_size=8))
            if param["name"] == "wait":
                raw = 0  # a long-poll would only make the run slower, not more hostile
            query.append(f"{param['name']}={quote(str(raw), safe='')}")
    if query:
        target += "?" + "&".join(query)
    headers = list(HEADERS)
    body = b""
    if "requestBody" in op:
        schema = op["requestBody"]["content"]["application/json"]["schema"]
        value = draw(mutate(draw(from_schema(schema))))
        body = msgspec.json.encode(value)
        if draw(st.integers(0, 9)) == 0:
            body = draw(st.binary(max_size=40)) if draw(st.booleans()) else body[:-1]
        content_type = draw(st.sampled_from(CONTENT_TYPES))
        if content_type:
            headers.append((b"content-type", content_type))
    return Request(method, target, headers, body)


def build_api(store: MemoryStore) -> tuple[Api, RecordingStore]:
    config = make_config(outbox_max=20)
    recording = RecordingStore(store)
    store_view = cast(Store, recording)
    rc = RecipientCache(store_view, policy=config.rules)
    accepter = Accepter(store_view, config, rc)
    backend = GatewayBackend(config, store_view, accepter, rc,
                             ready_probe=lambda _c: True, clock=lambda: NOW)
    return Api(backend, max_wait=0.0), recording


async def seed(api: Api) -> list[str]:
    """A subscribed recipient and a queued message, so later requests meet real data."""
    ok = [(b"host", b"127.0.0.1"), (b"content-type", b"application/json")]
    await api(Request("POST", "/v1/consent", ok,
                      msgspec.json.encode({"phone": LA, "action": "subscribe"})))
    reply = await api(Request("POST", "/v1/messages", ok, msgspec.json.encode(
        {"to": LA, "text": "Sale", "kind": "transactional"})))
    assert reply.status == 202, reply.body
    assert isinstance(reply.body, bytes)
    return [r["id"] for r in msgspec.json.decode(reply.body)["results"]]


async def check(api: Api, store: MemoryStore, recording: RecordingStore,
                request: Request) -> int:
    before = snapshot(store)
    commits = recording.committed
    response = await api(request)
    status = response.status
    assert status < 500, (request, response.body)
    if isinstance(response.body, bytes) and response.body:
        body = msgspec.json.decode(response.body)
    else:
        body = None
        if not isinstance(response.body, bytes):  # NDJSON stream: drain it
            async for _chunk in response.body:
                pass
    if status >= 400:
        assert body is not None and set(body) == {"error"}, response.body
        assert set(body["error"]) == {"code", "message", "field"}
        assert snapshot(store) == before, f"{request!r} -> {status} changed the store"
        assert recording.committed == commits, f"{request!r} -> {status} committed"
    return status


@pytest.mark.slow
@settings(max_examples=250, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                 HealthCheck.data_too_large])
@given(data=st.data())
async def test_openapi_driven_requests_never_5xx_and_4xx_store_nothing(data: st.DataObject,
                                                                       ) -> None:
    store = MemoryStore()
    api, recording = build_api(store)
    ids = await seed(api)
    for _ in range(data.draw(st.integers(1, 6))):
        request = data.draw(requests(lambda: ids))
        status = await check(api, store, recording, request)
        # --hypothesis-show-statistics: how far requests get (2xx vs 4xx per route).
        event(f"{request.method} {request.path.split('/')[:3]} {status}")


async def test_rejected_batch_member_stores_nothing_of_the_batch() -> None:
    # One bad message in a batch of valid ones: 400 naming it, and none of the batch stored.
    store = MemoryStore()
    api, recording = build_api(store)
    await seed(api)
    good = {"to": LA, "text": "hi", "kind": "transactional"}
    body = {"messages": [good, good, {**good, "to": "12"}, good]}
    request = Request("POST", "/v1/messages", [(b"host", b"127.0.0.1"),
                                              (b"content-type", b"application/json")],
                      msgspec.json.encode(body))
    assert await check(api, store, recording, request) == 400


async def test_backpressure_429_stores_nothing() -> None:
    # outbox_max = 20: the 21st queued message is refused with 429, and nothing of that
    # request is stored.
    store = MemoryStore()
    api, recording = build_api(store)
    await seed(api)
    ok = [(b"host", b"127.0.0.1"), (b"content-type", b"application/json")]
    statuses = []
    for i in range(25):
        body = {"to": LA, "text": f"code {i}", "kind": "transactional"}
        statuses.append(await check(api, store, recording,
                                    Request("POST", "/v1/messages", ok,
                                            msgspec.json.encode(body))))
    assert 429 in statuses
