"""OpenAPI at /schema/openapi.json and Swagger UI at /schema, its assets served from the
swagger-ui-bundle wheel so the docs load with no internet."""

from __future__ import annotations

from pathlib import Path

import swagger_ui_bundle
from litestar.exceptions import (
    NotAuthorizedException,
    NotFoundException,
    PermissionDeniedException,
    TooManyRequestsException,
    ValidationException,
)
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme, Tag
from litestar.router import Router
from litestar.static_files import create_static_files_router

from lms.api.errors import ConflictException, UnsupportedMediaTypeException

ASSETS_PATH = "/schema/assets"
# `raises=` of route handlers: the error responses each one documents.
BAD = ValidationException  # 400
UNAUTHORIZED = NotAuthorizedException  # 401
FORBIDDEN = PermissionDeniedException  # 403
NOT_FOUND = NotFoundException  # 404
CONFLICT = ConflictException  # 409
TOO_MANY = TooManyRequestsException  # 429
TOO_LARGE = RequestEntityTooLarge  # 413
UNSUPPORTED = UnsupportedMediaTypeException  # 415


# `security=` of routes that take an access token (the scheme is declared in openapi_config).
BEARER: list[dict[str, list[str]]] = [{"BearerToken": []}]
_FAVICON = f"<link rel='icon' type='image/png' href='{ASSETS_PATH}/favicon-32x32.png'>"

TAGS = [
    Tag(name="auth", description="Sign-up with email OTP, login, tokens"),
    Tag(name="courses", description="Catalog, authoring and review"),
    Tag(name="lessons", description="Lessons, video, transcripts"),
    Tag(name="learning", description="Enrollment, progress, completion"),
    Tag(name="certificates", description="Issue and verify certificates"),
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
