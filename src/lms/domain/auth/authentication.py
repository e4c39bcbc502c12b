"""Who is calling: bearer-token authentication for every route not marked public.

The JWT proves who the caller was when it was issued; the user's current row (through the
in-process cache) decides whether that still holds, and which role applies now.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import (
    AbstractAuthenticationMiddleware,
    AuthenticationResult,
    DefineMiddleware,
)
from litestar.types import Guard

from lms.context import AppContext
from lms.domain.auth.tokens import ACCESS, InvalidToken, decode_token

PUBLIC = "public"  # opt key: a route anyone may call without a token
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: uuid.UUID
    role: str
    token_version: int


def unauthorized(detail: str) -> NotAuthorizedException:
    return NotAuthorizedException(detail=detail, headers=_CHALLENGE)


def bearer_token(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    header = connection.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


async def authenticate(
    ctx: AppContext, token: str, kinds: tuple[str, ...] = (ACCESS,)
) -> Principal:
    try:
        claims = decode_token(ctx.settings, token, kinds)
    except InvalidToken as exc:
        raise unauthorized(str(exc)) from None
    state = await ctx.users.get(claims.user_id)
    if state is None:
        raise unauthorized("invalid token")
    if not state.is_active:
        raise unauthorized("account is deactivated")
    if state.token_version != claims.token_version:
        raise unauthorized("token has been revoked; log in again")
    return Principal(claims.user_id, state.role, state.token_version)


async def require_token(
    connection: ASGIConnection[Any, Any, Any, Any], kinds: tuple[str, ...]
) -> Principal:
    """For public-marked routes that take a token of another kind (the sign-up profile token)."""
    token = bearer_token(connection)
    if token is None:
        raise unauthorized("missing bearer token")
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


class BearerAuthenticationMiddleware(AbstractAuthenticationMiddleware):
    async def authenticate_request(
        self, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> AuthenticationResult:
        token = bearer_token(connection)
        if token is None:
            raise unauthorized("missing bearer token")
        principal = await authenticate(connection.app.state.ctx, token)
        return AuthenticationResult(user=principal, auth=token)


def authentication_middleware() -> DefineMiddleware:
    return DefineMiddleware(
        BearerAuthenticationMiddleware, exclude_from_auth_key=PUBLIC, exclude=["^/schema"]
    )
