"""SQL for the audit log of admin actions."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg

from lms.db.queries import Conn

COLUMNS = "id, actor_id, action, target_type, target_id, before, after, created_at"


async def insert(
    conn: Conn,
    *,
    actor_id: uuid.UUID | None,
    action: str,
    target_type: str,
    target_id: str | None,
    before: object,
    after: object,
) -> None:
    await conn.execute(
        """
        INSERT INTO audit_log (actor_id, action, target_type, target_id, before, after)
        VALUES ($1, $2, $3, $4, $5, $6)
        """,
        actor_id, action, target_type, target_id, before, after,
    )  # fmt: skip


async def list_page(
    conn: Conn,
    *,
    action: str | None,
    actor_id: uuid.UUID | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[asyncpg.Record]:
    after_at, after_id = after if after else (None, None)
    rows: list[asyncpg.Record] = await conn.fetch(
        f"""
        SELECT {COLUMNS} FROM audit_log
        WHERE ($1::text IS NULL OR action = $1)
          AND ($2::uuid IS NULL OR actor_id = $2)
          AND ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4::uuid))
        ORDER BY created_at DESC, id DESC
        LIMIT $5
        """,
        action, actor_id, after_at, after_id, limit,
    )  # fmt: skip
    return rows
