"""One error shape for every failure: {"status_code": int, "detail": str, "extra"?: ...}.

The services refuse with the domain errors of lms.domain.errors; `domain_error_handler` is the one
place that turns them into HTTP answers (status, detail, Retry-After, WWW-Authenticate). Litestar
renders its own HTTPExceptions (a body that does not decode) the same way; the last handler makes
sure the rest (a bug, a database hiccup) does too, with the traceback in the log under the request
id and never in the body.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException
from litestar.status_codes import (
    HTTP_400_BAD_REQUEST,
    HTTP_500_INTERNAL_SERVER_ERROR,
    HTTP_503_SERVICE_UNAVAILABLE,
)

from lms.domain.errors import (
    DomainError,
    PaymentRequired,
    TooMany,
    Unauthenticated,
    Unavailable,
)

log = logging.getLogger("lms.errors")


@dataclass(frozen=True, slots=True)
class Problem:
    """An error answer before it becomes a response: Litestar's handlers below and the hot lane
    (lms.hot_lane) render the same one."""

    status_code: int
    detail: str
    headers: dict[str, str] | None = None
    # Members beside status_code and detail that an error's contract adds (402's checkoutPath).
    more: dict[str, str] | None = None

    def body(self) -> bytes:
        return _ENCODER.encode(
            {"status_code": self.status_code, "detail": self.detail, **(self.more or {})}
        )


_ENCODER = msgspec.json.Encoder()


def problem_of_domain_error(exc: DomainError) -> Problem:
    headers: dict[str, str] = {}
    if isinstance(exc, (TooMany, Unavailable)):
        headers["Retry-After"] = str(exc.retry_after)
    if isinstance(exc, Unauthenticated):
        headers["WWW-Authenticate"] = "Bearer"
    more = {"checkoutPath": exc.checkout_path} if isinstance(exc, PaymentRequired) else None
    return Problem(exc.status_code, exc.detail, headers or None, more)


def problem_of_unhandled(exc: Exception, method: str, path: str) -> Problem:
    """A failure no rule refused: an outage is a 503 the client may retry, a value PostgreSQL
    refused a 400, anything else a 500 with its traceback logged (never sent)."""
    if _is_database_unavailable(exc):
        log.warning("database unavailable: %s", exc)
        return Problem(
            HTTP_503_SERVICE_UNAVAILABLE, "Service temporarily unavailable", {"Retry-After": "1"}
        )
    if _is_value_the_database_refused(exc):
        # Defence in depth: the edge (lms.api.input_guard, lms.api.request and the Structs'
        # limits) should have refused this input already, so say so loudly, with the traceback.
        log.warning("input reached the database and was refused: %s", exc, exc_info=exc)
        return Problem(
            HTTP_400_BAD_REQUEST,
            "a value is out of range or holds characters that cannot be stored",
        )
    log.exception("unhandled error on %s %s", method, path, exc_info=exc)
    return Problem(HTTP_500_INTERNAL_SERVER_ERROR, "Internal Server Error")


def error_response(problem: Problem) -> Response[bytes]:
    return Response(
        content=problem.body(),
        status_code=problem.status_code,
        headers=problem.headers,
        media_type="application/json",
    )


def domain_error_handler(request: Request[Any, Any, Any], exc: DomainError) -> Response[bytes]:
    return error_response(problem_of_domain_error(exc))


def unhandled_exception_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    if isinstance(exc, HTTPException):  # pragma: no cover - Litestar routes these elsewhere
        raise exc
    return error_response(problem_of_unhandled(exc, request.method, request.url.path))


def _is_value_the_database_refused(exc: Exception) -> bool:
    """PostgreSQL's class 22 "data exception" (NUL or invalid text, numeric overflow, a string
    too long for its column), and asyncpg's refusal to encode an argument (an integer past
    int8, a lone surrogate): the request's values, not the server, were at fault."""
    import asyncpg
    from asyncpg.exceptions import _base

    # Two classes share the name: the server's class 22, and the client's argument refusal,
    # which asyncpg exports only from its _base module.
    return isinstance(exc, asyncpg.exceptions.DataError | _base.DataError)


def _is_database_unavailable(exc: BaseException) -> bool:
    """True when `exc` means PostgreSQL cannot be had right now (stopped, restarting, shutting
    down, the connection dropped, no connection to be had in time): a 503 the client may retry,
    never a 500. The failure may surface wrapped (raised from, or while handling, the database
    error; in an exception group), so the whole chain is looked at."""
    seen: set[int] = set()
    pending = [exc]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if _is_outage(current):
            return True
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)
        if current.__cause__ is not None:
            pending.append(current.__cause__)
        if current.__context__ is not None and not current.__suppress_context__:
            pending.append(current.__context__)
    return False


def _is_outage(exc: BaseException) -> bool:
    import asyncpg

    if isinstance(
        exc,
        (
            # SQLSTATE class 08: the connection failed, was refused or no longer exists.
            asyncpg.PostgresConnectionError,
            # 57P01-57P03: terminated by a shutdown or crash, or starting up / shutting down.
            asyncpg.AdminShutdownError,
            asyncpg.CrashShutdownError,
            asyncpg.CannotConnectNowError,
            # 53300: every connection slot is taken.
            asyncpg.TooManyConnectionsError,
        ),
    ):
        return True
    if isinstance(exc, asyncpg.InterfaceError):
        # A closed connection or pool. asyncpg also hands a connection the server dropped back
        # to the pool at once, so a request's next statement on it reads "released back to the
        # pool". Other InterfaceErrors (DataError: a bad query argument; misused transactions)
        # are bugs and stay 500s.
        message = str(exc)
        return any(
            sign in message for sign in ("is closed", "is closing", "released back to the pool")
        )
    if isinstance(exc, asyncpg.InternalClientError):
        # A pooled connection used in the instant between the server's "terminating connection"
        # message and the socket closing: its protocol is still consuming that error (state 2).
        return "another operation (2) is in progress" in str(exc)
    # Refused, reset or unreachable sockets, and timeouts (connecting, waiting for a pooled
    # connection), but only when asyncpg raised them: a full disk is not a database outage.
    return isinstance(exc, OSError) and _raised_in_asyncpg(exc)


def _raised_in_asyncpg(exc: BaseException) -> bool:
    tb = exc.__traceback__
    while tb is not None:
        if str(tb.tb_frame.f_globals.get("__name__", "")).startswith("asyncpg."):
            return True
        tb = tb.tb_next
    return False
