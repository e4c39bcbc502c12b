"""Queries on the audit log of admin actions."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from lms.db import keyset
from lms.db.queries import Conn
from lms.db.tables import AuditEntry

# What the API shows (`AuditEntry` on the wire); the foreign key comes back as actor_id.
COLUMNS = (
    AuditEntry.id,
    AuditEntry.actor,
    AuditEntry.action,
    AuditEntry.target_type,
    AuditEntry.target_id,
    AuditEntry.before,
    AuditEntry.after,
    AuditEntry.created_at,
)


# Raw on the caller's connection: it joins the (mostly raw asyncpg) transaction of the action.
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
    # `before`/`after` go as Python objects for the pool's jsonb codec; Piccolo's JSONB column
    # would send them as JSON text, which that codec would encode a second time.
    await conn.execute(
        """
        INSERT INTO audit_log (actor_id, action, target_type, target_id, before, after)
        VALUES ($1, $2, $3, $4, $5, $6)
        """,
        actor_id,
        action,
        target_type,
        target_id,
        before,
        after,
    )


async def list_page(
    *,
    action: str | None,
    actor_id: uuid.UUID | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[dict[str, Any]]:
    """Newest first, keyset on (created_at, id); before/after come back decoded (the pool's jsonb
    codec)."""
    query = AuditEntry.select(*COLUMNS)
    if action is not None:
        query = query.where(AuditEntry.action == action)
    if actor_id is not None:
        query = query.where(AuditEntry.actor == actor_id)
    return await keyset.newest_first(query, AuditEntry.created_at, AuditEntry.id, after, limit)
