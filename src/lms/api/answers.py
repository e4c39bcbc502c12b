"""A hot route's whole answer, made by ONE function that both its Litestar handler and the hot lane
(lms.hot_lane) call.

A handler names its answer function in its `opt` (ANSWER) and its body is `respond(...)`: the
caller (optional on a public route, else the one the authentication middleware found), the
request's headers and client as an `Incoming`, the handler's own parameters by name. On a public
route the caller is read only when the answer function's third parameter is `principal`. The answer
function decides everything the client sees (status, headers, body, the replica it reads, the
cache headers, the media type), so the two paths cannot drift apart on what they answer. The lane
reproduces what Litestar does around a handler (routing, the query and path parameters, the body,
authentication, guards, CORS) from the handler's own declaration, and refuses to serve a handler
declaring anything it does not reproduce (lms.hot_lane.lane_route).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import lru_cache
from typing import Any, NamedTuple, Protocol

from litestar import Request, Response
from litestar.datastructures.headers import Accept

from lms.api.client_ip import client_ip_of
from lms.api.security import PUBLIC, optional_principal
from lms.context import AppContext
from lms.domain.auth.authentication import Principal

ANSWER = "answer"  # opt key: the function answering this handler's requests, whole
JSON = "application/json"


class Answer(NamedTuple):
    """Status, headers (without Content-Type and Content-Length), body and its media type.
    Immutable, and a tuple: made for every hot request, a frozen dataclass cost three times as
    much to build."""

    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    media_type: str = JSON

    def has_body(self) -> bool:
        """As Litestar: no body, Content-Type or Content-Length on 204, 304 and 1xx."""
        return self.status >= 200 and self.status not in (204, 304)

    def content_type(self) -> str:
        """Litestar's Content-Type for the media type (text types name their charset)."""
        media = self.media_type
        return f"{media}; charset=utf-8" if media.startswith("text/") else media

    def response(self) -> Response[Any]:
        """The answer as Litestar sends it."""
        return Response(
            content=self.body if self.has_body() else b"",
            status_code=self.status,
            headers=dict(self.headers),
            media_type=self.media_type,
        )

    def raw_headers(self) -> list[tuple[bytes, bytes]]:
        """The headers exactly as Litestar's Response encodes them, in the same order."""
        constant = _CONSTANT.get(id(self.headers))
        if constant is not None:
            headers = list(constant[1])
        else:
            headers = [(_name(k), v.encode("latin-1")) for k, v in self.headers]
        if self.has_body():
            headers.append((b"content-type", _content_type(self.media_type)))
            headers.append((b"content-length", b"%d" % len(self.body)))
        return headers


# id -> (a header set an answer function sends as it is, that set encoded). The set is kept
# here, so its id stays its own for the process's life.
_CONSTANT: dict[int, tuple[tuple[tuple[str, str], ...], tuple[tuple[bytes, bytes], ...]]] = {}


def constant_headers(*headers: tuple[str, str]) -> tuple[tuple[str, str], ...]:
    """A header set an answer function sends unchanged on every answer (a module constant):
    encoded here once, not for each answer (half the encoding's 0.85 us a verification)."""
    made = tuple(headers)
    _CONSTANT[id(made)] = (made, tuple((_name(k), v.encode("latin-1")) for k, v in made))
    return made


# Header names and Content-Type values, encoded once each: a route sends the same few. (An ETag
# makes every header set new, so sets are not what is kept.)
@lru_cache(maxsize=256)
def _name(name: str) -> bytes:
    """A header name as ASGI sends it: lower case, Latin-1."""
    return name.lower().encode("latin-1")


@lru_cache(maxsize=64)
def _content_type(media_type: str) -> bytes:
    return Answer(200, media_type=media_type).content_type().encode("latin-1")


class Incoming(Protocol):
    """What an answer function may read of its request besides its parameters."""

    def header(self, name: str) -> str | None:
        """The value of the header `name` (lower case), None when absent."""

    def client_ip(self, trusted: tuple[str, ...]) -> str:
        """The client's address (X-Forwarded-For believed only from `trusted` proxies)."""


AnswerFunction = Callable[..., Awaitable[Answer]]


class LitestarIncoming:
    """Incoming over a Litestar request."""

    __slots__ = ("request",)

    def __init__(self, request: Request[Any, Any, Any]) -> None:
        self.request = request

    def header(self, name: str) -> str | None:
        value: str | None = self.request.headers.get(name)
        return value

    def client_ip(self, trusted: tuple[str, ...]) -> str:
        request = self.request
        return client_ip_of(
            request.scope.get("client"),
            lambda: request.headers.getall("x-forwarded-for", []),
            trusted,
        )


async def respond(request: Request[Any, Any, Any], ctx: AppContext, **params: Any) -> Response[Any]:
    """A hot handler's body: its answer function's answer (the caller as the route admits them)."""
    handler = request.route_handler
    answer: AnswerFunction = handler.opt[ANSWER]
    principal: Principal | None
    if not handler.opt.get(PUBLIC):
        principal = request.user  # the authentication middleware's
    elif reads_caller(answer):
        principal = await optional_principal(request)
    else:
        principal = None
    made = await answer(ctx, LitestarIncoming(request), principal, **params)
    return made.response()


def reads_caller(answer: AnswerFunction) -> bool:
    """Whether `answer` reads who is calling: its third parameter is `principal`. On a public
    route one that does not (`_caller`) reads no token, and an invalid one is no 401."""
    return answer.__code__.co_varnames[2] == "principal"


def preferred(accept: str | None, offered: tuple[str, ...]) -> str:
    """The media type of `offered` the Accept header prefers (the first when none is)."""
    return _preferred(accept or "*/*", offered)


@lru_cache(maxsize=256)
def _preferred(accept: str, offered: tuple[str, ...]) -> str:
    return str(Accept(accept).best_match(list(offered), default=offered[0]) or offered[0])
