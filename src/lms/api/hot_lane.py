"""The hot lane: the five requests a busy day is made of (the catalog, a course page, certificate
verification, the progress heartbeat, lesson completion), answered without Litestar's
per-request machinery. Everything else, and anything unusual about these, goes on to Litestar.

Profiled under load (bench/README.md), routing, the middleware stack, dependency injection,
the request and response objects and the exception middleware cost more CPU than the work
itself on these routes. Here each hot request runs what its Litestar route runs, in the same
order and through the same functions: the input guard's rules, the bearer token checked against
the user's current state, the permission table, the strict JSON body decoder, the service the
controller calls, the same error shapes (lms.api.errors.Problem). It answers the same bytes:
tests/integration/test_hot_lane.py sends each request both ways and compares.

What the lane does not decide itself it hands on untouched (a body it has read is replayed), and
Litestar answers as it always does: OPTIONS and HEAD, CORS (an Origin header), the certificate
page (Accept preferring text/html), any query, path, header or Host a rule would refuse or that
is not in its plainest form, and a body the decoder refuses field by field. The lane never
refuses a request Litestar would take, and never takes one it would refuse.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from functools import lru_cache
from itertools import chain
from typing import Any
from urllib.parse import unquote_plus

import msgspec
from litestar.datastructures.headers import Accept

from lms.api.client_ip import client_ip_of
from lms.api.errors import Problem, problem_of_domain_error, problem_of_unhandled
from lms.api.input_guard import MAX_LENGTH_DIGITS
from lms.api.json_body import FieldError
from lms.api.json_body import decode as decode_body
from lms.api.pagination import CURSOR_PATTERN, DEFAULT_LIMIT
from lms.api.schemas import MAX_PAGE_SIZE
from lms.api.security import bearer_token_in, check_permission
from lms.api.text import bad_character
from lms.context import AppContext
from lms.domain.auth.authentication import Principal, authenticate
from lms.domain.auth.permissions import Permission
from lms.domain.certificates import services as certificates
from lms.domain.certificates.controllers import VERIFY_CACHE, verification_reads
from lms.domain.certificates.schemas import UNKNOWN_SERIAL
from lms.domain.courses import catalog
from lms.domain.errors import DomainError, Unauthenticated
from lms.domain.learning import progress
from lms.domain.learning.completion import complete_lesson
from lms.domain.learning.schemas import Heartbeat

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# The route templates Litestar gives these routes (scope["path_template"], the metrics' label);
# a test checks each is one of the app's.
CATALOG = "/courses"
COURSE = "/courses/{course_id}"
VERIFY = "/certificates/verify/{serial_hash}"
HEARTBEAT = "/lessons/{lesson_id}/progress"
COMPLETE = "/lessons/{lesson_id}/complete"

JSON = b"application/json"
# The controllers' headers, by the same names (lms.domain.*.controllers).
VERIFY_HEADERS = [(b"cache-control", VERIFY_CACHE.encode()), (b"vary", b"Accept")]

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_SERIAL = re.compile(r"[0-9A-Za-z]{1,128}")
_CURSOR = re.compile(CURSOR_PATTERN)
_LIMIT = re.compile(r"[1-9][0-9]{0,2}")
# A query string the lane parses itself: nothing but what these four parameters are made of.
_PLAIN_QUERY = re.compile(rb"[A-Za-z0-9._~%+=&-]*")
_LONE_PERCENT = re.compile(rb"%(?![0-9A-Fa-f]{2})")
# RFC 9110 5.5 (lms.api.input_guard): no control byte but tab, in any header name or value.
_HEADER_CONTROLS = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
# The plainest Host values; anything else goes to Litestar's own check.
_PLAIN_HOST = re.compile(
    rb"[A-Za-z0-9.-]{1,253}(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]{2,45}\](:[0-9]{1,5})?"
)
_DIGITS = re.compile(rb"[0-9]{1,%d}" % MAX_LENGTH_DIGITS)
# A heartbeat is some 30 bytes; a larger body (or none that says its length) is read up to this
# and handed on past it, where Litestar applies its own limit.
MAX_BODY = 4096
_ENCODER = msgspec.json.Encoder()


class HandOn(Exception):
    """This request is Litestar's to answer."""


class Disconnected(Exception):
    """The client went away before its body arrived: there is no one to answer."""


