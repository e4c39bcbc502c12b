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


# Raw: one statement opens a login for each of thousands of users (the bench logs in every learner
# it acts as), which the builder would send as a parameter per value. The row is the one `insert`
# stores for a sign-in: a family of its own, the token's hash, the refresh lifetime from now.
OPEN_LOGINS = """
WITH opened AS (
    INSERT INTO refresh_tokens (user_id, family_id, token_hash, created_at, expires_at, user_agent)
    SELECT t.user_id, gen_random_uuid(), t.token_hash, now(), now() + make_interval(secs => $3), $4
    FROM unnest($1::uuid[], $2::text[]) AS t (user_id, token_hash)
    RETURNING user_id, family_id, token_hash
)
SELECT o.token_hash, o.family_id, u.id AS user_id, u.role, u.token_version
FROM opened o JOIN users u ON u.id = o.user_id
"""


async def open_logins(
    conn: asyncpg.Connection | asyncpg.Pool,
    user_ids: list[uuid.UUID],
    token_hashes: list[str],
    *,
    ttl_seconds: int,
    user_agent: str | None,
) -> list[asyncpg.Record]:
    """A new family per (user, token hash) pair: (token_hash, family_id, user_id, role,
    token_version) per login opened, in no particular order. A user id that has no user fails
    the statement (a foreign key violation), which then opens none."""
    return list(
        await conn.fetch(OPEN_LOGINS, user_ids, token_hashes, float(ttl_seconds), user_agent)
    )


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
