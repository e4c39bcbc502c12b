"""The FastAPI application: the three routers, lms's error shape, and startup (the signing key
is published in the JWK table, as lms does, so the certificates this peer signs verify)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from sqlalchemy.dialects.postgresql import insert
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import catalog, certificates, learning
from .caches import CACHES
from .config import get_sessionmaker, get_settings
from .models import CertificateSigningKey
from .security import key_id, public_jwk


@asynccontextmanager
async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
    settings = get_settings()
    async with get_sessionmaker()() as session:
        await session.execute(
            insert(CertificateSigningKey)
            .values(kid=key_id(settings), public_jwk=public_jwk(settings))
            .on_conflict_do_nothing()
        )
        await session.commit()
    CACHES.start(settings.database_url)
    yield
    await CACHES.stop()


app = FastAPI(title="lms peer: FastAPI + SQLAlchemy", lifespan=lifespan)
app.include_router(catalog.router)
app.include_router(learning.router)
app.include_router(certificates.router)


def add_cors(app: FastAPI) -> None:
    """The bench's browser variant: CORS for the origins of LMS_CORS_ORIGINS with the lists lms
    configures (lms.app's CORSConfig), by Starlette's own middleware; none when it is unset."""
    origins = [o.strip() for o in os.environ.get("LMS_CORS_ORIGINS", "").split(",") if o.strip()]
    if origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type", "If-None-Match", "X-Request-ID"],
            expose_headers=["X-Request-ID", "ETag", "Retry-After", "Location"],
            max_age=600,
        )


add_cors(app)


class EchoRequestId:
    """X-Request-ID comes back as sent, as lms answers it: the suite's wrk scripts match
    responses to requests by it (bench/suite.py, bench/learning.py). Plain ASGI."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        request_id = None
        if scope["type"] == "http":
            request_id = next((v for k, v in scope["headers"] if k == b"x-request-id"), None)
        if request_id is None:
            await self.app(scope, receive, send)
            return

        async def sender(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id)]
            await send(message)

        await self.app(scope, receive, sender)


app.add_middleware(EchoRequestId)


def error(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"status_code": status, "detail": detail}, status, headers=headers)


@app.exception_handler(StarletteHTTPException)
async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
    return error(exc.status_code, str(exc.detail), exc.headers)


# lms (Litestar, msgspec) words its validation errors its own way; clients see them, so say the
# same: {"status_code": 400, "detail": "Validation failed for GET /path?query", "extra": [...]}.
JSON_TYPES = {str: "str", bool: "bool", int: "int", float: "float", list: "array", dict: "object"}
PARAMETER_NAMES = {"creatorId": "creator_id"}


def litestar_message(err: dict[str, Any]) -> tuple[str, str]:
    """(message, key) for one pydantic error, as Litestar writes it."""
    loc, kind, ctx = err["loc"], err["type"], err.get("ctx") or {}
    field = str(loc[-1]) if len(loc) > 1 else "body"
    in_body = loc[0] == "body"
    if kind == "missing" and in_body:
        return f"Object missing required field `{field}`", "body"
    if kind == "extra_forbidden":
        return f"Object contains unknown field `{field}`", "body"
    key = PARAMETER_NAMES.get(field, field)
    number = "float" if in_body else "int"
    given = JSON_TYPES.get(type(err.get("input")), "null")
    if kind == "greater_than_equal":
        bound = float(ctx["ge"]) if in_body else ctx["ge"]
        return f"Expected `{number}` >= {bound}", key
    if kind == "less_than_equal":
        bound = float(ctx["le"]) if in_body else ctx["le"]
        return f"Expected `{number}` <= {bound}", key
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return f"Expected `int`, got `{given}`", key
    if kind in ("float_type", "float_parsing"):
        return f"Expected `float`, got `{given}`", key
    if kind == "string_too_long":
        return f"Expected `str` of length <= {ctx['max_length']}", key
    if kind == "string_pattern_mismatch":
        return f"Expected `str` matching regex {ctx['pattern']!r}", key
    if kind in ("uuid_parsing", "uuid_type"):
        return "Invalid UUID", key
    return str(err.get("msg", "invalid")), key


@app.exception_handler(RequestValidationError)
async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = list(exc.errors())
    first = errors[0] if errors else {"loc": ("body",), "type": "invalid", "msg": "invalid"}
    if first["type"] == "json_invalid":
        return error(400, f"the body is not valid JSON: {first.get('msg', '')}")
    message, key = litestar_message(first)
    query = request.url.query
    where = request.url.path + (f"?{query}" if query else "")
    return JSONResponse(
        {
            "status_code": 400,
            "detail": f"Validation failed for {request.method} {where}",
            "extra": [{"message": message, "key": key, "source": str(first["loc"][0])}],
        },
        400,
    )
