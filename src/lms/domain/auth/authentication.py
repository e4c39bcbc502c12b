"""Who is calling: a token checked against the user's current state and its login's.

The JWT proves who the caller was when it was issued; the user's current row and, for an access
token, whether its login was ended (both through in-process caches, so a request costs no query)
decide whether that still holds, and which role applies now.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from lms.context import AppContext
from lms.domain.auth.tokens import ACCESS, InvalidToken, decode_token
from lms.domain.errors import Unauthenticated


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: uuid.UUID
    role: str
    token_version: int


async def authenticate(
    ctx: AppContext, token: str, kinds: tuple[str, ...] = (ACCESS,)
) -> Principal:
    try:
        claims = (
            ctx.verified_tokens.access_claims(ctx.settings, token)
            if kinds == (ACCESS,)
            else decode_token(ctx.settings, token, kinds)
        )
    except InvalidToken as exc:
        raise Unauthenticated(str(exc)) from None
    state = await ctx.users.get(claims.user_id)
    if state is None:
        raise Unauthenticated("invalid token")
    if not state.is_active:
        raise Unauthenticated("account is deactivated")
    if state.token_version != claims.token_version:
        raise Unauthenticated("token has been revoked; log in again")
    # Every access token names its login (decode_token refuses one that does not); a profile
    # token, which finishes sign-up before any login exists, names none.
    if claims.session_id is not None and await ctx.sessions.revoked(claims.session_id):
        raise Unauthenticated("this login is revoked; log in again")
    return Principal(claims.user_id, state.role, state.token_version)
