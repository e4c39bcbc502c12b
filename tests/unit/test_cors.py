"""CORS (lms.api.cors, at the app's edge) around an app answering with headers of the test's
choosing."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from litestar.config.cors import CORSConfig
from litestar.middleware._internal.cors import CORSMiddleware

from lms.api.cors import Cors, vary_with_origin
from lms.edge import Edge
from lms.hot_lane import HotLane

ALLOWED = "https://app.example.test"
CONFIG = CORSConfig(  # as lms.app builds it
    allow_origins=[ALLOWED],
    allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
    allow_headers=["Authorization", "Content-Type", "If-None-Match", "X-Request-ID"],
    expose_headers=["X-Request-ID", "ETag", "Retry-After", "Location"],
    max_age=600,
)
Headers = list[tuple[bytes, bytes]]


def at_edge(app: Any) -> Edge:
    """`app` behind the app's edge (with a lane that serves nothing), CORS by CONFIG."""
    return Edge(app, HotLane(None, []), Cors(CONFIG))  # type: ignore[arg-type]


def answering(headers: Headers, reached: list[str] | None = None) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if reached is not None:
            reached.append(scope["method"])
        await send({"type": "http.response.start", "status": 200, "headers": list(headers)})
        await send({"type": "http.response.body", "body": b"{}"})

    return app


def call(app: Any, method: str = "GET", **headers: str) -> tuple[int, Headers, bytes]:
    scope = {
        "type": "http",
        "method": method,
        "path": "/x",
        "headers": [(k.replace("_", "-").lower().encode(), v.encode()) for k, v in headers.items()],
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent[0]["status"], list(sent[0]["headers"]), sent[1]["body"]


def varies(headers: Headers) -> list[bytes]:
    return [v for k, v in headers if k == b"vary"]


@pytest.mark.parametrize(
    ("route", "sent"),
    [
        ([], b"Origin"),
        ([b"Authorization"], b"Authorization, Origin"),
        ([b"Accept"], b"Accept, Origin"),
        ([b"Accept, origin"], b"Accept, origin"),
        ([b"Origin"], b"Origin"),
        ([b"Accept", b"Authorization, Accept"], b"Accept, Authorization, Origin"),
        ([b"*"], b"*"),
    ],
)
@pytest.mark.parametrize("origin", [ALLOWED, "https://elsewhere.test", None])
def test_the_routes_vary_is_kept_and_origin_added_once(
    route: list[bytes], sent: bytes, origin: str | None
) -> None:
    """Allowed origin, refused one or none: the answer's Access-Control-Allow-Origin depends on
    Origin either way, so a cache must key on it, besides what the route varies on."""
    app = at_edge(answering([(b"vary", v) for v in route]))
    _, headers, _ = call(app, **({} if origin is None else {"origin": origin}))
    assert varies(headers) == [sent]
    assert ((b"access-control-allow-origin", ALLOWED.encode()) in headers) is (origin == ALLOWED)


def test_the_access_control_headers_are_litestars() -> None:
    """Every other header is what Litestar's own CORS middleware sends, for an allowed origin,
    a refused one and no Origin at all."""
    route = [(b"vary", b"Authorization"), (b"content-type", b"application/json")]
    ours = at_edge(answering(route))
    litestars = CORSMiddleware(answering(route), CONFIG)
    for headers in ({"origin": ALLOWED, "cookie": "a=b"}, {"origin": "https://x.test"}, {}):
        mine, theirs = call(ours, **headers)[1], call(litestars, **headers)[1]
        # The edge adds the request id as well.
        assert sorted(h for h in mine if h[0] not in (b"vary", b"x-request-id")) == sorted(
            h for h in theirs if h[0] != b"vary"
        )


def test_preflights_are_answered_here_with_vary_origin() -> None:
    reached: list[str] = []
    app = at_edge(answering([], reached))
    status, headers, body = call(
        app,
        "OPTIONS",
        origin=ALLOWED,
        access_control_request_method="POST",
        access_control_request_headers="authorization, content-type",
    )
    assert (status, body) == (204, b"")
    found = dict(headers)
    assert found[b"access-control-allow-origin"] == ALLOWED.encode()
    assert found[b"access-control-max-age"] == b"600"
    assert found[b"access-control-allow-methods"] == b"DELETE, GET, OPTIONS, PATCH, POST, PUT"
    assert varies(headers) == [b"Origin"]
    for refused, why in (
        ({"origin": "https://x.test", "access_control_request_method": "GET"}, b"Origin"),
        ({"origin": ALLOWED, "access_control_request_method": "TRACE"}, b"method"),
        ({"origin": ALLOWED, "access_control_request_headers": "x-secret"}, b"headers"),
    ):
        status, headers, body = call(app, "OPTIONS", **refused)
        assert (status, body) == (400, b"Disallowed CORS " + why)
        assert varies(headers) == [b"Origin"]
        assert b"access-control-allow-origin" not in dict(headers)
    assert reached == []
    # Without Origin, OPTIONS is the app's (its Allow header), Origin still in Vary.
    status, headers, _ = call(app, "OPTIONS")
    assert reached == ["OPTIONS"] and varies(headers) == [b"Origin"]


def test_vary_with_origin() -> None:
    assert vary_with_origin([b" Accept ,, accept", b"Cookie"]) == b"Accept, Cookie, Origin"
    assert vary_with_origin([b"Accept, *"]) == b"*"
