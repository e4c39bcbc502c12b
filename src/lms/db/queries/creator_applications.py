"""Queries on creator applications and their review (Piccolo's builder: a cold path)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from lms.db import keyset
from lms.db.builder import db_now
from lms.db.tables import ApplicationStatus, CreatorApplication

# What the API shows (`CreatorApplication` on the wire); the foreign keys come back as user_id
# and reviewer_id, their column names.
COLUMNS = (
    CreatorApplication.id,
    CreatorApplication.user,
    CreatorApplication.bio,
    CreatorApplication.portfolio_url,
    CreatorApplication.experience_years,
    CreatorApplication.status,
    CreatorApplication.reviewer_notes,
    CreatorApplication.reviewer,
    CreatorApplication.created_at,
    CreatorApplication.reviewed_at,
)


async def insert(
    *, user_id: uuid.UUID, bio: str, portfolio_url: str | None, experience_years: int
) -> dict[str, Any]:
    """Raises asyncpg's UniqueViolationError when the user already has a PENDING one: the
    partial unique index decides, so of two concurrent applications only one gets in."""
    application = CreatorApplication(
        {
            CreatorApplication.user: user_id,
            CreatorApplication.bio: bio,
            CreatorApplication.portfolio_url: portfolio_url,
            CreatorApplication.experience_years: experience_years,
            CreatorApplication.created_at: db_now(),
        }
    )
    rows = await CreatorApplication.insert(application).returning(*COLUMNS)
    return dict(rows[0])


async def newest_for_user(user_id: uuid.UUID) -> dict[str, Any] | None:
    return (
        await CreatorApplication.select(*COLUMNS)
        .where(CreatorApplication.user == user_id)
        .order_by(CreatorApplication.created_at, CreatorApplication.id, ascending=False)
        .first()
    )


async def by_id(application_id: uuid.UUID) -> dict[str, Any] | None:
    return (
        await CreatorApplication.select(*COLUMNS)
        .where(CreatorApplication.id == application_id)
        .first()
    )


async def decide(
    application_id: uuid.UUID, *, status: str, reviewer_id: uuid.UUID, notes: str | None
) -> dict[str, Any] | None:
    """Only a PENDING application can be decided: None when it was not (any more). The condition
    is in the UPDATE, so of two concurrent decisions exactly one changes the row."""
    rows = (
        await CreatorApplication.update(
            {
                CreatorApplication.status: status,
                CreatorApplication.reviewer: reviewer_id,
                CreatorApplication.reviewer_notes: notes,
                CreatorApplication.reviewed_at: db_now(),
            }
        )
        .where(
            (CreatorApplication.id == application_id)
            & (CreatorApplication.status == ApplicationStatus.PENDING.value)
        )
        .returning(*COLUMNS)
    )
    return dict(rows[0]) if rows else None


async def list_page(
    *, status: str | None, after: tuple[datetime, uuid.UUID] | None, limit: int
) -> list[dict[str, Any]]:
    """Newest first, keyset on (created_at, id)."""
    query = CreatorApplication.select(*COLUMNS)
    if status is not None:
        query = query.where(CreatorApplication.status == status)
    table = CreatorApplication
    return await keyset.newest_first(query, table.created_at, table.id, after, limit)
