"""SQL for the xAPI sender: its turn (an advisory lock), and the statements an LRS refused
(xapi_statements, kept for an operator). What is still to send is read from the event log by
the sender's place (lms.db.queries.event_cursors), not queued: lms_0022.

Raw because the senders' turn is a session-level advisory lock held on the connection that
reads and settles a batch."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from lms.db.queries import Conn

# Held by the sender that is sending, for the length of one batch (session-level, on the
# connection that reads and settles the batch): senders in several workers take turns, so no
# row needs a lease written into it, and a sender that dies lets go with its connection.
SEND_LOCK = 0x1E7E_0002


async def try_lock_sending(conn: asyncpg.Connection) -> bool:
    return bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", SEND_LOCK))


async def unlock_sending(conn: asyncpg.Connection) -> None:
    await conn.execute("SELECT pg_advisory_unlock($1)", SEND_LOCK)


async def reject(
    conn: Conn, event_id: uuid.UUID, event_type: str, statement: dict[str, Any], error: str
) -> None:
    """Keep a statement the LRS refused as such (the sender moves on past it)."""
    await conn.execute(
        """
        INSERT INTO xapi_statements (event_id, statement_id, event_type, statement, status,
                                     attempts, last_error)
        VALUES ($1, $2, $3, $4, 'REJECTED', 1, $5)
        ON CONFLICT (event_id) DO UPDATE SET attempts = xapi_statements.attempts + 1,
            last_error = excluded.last_error, status = 'REJECTED'
        """,
        event_id,
        uuid.UUID(statement["id"]),
        event_type,
        statement,
        error[:2000],
    )


async def counts(conn: Conn) -> dict[str, int]:
    rows = await conn.fetch("SELECT status, count(*) AS n FROM xapi_statements GROUP BY status")
    return {row["status"]: int(row["n"]) for row in rows}
