"""The audit trail: every admin action writes who did what to which object, before and after,
in the same transaction as the action itself."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from lms.api.schemas import Page, RowStruct
from lms.db.queries import audit as sql
from lms.domain.paging import after_position, time_id_page


class AuditEntry(RowStruct):
    id: uuid.UUID
    actor_id: uuid.UUID | None
    action: str
    target_type: str
    target_id: str | None
    before: Any
    after: Any
    created_at: datetime


class AuditEntryPage(Page[AuditEntry]):
    """A page of the audit log, newest first."""

    items: list[AuditEntry]


async def record(
    conn: asyncpg.Connection,
    *,
    actor_id: uuid.UUID | None,
    action: str,
    target_type: str,
    target_id: object,
    before: object = None,
    after: object = None,
) -> None:
    """Write the row on `conn`, in the transaction of the action it records (a raw asyncpg one,
    or the connection lms.db.builder.transaction() yields)."""
    await sql.insert(
        conn,
        actor_id=actor_id,
        action=action,
        target_type=target_type,
        target_id=None if target_id is None else str(target_id),
        # UUIDs, datetimes and Decimals as JSON-friendly builtins (strings).
        before=msgspec.to_builtins(before),
        after=msgspec.to_builtins(after),
    )


async def list_entries(
    secret: str,
    *,
    action: str | None,
    actor_id: uuid.UUID | None,
    cursor: str | None,
    limit: int,
) -> AuditEntryPage:
    after = after_position(secret, "audit", cursor)
    rows = await sql.list_page(action=action, actor_id=actor_id, after=after, limit=limit + 1)
    return time_id_page(
        rows, limit, page=AuditEntryPage, convert=AuditEntry.from_row, secret=secret, scope="audit"
    )
