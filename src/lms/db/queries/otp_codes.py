"""SQL for one-time codes: issue (superseding older live ones), look up the newest, spend tries.

Raw because sign-up and recovery are raw asyncpg transactions these join, and spending a try is
one UPDATE ... RETURNING that decides under concurrency which request got the last one."""

from __future__ import annotations

import uuid

import asyncpg

from lms.db.queries import Conn
from lms.invariants import present


async def supersede(conn: Conn, user_id: uuid.UUID, purpose: str) -> None:
    """Only the newest code of a purpose is live: requesting a new one retires the old."""
    await conn.execute(
        """
        UPDATE otp_codes SET invalidated_at = now()
        WHERE user_id = $1 AND purpose = $2 AND consumed_at IS NULL AND invalidated_at IS NULL
        """,
        user_id,
        purpose,
    )


async def insert(
    conn: Conn,
    *,
    otp_id: uuid.UUID,
    user_id: uuid.UUID,
    channel: str,
    purpose: str,
    destination: str,
    code_hash: str,
    max_attempts: int,
    ttl_seconds: int,
) -> None:
    await conn.execute(
        """
        INSERT INTO otp_codes (id, user_id, channel, purpose, destination, code_hash,
                               max_attempts, expires_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, now() + make_interval(secs => $8))
        """,
        otp_id,
        user_id,
        channel,
        purpose,
        destination,
        code_hash,
        max_attempts,
        float(ttl_seconds),
    )


async def lock_newest(conn: Conn, user_id: uuid.UUID, purpose: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        """
        SELECT id, destination, code_hash, attempts, max_attempts, consumed_at, invalidated_at,
               expires_at <= now() AS expired,
               extract(epoch FROM now() - created_at)::float8 AS age_seconds
        FROM otp_codes WHERE user_id = $1 AND purpose = $2
        ORDER BY created_at DESC LIMIT 1
        FOR UPDATE
        """,
        user_id,
        purpose,
    )


async def record_wrong_try(conn: Conn, otp_id: uuid.UUID) -> asyncpg.Record:
    row = await conn.fetchrow(
        """
        UPDATE otp_codes SET attempts = attempts + 1,
               invalidated_at = CASE WHEN attempts + 1 >= max_attempts THEN now() END
        WHERE id = $1
        RETURNING attempts, max_attempts
        """,
        otp_id,
    )
    return present(row, "the caller's transaction holds the code's row locked (FOR UPDATE)")


async def consume(conn: Conn, otp_id: uuid.UUID) -> None:
    await conn.execute("UPDATE otp_codes SET consumed_at = now() WHERE id = $1", otp_id)


async def pending_destination(conn: Conn, user_id: uuid.UUID, purpose: str) -> str | None:
    """Where the newest code of `purpose` went (the phone number awaiting verification)."""
    return await conn.fetchval(  # type: ignore[no-any-return]
        """
        SELECT destination FROM otp_codes WHERE user_id = $1 AND purpose = $2
        ORDER BY created_at DESC LIMIT 1
        """,
        user_id,
        purpose,
    )


async def purge_old(conn: Conn, older_than_seconds: int) -> str:
    return str(
        await conn.execute(
            "DELETE FROM otp_codes WHERE expires_at < now() - make_interval(secs => $1)",
            float(older_than_seconds),
        )
    )
