"""The hot lane: the requests a busy day is made of (a catalog page or search, a course page,
certificate verification, the progress heartbeat, lesson completion), answered without
Litestar's per-request machinery. Profiled under load (bench/README.md), routing, the middleware
stack, dependency injection, the request and response objects and the exception middleware cost
more CPU than the work itself on these routes.

The lane holds no rule of any route. It serves the handlers that name an answer function
(lms.api.answers.ANSWER in their `opt`): that one function makes the whole answer for the
handler and for the lane alike. What Litestar does around a handler the lane reproduces from the
handler's own declaration, read once when the app is built (lane_route): its path and path
parameters, its query parameters with their constraints, its JSON body type, whether it is
public, the permissions its guards demand. A handler declaring anything else (another
dependency, a hook, a guard of another kind, its own middleware, response headers or cookies, an
opt the lane does not know) cannot be served: building the app fails, and so does
tests/integration/test_hot_lane.py, which also sends each kind of request both ways and compares
status, every header and body.

Nor are CORS, the request id and the request's record: the app's edge (lms.edge) asks the lane
first and Litestar for what it hands on, and adds the same CORS headers, Vary and X-Request-ID to
either's answer; the preflight never reaches the lane. Anything the
lane does not decide itself goes on to Litestar untouched (a body it has read is replayed):
OPTIONS and HEAD, a query parameter the handler does not declare or one given twice, a value a
constraint refuses (Litestar words the 400), any path, header, Host or query not in its plainest
form, a body the decoder refuses field by field. The lane never refuses a request Litestar would
take, and never takes one it would refuse.
"""

from __future__ import annotations

import re
import types
import typing
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from asyncpg.pgproto import pgproto
from litestar import Litestar
from litestar.handlers import HTTPRouteHandler
from litestar.middleware import DefineMiddleware
from litestar.params import BodyKwarg, ParameterKwarg
from litestar.routes import HTTPRoute
from litestar.types import Empty

from lms.api.allow_header import AllowHeader
from lms.api.answers import ANSWER, Answer, AnswerFunction, reads_caller
from lms.api.client_ip import client_ip_of
from lms.api.errors import Problem, problem_of_domain_error, problem_of_unhandled
from lms.api.input_guard import MAX_LENGTH_DIGITS, InputGuard
from lms.api.json_body import FieldError
from lms.api.json_body import decode as decode_body
from lms.api.security import (
    PUBLIC,
    BearerAuthenticationMiddleware,
    bearer_token_in,
    check_permission,
)
from lms.api.text import bad_character
from lms.context import AppContext
from lms.domain.auth.authentication import Principal, authenticate
from lms.domain.auth.permissions import Permission
from lms.domain.errors import DomainError, Unauthenticated
from lms.request_headers import has_repeats, header_map

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
# A whole answer: status, headers, body.
Answered = tuple[int, list[tuple[bytes, bytes]], bytes]

# What the app's middleware does the lane does for its requests: the input guard's rules (plain
# path, query and headers, or hand on), Allow (OPTIONS only: never here), authentication.
REPRODUCED_MIDDLEWARE = (InputGuard, AllowHeader, BearerAuthenticationMiddleware)
# opt keys the lane knows the meaning of: public (no token needed), the answer function.
KNOWN_OPT = frozenset({PUBLIC, ANSWER})
# Parameters a handler may take besides its path, query and body ones: the request (read only
# through lms.api.answers.respond) and the context.
INJECTED = frozenset({"self", "request", "ctx"})
# Query parameter constraints the lane checks itself.
CHECKED = ("ge", "gt", "le", "lt", "min_length", "max_length", "pattern")
# Constraints and options the lane does not reproduce: a handler using one is Litestar's.
UNCHECKED = (
    "const",
    "multiple_of",
    "min_items",
    "max_items",
    "lower_case",
    "upper_case",
    "header",
    "cookie",
    "required",
)

_UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
# A str path parameter the lane takes: unreserved characters only (nothing to decode or refuse).
_PLAIN_SEGMENT = r"[A-Za-z0-9._~-]{1,256}"
_UUID_VALUE = re.compile(_UUID)
# A UUID the lane's pattern has matched, parsed by asyncpg's own UUID type (a uuid.UUID, equal
# and hashing alike, the type asyncpg returns for every uuid column): uuid.UUID's parse in Python
# cost a course page, a heartbeat or a completion 1 us, asyncpg's 0.13.
parse_uuid: Callable[[str], uuid.UUID] = pgproto.UUID
_INT_VALUE = re.compile(r"0|-?[1-9][0-9]{0,17}")
# A query string the lane parses itself: unreserved characters, escapes, `+`, `=`, `&`.
_PLAIN_QUERY = re.compile(rb"[A-Za-z0-9._~%+=&-]*")
_LONE_PERCENT = re.compile(rb"%(?![0-9A-Fa-f]{2})")
# RFC 9110 5.5 (lms.api.input_guard): no control byte but tab, in any header name or value.
_HEADER_CONTROLS = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_PLAIN_HOST = re.compile(
    rb"[A-Za-z0-9.-]{1,253}(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]{2,45}\](:[0-9]{1,5})?"
)
_DIGITS = re.compile(rb"[0-9]{1,%d}" % MAX_LENGTH_DIGITS)
# Headers a client may send more than once (a list, RFC 9110 5.3; cookies split by HTTP/2).
_LISTS = frozenset({b"x-forwarded-for", b"cookie"})
JSON = b"application/json"
# A hot body (a heartbeat is some 30 bytes) is read up to this and handed on past it, where
# Litestar applies its own limit.
MAX_BODY = 4096


class LaneCannotServe(Exception):
    """A handler names an answer function but declares something the lane does not reproduce."""


class HandOn(Exception):
    """This request is Litestar's to answer."""


class Disconnected(Exception):
    """The client went away before its body arrived: there is no one to answer."""


# -- reading the handlers -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QueryParam:
    name: str  # the handler's
    key: str  # on the wire
    kind: type  # int, str or uuid.UUID
    default: Any
    constraints: tuple[tuple[str, Any], ...]


@dataclass(frozen=True, slots=True)
class LaneRoute:
    method: str
    template: str  # Litestar's path_format: the metrics' and log lines' label
    prefix: str  # the path up to its first parameter
    path: re.Pattern[str]
    # (name, the function making its value from the matched text)
    path_params: tuple[tuple[str, Callable[[str], Any]], ...]
    query: dict[str, QueryParam]
    body: type | None
    public: bool
    reads_caller: bool  # on a public route: whether a token is read at all
    permissions: tuple[Permission, ...]
    answer: AnswerFunction


