"""The local HTTP API (DESIGN.md "HTTP API"): routes and handlers over a `Backend`.

`Api` is an `gateway.http` handler: ``await nursery.start(gateway.http.serve, Api(backend))``.
It decodes and validates bodies with typed msgspec decoders built once, checks what is
purely syntactic (patterns, lengths, required-together fields), calls the backend, and maps
outcomes to status codes and faults to `ErrorBody` answers. It keeps per-route counters
and latencies as plain numbers for the metrics module (`Api.statistics`).
"""

from __future__ import annotations

import hmac
import logging
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated, Any, TypeVar
from urllib.parse import unquote

import msgspec

from gateway.api_types import (
    E164,
    MAX_TEXT_CHARS,
    ApiError,
    Backend,
    Backpressure,
    BatchIn,
    ConsentIn,
    ConsentOut,
    ErrorBody,
    ErrorDetail,
    ErrorSegmentLine,
    EventsOut,
    HealthOut,
    InvalidRequest,
    MessageIn,
    MessageResult,
    MessageStatusOut,
    PreviewIn,
    PreviewOut,
    ReadyOut,
    RecipientOut,
    StoreFull,
    StoreUnavailable,
    SubmitResponse,
)
from gateway.http import Request, Response, ndjson_response
from gateway.marketing.api_routes import MARKETING_ROUTES, MarketingHandlers
from gateway.openapi import QueryParam, ResponseSpec, RouteSpec, openapi_document

__all__ = [
    "LOOPBACK_HOSTS",
    "ROUTES",
    "Api",
    "ApiError",
    "Backend",
    "Backpressure",
    "InvalidRequest",
    "MessageResult",
    "RouteStats",
    "StoreFull",
    "StoreUnavailable",
    "UnsupportedMediaType",
    "field_error",
]

log = logging.getLogger("gateway.api")

DEFAULT_MAX_BATCH = 1000
#: Host names (without port) a token-less API answers on /v1/*.
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]", "::1")
DEFAULT_MAX_WAIT = 30.0

Days = Annotated[int, msgspec.Meta(ge=1, le=3650)]
Limit = Annotated[int, msgspec.Meta(ge=1, le=1000)]
Wait = Annotated[float, msgspec.Meta(ge=0, le=300)]
Cursor = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]

_T = TypeVar("_T")
_SUBMIT_ERRORS = (400, 413, 415, 429, 503, 507)
DAYS = QueryParam(name="days", type=Days, default=30, description="Look-back window in days")
AFTER = QueryParam(name="after", type=Cursor,
                   description="Cursor: `next` of the previous answer; absent = the start")
LIMIT = QueryParam(name="limit", type=Limit, default=100, description="Most events to return")
WAIT = QueryParam(name="wait", type=Wait, default=0,
                  description="Seconds to wait for an event when none is available "
                              "(the server may answer earlier)")


class UnsupportedMediaType(ApiError):
    """A body that is not declared as JSON: 415."""

    status = 415
    code = "unsupported_media_type"


