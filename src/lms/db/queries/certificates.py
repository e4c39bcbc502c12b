"""SQL for certificates and the keys that sign them.

Verification by serial is a public hot path (every link and QR code an employer opens): one
indexed lookup on the unique serial_hash, raw for that reason; the rest sits beside it.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from lms.db.queries import Conn, ReadConn

COLUMNS = """id, user_id, course_id, enrollment_id, serial_hash, learner_name, course_title,
    creator_name, status, jws, issued_at, revoked_at, status_list, status_index"""


@dataclass(frozen=True, slots=True)
class CertificateToStore:
    """A signed certificate's columns, as lms_complete_with_certificate() stores them."""

    certificate_id: uuid.UUID
    serial_hash: str
    learner_name: str
    course_title: str
    jws: str
    issued_at: datetime
    status_list: int
    status_index: int


async def insert(
    conn: Conn,
    *,
    certificate_id: uuid.UUID,
    user_id: uuid.UUID,
    course_id: uuid.UUID,
    enrollment_id: uuid.UUID,
    serial_hash: str,
    learner_name: str,
    course_title: str,
    creator_name: str | None,
    jws: str,
    issued_at: datetime,
    status_list: int,
    status_index: int,
) -> asyncpg.Record | None:
    """The new certificate, or None when the enrollment has one already (the unique
    enrollment_id is the last word, whatever the callers' locks)."""
    return await conn.fetchrow(
        f"""
        INSERT INTO certificates (id, user_id, course_id, enrollment_id, serial_hash, learner_name,
                                  course_title, creator_name, jws, issued_at, status_list,
                                  status_index)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
        ON CONFLICT (enrollment_id) DO NOTHING
        RETURNING {COLUMNS}
        """,
        certificate_id,
        user_id,
        course_id,
        enrollment_id,
        serial_hash,
        learner_name,
        course_title,
        creator_name,
        jws,
        issued_at,
        status_list,
        status_index,
    )


async def next_status_number(conn: Conn) -> int:
    """A number no other certificate gets (nextval takes no lock and is never rolled back)."""
    number: int = await conn.fetchval("SELECT nextval('certificate_status_seq')")
    return number


async def revoked_in_list(conn: Conn, list_id: int, first_number: int) -> list[int] | None:
    """The revoked indexes of a status list, or None when no certificate was given a number in
    it yet (`first_number`: the list's first sequence number). One statement: the sequence's
    state and the revoked entries (the partial index on revoked entries alone)."""
    row = await conn.fetchrow(
        """
        SELECT (SELECT is_called AND last_value >= $2 FROM certificate_status_seq) AS exists,
               ARRAY(SELECT status_index FROM certificates
                     WHERE status_list = $1 AND status = 'REVOKED'
                     ORDER BY status_index) AS revoked
        """,
        list_id,
        first_number,
    )
    if row is None or not row["exists"]:
        return None
    return list(row["revoked"])


async def by_id(
    conn: Conn, certificate_id: uuid.UUID, *, lock: bool = False
) -> asyncpg.Record | None:
    suffix = " FOR UPDATE" if lock else ""
    return await conn.fetchrow(
        f"SELECT {COLUMNS} FROM certificates WHERE id = $1{suffix}", certificate_id
    )


async def for_enrollment(conn: Conn, enrollment_id: uuid.UUID) -> asyncpg.Record | None:
    """The enrollment's owner and completion, with its certificate's columns (null while none)."""
    return await conn.fetchrow(
        """
        SELECT e.user_id AS owner_id, e.completed AS enrollment_completed,
               c.id, c.user_id, c.course_id, c.enrollment_id, c.serial_hash, c.learner_name,
               c.course_title, c.creator_name, c.status, c.jws, c.issued_at, c.revoked_at,
               c.status_list, c.status_index
        FROM enrollments e LEFT JOIN certificates c ON c.enrollment_id = e.id
        WHERE e.id = $1
        """,
        enrollment_id,
    )


async def of_user(conn: Conn, user_id: uuid.UUID) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        f"SELECT {COLUMNS} FROM certificates WHERE user_id = $1 ORDER BY issued_at DESC, id DESC",
        user_id,
    )
    return rows


def by_serial(conn: ReadConn, serial_hash: str) -> Awaitable[asyncpg.Record | None]:
    """The statement's own awaitable (every verification passes here: no coroutine between)."""
    return conn.fetchrow(
        """
        SELECT serial_hash, learner_name, course_title, creator_name, course_id, status,
               issued_at, revoked_at, jws
        FROM certificates WHERE serial_hash = $1
        """,
        serial_hash,
    )


async def revoke(conn: Conn, certificate_id: uuid.UUID, reason: str) -> asyncpg.Record | None:
    """The revoked certificate, or None when it was revoked already (one conditional UPDATE:
    of two concurrent revocations exactly one succeeds)."""
    return await conn.fetchrow(
        f"""
        UPDATE certificates SET status = 'REVOKED', revoked_at = now(), revoked_reason = $2
        WHERE id = $1 AND status = 'VALID'
        RETURNING {COLUMNS}
        """,
        certificate_id,
        reason,
    )


async def register_signing_key(conn: Conn, kid: str, public_jwk: dict[str, str]) -> None:
    await conn.execute(
        """
        INSERT INTO certificate_signing_keys (kid, public_jwk) VALUES ($1, $2)
        ON CONFLICT (kid) DO NOTHING
        """,
        kid,
        public_jwk,
    )


async def signing_keys(conn: Conn) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT kid, public_jwk FROM certificate_signing_keys ORDER BY created_at, kid"
    )
    return rows
