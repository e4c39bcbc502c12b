"""OpenAPI at /schema/openapi.json and Swagger UI at /schema, its assets served from the
swagger-ui-bundle wheel so the docs load with no internet."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import swagger_ui_bundle
from litestar.exceptions import HTTPException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme, Tag
from litestar.router import Router
from litestar.static_files import create_static_files_router

from lms.domain.errors import (
    Conflict,
    DomainError,
    Forbidden,
    Invalid,
    NotFound,
    TooLarge,
    TooMany,
    Unauthenticated,
    UnsupportedMedia,
)

ASSETS_PATH = "/schema/assets"
# `raises=` of route handlers: the error responses each one documents, named by the domain
# errors the services raise. Litestar only reads their `status_code` (and the class name) to
# describe them; its signature asks for HTTPException classes, hence the cast.


def _documented(error: type[DomainError]) -> type[HTTPException]:
    return cast("type[HTTPException]", error)


BAD = _documented(Invalid)  # 400
UNAUTHORIZED = _documented(Unauthenticated)  # 401
FORBIDDEN = _documented(Forbidden)  # 403
NOT_FOUND = _documented(NotFound)  # 404
CONFLICT = _documented(Conflict)  # 409
TOO_LARGE = _documented(TooLarge)  # 413
UNSUPPORTED = _documented(UnsupportedMedia)  # 415
TOO_MANY = _documented(TooMany)  # 429


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
