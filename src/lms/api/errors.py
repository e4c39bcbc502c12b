"""One error shape for every failure: {"status_code": int, "detail": str, "extra"?: ...}.

The services refuse with the domain errors of lms.domain.errors; `domain_error_handler` is the one
place that turns them into HTTP answers (status, detail, Retry-After, WWW-Authenticate). Litestar
renders its own HTTPExceptions (a body that does not decode) the same way; the last handler makes
sure the rest (a bug, a database hiccup) does too, with the traceback in the log under the request
id and never in the body.
"""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR, HTTP_503_SERVICE_UNAVAILABLE

from lms.domain.errors import DomainError, TooMany, Unauthenticated, Unavailable

log = logging.getLogger("lms.errors")


def error_response(
    status_code: int, detail: str, headers: dict[str, str] | None = None
) -> Response[dict[str, object]]:
    return Response(
        content={"status_code": status_code, "detail": detail},
        status_code=status_code,
        headers=headers,
        media_type="application/json",
    )


def domain_error_handler(
    request: Request[Any, Any, Any], exc: DomainError
) -> Response[dict[str, object]]:
    headers: dict[str, str] = {}
    if isinstance(exc, (TooMany, Unavailable)):
        headers["Retry-After"] = str(exc.retry_after)
    if isinstance(exc, Unauthenticated):
        headers["WWW-Authenticate"] = "Bearer"
    return error_response(exc.status_code, exc.detail, headers or None)


def unhandled_exception_handler(
    request: Request[Any, Any, Any], exc: Exception
) -> Response[dict[str, object]]:
    if isinstance(exc, HTTPException):  # pragma: no cover - Litestar routes these elsewhere
        raise exc
    if _is_database_unavailable(exc):
        log.warning("database unavailable: %s", exc)
        return error_response(
            HTTP_503_SERVICE_UNAVAILABLE, "Service temporarily unavailable", {"Retry-After": "1"}
        )
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(HTTP_500_INTERNAL_SERVER_ERROR, "Internal Server Error")


def _is_database_unavailable(exc: Exception) -> bool:
    import asyncpg

    return isinstance(
        exc,
        (
            asyncpg.CannotConnectNowError,
            asyncpg.ConnectionDoesNotExistError,
            asyncpg.InterfaceError,
            ConnectionRefusedError,
            asyncpg.exceptions.AdminShutdownError,
        ),
    )
