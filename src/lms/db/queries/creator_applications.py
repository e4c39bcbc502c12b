"""SQL for creator applications and their review."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg

from lms.db.queries import Conn

COLUMNS = """id, user_id, bio, portfolio_url, experience_years, status, reviewer_notes,
    reviewer_id, created_at, reviewed_at"""


async def insert(
    conn: Conn, *, user_id: uuid.UUID, bio: str, portfolio_url: str | None, experience_years: int
) -> asyncpg.Record:
    """Raises UniqueViolationError when the user already has a PENDING one (partial unique index)."""
    row = await conn.fetchrow(
        f"""
        INSERT INTO creator_applications (user_id, bio, portfolio_url, experience_years)
        VALUES ($1, $2, $3, $4) RETURNING {COLUMNS}
        """,
        user_id, bio, portfolio_url, experience_years,
    )  # fmt: skip
    assert row is not None
    return row


async def newest_for_user(conn: Conn, user_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"""
        SELECT {COLUMNS} FROM creator_applications WHERE user_id = $1
        ORDER BY created_at DESC, id DESC LIMIT 1
        """,
        user_id,
    )


async def by_id(conn: Conn, application_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {COLUMNS} FROM creator_applications WHERE id = $1", application_id
    )


async def decide(
    conn: Conn,
    application_id: uuid.UUID,
    *,
    status: str,
    reviewer_id: uuid.UUID,
    notes: str | None,
) -> asyncpg.Record | None:
    """Only a PENDING application can be decided: None when it was not (any more)."""
    return await conn.fetchrow(
        f"""
        UPDATE creator_applications
        SET status = $2, reviewer_id = $3, reviewer_notes = $4, reviewed_at = now()
        WHERE id = $1 AND status = 'PENDING'
        RETURNING {COLUMNS}
        """,
        application_id, status, reviewer_id, notes,
    )  # fmt: skip


async def list_page(
    conn: Conn, *, status: str | None, after: tuple[datetime, uuid.UUID] | None, limit: int
) -> list[asyncpg.Record]:
    after_at, after_id = after if after else (None, None)
    rows: list[asyncpg.Record] = await conn.fetch(
        f"""
        SELECT {COLUMNS} FROM creator_applications
        WHERE ($1::text IS NULL OR status = $1)
          AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3::uuid))
        ORDER BY created_at DESC, id DESC
        LIMIT $4
        """,
        status, after_at, after_id, limit,
    )  # fmt: skip
    return rows
