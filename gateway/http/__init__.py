"""A small HTTP/1.1 server: h11 directly on trio (no ASGI), used by the gateway's API.

Generic: it knows nothing of routes or JSON schemas. A handler takes a `Request` (read in
full, within `Limits`) and returns a `Response` whose body is bytes or an async iterator
of byte chunks (streamed with chunked transfer encoding).

Plus a small client (``HttpClient``: one keep-alive connection to one origin), used by
the webhooks.
"""

from gateway.http._client import (
    ClientResponse,
    HttpClient,
    HttpClientError,
    HttpConnectError,
    HttpProtocolError,
    HttpTimeout,
)
from gateway.http._message import (
    BodyStream,
    Handler,
    Limits,
    Request,
    Response,
    ndjson_response,
)
from gateway.http._server import ErrorResponder, Server, ServerStats, json_error, serve

__all__ = [
    "BodyStream",
    "ClientResponse",
    "ErrorResponder",
    "Handler",
    "HttpClient",
    "HttpClientError",
    "HttpConnectError",
    "HttpProtocolError",
    "HttpTimeout",
    "Limits",
    "Request",
    "Response",
    "Server",
    "ServerStats",
    "json_error",
    "ndjson_response",
    "serve",
]
