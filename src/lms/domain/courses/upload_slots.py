"""At most LMS_MAX_UPLOADS_PER_USER video uploads in flight per user through the API, counted in
PostgreSQL so every API process shares the count: one account cannot fill the disk with
concurrent uploads.

A slot is a leased row. The request renews the lease while it reads the body and deletes the row
when it ends, however it ends (done, refused, the client gone). If its process dies instead, the
lease lapses and the slot counts for nothing after at most LEASE_SECONDS.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator

import asyncpg

from lms.context import AppContext
from lms.db.queries import upload_slots as sql
from lms.domain.auth.authentication import Principal
from lms.domain.errors import TooMany

log = logging.getLogger("lms.uploads")

LEASE_SECONDS = 120.0
RENEW_EVERY_SECONDS = LEASE_SECONDS / 4  # three renewals may fail before the lease lapses
RETRY_AFTER_SECONDS = 30  # an upload of a few hundred MB at the usual speeds


@contextlib.asynccontextmanager
async def upload_slot(
    db: asyncpg.Pool, ctx: AppContext, principal: Principal
) -> AsyncIterator[None]:
    """Hold one of the caller's upload slots for the block, or refuse with TooMany (429)."""
    limit = ctx.settings.max_uploads_per_user
    async with db.acquire() as conn, conn.transaction():
        slot = await sql.take(conn, principal.user_id, limit=limit, lease_seconds=LEASE_SECONDS)
    if slot is None:
        raise TooMany(
            f"you have {limit} uploads in flight already, the most at once; "
            "try again when one is finished",
            retry_after=RETRY_AFTER_SECONDS,
        )
    renewing = asyncio.create_task(_renew(db, slot))
    try:
        yield
    finally:
        renewing.cancel()
        # Shielded: this also runs when the request is cancelled (the client went away).
        await asyncio.shield(_release(db, slot))


async def _renew(db: asyncpg.Pool, slot: uuid.UUID) -> None:
    while True:
        await asyncio.sleep(RENEW_EVERY_SECONDS)
        try:
            await sql.renew(db, slot, LEASE_SECONDS)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("could not renew upload slot %s (%s); its lease is generous", slot, exc)


async def _release(db: asyncpg.Pool, slot: uuid.UUID) -> None:
    try:
        await sql.release(db, slot)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        log.warning("could not release upload slot %s (%s); its lease will lapse", slot, exc)
