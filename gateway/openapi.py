"""The OpenAPI 3.1 document, generated from the route table and the msgspec types.

Nothing here is written by hand: schemas come from ``msgspec.json.schema_components`` over
the very types the API decodes and encodes, and paths from the same `RouteSpec` table the
router dispatches on, so the document cannot drift from what the server does.
OpenAPI 3.1 uses JSON Schema 2020-12, which is what msgspec emits.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from gateway.api_types import ErrorBody

__all__ = ["QueryParam", "ResponseSpec", "RouteSpec", "openapi_document"]

REF = "#/components/schemas/{name}"


class QueryParam(msgspec.Struct, frozen=True, kw_only=True):
    """A query parameter; ``type`` both parses the value and gives its schema."""

    name: str
    type: Any
    description: str
    default: Any = None


class ResponseSpec(msgspec.Struct, frozen=True, kw_only=True):
    """One documented answer of a route."""

    status: int
    description: str
    #: The body's type (a Struct), or None for no schema.
    type: Any = None
    media_type: str = "application/json"
    #: Response headers: name -> description.
    headers: tuple[tuple[str, str], ...] = ()


class RouteSpec(msgspec.Struct, frozen=True, kw_only=True):
    """One route: what the router dispatches on and what the document describes."""

    method: str
    #: A template: literal segments and ``{name}`` parameters, e.g. ``/v1/messages/{id}``.
    path: str
    #: The operationId, and the name of the handler method (``Api._<name>``).
    name: str
    summary: str
    #: Whether bearer auth applies (when tokens are configured).
    auth: bool = True
    #: Request body types; more than one means "one of".
    body: tuple[Any, ...] = ()
    query: tuple[QueryParam, ...] = ()
    #: Descriptions of the path parameters, by name.
    path_params: tuple[tuple[str, str], ...] = ()
    responses: tuple[ResponseSpec, ...] = ()
    #: Error statuses this route may answer besides the common ones (401, 500).
    errors: tuple[int, ...] = ()


_ERROR_TEXT = {
    400: "Invalid request: bad JSON, unknown or invalid field (`error.field` names it)",
    401: "Missing or wrong bearer token",
    403: "Host not allowed: without tokens, /v1/* answers loopback Host names only",
    404: "Not found",
    413: "Body too large",
    415: "Content-Type is not application/json",
    429: "Gateway busy: retry after `Retry-After` seconds",
    500: "Internal error",
    503: "Store unavailable",
    507: "Store full",
}


def _schemas(routes: Sequence[RouteSpec]) -> tuple[dict[Any, dict[str, Any]], dict[str, Any]]:
    types: list[Any] = [ErrorBody]
    for route in routes:
        types.extend(route.body)
        types.extend(r.type for r in route.responses if r.type is not None)
    unique = list(dict.fromkeys(types))
    schemas, components = msgspec.json.schema_components(unique, ref_template=REF)
    return dict(zip(unique, schemas, strict=True)), components


def openapi_document(
    routes: Sequence[RouteSpec],
    *,
    title: str = "smsgw",
    version: str = "0",
    auth: bool = True,
    overrides: dict[str, dict[str, dict[str, Any]]] | None = None,
) -> dict[str, Any]:
    """The OpenAPI 3.1 document for ``routes``.

    ``overrides`` patches generated property schemas with configured limits:
    ``{"MessageIn": {"text": {"maxLength": 1600}}}``.
    """
    refs, components = _schemas(routes)
    for name, props in (overrides or {}).items():
        for prop, patch in props.items():
            components[name]["properties"][prop].update(patch)
    error_ref = refs[ErrorBody]
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        op: dict[str, Any] = {"operationId": route.name, "summary": route.summary}
        params: list[dict[str, Any]] = [
            {"name": name, "in": "path", "required": True, "description": text,
             "schema": {"type": "string"}}
            for name, text in route.path_params
        ]
        for q in route.query:
            schema = msgspec.json.schema(q.type)
            if q.default is not None:
                schema["default"] = q.default
            params.append({"name": q.name, "in": "query", "required": False,
                           "description": q.description, "schema": schema})
        if params:
            op["parameters"] = params
        if route.body:
            schema = refs[route.body[0]] if len(route.body) == 1 else {
                "oneOf": [refs[t] for t in route.body]}
            op["requestBody"] = {"required": True,
                                 "content": {"application/json": {"schema": schema}}}
        responses: dict[str, Any] = {}
        for r in route.responses:
            entry: dict[str, Any] = {"description": r.description}
            if r.type is not None:
                entry["content"] = {r.media_type: {"schema": refs[r.type]}}
            if r.headers:
                entry["headers"] = {name: {"description": text, "schema": {"type": "string"}}
                                    for name, text in r.headers}
            responses[str(r.status)] = entry
        errors = set(route.errors) | {500}
        if route.auth:
            errors.add(401 if auth else 403)
        for status in sorted(errors):
            entry = {"description": _ERROR_TEXT[status],
                     "content": {"application/json": {"schema": error_ref}}}
            if status == 429:
                entry["headers"] = {"Retry-After": {"description": "seconds",
                                                    "schema": {"type": "integer"}}}
            responses.setdefault(str(status), entry)
        op["responses"] = responses
        if route.auth and auth:
            op["security"] = [{"bearer": []}]
        elif auth:
            op["security"] = []
        paths.setdefault(route.path, {})[route.method.lower()] = op
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version,
                 "description": "smsgw: SMS gateway HTTP API (JSON; errors are "
                                "{\"error\": {\"code\", \"message\", \"field\"}})"},
        "paths": paths,
        "components": {"schemas": components},
    }
    if auth:
        doc["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    return doc
