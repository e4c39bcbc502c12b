"""OpenAPI at /schema/openapi.json and Swagger UI at /schema, its assets served from the
swagger-ui-bundle wheel so the docs load with no internet."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import swagger_ui_bundle
from litestar import Litestar
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import (
    Components,
    OpenAPI,
    OpenAPIHeader,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    Reference,
    Schema,
    SecurityScheme,
    Tag,
)
from litestar.router import Router
from litestar.static_files import create_static_files_router

from lms.api.openapi_constraints import constrain
from lms.domain.errors import (
    Conflict,
    DomainError,
    Forbidden,
    Invalid,
    NotFound,
    TooLarge,
    TooMany,
    Unauthenticated,
    Unavailable,
    UnsupportedMedia,
    UpstreamFailed,
)

ASSETS_PATH = "/schema/assets"

# The error responses a route documents: `responses=errors(NOT_FOUND, CONFLICT)`, named by the
# domain errors its service raises (each carries its status). Every error answer has one schema,
# ErrorBody, so clients generate one error type.
BAD = Invalid  # 400
UNAUTHORIZED = Unauthenticated  # 401
FORBIDDEN = Forbidden  # 403
NOT_FOUND = NotFound  # 404
CONFLICT = Conflict  # 409
TOO_LARGE = TooLarge  # 413
UNSUPPORTED = UnsupportedMedia  # 415
TOO_MANY = TooMany  # 429
UPSTREAM = UpstreamFailed  # 502
UNAVAILABLE = Unavailable  # 503


class ErrorBody(msgspec.Struct, forbid_unknown_fields=True):
    """Every error answer: the status again, a message for people, and for a body that failed
    validation the offending fields in `extra`."""

    status_code: int
    detail: str
    extra: dict[str, Any] | list[Any] | None = None


def _description(kind: type[DomainError]) -> str:
    return (kind.__doc__ or kind.__name__).strip().splitlines()[0]


def errors(*kinds: type[DomainError]) -> dict[int, ResponseSpec]:
    """`responses=` for a route's error answers."""
    grouped: dict[int, list[str]] = {}
    for kind in kinds:
        grouped.setdefault(kind.status_code, []).append(_description(kind))
    return {
        status: ResponseSpec(
            data_container=ErrorBody,
            description=" Or: ".join(descriptions),
            generate_examples=False,
        )
        for status, descriptions in grouped.items()
    }


# Shared sets, for routes that refuse the same things.
READ_ERRORS = (UNAUTHORIZED, NOT_FOUND)  # a public read that takes an optional token
OWNER_ERRORS = (BAD, UNAUTHORIZED, FORBIDDEN, NOT_FOUND, CONFLICT)  # a change to what one owns
ADMIN_LIST_ERRORS = (BAD, UNAUTHORIZED, FORBIDDEN)  # a filtered, paged list for admins


# `security=` of routes that take an access token (the scheme is declared in openapi_config).
BEARER: tuple[dict[str, list[str]], ...] = ({"BearerToken": []},)
# Public routes whose answer depends on an optional token (the caller's own view).
OPTIONAL_BEARER: tuple[dict[str, list[str]], ...] = ({}, {"BearerToken": []})
_FAVICON = f"<link rel='icon' type='image/png' href='{ASSETS_PATH}/favicon-32x32.png'>"

TAGS = [
    Tag(name="auth", description="Sign-up with email OTP, login, tokens"),
    Tag(name="courses", description="Catalog, authoring and review"),
    Tag(name="lessons", description="Lessons, video, transcripts"),
    Tag(name="learning", description="Enrollment, progress, completion"),
    Tag(name="certificates", description="Issue and verify certificates"),
    Tag(name="payments", description="Priced courses: checkout, Stripe's webhook, orders"),
    Tag(name="creators", description="Creator applications and dashboard"),
    Tag(name="admin", description="Administration"),
    Tag(name="ops", description="Health, readiness, metrics"),
]


def openapi_config(version: str) -> OpenAPIConfig:
    return OpenAPIConfig(
        title="LMS API",
        version=version,
        description="Learning-management backend: see the README for the flows and configuration.",
        path="/schema",
        tags=TAGS,
        # A handler's docstring is its operation's description (unless the route gives one).
        use_handler_docstrings=True,
        components=Components(
            security_schemes={
                "BearerToken": SecurityScheme(type="http", scheme="bearer", bearer_format="JWT")
            }
        ),
        render_plugins=[
            SwaggerRenderPlugin(
                path="/",
                js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
                css_url=f"{ASSETS_PATH}/swagger-ui.css",
                standalone_preset_js_url=f"{ASSETS_PATH}/swagger-ui-standalone-preset.js",
                favicon=_FAVICON,
            )
        ],
    )


def docs_assets_router() -> Router:
    return create_static_files_router(
        path=ASSETS_PATH,
        directories=[Path(swagger_ui_bundle.swagger_ui_path)],
        include_in_schema=False,
        opt={"public": True},
        cache_control=None,
    )


_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


# Answers any operation may give, whatever its handler does: the edge refuses a path, query or
# header holding control characters (lms.api.input_guard), and a request that finds PostgreSQL
# down or restarting is told to retry.
_ANY_OPERATION = {
    "400": "The path, query string or a header holds what the API does not take",
    "503": "Service temporarily unavailable (the database is restarting): retry after Retry-After",
}
# The statuses whose answers always carry Retry-After (lms.api.errors.problem_of_domain_error).
_RETRY_AFTER_STATUSES = ("429", "503")
_RETRY_AFTER = OpenAPIHeader(
    schema=Schema(type=OpenAPIType.INTEGER, minimum=1),
    description="Seconds to wait before trying again",
    required=True,
)


def _finish(document: OpenAPI) -> OpenAPI:
    """What route metadata cannot say: the paths in a stable order (a handler serving two paths
    keeps them in a set, whose order changes with every process), the answers every operation
    may give, and the error answers Litestar documents by itself (a 400 wherever a parameter is
    validated) given our one error schema."""
    document.paths = dict(sorted((document.paths or {}).items()))
    error = Reference(ref=f"#/components/schemas/{ErrorBody.__name__}")
    for item in document.paths.values():
        for method in _METHODS:
            operation: Operation | None = getattr(item, method, None)
            if operation is None or not operation.responses:
                continue
            for status, description in _ANY_OPERATION.items():
                operation.responses.setdefault(
                    status,
                    OpenAPIResponse(
                        description=description,
                        content={"application/json": OpenAPIMediaType(schema=error)},
                    ),
                )
            for status, response in operation.responses.items():
                # A 204 has no body (RFC 9110), whatever the handler's return annotation says (a
                # hot route's handler returns a ready Response[None]): a typed `null` content
                # would have generated clients parse an empty body as JSON.
                if status == "204" and isinstance(response, OpenAPIResponse):
                    response.content = None
                if not status.startswith(("4", "5")) or not isinstance(response, OpenAPIResponse):
                    continue
                if status in _RETRY_AFTER_STATUSES:
                    response.headers = {**(response.headers or {}), "Retry-After": _RETRY_AFTER}
                for media in (response.content or {}).values():
                    if isinstance(media.schema, Schema) and set(media.schema.required or ()) >= {
                        "detail",
                        "status_code",
                    }:
                        media.schema = error
    return document


def finish_openapi(app: Litestar) -> None:
    """Build the app's OpenAPI document now and finish it in place (Litestar keeps and serves
    that object; every route is registered by then), with the input constraints it must state."""
    document = _finish(app.openapi_schema)
    constrain(app, document)
