"""SQL for refresh tokens: one family per login, rotated on every use."""

from __future__ import annotations

import uuid

import asyncpg

from lms.db.queries import Conn


async def insert(
    conn: Conn,
    *,
    user_id: uuid.UUID,
    family_id: uuid.UUID,
    token_hash: str,
    ttl_seconds: int,
    user_agent: str | None,
    ip_address: str | None,
) -> None:
    await conn.execute(
        """
        INSERT INTO refresh_tokens (user_id, family_id, token_hash, expires_at, user_agent, ip_address)
        VALUES ($1, $2, $3, now() + make_interval(secs => $4), $5, $6)
        """,
        user_id, family_id, token_hash, float(ttl_seconds), user_agent, ip_address,
    )  # fmt: skip


async def lock_by_hash(conn: Conn, token_hash: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        """
        SELECT id, user_id, family_id, rotated_at, revoked_at, expires_at <= now() AS expired
        FROM refresh_tokens WHERE token_hash = $1 FOR UPDATE
        """,
        token_hash,
    )


async def mark_rotated(conn: Conn, token_id: uuid.UUID) -> None:
    await conn.execute("UPDATE refresh_tokens SET rotated_at = now() WHERE id = $1", token_id)


async def revoke_family(conn: Conn, family_id: uuid.UUID) -> None:
    await conn.execute(
        "UPDATE refresh_tokens SET revoked_at = now() WHERE family_id = $1 AND revoked_at IS NULL",
        family_id,
    )


async def revoke_all_for_user(conn: Conn, user_id: uuid.UUID) -> None:
    await conn.execute(
        "UPDATE refresh_tokens SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL",
        user_id,
    )


async def family_of(conn: Conn, token_hash: str, user_id: uuid.UUID) -> uuid.UUID | None:
    return await conn.fetchval(  # type: ignore[no-any-return]
        "SELECT family_id FROM refresh_tokens WHERE token_hash = $1 AND user_id = $2",
        token_hash, user_id,
    )  # fmt: skip


async def purge_expired(conn: Conn, grace_seconds: int) -> str:
    return str(
        await conn.execute(
            "DELETE FROM refresh_tokens WHERE expires_at < now() - make_interval(secs => $1)",
            float(grace_seconds),
        )
    )
