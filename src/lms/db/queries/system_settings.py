"""SQL for the single row of runtime settings."""

from __future__ import annotations

import asyncpg

from lms.db.queries import Conn

COLUMNS = """registration_open, otp_ttl_seconds, otp_max_attempts, completion_threshold_percent,
    require_watch_to_complete, max_upload_bytes, updated_at, updated_by_id"""


async def read(conn: Conn, *, lock: bool = False) -> asyncpg.Record:
    suffix = " FOR UPDATE" if lock else ""
    row = await conn.fetchrow(f"SELECT {COLUMNS} FROM system_settings WHERE id = 1{suffix}")
    assert row is not None, "the system_settings row is created by migration 0002"
    return row


async def update(conn: Conn, values: dict[str, object], actor_id: object) -> asyncpg.Record:
    # Column names come from our own Struct's fields, never from the client.
    assignments = ", ".join(f"{column} = ${i}" for i, column in enumerate(values, start=2))
    row = await conn.fetchrow(
        f"""
        UPDATE system_settings SET {assignments}, updated_at = now(), updated_by_id = $1
        WHERE id = 1 RETURNING {COLUMNS}
        """,
        actor_id, *values.values(),
    )  # fmt: skip
    assert row is not None
    return row
