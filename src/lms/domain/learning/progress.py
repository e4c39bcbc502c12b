"""The progress heartbeat: the highest-traffic write of the system (every playing video sends one
every second or few). One prepared statement saves the resume position and credits the span
really played, paid with the enrollment's real time; only the heartbeat that carries a lesson over
the watch threshold does more, completing it through the same code path as
POST /lessons/:id/complete.

The rules, and why watched seconds cannot be manufactured:
- One watch clock per enrollment, shared by all its lessons: a heartbeat credits at most the real
  time that passed since the enrollment's previous heartbeat (plus what earlier ones could not
  use, up to WATCH_CARRY_SECONDS), so parallel tabs or lessons earn no more than real time
  together, and sending heartbeats faster earns nothing.
- A jump forward within that time plus SEEK_SLACK_SECONDS is playback, a bigger one a seek. The
  slack only decides which; it never adds a watched second.
- Heartbeats of one enrollment come at most about once a second: one sooner than
  MIN_INTERVAL_SECONDS after the previous accepted one is refused (429, Retry-After: 1) and
  changes nothing. A player sending every second keeps half a second of network jitter to spare.
"""

from __future__ import annotations

import uuid

import asyncpg

from lms.context import AppContext
from lms.domain.errors import Invalid, NotFound, TooMany
from lms.domain.learning.completion import NOT_ENROLLED, WatchRule, complete_lesson
from lms.domain.learning.concurrency import not_found_if_deleted_meanwhile
from lms.domain.learning.group_commit import Rules, batcher_for

# A jump forward up to the real time available plus this much is playback; more is a seek. The
# slack absorbs network jitter between heartbeats.
SEEK_SLACK_SECONDS = 2.0
# The least time between two accepted heartbeats of one enrollment (any of its lessons).
MIN_INTERVAL_SECONDS = 0.5
RETRY_AFTER_SECONDS = 1
# Real time a heartbeat could not use (it came late, or replayed a part watched already) stays
# available to the next ones up to this much, so jitter between heartbeats costs an honest player
# nothing; idle time beyond it is not banked.
WATCH_CARRY_SECONDS = 2.0
TOO_SOON = "heartbeat too soon: one a second per enrollment is enough (this one changed nothing)"


_RULES = Rules(
    seek_slack_seconds=SEEK_SLACK_SECONDS,
    min_interval_seconds=MIN_INTERVAL_SECONDS,
    carry_seconds=WATCH_CARRY_SECONDS,
)


async def heartbeat(
    db: asyncpg.Pool,
    ctx: AppContext,
    user_id: uuid.UUID,
    lesson_id: uuid.UUID,
    position_seconds: float,
) -> None:
    """Heartbeats of one process that arrive together are committed together (group commit,
    lms.domain.learning.group_commit); each is answered after its commit, with its own outcome."""
    with not_found_if_deleted_meanwhile(NOT_ENROLLED):
        row = await batcher_for(db, lambda: _RULES).submit(
            lesson_id,
            user_id,
            position_seconds + 0.0,  # -0.0 is 0
        )
    if not row["found"]:  # no such lesson, or not enrolled in its course
        raise NotFound(NOT_ENROLLED)
    if not row["in_video"]:
        raise Invalid(
            f"positionSeconds {position_seconds:g} is past the end of the video "
            f"({row['duration_seconds']:g} s)"
        )
    if not row["on_time"]:
        raise TooMany(TOO_SOON, retry_after=RETRY_AFTER_SECONDS)
    if row["completed"]:
        return
    rule = WatchRule.of(await ctx.system.get())
    if rule.reached(row["watched_seconds"], row["duration_seconds"]):
        await complete_lesson(db, ctx, user_id, lesson_id)
