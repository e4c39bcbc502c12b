"""SQL for the Cloudinary notifications already processed, kept by signature so that a replay is
recognised, and only for as long as its timestamp would still be accepted.

Raw because recording one is INSERT ... ON CONFLICT DO NOTHING: of two identical notifications
arriving together, the second waits for the first's transaction and then sees it recorded."""

from __future__ import annotations

from lms.db.queries import Conn


async def record(conn: Conn, signature: str, signed_at: int, *, keep_seconds: float) -> bool:
    """Record a notification (its signature, its unix timestamp); False when it was recorded
    before: a replay. Notifications older than `keep_seconds` are forgotten first (their
    timestamps are refused anyway). Run it in the transaction that acts on the notification."""
    await conn.execute(
        "DELETE FROM cloudinary_notifications WHERE signed_at < now() - make_interval(secs => $1)",
        keep_seconds,
    )
    status = await conn.execute(
        """
        INSERT INTO cloudinary_notifications (signature, signed_at)
        VALUES ($1, to_timestamp($2))
        ON CONFLICT (signature) DO NOTHING
        """,
        signature,
        float(signed_at),
    )
    return bool(status == "INSERT 0 1")
