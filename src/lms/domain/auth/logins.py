"""Logins opened without a sign-in, for tests, the bench and tools: the same rows and tokens."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from lms.db.queries import refresh_tokens
from lms.domain.auth.tokens import issue_access_token, new_refresh_token
from lms.settings import Settings

# What `refresh_tokens.user_agent` says of a login opened here, unless the caller says otherwise.
USER_AGENT = "lms.domain.auth.logins"


@dataclass(frozen=True, slots=True)
class Login:
    user_id: uuid.UUID
    session_id: uuid.UUID  # the refresh token family, which the access token names (`sid`)
    access_token: str
    refresh_token: str


class UnknownUser(LookupError):
    """A login was asked for a user id that has no user (and none was opened)."""


async def open_logins(
    conn: asyncpg.Connection | asyncpg.Pool,
    settings: Settings,
    user_ids: Sequence[uuid.UUID],
    *,
    user_agent: str = USER_AGENT,
) -> list[Login]:
    """A login of its own for each of `user_ids` (in that order; a user named twice gets two), as a
    sign-in opens one (lms.domain.auth.sessions.open_session): a refresh token family stored in
    refresh_tokens, and an access token naming it, issued for the user's current role and token
    version. One statement however many there are. Nothing is checked but that each user exists:
    a deactivated user's token is refused when used, as any other."""
    pairs = [new_refresh_token() for _ in user_ids]
    try:
        rows = await refresh_tokens.open_logins(
            conn,
            list(user_ids),
            [token_hash for _, token_hash in pairs],
            ttl_seconds=settings.refresh_token_ttl_seconds,
            user_agent=user_agent,
        )
    except asyncpg.ForeignKeyViolationError:
        raise UnknownUser("a login was asked for a user id that has no user") from None
    opened = {row["token_hash"]: row for row in rows}
    logins = []
    for token, token_hash in pairs:
        row = opened[token_hash]
        access = issue_access_token(
            settings,
            user_id=row["user_id"],
            role=row["role"],
            token_version=row["token_version"],
            session_id=row["family_id"],
        )
        logins.append(Login(row["user_id"], row["family_id"], access, token))
    return logins


async def open_login(
    conn: asyncpg.Connection | asyncpg.Pool,
    settings: Settings,
    user_id: uuid.UUID,
    *,
    user_agent: str = USER_AGENT,
) -> Login:
    """One login for `user_id` (open_logins)."""
    (login,) = await open_logins(conn, settings, [user_id], user_agent=user_agent)
    return login
