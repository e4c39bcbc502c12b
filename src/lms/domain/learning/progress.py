"""The progress heartbeat: the highest-traffic write of the system (every playing video sends one
every few seconds). One prepared statement saves the resume position and counts the span really
played; only the heartbeat that carries a lesson over the watch threshold does more, completing
it through the same code path as POST /lessons/:id/complete."""

from __future__ import annotations

import uuid

import asyncpg

from lms.context import AppContext
from lms.db.queries import learning as sql
from lms.domain.errors import Invalid, NotFound
from lms.domain.learning.completion import NOT_ENROLLED, WatchRule, complete_lesson
from lms.domain.learning.concurrency import not_found_if_deleted_meanwhile

# A jump forward up to the wall-clock time since the previous heartbeat plus this much is
# playback; more is a seek. The slack absorbs network jitter between heartbeats.
SEEK_SLACK_SECONDS = 2.0


async def heartbeat(
    db: asyncpg.Pool,
    ctx: AppContext,
    user_id: uuid.UUID,
    lesson_id: uuid.UUID,
    position_seconds: float,
) -> None:
    with not_found_if_deleted_meanwhile(NOT_ENROLLED):
        row = await sql.heartbeat(
            db,
            lesson_id=lesson_id,
            user_id=user_id,
            position_seconds=position_seconds + 0.0,  # -0.0 is 0
            seek_slack_seconds=SEEK_SLACK_SECONDS,
        )
    if row is None:
        raise NotFound(NOT_ENROLLED)
    if not row["saved"]:
        raise Invalid(
            f"positionSeconds {position_seconds:g} is past the end of the video "
            f"({row['duration_seconds']:g} s)"
        )
    if row["completed"]:
        return
    rule = WatchRule.of(await ctx.system.get())
    if rule.reached(row["watched_seconds"], row["duration_seconds"]):
        await complete_lesson(db, ctx, user_id, lesson_id)