class Request:
    """What the lane reads of a request: its headers, read once."""

    __slots__ = (
        "accept",
        "authorization",
        "body",
        "body_complete",
        "content_length",
        "content_type",
        "forwarded_for",
        "if_none_match",
        "scope",
    )

    def __init__(self, scope: Scope) -> None:
        self.scope = scope
        self.accept: bytes | None = None
        self.authorization: bytes | None = None
        self.if_none_match: bytes | None = None
        self.content_type: bytes | None = None
        self.content_length: int | None = None
        self.forwarded_for: list[str] = []
        self.body: bytes | None = None
        self.body_complete = False
        headers = scope["headers"]
        # Names and values joined by a tab, which either may hold: one search for them all.
        if _HEADER_CONTROLS.search(b"\t".join(chain.from_iterable(headers))):
            raise HandOn
        for name, value in headers:
            # A repeated Authorization, Accept or If-None-Match: which one counts is Litestar's
            # to say.
            if name == b"authorization":
                if self.authorization is not None:
                    raise HandOn
                self.authorization = value
            elif name == b"accept":
                if self.accept is not None:
                    raise HandOn
                self.accept = value
            elif name == b"if-none-match":
                if self.if_none_match is not None:
                    raise HandOn
                self.if_none_match = value
            elif name == b"host":
                if not _PLAIN_HOST.fullmatch(value):
                    raise HandOn
            elif name == b"origin":  # CORS: Litestar's middleware adds its headers
                raise HandOn
            elif name == b"content-length":
                if not _DIGITS.fullmatch(value) or self.content_length is not None:
                    raise HandOn
                self.content_length = int(value)
            elif name == b"content-type":
                self.content_type = value
            elif name == b"x-forwarded-for":
                self.forwarded_for.append(value.decode("latin-1"))

    def token(self) -> str | None:
        if self.authorization is None:
            return None
        return bearer_token_in(self.authorization.decode("latin-1"))


Handler = Callable[["HotLane", Request, str, Receive], Awaitable[tuple[int, list[Any], bytes]]]


class HotLane:
    """ASGI middleware inside the request-context layer (request id, log line, metrics), around
    the whole of Litestar's handler."""

    def __init__(self, app: ASGIApp, ctx: AppContext) -> None:
        self.app = app
        self.ctx = ctx

    def route(self, scope: Scope) -> tuple[Handler, str, str] | None:
        """(handler, route template, path parameter) for a hot request, else None."""
        path: str = scope["path"]
        method = scope["method"]
        if method == "GET":
            if path == "/courses":
                return HotLane.catalog, CATALOG, ""
            if path.startswith("/courses/") and _UUID.fullmatch(path, 9):
                return HotLane.course, COURSE, path[9:]
            if path.startswith("/certificates/verify/") and _SERIAL.fullmatch(path, 21):
                return HotLane.verify, VERIFY, path[21:]
        elif method == "POST" and len(path) == 54 and path.startswith("/lessons/"):
            if not _UUID.fullmatch(path, 9, 45):
                return None
            if path.endswith("/progress"):
                return HotLane.heartbeat, HEARTBEAT, path[9:45]
            if path.endswith("/complete"):
                return HotLane.complete, COMPLETE, path[9:45]
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("root_path"):
            await self.app(scope, receive, send)
            return
        route = self.route(scope)
        if route is None:
            await self.app(scope, receive, send)
            return
        handler, template, parameter = route
        request: Request | None = None
        try:
            request = Request(scope)
            if scope["query_string"] and handler is not HotLane.catalog:
                raise HandOn
            scope["path_template"] = template
            status, headers, body = await handler(self, request, parameter, receive)
        except HandOn:
            await self.app(scope, _replay(request, receive), send)
            return
        except Disconnected:
            return
        except DomainError as exc:
            problem = problem_of_domain_error(exc)
            status, headers, body = _problem(problem)
        except Exception as exc:
            problem = problem_of_unhandled(exc, scope["method"], scope["path"])
            status, headers, body = _problem(problem)
        if status not in (204, 304):  # as Litestar: no length where there is never a body
            headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    # -- the routes: each mirrors its controller's handler -------------------------------------

    async def catalog(self, request: Request, _: str, receive: Receive) -> Answer:
        limit, cursor, q, creator_id = _catalog_query(request.scope["query_string"])
        principal = await self.caller(request)
        ctx = self.ctx
        answer = await catalog.list_courses(
            ctx.pool,
            ctx.replica_reads() if principal is None else ctx.pool,
            ctx,
            principal,
            limit=limit,
            cursor=cursor,
            q=q,
            creator_id=creator_id,
            client_ip=client_ip_of(
                request.scope.get("client"),
                lambda: request.forwarded_for,
                ctx.settings.trusted_proxies,
            ),
        )
        return _catalog_answer(answer, request)

    async def course(self, request: Request, course_id: str, receive: Receive) -> Answer:
        principal = await self.caller(request)
        reads = self.ctx.replica_reads() if principal is None else self.ctx.pool
        answer = await catalog.get_course(reads, uuid.UUID(course_id), principal)
        return _catalog_answer(answer, request)

    async def verify(self, request: Request, serial_hash: str, receive: Receive) -> Answer:
        if request.accept is not None and not _prefers_json(request.accept):
            raise HandOn  # the printable page
        ctx = self.ctx
        answer, _ = await certificates.verify(verification_reads(ctx), ctx, serial_hash)
        if answer is None:
            return 404, _json_headers(VERIFY_HEADERS), _ENCODER.encode(UNKNOWN_SERIAL)
        return 200, _json_headers(VERIFY_HEADERS), _ENCODER.encode(answer)

    async def heartbeat(self, request: Request, lesson_id: str, receive: Receive) -> Answer:
        principal = await self.learner(request)
        position = (await _body(request, receive, Heartbeat)).position_seconds
        await progress.heartbeat(
            self.ctx.pool, self.ctx, principal.user_id, uuid.UUID(lesson_id), position
        )
        return 204, [], b""

    async def complete(self, request: Request, lesson_id: str, receive: Receive) -> Answer:
        principal = await self.learner(request)
        completion = await complete_lesson(
            self.ctx.pool, self.ctx, principal.user_id, uuid.UUID(lesson_id)
        )
        return 200, _json_headers([]), _ENCODER.encode(completion)

    # -- who is calling ------------------------------------------------------------------------

    async def caller(self, request: Request) -> Principal | None:
        """On a public route (lms.api.security.optional_principal): the caller when a token is
        sent, else anonymous; an invalid token is a 401 either way."""
        token = request.token()
        return None if token is None else await authenticate(self.ctx, token)

    async def learner(self, request: Request) -> Principal:
        """The authentication middleware, then the routes' guard (TRACK_PROGRESS)."""
        token = request.token()
        if token is None:
            raise Unauthenticated("missing bearer token")
        return check_permission(await authenticate(self.ctx, token), Permission.TRACK_PROGRESS)


