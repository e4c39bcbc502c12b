"""The schema: migrations apply, undo and re-apply on PostgreSQL 15 and 16, and the database
itself refuses bad data (enums, ranges, duplicates) whatever the application does."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest

from lms.db.migrate import (
    applied_migrations,
    ensure_schema_current,
    known_migrations,
    migrate_backward,
    migrate_forward,
)
from lms.embedded import EmbeddedServices
from lms.errors import StartupError

EXPECTED_TABLES = {
    "users",
    "courses",
    "lessons",
    "enrollments",
    "lesson_progress",
    "certificates",
    "certificate_signing_keys",
    "creator_applications",
    "otp_codes",
    "refresh_tokens",
    "transcription_jobs",
    "transcripts",
    "transcript_segments",
    "audit_log",
    "system_settings",
    "outbound_messages",
    "rate_limit_counters",
    "search_tops",
    "search_top_rows",
    "upload_slots",
    "cloudinary_notifications",
    "orders",
    "stripe_events",
    "events",
    "webhook_endpoints",
    "webhook_deliveries",
    "webhook_queue",
    "xapi_statements",
    "event_ticks",
    "event_cursors",
}


async def _tables(url: str) -> set[str]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {r["tablename"] for r in rows} - {"migration"}
    finally:
        await conn.close()


async def _round_trip(url: str) -> None:
    applied = await migrate_forward(url, quiet=True)
    assert applied == known_migrations()
    assert await _tables(url) == EXPECTED_TABLES
    await ensure_schema_current(url)
    assert await migrate_forward(url, quiet=True) == []  # idempotent

    await migrate_backward(url, len(known_migrations()))
    assert await _tables(url) == set()
    assert await applied_migrations(url) == []

    assert await migrate_forward(url, quiet=True) == known_migrations()
    assert await _tables(url) == EXPECTED_TABLES


async def test_migrations_round_trip_on_the_test_server(scratch_database: str) -> None:
    await _round_trip(scratch_database)


async def test_migrations_round_trip_on_embedded_postgres_16(tmp_path: Path) -> None:
    services = EmbeddedServices(tmp_path / "pg16", nats=False)
    urls = services.acquire()
    assert urls.database_url and urls.nats_url is None
    try:
        conn = await asyncpg.connect(urls.database_url)
        assert conn.get_server_version().major == 16
        await conn.close()
        await _round_trip(urls.database_url)
    finally:
        services.release()


async def test_serving_refuses_a_schema_that_is_behind(scratch_database: str) -> None:
    pending = len(known_migrations())
    with pytest.raises(StartupError, match=rf"{pending} migration\(s\) pending.*run `lms migrate`"):
        await ensure_schema_current(scratch_database)


async def test_serving_refuses_a_schema_from_newer_code(scratch_database: str) -> None:
    await migrate_forward(scratch_database, quiet=True)
    conn = await asyncpg.connect(scratch_database)
    await conn.execute(
        "INSERT INTO migration (name, app_name, ran_on)"
        " VALUES ('2099-01-01T00:00:00:000000', 'lms', now())"
    )
    await conn.close()
    with pytest.raises(StartupError, match="does not know"):
        await ensure_schema_current(scratch_database)


# --- the database enforces the rules itself ---------------------------------------------------


async def _user(conn: asyncpg.Connection, role: str = "LEARNER") -> uuid.UUID:
    return await conn.fetchval(
        "INSERT INTO users (email, role) VALUES ($1, $2) RETURNING id",
        f"u{uuid.uuid4().hex[:8]}@example.test",
        role,
    )


async def _course(conn: asyncpg.Connection, creator: uuid.UUID, **cols: object) -> uuid.UUID:
    names = ["title", "creator_id", *cols]
    values = ["A course", creator, *cols.values()]
    placeholders = ", ".join(f"${i}" for i in range(1, len(values) + 1))
    return await conn.fetchval(
        f"INSERT INTO courses ({', '.join(names)}) VALUES ({placeholders}) RETURNING id", *values
    )


@pytest.fixture
async def conn(db: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    async with db.acquire() as connection:
        yield connection


@pytest.mark.parametrize(
    ("sql", "error"),
    [
        (
            "INSERT INTO users (email, role) VALUES ('x@y.test', 'SUPERUSER')",
            asyncpg.CheckViolationError,
        ),
        ("INSERT INTO users (email) VALUES ('Upper@Case.test')", asyncpg.CheckViolationError),
        ("INSERT INTO users (email) VALUES ('no-at-sign')", asyncpg.CheckViolationError),
        (
            "INSERT INTO users (email, is_profile_complete) VALUES ('p@q.test', true)",
            asyncpg.CheckViolationError,
        ),
        ("UPDATE system_settings SET otp_max_attempts = 0", asyncpg.CheckViolationError),
        ("INSERT INTO system_settings (id) VALUES (2)", asyncpg.CheckViolationError),
    ],
)
async def test_bad_rows_are_refused(
    conn: asyncpg.Connection, sql: str, error: type[Exception]
) -> None:
    with pytest.raises(error):
        await conn.execute(sql)


async def test_course_rules(conn: asyncpg.Connection) -> None:
    creator = await _user(conn, "CREATOR")
    with pytest.raises(asyncpg.CheckViolationError):
        await _course(conn, creator, price=-1)
    with pytest.raises(asyncpg.CheckViolationError):
        await _course(conn, creator, status="ARCHIVED")
    with pytest.raises(asyncpg.CheckViolationError):  # published needs publishedAt
        await _course(conn, creator, status="PUBLISHED", submitted_at=None)
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        await _course(conn, uuid.uuid4())


async def test_lesson_positions_are_unique_but_swappable_in_one_transaction(
    conn: asyncpg.Connection,
) -> None:
    course = await _course(conn, await _user(conn, "CREATOR"))
    first, second = [
        await conn.fetchval(
            "INSERT INTO lessons (course_id, title, position) VALUES ($1, $2, $3) RETURNING id",
            course,
            f"L{n}",
            n,
        )
        for n in (1, 2)
    ]
    with pytest.raises(asyncpg.UniqueViolationError):
        await conn.execute("UPDATE lessons SET position = 1 WHERE id = $1", second)
    async with conn.transaction():
        await conn.execute("SET CONSTRAINTS lessons_course_position_key DEFERRED")
        await conn.execute("UPDATE lessons SET position = 2 WHERE id = $1", first)
        await conn.execute("UPDATE lessons SET position = 1 WHERE id = $1", second)
    rows = await conn.fetch(
        "SELECT title FROM lessons WHERE course_id = $1 ORDER BY position", course
    )
    assert [r["title"] for r in rows] == ["L2", "L1"]


async def test_one_pending_creator_application_per_user(conn: asyncpg.Connection) -> None:
    user = await _user(conn)
    insert = (
        "INSERT INTO creator_applications (user_id, bio, status, reviewed_at)"
        " VALUES ($1, 'bio', $2, $3)"
    )
    await conn.execute(insert, user, "REJECTED", datetime.now(UTC))
    await conn.execute(insert, user, "PENDING", None)
    with pytest.raises(asyncpg.UniqueViolationError):
        await conn.execute(insert, user, "PENDING", None)
    with pytest.raises(asyncpg.CheckViolationError):  # reviewed means a review time
        await conn.execute(insert, user, "APPROVED", None)


async def test_enrollment_is_unique_and_progress_bounded(conn: asyncpg.Connection) -> None:
    course = await _course(conn, await _user(conn, "CREATOR"))
    learner = await _user(conn)
    await conn.execute(
        "INSERT INTO enrollments (user_id, course_id) VALUES ($1, $2)", learner, course
    )
    with pytest.raises(asyncpg.UniqueViolationError):
        await conn.execute(
            "INSERT INTO enrollments (user_id, course_id) VALUES ($1, $2)", learner, course
        )
    with pytest.raises(asyncpg.CheckViolationError):
        await conn.execute("UPDATE enrollments SET progress = 100.01")
    with pytest.raises(asyncpg.CheckViolationError):  # completed needs completedAt
        await conn.execute("UPDATE enrollments SET completed = true")


async def test_course_search_vector_is_generated_and_weighted(conn: asyncpg.Connection) -> None:
    creator = await _user(conn, "CREATOR")
    await conn.execute(
        "INSERT INTO courses (title, description, creator_id) VALUES ($1, $2, $3)",
        "Postgres indexing",
        "Learn about databases",
        creator,
    )
    row = await conn.fetchrow(
        "SELECT search_vector @@ websearch_to_tsquery('english', 'indexes') AS hit FROM courses"
    )
    assert row["hit"] is True


async def test_catalog_and_search_indexes_exist(conn: asyncpg.Connection) -> None:
    rows = await conn.fetch(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'"
    )
    defs = {r["indexname"]: r["indexdef"] for r in rows}
    assert "published_at DESC, id DESC" in defs["courses_catalog_idx"]
    assert "WHERE" in defs["courses_catalog_idx"]
    assert "gin (search_vector)" in defs["courses_search_idx"]
    assert "gin (search_vector)" in defs["transcript_segments_search_idx"]
    assert "lesson_progress_enrollment_lesson_key" in defs


async def test_settings_row_exists_with_defaults(conn: asyncpg.Connection) -> None:
    row = await conn.fetchrow("SELECT * FROM system_settings")
    assert row["registration_open"] is True
    assert row["otp_ttl_seconds"] == 600 and row["otp_max_attempts"] == 5
