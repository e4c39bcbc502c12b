"""SQL for authoring and reviewing courses. Every lifecycle step is one conditional UPDATE, so of
two concurrent transitions at most one can succeed.

Raw because the course page is a hot path (its JSON built by PostgreSQL from the Course Struct's
projection, like the catalog), and authoring runs in raw transactions holding the course row
lock with the lessons' statements (lessons.py) on the same connection."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

import asyncpg

from lms.db import keyset
from lms.db.queries import Conn
from lms.db.queries.catalog import COURSE_JSON

META = "id, creator_id, status, lesson_count, title"


async def meta(conn: Conn, course_id: uuid.UUID, *, lock: bool = False) -> asyncpg.Record | None:
    """What visibility and ownership checks need; `lock` serializes changes to one course."""
    suffix = " FOR UPDATE" if lock else ""
    return await conn.fetchrow(f"SELECT {META} FROM courses WHERE id = $1{suffix}", course_id)


async def insert(
    conn: Conn,
    *,
    creator_id: uuid.UUID,
    title: str,
    description: str,
    price: Decimal,
    thumbnail_url: str | None,
) -> uuid.UUID:
    course_id: uuid.UUID = await conn.fetchval(
        """
        INSERT INTO courses (creator_id, title, description, price, thumbnail_url)
        VALUES ($1, $2, $3, $4, $5) RETURNING id
        """,
        creator_id,
        title,
        description,
        price,
        thumbnail_url,
    )
    return course_id


async def update_draft(conn: Conn, course_id: uuid.UUID, values: dict[str, object]) -> bool:
    """Apply `values` (column -> value, columns from our own Struct) if the course is a DRAFT."""
    assignments = ", ".join(f"{column} = ${i}" for i, column in enumerate(values, start=2))
    status = await conn.execute(
        f"UPDATE courses SET {assignments}, updated_at = now() WHERE id = $1 AND status = 'DRAFT'",
        course_id,
        *values.values(),
    )
    return bool(status == "UPDATE 1")


async def submit(conn: Conn, course_id: uuid.UUID, owner_id: uuid.UUID) -> bool:
    status = await conn.execute(
        """
        UPDATE courses SET status = 'PENDING', submitted_at = now(), updated_at = now()
        WHERE id = $1 AND creator_id = $2 AND status = 'DRAFT' AND lesson_count > 0
        """,
        course_id,
        owner_id,
    )
    return bool(status == "UPDATE 1")


async def publish(conn: Conn, course_id: uuid.UUID) -> bool:
    status = await conn.execute(
        """
        UPDATE courses SET status = 'PUBLISHED', published_at = now(), review_notes = NULL,
               updated_at = now()
        WHERE id = $1 AND status = 'PENDING'
        """,
        course_id,
    )
    return bool(status == "UPDATE 1")


async def send_back(conn: Conn, course_id: uuid.UUID, feedback: str) -> bool:
    status = await conn.execute(
        """
        UPDATE courses SET status = 'DRAFT', review_notes = $2, updated_at = now()
        WHERE id = $1 AND status = 'PENDING'
        """,
        course_id,
        feedback,
    )
    return bool(status == "UPDATE 1")


async def delete(conn: Conn, course_id: uuid.UUID) -> bool:
    status = await conn.execute("DELETE FROM courses WHERE id = $1", course_id)
    return bool(status == "DELETE 1")


async def video_keys(conn: Conn, course_id: uuid.UUID) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT video_provider, video_key FROM lessons"
        " WHERE course_id = $1 AND video_key IS NOT NULL",
        course_id,
    )
    return rows


async def as_json(conn: Conn, course_id: uuid.UUID) -> str:
    body: str = await conn.fetchval(
        f"SELECT {COURSE_JSON}::text"
        " FROM courses c JOIN users u ON u.id = c.creator_id WHERE c.id = $1",
        course_id,
    )
    return body


async def review_page(
    conn: Conn, *, status: str, after: tuple[datetime, uuid.UUID] | None, limit: int
) -> list[asyncpg.Record]:
    """The admin's list of courses in one state, newest first, keyset on (created_at, id). Raw:
    the body is built by PostgreSQL from Course's projection, as for the catalog."""
    rows: list[asyncpg.Record] = await (
        conn.fetch(REVIEW_PAGE[False], status, limit)
        if after is None
        else conn.fetch(REVIEW_PAGE[True], status, limit, *after)
    )
    return rows


def _review_page(*, after: bool) -> str:
    bound = f"AND {keyset.before_sql('c.created_at', 'c.id', 3, 'timestamptz')}" if after else ""
    return f"""
        SELECT c.id, c.created_at, {COURSE_JSON}::text AS body
        FROM courses c JOIN users u ON u.id = c.creator_id
        WHERE c.status = $1 {bound}
        ORDER BY c.created_at DESC, c.id DESC
        LIMIT $2"""


REVIEW_PAGE = {after: _review_page(after=after) for after in (False, True)}