def _plain_type(annotation: Any) -> tuple[type, bool]:
    """(type, optional) of `T` or `T | None`."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            return rest[0], True
    return annotation, False


def _middleware_class(middleware: Any) -> Any:
    return middleware.middleware if isinstance(middleware, DefineMiddleware) else middleware


def lane_route(app: Litestar, route: HTTPRoute, method: str) -> LaneRoute:
    """The lane's reading of one handler naming an answer function; LaneCannotServe (saying
    what) when it declares anything the lane does not reproduce."""
    handler: HTTPRouteHandler = route.route_handler_map[method][0]  # type: ignore[index]
    where = f"{method} {route.path_format}"

    def refuse(why: str) -> LaneCannotServe:
        return LaneCannotServe(f"{where}: {why}; the hot lane cannot answer for it")

    answer = handler.opt[ANSWER]
    if set(handler.opt) - KNOWN_OPT:
        raise refuse(f"opt {sorted(set(handler.opt) - KNOWN_OPT)}")
    if handler.resolve_before_request() is not None:
        raise refuse("a before_request hook")
    if any(getattr(layer, "after_request", None) for layer in handler.ownership_layers):
        raise refuse("an after_request hook")
    if handler.resolve_after_response() is not None:
        raise refuse("an after_response hook")
    if handler.resolve_layered_parameters():
        raise refuse("parameters declared on a layer")
    if handler.resolve_response_headers():
        raise refuse("response headers")
    if handler.resolve_response_cookies():
        raise refuse("response cookies")
    if handler.cache or handler.etag is not None or handler.background is not None:
        raise refuse("a response cache, etag or background task")
    if handler.resolve_exception_handlers() != app.exception_handlers:
        raise refuse("exception handlers of its own")
    middleware = handler.resolve_middleware()
    if sorted(id(m) for m in middleware) != sorted(id(m) for m in app.middleware):
        raise refuse("middleware of its own")
    if any(_middleware_class(m) not in REPRODUCED_MIDDLEWARE for m in middleware):
        raise refuse("middleware the lane does not reproduce")
    public = bool(handler.opt.get(PUBLIC))
    permissions = []
    for guard in handler.resolve_guards():
        permission = getattr(guard, "permission", None)
        if not isinstance(permission, Permission):
            raise refuse(f"the guard {getattr(guard, '__name__', guard)}")
        permissions.append(permission)
    if public and permissions:
        raise refuse("a public route with a permission guard")

    # The path: its literal parts and its parameters, each of a type the lane matches.
    pattern = ""
    prefix: str | None = None
    path_params = []
    for part in re.split(r"(\{[^}]+\})", route.path_format):
        if not (part.startswith("{") and part.endswith("}")):
            pattern += re.escape(part)
            continue
        if prefix is None:
            prefix = route.path_format[: route.path_format.index(part)]
        name = part[1:-1]
        kind = route.path_parameters[name].type
        if kind is uuid.UUID:
            pattern += f"({_UUID})"
        elif kind is str:
            pattern += f"({_PLAIN_SEGMENT})"
        else:
            raise refuse(f"the path parameter {name} of type {kind}")
        path_params.append((name, parse_uuid if kind is uuid.UUID else kind))
    path = re.compile(pattern)
    # A static route the pattern would take from Litestar (which prefers it) is a conflict.
    for other in app.routes:
        if (
            other is not route
            and method in getattr(other, "methods", ())
            and (path.fullmatch(other.path))
        ):
            raise refuse(f"its path also matches {other.path}")

    # The parameters: injected, path, query (with constraints the lane checks) or the body.
    query: dict[str, QueryParam] = {}
    body: type | None = None
    path_names = {name for name, _ in path_params}
    dependencies = handler.resolve_dependencies()
    for name, field in handler.parsed_fn_signature.parameters.items():
        definition = field.kwarg_definition
        if name in INJECTED:
            if name == "ctx" and name not in dependencies:
                raise refuse("ctx is not the app's")
            continue
        if name in dependencies or name in ("state", "scope", "headers", "cookies", "query"):
            raise refuse(f"the dependency {name}")
        if name in path_names:
            continue
        if name == "data":
            if not isinstance(definition, BodyKwarg) or definition.media_type != "application/json":
                raise refuse("a body that is not JSON")
            if handler.resolve_data_dto() is not None:
                raise refuse("a DTO")
            body = field.annotation
            continue
        if definition is not None and not isinstance(definition, ParameterKwarg):
            raise refuse(f"the parameter {name} ({type(definition).__name__})")
        if definition is not None and any(getattr(definition, k) for k in UNCHECKED):
            raise refuse(f"the parameter {name}'s options")
        kind, optional = _plain_type(field.annotation)
        if kind not in (int, str, uuid.UUID):
            raise refuse(f"the query parameter {name} of type {field.annotation}")
        default = field.default
        if default is Empty:
            if not optional:
                raise refuse(f"the required query parameter {name}")
            default = None
        key = (definition.query or definition.name if definition is not None else None) or name
        constraints = tuple(
            (k, re.compile(v) if k == "pattern" else v)
            for k in CHECKED
            if definition is not None and (v := getattr(definition, k)) is not None
        )
        query[key] = QueryParam(name, key, kind, default, constraints)

    # The answer function must take exactly what the handler is given, by the same names.
    expected = {*path_names, *(q.name for q in query.values()), *(["data"] if body else [])}
    code = answer.__code__
    takes = set(code.co_varnames[code.co_argcount : code.co_argcount + code.co_kwonlyargcount])
    if code.co_argcount != 3 or takes != expected:
        raise refuse(
            f"its answer function {answer.__name__} takes {sorted(takes)}, "
            f"the handler {sorted(expected)}"
        )
    return LaneRoute(
        method=method,
        template=route.path_format,
        prefix=route.path_format if prefix is None else prefix,
        path=path,
        path_params=tuple(path_params),
        query=query,
        body=body,
        public=public,
        reads_caller=reads_caller(answer),
        permissions=tuple(permissions),
        answer=answer,
    )


def lane_routes(app: Litestar) -> list[LaneRoute]:
    """Every handler of `app` naming an answer function, read (LaneCannotServe if one cannot
    be served)."""
    found = []
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for method, (handler, _) in route.route_handler_map.items():
            if ANSWER in handler.opt:
                found.append(lane_route(app, route, method))
    return found


# -- a request -----------------------------------------------------------------------------------


# Header names and values seen to hold no control byte (a browser's User-Agent, Accept, Origin
# and sec-fetch-* repeat on every request): each is searched once, not on every request. Bounded
# in count and in length (at most 4096 x 512 bytes, whatever clients send): past the bound, and
# for longer values (cookies), a value is searched each time it comes.
_CLEAN: set[bytes] = set()
_CLEAN_MAX = 4096
_CLEAN_LONGEST = 512
# Headers whose value is new on every request: searched each time, never remembered (4096 request
# ids would fill the memo, and every value a client sent first after that would be searched on
# each of its requests).
_PER_REQUEST = frozenset(
    {b"x-request-id", b"if-none-match", b"content-length", b"traceparent", b"tracestate"}
)


def _check_controls(raw: Iterable[tuple[bytes, bytes]]) -> None:
    """HandOn when a header name or value holds a control byte (lms.api.input_guard's rule)."""
    clean = _CLEAN
    for name, value in raw:
        if name not in clean:
            _remember_clean(name)
        if value not in clean:
            if name not in _PER_REQUEST:
                _remember_clean(value)
            elif _HEADER_CONTROLS.search(value):
                raise HandOn


def _remember_clean(text: bytes) -> None:
    if _HEADER_CONTROLS.search(text):
        raise HandOn
    if len(_CLEAN) < _CLEAN_MAX and len(text) <= _CLEAN_LONGEST:
        _CLEAN.add(text)


class Request:
    """What the lane reads of a request: its headers, read once (lms.api.answers.Incoming)."""

    __slots__ = ("body", "body_complete", "content_length", "headers", "scope")

    def __init__(self, scope: Scope) -> None:
        self.scope = scope
        self.body: bytes | None = None
        self.body_complete = False
        self.content_length: int | None = None
        raw = scope["headers"]
        _check_controls(raw)
        if has_repeats(scope):
            headers: dict[bytes, bytes] = {}
            for name, value in raw:
                if name in headers:
                    if name not in _LISTS:  # which one counts is Litestar's to say
                        raise HandOn
                    continue
                headers[name] = value
        else:
            headers = header_map(scope)  # made once for the layers around the lane too
        self.headers = headers
        host = headers.get(b"host")
        if host is not None and not _PLAIN_HOST.fullmatch(host):
            raise HandOn
        length = headers.get(b"content-length")
        if length is not None:
            if not _DIGITS.fullmatch(length):
                raise HandOn
            self.content_length = int(length)

    def header(self, name: str) -> str | None:
        value = self.headers.get(name.encode("latin-1"))
        return None if value is None else value.decode("latin-1")

    def client_ip(self, trusted: tuple[str, ...]) -> str:
        return client_ip_of(
            self.scope.get("client"),
            lambda: [
                v.decode("latin-1") for k, v in self.scope["headers"] if k == b"x-forwarded-for"
            ],
            trusted,
        )

    def token(self) -> str | None:
        value = self.headers.get(b"authorization")
        return None if value is None else bearer_token_in(value.decode("latin-1"))


# -- the lane ------------------------------------------------------------------------------------


class HotLane:
    """The answers to hot requests, asked by the app's edge (lms.edge) before Litestar."""

    def __init__(self, ctx: AppContext, routes: Iterable[LaneRoute]) -> None:
        self.ctx = ctx
        self.static: dict[tuple[str, str], LaneRoute] = {}
        self.dynamic: dict[str, list[LaneRoute]] = {}
        for route in routes:
            if route.path_params:
                self.dynamic.setdefault(route.method, []).append(route)
            else:
                self.static[(route.method, route.template)] = route

    def route(self, scope: Scope) -> tuple[LaneRoute, dict[str, Any]] | None:
        """(route, path parameters) for a hot request, else None."""
        method = scope["method"]
        path: str = scope["path"]
        found = self.static.get((method, path))
        if found is not None:
            return found, {}
        for route in self.dynamic.get(method, ()):
            if path.startswith(route.prefix) and (match := route.path.fullmatch(path)):
                values = match.groups()
                params = route.path_params
                if len(params) == 1:  # the hot routes' case: no loop to set up
                    ((name, kind),) = params
                    return route, {name: kind(values[0])}
                return route, {
                    name: kind(value) for (name, kind), value in zip(params, values, strict=True)
                }
        return None

    async def answer(self, scope: Scope, receive: Receive) -> Answered | Receive | None:
        """The lane's whole answer to an HTTP request, (status, headers, body); or, for a request
        that is Litestar's, the `receive` to hand it on with (a body the lane read replayed
        first); None when the client went away before its body came (no one to answer)."""
        if scope.get("root_path"):
            return receive
        routed = self.route(scope)
        if routed is None:
            return receive
        route, params = routed
        request: Request | None = None
        answer: Answer | None = None
        try:
            request = Request(scope)
            query = scope["query_string"]
            if query or route.query:
                _read_query(route, query, params)
            scope["path_template"] = route.template
            # A public answer that does not read the caller (verification) awaits nothing here.
            principal = (
                None
                if route.public and not route.reads_caller
                else await self.caller(route, request)
            )
            if route.body is not None:
                params["data"] = await _body(request, receive, route.body)
            answer = await route.answer(self.ctx, request, principal, **params)
            status, headers, body = answer.status, answer.raw_headers(), answer.body
        except HandOn:
            return _replay(request, receive)
        except Disconnected:
            return None
        except DomainError as exc:
            status, headers, body = _problem(problem_of_domain_error(exc))
        except Exception as exc:
            problem = problem_of_unhandled(exc, scope["method"], scope["path"])
            status, headers, body = _problem(problem)
        if answer is not None and not answer.has_body():
            body = b""
        return status, headers, body

    async def caller(self, route: LaneRoute, request: Request) -> Principal | None:
        """As lms.api.answers.respond: on a public route whose answer reads the caller, the
        caller when a token is sent, else anonymous (an invalid token is a 401 either way);
        elsewhere the authentication middleware, then the route's permission guards."""
        if route.public and not route.reads_caller:
            return None
        token = request.token()
        if route.public:
            return None if token is None else await authenticate(self.ctx, token)
        if token is None:
            raise Unauthenticated("missing bearer token")
        principal = await authenticate(self.ctx, token)
        for permission in route.permissions:
            check_permission(principal, permission)
        return principal


def _problem(problem: Problem) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    answer = Answer(problem.status_code, problem.body(), tuple((problem.headers or {}).items()))
    return answer.status, answer.raw_headers(), answer.body


def _read_query(route: LaneRoute, raw: bytes, into: dict[str, Any]) -> None:
    """The route's query parameters as Litestar reads them into `into`, or HandOn for anything
    it would refuse, read another way or not know (a name the handler does not declare, a
    repeated one, an odd character, a value a constraint refuses)."""
    for param in route.query.values():
        into[param.name] = param.default
    if not raw:
        return
    if not _PLAIN_QUERY.fullmatch(raw) or _LONE_PERCENT.search(raw):
        raise HandOn
    seen: set[str] = set()
    for pair in raw.decode("ascii").split("&"):
        key, equals, encoded = pair.partition("=")
        found = route.query.get(key)
        if found is None or not equals or key in seen or not encoded:
            raise HandOn
        seen.add(key)
        param = found
        try:
            text = unquote_plus(encoded, errors="strict")
        except UnicodeDecodeError:
            raise HandOn from None
        if bad_character(text, free_text=False) is not None:
            raise HandOn
        value: Any
        if param.kind is int:
            if not _INT_VALUE.fullmatch(text):
                raise HandOn
            value = int(text)
        elif param.kind is uuid.UUID:
            if not _UUID_VALUE.fullmatch(text):
                raise HandOn
            value = parse_uuid(text)
        else:
            value = text
        for name, limit in param.constraints:
            if not _holds(name, limit, value):
                raise HandOn
        into[param.name] = value


def _holds(name: str, limit: Any, value: Any) -> bool:
    if name == "ge":
        return bool(value >= limit)
    if name == "gt":
        return bool(value > limit)
    if name == "le":
        return bool(value <= limit)
    if name == "lt":
        return bool(value < limit)
    if name == "min_length":
        return bool(len(value) >= limit)
    if name == "max_length":
        return bool(len(value) <= limit)
    return limit.search(value) is not None  # pattern: as Litestar (msgspec) applies it


async def _body(request: Request, receive: Receive, target: type) -> Any:
    """The JSON body converted to `target` by lms.api.json_body; a body the decoder refuses as
    a whole is a 400 here (as through Litestar), one refused field by field is handed on for
    Litestar to word."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise HandOn
    content_type = request.headers.get(b"content-type")
    if content_type is not None:
        media = content_type.split(b";", 1)[0].strip().lower()
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
        return decode_body(body or b"null", target)
    except FieldError:
        raise HandOn from None


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
