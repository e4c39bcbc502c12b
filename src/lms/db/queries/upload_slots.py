"""SQL for upload slots: the video uploads each user has in flight through the API, a leased row
per upload, shared by every API process.

Raw because taking a slot must be atomic across processes: a transaction-scoped advisory lock on
the user puts concurrent takers in a line, so two of them cannot both count the last free slot;
leases are judged by the database's clock, the one clock every process shares."""

from __future__ import annotations

import uuid

from lms.db.queries import Conn

# Serializes the takers of one user's slots until their transaction ends (never held longer:
# pooled connections keep no session state).
LOCK_USER = (
    "SELECT pg_advisory_xact_lock(hashtextextended('lms.upload_slots:' || $1::uuid::text, 0))"
)

PURGE_LAPSED = "DELETE FROM upload_slots WHERE user_id = $1 AND expires_at <= now()"

TAKE = """
INSERT INTO upload_slots (user_id, expires_at)
SELECT $1, now() + make_interval(secs => $3)
WHERE (SELECT count(*) FROM upload_slots WHERE user_id = $1 AND expires_at > now()) < $2
RETURNING id
"""


async def take(
    conn: Conn, user_id: uuid.UUID, *, limit: int, lease_seconds: float
) -> uuid.UUID | None:
    """A new slot for the user, leased for `lease_seconds`, or None when `limit` live ones are
    taken. Run it in a transaction: the lock is the transaction's."""
    await conn.execute(LOCK_USER, user_id)
    # Slots of uploads that died (their process killed) lapse; clear them while we hold the lock.
    await conn.execute(PURGE_LAPSED, user_id)
    slot: uuid.UUID | None = await conn.fetchval(TAKE, user_id, limit, lease_seconds)
    return slot


async def renew(conn: Conn, slot_id: uuid.UUID, lease_seconds: float) -> None:
    await conn.execute(
        "UPDATE upload_slots SET expires_at = now() + make_interval(secs => $2) WHERE id = $1",
        slot_id,
        lease_seconds,
    )


async def release(conn: Conn, slot_id: uuid.UUID) -> None:
    await conn.execute("DELETE FROM upload_slots WHERE id = $1", slot_id)
