"""SQL for one-time codes: issue (superseding older live ones), look up the newest, spend tries.

Raw because sign-up and recovery are raw asyncpg transactions these join, and spending a try is
one UPDATE ... RETURNING that decides under concurrency which request got the last one."""

from __future__ import annotations

import uuid

import asyncpg

from lms.db.queries import Conn


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
    """Store the code; nothing when `user_id` names no user. A request for an address without an
    account runs this same statement with a user id no row has, so it does the work a request
    for an account does and its timing does not tell them apart."""
    await conn.execute(
        """
        INSERT INTO otp_codes (id, user_id, channel, purpose, destination, code_hash,
                               max_attempts, expires_at)
        SELECT $1, u.id, $3, $4, $5, $6, $7, now() + make_interval(secs => $8)
        FROM users u WHERE u.id = $2
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


async def record_wrong_try(conn: Conn, otp_id: uuid.UUID) -> asyncpg.Record | None:
    """Spend a try of a live code (at the last one it is invalidated): its attempts after this
    one, or None when `otp_id` is no live code (spent, superseded, or no code at all)."""
    return await conn.fetchrow(
        """
        UPDATE otp_codes SET attempts = attempts + 1,
               invalidated_at = CASE WHEN attempts + 1 >= max_attempts THEN now() END
        WHERE id = $1 AND consumed_at IS NULL AND invalidated_at IS NULL
        RETURNING attempts, max_attempts
        """,
        otp_id,
    )


async def consume(conn: Conn, otp_id: uuid.UUID) -> None:
    await conn.execute("UPDATE otp_codes SET consumed_at = now() WHERE id = $1", otp_id)


async def consume_if_live(conn: Conn, otp_id: uuid.UUID) -> bool:
    """Spend a code checked earlier, unless it died meanwhile (used by a concurrent request,
    superseded by a newer code, expired): the one conditional UPDATE decides which of two
    requests with the same code wins."""
    spent = await conn.fetchval(
        """
        UPDATE otp_codes SET consumed_at = now()
        WHERE id = $1 AND consumed_at IS NULL AND invalidated_at IS NULL AND expires_at > now()
        RETURNING id
        """,
        otp_id,
    )
    return spent is not None


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
