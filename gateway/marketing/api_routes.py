"""The marketing routes of the HTTP API (docs/marketing.md): opt-in codes and the keyword
and subscriber segments.

``MARKETING_ROUTES`` joins ``gateway.api.ROUTES`` (router and OpenAPI document), and
``MarketingHandlers`` is a mixin of ``gateway.api.Api`` holding their handlers (named
``_<route name>`` like the others), so ``api.py`` only wires them in.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, Final, TypeVar

import msgspec

from gateway.api_types import (
    COUNTRY,
    InvalidRequest,
    KeywordSegmentLine,
    OptinErrorBody,
    OptinStartIn,
    OptinStartOut,
    OptinVerifyIn,
    OptinVerifyOut,
    SubscriberSegmentLine,
)
from gateway.http import Request, Response, ndjson_response
from gateway.openapi import QueryParam, ResponseSpec, RouteSpec

if TYPE_CHECKING:
    from gateway.api_types import Backend

__all__ = ["MARKETING_ROUTES", "VERIFY_STATUS", "MarketingHandlers"]

_T = TypeVar("_T")

#: HTTP status of each failed verify outcome (the body's ``error.code``).
VERIFY_STATUS: Final = {"wrong_code": 422, "expired": 410, "too_many_attempts": 429,
                        "unknown_challenge": 404}

Word = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
KwDays = Annotated[int, msgspec.Meta(ge=1, le=3650)]
CountryParam = Annotated[str, msgspec.Meta(pattern=COUNTRY)]
LanguageParam = Annotated[str, msgspec.Meta(pattern=r"^[a-z]{2}$")]

WORD = QueryParam(name="word", type=Word,
                  description="The keyword (compared after normalisation: case, accents, "
                              "punctuation)")
KW_DAYS = QueryParam(name="days", type=KwDays, default=30,
                     description="Look-back window in days")
COUNTRY_Q = QueryParam(name="country", type=CountryParam,
                       description="ISO 3166-1 alpha-2 of the number; absent = any")
LANGUAGE_Q = QueryParam(name="language", type=LanguageParam,
                        description="ISO 639-1 (opt-in keyword or consent); absent = any")
_NDJSON = "application/x-ndjson"
_CT_JSON: Final = (b"content-type", b"application/json")
_NO_STORE: Final = (b"cache-control", b"no-store")

MARKETING_ROUTES: tuple[RouteSpec, ...] = (
    RouteSpec(
        method="POST", path="/v1/optin/start", name="optin_start",
        summary="Send an opt-in code by SMS (transactional); the answer never says whether "
                "the number is known",
        body=(OptinStartIn,),
        responses=(ResponseSpec(status=202, description="The code is on its way",
                                type=OptinStartOut),),
        errors=(400, 404, 413, 415, 429, 503, 507),
    ),
    RouteSpec(
        method="POST", path="/v1/optin/verify", name="optin_verify",
        summary="Check an opt-in code; success subscribes the number (double opt-in "
                "confirmed, source recorded)",
        body=(OptinVerifyIn,),
        responses=(
            ResponseSpec(status=200, description="Verified", type=OptinVerifyOut),
            ResponseSpec(status=404, description="unknown_challenge", type=OptinErrorBody),
            ResponseSpec(status=410, description="expired", type=OptinErrorBody),
            ResponseSpec(status=422, description="wrong_code", type=OptinErrorBody),
            ResponseSpec(status=429, description="too_many_attempts", type=OptinErrorBody),
        ),
        errors=(400, 413, 415, 503, 507),
    ),
    RouteSpec(
        method="GET", path="/v1/segments/keyword", name="keyword_segment",
        summary="Recipients whose MO matched a keyword, as NDJSON (streamed)",
        query=(WORD, KW_DAYS),
        responses=(ResponseSpec(status=200, description="One JSON object per line",
                                type=KeywordSegmentLine, media_type=_NDJSON),),
        errors=(400, 429, 503),
    ),
    RouteSpec(
        method="GET", path="/v1/segments/subscribers", name="subscriber_segment",
        summary="Subscribed recipients by country and language, as NDJSON (streamed)",
        query=(COUNTRY_Q, LANGUAGE_Q),
        responses=(ResponseSpec(status=200, description="One JSON object per line",
                                type=SubscriberSegmentLine, media_type=_NDJSON),),
        errors=(400, 429, 503),
    ),
)

_start = msgspec.json.Decoder(OptinStartIn).decode
_verify = msgspec.json.Decoder(OptinVerifyIn).decode
_encode = msgspec.json.Encoder().encode


class MarketingHandlers:
    """Handlers of ``MARKETING_ROUTES`` (mixed into ``gateway.api.Api``)."""

    if TYPE_CHECKING:
        _backend: Backend

        def _decode(self, request: Request, decode: Callable[[bytes], _T]) -> _T: ...

        def _query(self, request: Request, param: QueryParam) -> Any: ...

    async def _optin_start(self, request: Request) -> Response:
        body = self._decode(request, _start)
        if body.country is None and not body.phone.startswith("+"):
            raise InvalidRequest("`country` is required when `phone` is not E.164 (+...)",
                                 field="country", code="missing_field")
        ip = request.client[0] if request.client is not None else None
        out = await self._backend.optin_start(body, ip)
        return Response(202, _encode(out), (_CT_JSON, _NO_STORE))

    async def _optin_verify(self, request: Request) -> Response:
        out = await self._backend.optin_verify(self._decode(request, _verify))
        if isinstance(out, OptinErrorBody):
            return Response(VERIFY_STATUS.get(out.error.code, 400), _encode(out),
                            (_CT_JSON, _NO_STORE))
        return Response(200, _encode(out), (_CT_JSON, _NO_STORE))

    async def _keyword_segment(self, request: Request) -> Response:
        word = self._query(request, WORD)
        if word is None:
            raise InvalidRequest("`word` is required", field="word", code="missing_field")
        days = self._query(request, KW_DAYS)
        return await ndjson_response(self._backend.keyword_segment(word, days), _encode)

    async def _subscriber_segment(self, request: Request) -> Response:
        country = self._query(request, COUNTRY_Q)
        language = self._query(request, LANGUAGE_Q)
        return await ndjson_response(self._backend.subscriber_segment(country, language),
                                     _encode)