#: The route table: the router dispatches on it and the OpenAPI document is built from it.
ROUTES: tuple[RouteSpec, ...] = (
    RouteSpec(
        method="POST", path="/v1/messages", name="submit_messages",
        summary="Send one message, or a batch {\"messages\": [...]}; answered after the "
                "batch is durably stored",
        body=(MessageIn, BatchIn),
        responses=(
            ResponseSpec(status=202, description="At least one message was accepted "
                         "(queued or scheduled); results in request order",
                         type=SubmitResponse),
            ResponseSpec(status=200, description="Every message was rejected by a rule",
                         type=SubmitResponse),
        ),
        errors=_SUBMIT_ERRORS,
    ),
    RouteSpec(
        method="POST", path="/v1/messages/preview", name="preview_message",
        summary="Encoding and segments of a text; nothing is sent",
        body=(PreviewIn,),
        responses=(ResponseSpec(status=200, description="The preview", type=PreviewOut),),
        errors=(400, 413, 415, 429, 503),
    ),
    RouteSpec(
        method="GET", path="/v1/messages/{id}", name="get_message",
        summary="Status, parts (carrier message ids, receipts) and history of a message",
        path_params=(("id", "The id returned by POST /v1/messages"),),
        responses=(ResponseSpec(status=200, description="The message",
                                type=MessageStatusOut),),
        errors=(400, 404, 429, 503),
    ),
    RouteSpec(
        method="POST", path="/v1/consent", name="record_consent",
        summary="Record a consent change (subscribe, unsubscribe, confirm)",
        body=(ConsentIn,),
        responses=(ResponseSpec(status=200, description="Consent after the change",
                                type=ConsentOut),),
        errors=(400, 413, 415, 429, 503, 507),
    ),
    RouteSpec(
        method="GET", path="/v1/recipients/{phone}", name="get_recipient",
        summary="Consent, time zones, recent sends and delivery-error summary of a number",
        path_params=(("phone", "E.164, e.g. +14155550100 (percent-encode + as %2B "
                               "or send it literally)"),),
        responses=(ResponseSpec(status=200, description="The recipient", type=RecipientOut),),
        errors=(400, 404, 429, 503),
    ),
    RouteSpec(
        method="GET", path="/v1/segments/sms-errors", name="sms_error_segment",
        summary="The SMS error segment as NDJSON, one recipient per line (streamed)",
        query=(DAYS,),
        responses=(ResponseSpec(status=200, description="One JSON object per line",
                                type=ErrorSegmentLine, media_type="application/x-ndjson"),),
        errors=(400, 429, 503),
    ),
    RouteSpec(
        method="GET", path="/v1/events", name="list_events",
        summary="The durable event feed after a cursor; long-polls up to `wait` seconds",
        query=(AFTER, LIMIT, WAIT),
        responses=(ResponseSpec(status=200, description="Events and the next cursor",
                                type=EventsOut),),
        errors=(400, 429, 503),
    ),
    *MARKETING_ROUTES,
    RouteSpec(
        method="GET", path="/healthz", name="healthz", auth=False,
        summary="Process up",
        responses=(ResponseSpec(status=200, description="Healthy", type=HealthOut),
                   ResponseSpec(status=503, description="Unhealthy", type=HealthOut)),
    ),
    RouteSpec(
        method="GET", path="/readyz", name="readyz", auth=False,
        summary="Ready for traffic: store open and a bind per routed carrier",
        responses=(ResponseSpec(status=200, description="Ready", type=ReadyOut),
                   ResponseSpec(status=503, description="Not ready", type=ReadyOut)),
    ),
    RouteSpec(
        method="GET", path="/openapi.json", name="openapi", auth=False,
        summary="This document",
        responses=(ResponseSpec(status=200, description="OpenAPI 3.1 document"),),
    ),
)


class RouteStats(msgspec.Struct, frozen=True, kw_only=True):
    """Counters of one route since start; latency is until the handler returned (for a
    streamed body: until its first line was ready)."""

    requests: int
    statuses: dict[int, int]
    seconds_total: float
    seconds_max: float


class _RouteCounter:
    __slots__ = ("requests", "seconds_max", "seconds_total", "statuses")

    def __init__(self) -> None:
        self.requests = 0
        self.statuses: dict[int, int] = {}
        self.seconds_total = 0.0
        self.seconds_max = 0.0

    def add(self, status: int, seconds: float) -> None:
        self.requests += 1
        self.statuses[status] = self.statuses.get(status, 0) + 1
        self.seconds_total += seconds
        self.seconds_max = max(self.seconds_max, seconds)


_HandlerFn = Callable[..., Awaitable[Response]]


class _Bound:
    __slots__ = ("counter", "handler", "key")

    def __init__(self, key: str, handler: _HandlerFn) -> None:
        self.key = key
        self.handler = handler
        self.counter = _RouteCounter()


_CT_JSON = (b"content-type", b"application/json")
_JSON_HEADERS = (_CT_JSON,)

# msgspec.ValidationError texts: "<what> - at `$.messages[3].to`"
_AT = re.compile(r"^(?P<msg>.*?)(?: - at `\$\.?(?P<path>[^`]*)`)?$", re.DOTALL)
_FIELD_NAMED = {
    "unknown_field": re.compile(r"^Object contains unknown field `(?P<name>[^`]*)`"),
    "missing_field": re.compile(r"^Object missing required field `(?P<name>[^`]*)`"),
}
_E164 = re.compile(E164)