Answer = tuple[int, list[Any], bytes]


def _json_headers(extra: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    return [*extra, (b"content-type", JSON)]


def _problem(problem: Problem) -> Answer:
    headers = [(k.lower().encode(), v.encode()) for k, v in (problem.headers or {}).items()]
    return problem.status_code, _json_headers(headers), problem.body()


def _catalog_answer(answer: catalog.CatalogBody, request: Request) -> Answer:
    """lms.domain.courses.controllers.catalog_response."""
    headers = [
        (b"etag", answer.etag.encode()),
        (b"cache-control", answer.cache_control.encode()),
        (b"vary", b"Authorization"),
    ]
    if_none_match = request.if_none_match
    if if_none_match is not None and catalog.not_modified(
        if_none_match.decode("latin-1"), answer.etag
    ):
        return 304, headers, b""
    return 200, _json_headers(headers), answer.body


def _catalog_query(raw: bytes) -> tuple[int, str | None, str | None, uuid.UUID | None]:
    """limit, cursor, q and creatorId as Litestar would read them, or HandOn for anything it
    would have to refuse or read another way (a repeated name, an odd character, a bad value)."""
    limit: int | None = None
    cursor: str | None = None
    q: str | None = None
    creator_id: uuid.UUID | None = None
    if not raw:
        return DEFAULT_LIMIT, None, None, None
    if not _PLAIN_QUERY.fullmatch(raw) or _LONE_PERCENT.search(raw):
        raise HandOn
    seen: set[str] = set()
    for pair in raw.decode("ascii").split("&"):
        name, equals, encoded = pair.partition("=")
        if not equals or name in seen:
            raise HandOn
        seen.add(name)
        try:
            value = unquote_plus(encoded, errors="strict")
        except UnicodeDecodeError:
            raise HandOn from None
        if bad_character(value, free_text=False) is not None:
            raise HandOn
        if name == "limit":
            if not _LIMIT.fullmatch(value) or int(value) > MAX_PAGE_SIZE:
                raise HandOn
            limit = int(value)
        elif name == "cursor":
            if len(value) > 512 or not _CURSOR.fullmatch(value):
                raise HandOn
            cursor = value
        elif name == "q":
            if not value or len(value) > 200:
                raise HandOn
            q = value
        elif name == "creatorId":
            if not _UUID.fullmatch(value):
                raise HandOn
            creator_id = uuid.UUID(value)
        elif "%" in name or "+" in name:
            raise HandOn
    return limit or DEFAULT_LIMIT, cursor, q, creator_id


@lru_cache(maxsize=256)
def _prefers_json(accept: bytes) -> bool:
    """As the verify handler chooses (Litestar's Accept.best_match), per distinct header."""
    offered = ["application/json", "text/html"]
    chosen = Accept(accept.decode("latin-1")).best_match(offered, default=offered[0])
    return (chosen or offered[0]) == offered[0]


async def _body(request: Request, receive: Receive, target: type[Heartbeat]) -> Heartbeat:
    """The JSON body converted to `target` by lms.api.json_body; a body the decoder refuses as
    a whole is a 400 here (as through Litestar), one refused field by field is handed on for
    Litestar to word."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise HandOn
    if request.content_type is not None:
        media = request.content_type.split(b";", 1)[0].strip().lower()
        if media != JSON:
            raise HandOn
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise Disconnected
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        request.body_complete = not message.get("more_body", False)
        if size > MAX_BODY:
            request.body = b"".join(chunks)
            raise HandOn
        if request.body_complete:
            break
    request.body = body = b"".join(chunks)
    try:
        value: Heartbeat = decode_body(body or b"null", target)
    except FieldError:
        raise HandOn from None
    return value


def _replay(request: Request | None, receive: Receive) -> Receive:
    """`receive` for Litestar: the body the lane has read first, then the rest as it comes."""
    if request is None or request.body is None:
        return receive
    pending: list[Message] = [
        {"type": "http.request", "body": request.body, "more_body": not request.body_complete}
    ]

    async def replayed() -> Message:
        if pending:
            return pending.pop()
        return await receive()

    return replayed
