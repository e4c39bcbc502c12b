"""Bearer tokens at the HTTP edge: the authentication middleware for every route not marked
public, the optional caller of public routes, and the guards that apply the permission table."""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import (
    AbstractAuthenticationMiddleware,
    AuthenticationResult,
    DefineMiddleware,
)
from litestar.types import Guard

from lms.domain.auth.authentication import Principal, authenticate
from lms.domain.auth.permissions import MINIMUM_ROLE, Permission, has_permission
from lms.domain.auth.tokens import ACCESS
from lms.domain.errors import Forbidden, Unauthenticated

PUBLIC = "public"  # opt key: a route anyone may call without a token
PUBLIC_OPT = {PUBLIC: True}


def bearer_token_in(header: str) -> str | None:
    """The token of an `Authorization: Bearer <token>` value; None for any other value."""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def bearer_token(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    return bearer_token_in(connection.headers.get("authorization", ""))


async def require_token(
    connection: ASGIConnection[Any, Any, Any, Any], kinds: tuple[str, ...] = (ACCESS,)
) -> Principal:
    """For public-marked routes that take a token of another kind (the sign-up profile token)."""
    token = bearer_token(connection)
    if token is None:
        raise Unauthenticated("missing bearer token")
    return await authenticate(connection.app.state.ctx, token, kinds)


def token_of_kind(kinds: tuple[str, ...]) -> Guard:
    """A guard for public-marked routes taking another kind of token: it authenticates before the
    body is read (so a stranger gets 401, not a validation error) and sets `request.user`."""

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        connection.scope["user"] = await require_token(connection, kinds)

    guard.__name__ = f"token_of_kind_{'_or_'.join(kinds)}"
    return guard


async def optional_principal(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal | None:
    """On a public route: the caller when a valid access token is sent, else anonymous."""
    token = bearer_token(connection)
    return None if token is None else await authenticate(connection.app.state.ctx, token)


def check_permission(principal: Principal | None, permission: Permission) -> Principal:
    """The caller when their current role holds `permission`; 401 for none, else 403."""
    if principal is None:  # a public route must not carry a permission guard
        raise Unauthenticated("authentication required")
    if not has_permission(principal.role, permission):
        raise Forbidden(f"requires {MINIMUM_ROLE[permission].value}: {permission.value}")
    return principal


def requires(permission: Permission) -> Guard:
    """A guard admitting callers whose current role holds `permission` (403 otherwise)."""

    # Async although it awaits nothing: Litestar runs a plain function guard in a worker
    # thread, a thread-pool round trip on every authenticated request (~65 us of CPU).
    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        check_permission(connection.scope.get("user"), permission)

    guard.__name__ = f"requires_{permission.name.lower()}"
    guard.permission = permission  # type: ignore[attr-defined]  # read by lms.hot_lane
    return guard


class BearerAuthenticationMiddleware(AbstractAuthenticationMiddleware):
    async def authenticate_request(
        self, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> AuthenticationResult:
        token = bearer_token(connection)
        if token is None:
            raise Unauthenticated("missing bearer token")
        principal = await authenticate(connection.app.state.ctx, token)
        return AuthenticationResult(user=principal, auth=token)


def authentication_middleware() -> DefineMiddleware:
    return DefineMiddleware(
        BearerAuthenticationMiddleware, exclude_from_auth_key=PUBLIC, exclude=["^/schema"]
    )