def field_error(exc: msgspec.ValidationError) -> InvalidRequest:
    """An `InvalidRequest` whose ``field`` is the JSON path msgspec reported, without the
    leading ``$.``; for unknown and missing fields, the path of the field itself."""
    match = _AT.match(str(exc))
    assert match is not None  # the pattern matches any string
    message, path = match["msg"], match["path"] or ""
    for code, pattern in _FIELD_NAMED.items():
        named = pattern.match(message)
        if named:
            name = named["name"]
            return InvalidRequest(message, field=f"{path}.{name}" if path else name, code=code)
    return InvalidRequest(message, field=path or None)


class Api(MarketingHandlers):
    """The API application: an `gateway.http.Handler` over a `Backend`.

    ``tokens``: bearer tokens; empty = no authentication (the config allows that only on a
    loopback listener). Without tokens, /v1/* answers only requests whose Host is one of
    ``loopback_hosts`` (None = any): a web page cannot then reach the API through DNS
    rebinding (and cannot POST cross-origin: bodies must be declared JSON).
    ``max_text_chars`` and ``max_batch`` are the configured limits (the schema's caps are
    higher); ``max_wait`` bounds a long-poll.
    """

    def __init__(
        self,
        backend: Backend,
        *,
        tokens: Sequence[str] = (),
        loopback_hosts: Sequence[str] | None = LOOPBACK_HOSTS,
        max_text_chars: int = MAX_TEXT_CHARS,
        max_batch: int = DEFAULT_MAX_BATCH,
        max_wait: float = DEFAULT_MAX_WAIT,
        version: str = "0",
    ) -> None:
        self._backend = backend
        self._tokens = tuple(t.encode("utf-8") for t in tokens)
        self._hosts = (None if self._tokens or loopback_hosts is None
                       else frozenset(h.encode("ascii").lower() for h in loopback_hosts))
        # Per-request checks of header values that repeat (clients send the same Host
        # and Content-Type every time), remembered for up to 64 distinct values each.
        self._host_ok: dict[bytes | None, bool] = {}
        self._json_media: dict[bytes | None, bool] = {}
        self._max_text = max_text_chars
        self._max_batch = max_batch
        self._max_wait = max_wait
        self._encode = msgspec.json.Encoder().encode
        self._message = msgspec.json.Decoder(MessageIn).decode
        self._batch = msgspec.json.Decoder(BatchIn).decode
        self._preview = msgspec.json.Decoder(PreviewIn).decode
        self._consent = msgspec.json.Decoder(ConsentIn).decode
        self._keys = msgspec.json.Decoder(dict[str, msgspec.Raw]).decode
        self.openapi = openapi_document(
            ROUTES, version=version, auth=bool(self._tokens),
            overrides={
                "MessageIn": {"text": {"maxLength": max_text_chars}},
                "PreviewIn": {"text": {"maxLength": max_text_chars}},
                "BatchIn": {"messages": {"maxItems": max_batch}},
            })
        self._openapi_body = self._encode(self.openapi)
        self._static: dict[str, dict[str, _Bound]] = {}
        self._dynamic: list[tuple[tuple[str | None, ...], dict[str, _Bound]]] = []
        self._routes: dict[str, _Bound] = {}
        for route in ROUTES:
            bound = _Bound(f"{route.method} {route.path}", getattr(self, "_" + route.name))
            self._routes[bound.key] = bound
            if "{" not in route.path:
                self._static.setdefault(route.path, {})[route.method] = bound
                continue
            template = tuple(None if s.startswith("{") else s for s in route.path.split("/"))
            for existing, methods in self._dynamic:
                if existing == template:
                    methods[route.method] = bound
                    break
            else:
                self._dynamic.append((template, {route.method: bound}))
        self._unmatched = _RouteCounter()

    def statistics(self) -> dict[str, RouteStats]:
        """Per route (``"POST /v1/messages"``; ``"unmatched"`` for 401/403/404/405 before a
        route ran) counters and latency sums since start: plain numbers for metrics."""
        counters = {key: bound.counter for key, bound in self._routes.items()}
        counters["unmatched"] = self._unmatched
        return {key: RouteStats(requests=c.requests, statuses=dict(c.statuses),
                                seconds_total=c.seconds_total, seconds_max=c.seconds_max)
                for key, c in counters.items()}

    # --- dispatch -----------------------------------------------------------------------

    async def __call__(self, request: Request) -> Response:
        # Auth goes by prefix, before routing, so unknown /v1/ paths do not reveal which
        # exist (ROUTES marks exactly the /v1/ routes auth=True; a test holds it so).
        start = time.perf_counter()
        path = request.path
        counter = self._unmatched
        try:
            if self._tokens and path.startswith("/v1/") and not self._authorized(request):
                response = self._unauthorized(request)
            elif (self._hosts is not None and path.startswith("/v1/")
                  and not self._host_allowed(request)):
                response = self._error(403, "host_not_allowed",
                                       "without tokens the API answers loopback Host names only")
            else:
                methods = self._static.get(path)
                args: tuple[str, ...] = ()
                if methods is None:
                    methods, args = self._match(path)
                bound = methods.get(request.method) if methods is not None else None
                if methods is None:
                    response = self._error(404, "not_found", f"no route for {path}")
                elif bound is None:
                    allow = ", ".join(sorted(methods)).encode("ascii")
                    response = self._error(405, "method_not_allowed",
                                           f"{request.method} not allowed on {path}",
                                           headers=((b"allow", allow),))
                else:
                    counter = bound.counter
                    response = await bound.handler(request, *args)
        except ApiError as exc:
            response = self._error(exc.status, exc.code, exc.message, exc.field, exc.headers)
        except Exception:
            log.exception("%s %s failed", request.method, request.target)
            response = self._error(500, "internal_error", "internal server error")
        counter.add(response.status, time.perf_counter() - start)
        return response

    def _match(self, path: str) -> tuple[dict[str, _Bound] | None, tuple[str, ...]]:
        segments = path.split("/")
        for template, methods in self._dynamic:
            if len(template) != len(segments):
                continue
            args = []
            for want, got in zip(template, segments, strict=True):
                if want is None:
                    if not got:
                        break
                    args.append(unquote(got))
                elif want != got:
                    break
            else:
                return methods, tuple(args)
        return None, ()

    def _host_allowed(self, request: Request) -> bool:
        host = request.header(b"host")
        ok = self._host_ok.get(host)
        if ok is None:
            assert self._hosts is not None
            ok = _hostname(host) in self._hosts
            if len(self._host_ok) < 64:
                self._host_ok[host] = ok
        return ok

    def _authorized(self, request: Request) -> bool:
        value = request.header(b"authorization")
        if value is None:
            return False
        scheme, _, token = value.partition(b" ")
        if scheme.lower() != b"bearer":
            return False
        token = token.strip()
        ok = False
        for known in self._tokens:  # every token, no early exit: timing says nothing
            ok |= hmac.compare_digest(token, known)
        return ok

    def _unauthorized(self, request: Request) -> Response:
        challenge = b'Bearer realm="smsgw"'
        if request.header(b"authorization") is not None:
            challenge += b', error="invalid_token"'
        return self._error(401, "unauthorized", "a valid bearer token is required",
                           headers=((b"www-authenticate", challenge),))

    # --- helpers ------------------------------------------------------------------------

    def _json(self, status: int, value: msgspec.Struct) -> Response:
        return Response(status, self._encode(value), _JSON_HEADERS)

    def _error(
        self, status: int, code: str, message: str, field: str | None = None,
        headers: Sequence[tuple[bytes, bytes]] = (),
    ) -> Response:
        body = self._encode(ErrorBody(error=ErrorDetail(code=code, message=message,
                                                        field=field)))
        return Response(status, body, (_CT_JSON, *headers))

    def _decode(self, request: Request, decode: Callable[[bytes], _T]) -> _T:
        content_type = request.header(b"content-type")
        json_media = self._json_media.get(content_type)
        if json_media is None:
            media = (content_type or b"").partition(b";")[0].strip().lower()
            json_media = media == b"application/json" or media.endswith(b"+json")
            if len(self._json_media) < 64:
                self._json_media[content_type] = json_media
        # Requiring JSON is also CSRF protection for a token-less loopback API: a browser
        # can POST text/plain cross-origin without asking, but not application/json.
        if not json_media:
            raise UnsupportedMediaType("Content-Type must be application/json")
        try:
            return decode(request.body)
        except msgspec.ValidationError as exc:
            raise field_error(exc) from None
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            raise InvalidRequest(f"body is not valid JSON: {exc}", code="invalid_json") from None
        except RecursionError:  # e.g. a million nested arrays inside `metadata`
            raise InvalidRequest("body is nested too deeply", code="invalid_json") from None

    def _check_text(self, text: str, field: str) -> None:
        if len(text) > self._max_text:
            raise InvalidRequest(f"text longer than {self._max_text} characters", field=field)

    def _check_message(self, message: MessageIn, prefix: str) -> None:
        self._check_text(message.text, prefix + "text")
        if message.country is None and not message.to.startswith("+"):
            raise InvalidRequest("`country` is required when `to` is not E.164 (+...)",
                                 field=prefix + "country", code="missing_field")

    def _query(self, request: Request, param: QueryParam) -> Any:
        raw = request.query.get(param.name)
        if raw is None:
            return param.default
        try:
            return msgspec.convert(raw, param.type, strict=False)
        except msgspec.ValidationError as exc:
            raise InvalidRequest(f"{exc}", field=param.name) from None

    # --- handlers (named after RouteSpec.name) ------------------------------------------

    async def _submit_messages(self, request: Request) -> Response:
        body = request.body
        # A single message and a batch share the endpoint. Only a body mentioning
        # "messages" can be a batch; for those, look at the top-level keys to decide.
        if b'"messages"' in body and "messages" in self._decode(request, self._keys):
            messages = self._decode(request, self._batch).messages
            if len(messages) > self._max_batch:
                raise InvalidRequest(f"at most {self._max_batch} messages per request",
                                     field="messages")
            for index, message in enumerate(messages):
                self._check_message(message, f"messages[{index}].")
        else:
            message = self._decode(request, self._message)
            self._check_message(message, "")
            messages = [message]
        results = await self._backend.submit(messages)
        if len(results) != len(messages):
            raise RuntimeError(f"backend answered {len(results)} results "
                               f"for {len(messages)} messages")
        status = 200  # every message rejected by a rule
        for r in results:
            if r.status != "rejected":
                status = 202
                break
        return self._json(status, SubmitResponse(results=results))

    async def _preview_message(self, request: Request) -> Response:
        preview = self._decode(request, self._preview)
        self._check_text(preview.text, "text")
        return self._json(200, await self._backend.preview(preview))

    async def _get_message(self, request: Request, message_id: str) -> Response:
        if len(message_id) > 128:
            raise InvalidRequest("message id longer than 128 characters", field="id")
        found = await self._backend.get_message(message_id)
        if found is None:
            return self._error(404, "not_found", f"no message {message_id}")
        return self._json(200, found)

    async def _record_consent(self, request: Request) -> Response:
        consent = self._decode(request, self._consent)
        if consent.country is None and not consent.phone.startswith("+"):
            raise InvalidRequest("`country` is required when `phone` is not E.164 (+...)",
                                 field="country", code="missing_field")
        return self._json(200, await self._backend.consent(consent))

    async def _get_recipient(self, request: Request, phone: str) -> Response:
        if not _E164.match(phone):
            raise InvalidRequest("phone must be E.164, e.g. +14155550100", field="phone")
        found = await self._backend.get_recipient(phone)
        if found is None:
            return self._error(404, "not_found", f"nothing known about {phone}")
        return self._json(200, found)

    async def _sms_error_segment(self, request: Request) -> Response:
        days = self._query(request, DAYS)
        return await ndjson_response(self._backend.error_segment(days), self._encode)

    async def _list_events(self, request: Request) -> Response:
        after = self._query(request, AFTER)
        limit = self._query(request, LIMIT)
        wait = min(float(self._query(request, WAIT)), self._max_wait)
        return self._json(200, await self._backend.events(after, limit, wait))

    async def _healthz(self, request: Request) -> Response:
        try:
            healthy = await self._backend.health()
        except Exception:
            log.exception("health check failed")
            healthy = False
        if healthy:
            return self._json(200, HealthOut(status="ok"))
        return self._json(503, HealthOut(status="unhealthy"))

    async def _readyz(self, request: Request) -> Response:
        ready, detail = await self._backend.ready()
        return self._json(200 if ready else 503, ReadyOut(ready=ready, detail=detail))

    async def _openapi(self, request: Request) -> Response:
        return Response(200, self._openapi_body, _JSON_HEADERS)


def _hostname(header: bytes | None) -> bytes:
    host = (header or b"").lower()
    if host.startswith(b"["):  # [::1]:8080
        return host[:host.find(b"]") + 1]
    return host.partition(b":")[0]


