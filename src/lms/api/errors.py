"""One error shape for every failure: {"status_code": int, "detail": str, "extra"?: ...}.

Litestar already renders HTTPExceptions that way; these handlers make sure the rest (a bug, a
database hiccup) does too, with the traceback in the log under the request id and never in the body.
"""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request, Response
from litestar.exceptions import ClientException, HTTPException
from litestar.status_codes import (
    HTTP_409_CONFLICT,
    HTTP_415_UNSUPPORTED_MEDIA_TYPE,
    HTTP_500_INTERNAL_SERVER_ERROR,
    HTTP_503_SERVICE_UNAVAILABLE,
)

log = logging.getLogger("lms.errors")


class ConflictException(ClientException):
    """409: the request is well formed but clashes with the current state (a duplicate, a
    lifecycle step taken already)."""

    status_code = HTTP_409_CONFLICT


class UnsupportedMediaTypeException(ClientException):
    """415: the body is not of a kind this endpoint takes (judged by its bytes, not its label)."""

    status_code = HTTP_415_UNSUPPORTED_MEDIA_TYPE


def error_response(
    status_code: int, detail: str, headers: dict[str, str] | None = None
) -> Response[dict[str, object]]:
    return Response(
        content={"status_code": status_code, "detail": detail},
        status_code=status_code,
        headers=headers,
        media_type="application/json",
    )


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
