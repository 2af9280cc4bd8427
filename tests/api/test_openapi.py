"""The OpenAPI document: structure, resolvable refs, and agreement with the decoders."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
import trio

from gateway import api_types
from gateway.api import ROUTES, Api
from tests.api.client import start_server
from tests.api.conftest import Net
from tests.api.fake import FakeBackend

REQUEST_TYPES = [api_types.MessageIn, api_types.BatchIn, api_types.PreviewIn,
                 api_types.ConsentIn, api_types.OptinStartIn, api_types.OptinVerifyIn]
RESPONSE_TYPES = [api_types.SubmitResponse, api_types.MessageResult,
                  api_types.MessageStatusOut, api_types.PreviewOut, api_types.ConsentOut,
                  api_types.RecipientOut, api_types.ErrorSegmentLine, api_types.EventsOut,
                  api_types.EventOut, api_types.ErrorBody, api_types.ErrorDetail,
                  api_types.HealthOut, api_types.ReadyOut, api_types.OptinStartOut,
                  api_types.OptinVerifyOut, api_types.OptinErrorBody,
                  api_types.KeywordSegmentLine, api_types.SubscriberSegmentLine,
                  api_types.ClicksOut, api_types.LinkClicksOut, api_types.PreviewLink]


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return Api(FakeBackend(), tokens=["t"]).openapi


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        node = node[part]
    return node


async def test_served_document_is_the_generated_one(
        net: Net, nursery: trio.Nursery) -> None:
    with trio.fail_after(5):
        app = Api(FakeBackend(), tokens=["t"])
        server = await start_server(nursery, app)
        client = await net.client(server.port)
        reply = await client.request("GET", "/openapi.json")  # open without a token
        assert reply.status == 200
        assert reply.json() == msgspec.json.decode(msgspec.json.encode(app.openapi))


def test_structure(doc: dict[str, Any]) -> None:
    assert doc["openapi"] == "3.1.0"
    assert doc["info"]["title"] and doc["info"]["version"]
    operations = {(path, method) for path, item in doc["paths"].items() for method in item}
    assert operations == {(r.path, r.method.lower()) for r in ROUTES}
    ids = [op["operationId"] for item in doc["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))
    for path, item in doc["paths"].items():
        for op in item.values():
            assert op["responses"], path
            for status in op["responses"]:
                assert re.fullmatch(r"[1-5][0-9][0-9]", status)
            declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert declared == set(re.findall(r"\{(\w+)\}", path))


def test_every_ref_resolves(doc: dict[str, Any]) -> None:
    found = list(refs(doc))
    assert found
    for ref in found:
        target = resolve(doc, ref)
        assert isinstance(target, dict) and ("type" in target or "anyOf" in target)


def test_every_declared_endpoint_of_design_md_is_documented(doc: dict[str, Any]) -> None:
    expected = {
        ("/v1/messages", "post"), ("/v1/messages/{id}", "get"),
        ("/v1/messages/preview", "post"), ("/v1/consent", "post"),
        ("/v1/recipients/{phone}", "get"), ("/v1/segments/sms-errors", "get"),
        ("/v1/events", "get"), ("/healthz", "get"), ("/readyz", "get"),
        ("/openapi.json", "get"),
        # issue 9 (docs/marketing.md)
        ("/v1/optin/start", "post"), ("/v1/optin/verify", "post"),
        ("/v1/segments/keyword", "get"), ("/v1/segments/subscribers", "get"),
    }
    assert {(p, m) for p, item in doc["paths"].items() for m in item} == expected
    submit = doc["paths"]["/v1/messages"]["post"]
    assert {"202", "200", "400", "401", "413", "429", "503", "507"} <= set(submit["responses"])
    events = doc["paths"]["/v1/events"]["get"]
    assert [p["name"] for p in events["parameters"]] == ["after", "limit", "wait"]
    segment = doc["paths"]["/v1/segments/sms-errors"]["get"]["responses"]["200"]
    assert "application/x-ndjson" in segment["content"]


@pytest.mark.parametrize("struct", REQUEST_TYPES + RESPONSE_TYPES, ids=lambda t: t.__name__)
def test_schema_matches_the_struct(doc: dict[str, Any], struct: Any) -> None:
    schema = doc["components"]["schemas"][struct.__name__]
    fields = msgspec.structs.fields(struct)
    assert set(schema["properties"]) == {f.encode_name for f in fields}
    assert set(schema.get("required", [])) == {f.encode_name for f in fields if f.required}


@pytest.mark.parametrize("struct", REQUEST_TYPES, ids=lambda t: t.__name__)
def test_request_schemas_forbid_unknown_fields(doc: dict[str, Any], struct: Any) -> None:
    assert doc["components"]["schemas"][struct.__name__]["additionalProperties"] is False


def test_message_in_wire_names(doc: dict[str, Any]) -> None:
    props = doc["components"]["schemas"]["MessageIn"]["properties"]
    assert "from" in props and "from_" not in props
    assert doc["components"]["schemas"]["MessageIn"]["required"] == ["to", "text"]


def test_configured_limits_are_in_the_document() -> None:
    doc = Api(FakeBackend(), max_text_chars=480, max_batch=50).openapi
    schemas = doc["components"]["schemas"]
    assert schemas["MessageIn"]["properties"]["text"]["maxLength"] == 480
    assert schemas["PreviewIn"]["properties"]["text"]["maxLength"] == 480
    assert schemas["BatchIn"]["properties"]["messages"]["maxItems"] == 50


def test_security_follows_token_configuration(doc: dict[str, Any]) -> None:
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert doc["paths"]["/v1/messages"]["post"]["security"] == [{"bearer": []}]
    assert doc["paths"]["/healthz"]["get"]["security"] == []
    open_doc = Api(FakeBackend()).openapi
    assert "securitySchemes" not in open_doc["components"]
    assert "security" not in open_doc["paths"]["/v1/messages"]["post"]
    assert "401" not in open_doc["paths"]["/v1/messages"]["post"]["responses"]
    assert "403" in open_doc["paths"]["/v1/messages"]["post"]["responses"]


def test_auth_flag_matches_the_v1_prefix_the_router_checks() -> None:
    for route in ROUTES:
        assert route.auth == route.path.startswith("/v1/"), route.path
