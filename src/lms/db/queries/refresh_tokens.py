"""Queries on refresh tokens (Piccolo's builder): one family per login, rotated on every use.

The locking and revoking ones run inside lms.db.builder.transaction(), which they join through
Piccolo's context variable."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
from piccolo.querystring import QueryString

from lms.db.builder import db_now, execute_on
from lms.db.tables import RefreshToken


async def insert(
    conn: asyncpg.Connection,
    *,
    user_id: uuid.UUID,
    family_id: uuid.UUID,
    token_hash: str,
    ttl_seconds: int,
    user_agent: str | None,
    ip_address: str | None,
) -> None:
    """Store a new token, on the caller's connection: sessions open inside sign-up's raw asyncpg
    transactions as well as inside Piccolo's (where `conn` is the transaction's)."""
    token = RefreshToken(
        {
            RefreshToken.user: user_id,
            RefreshToken.family_id: family_id,
            RefreshToken.token_hash: token_hash,
            RefreshToken.created_at: db_now(),
            RefreshToken.expires_at: QueryString(
                "now() + make_interval(secs => {})", float(ttl_seconds)
            ),
            RefreshToken.user_agent: user_agent,
            RefreshToken.ip_address: ip_address,
        }
    )
    await execute_on(conn, RefreshToken.insert(token))


async def lock_by_hash(token_hash: str) -> dict[str, Any] | None:
    """The token (FOR UPDATE, so two refreshes with it take turns), whether it has expired, and
    whether its login was revoked: a token minted by a refresh that raced the revocation (the
    revoking UPDATE does not see rows inserted after it began) is not itself marked revoked."""
    return (
        await RefreshToken.select(
            RefreshToken.id,
            RefreshToken.user,
            RefreshToken.family_id,
            RefreshToken.rotated_at,
            RefreshToken.revoked_at,
            QueryString("{} <= now()", RefreshToken.expires_at, alias="expired"),
            QueryString(
                "EXISTS (SELECT 1 FROM refresh_tokens f"
                " WHERE f.family_id = refresh_tokens.family_id AND f.revoked_at IS NOT NULL)",
                alias="family_revoked",
            ),
        )
        .where(RefreshToken.token_hash == token_hash)
        .lock_rows()
        .first()
    )


async def mark_rotated(token_id: uuid.UUID) -> None:
    await RefreshToken.update({RefreshToken.rotated_at: db_now()}).where(
        RefreshToken.id == token_id
    )


# Raw: read on every miss of the per-process session cache (lms.domain.auth.session_state), a hot
# path of authentication. A login is revoked once any token of its family is; a family with no
# row left (purged long after it expired) is no live login either.
SESSION_REVOKED = """
SELECT coalesce(bool_or(revoked_at IS NOT NULL), true) FROM refresh_tokens WHERE family_id = $1
"""


async def session_revoked(conn: asyncpg.Pool | asyncpg.Connection, family_id: uuid.UUID) -> bool:
    return bool(await conn.fetchval(SESSION_REVOKED, family_id))


async def revoke_family(family_id: uuid.UUID) -> None:
    await RefreshToken.update({RefreshToken.revoked_at: db_now()}).where(
        (RefreshToken.family_id == family_id) & RefreshToken.revoked_at.is_null()
    )


async def revoke_all_for_user(user_id: uuid.UUID) -> None:
    await RefreshToken.update({RefreshToken.revoked_at: db_now()}).where(
        (RefreshToken.user == user_id) & RefreshToken.revoked_at.is_null()
    )


async def family_of(token_hash: str, user_id: uuid.UUID) -> uuid.UUID | None:
    row = (
        await RefreshToken.select(RefreshToken.family_id)
        .where((RefreshToken.token_hash == token_hash) & (RefreshToken.user == user_id))
        .first()
    )
    return None if row is None else row["family_id"]


async def purge_expired(grace_seconds: int) -> None:
    await RefreshToken.delete().where(
        RefreshToken.expires_at
        < QueryString("now() - make_interval(secs => {})", float(grace_seconds))
    )
