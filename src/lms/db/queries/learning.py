"""SQL for enrollment, the progress heartbeat and completion: the learner's hot paths.

Raw SQL because these run for every playing video and every finished lesson: each is one
prepared statement (asyncpg caches it per connection) that does its reading and writing in one
round trip, with the database's row locks and unique constraints as the arbiters of races, never
a read in Python followed by a write.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg

from lms.db.projection import json_object
from lms.db.queries import Conn
from lms.db.queries.certificates import CertificateToStore
from lms.domain.learning.schemas import ProgressEntry
from lms.invariants import present

PROGRESS_ENTRY = json_object(ProgressEntry)
ENROLLMENT_COLUMNS = "id, course_id, user_id, progress, completed, enrolled_at, completed_at"
ENROLLMENT_COLUMNS_OF_E = ", ".join(f"e.{c.strip()}" for c in ENROLLMENT_COLUMNS.split(","))


# Timestamps in event data as record_event writes its datetimes (UTC, "Z"), so that every event's
# times read alike whether SQL or Python built the data.
EVENT_TIME = """to_char({} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"""


def enrollment_created_data(alias: str, source: str) -> str:
    """The data of an enrollment.created event, built from the new row `alias` (see
    lms.domain.events.log: ids and when, no email)."""
    enrolled_at = EVENT_TIME.format(f"{alias}.enrolled_at")
    return (
        f"jsonb_build_object('enrollmentId', {alias}.id, 'userId', {alias}.user_id, "
        f"'courseId', {alias}.course_id, 'enrolledAt', {enrolled_at}, "
        f"'source', '{source}')"
    )


async def enroll(conn: Conn, user_id: uuid.UUID, course_id: uuid.UUID) -> asyncpg.Record | None:
    """The new enrollment in a PUBLISHED course that is free or that the user has a PAID order
    of, or None when the course is not published, is sold and not paid for, or the user is
    enrolled already (the unique (user, course) constraint decides between racers)."""
    # The enrollment.created event in the same statement (lms.domain.events.log): one round
    # trip still, and the event commits with the row or not at all.
    return await conn.fetchrow(
        f"""
        WITH enrolled AS (
            INSERT INTO enrollments (user_id, course_id)
            SELECT $1, c.id FROM courses c
            WHERE c.id = $2 AND c.status = 'PUBLISHED'
              AND (c.price <= 0 OR EXISTS (SELECT 1 FROM orders o WHERE o.user_id = $1
                                           AND o.course_id = c.id AND o.status = 'PAID'))
            ON CONFLICT (user_id, course_id) DO NOTHING
            RETURNING {ENROLLMENT_COLUMNS}
        ), recorded AS (
            INSERT INTO events (type, data)
            SELECT 'enrollment.created', {enrollment_created_data("enrolled", "self")}
            FROM enrolled
        )
        SELECT {ENROLLMENT_COLUMNS} FROM enrolled
        """,
        user_id,
        course_id,
    )


async def enrollment_in_published(
    conn: Conn, user_id: uuid.UUID, course_id: uuid.UUID
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"""
        SELECT {ENROLLMENT_COLUMNS_OF_E}
        FROM enrollments e JOIN courses c ON c.id = e.course_id
        WHERE e.user_id = $1 AND e.course_id = $2 AND c.status = 'PUBLISHED'
        """,
        user_id,
        course_id,
    )


async def enroll_many(conn: Conn, course_id: uuid.UUID, emails: list[str]) -> list[asyncpg.Record]:
    """Admin bulk enrollment in one set-based statement: (email, status) for each input row in
    order. A row whose address has no account is NO_SUCH_USER; the first row of an account that
    was not enrolled is ENROLLED, every other row of it ALREADY_ENROLLED."""
    rows: list[asyncpg.Record] = await conn.fetch(
        f"""
        WITH input AS (
            SELECT t.email, t.n FROM unnest($2::text[]) WITH ORDINALITY AS t(email, n)
        ), matched AS (
            SELECT i.n, i.email, u.id AS user_id,
                   row_number() OVER (PARTITION BY u.id ORDER BY i.n) AS occurrence
            FROM input i LEFT JOIN users u ON u.email = i.email
        ), inserted AS (
            INSERT INTO enrollments (user_id, course_id)
            SELECT m.user_id, $1 FROM matched m WHERE m.user_id IS NOT NULL AND m.occurrence = 1
            ORDER BY m.user_id  -- one lock order for every writer: no deadlock between them
            ON CONFLICT (user_id, course_id) DO NOTHING
            RETURNING id, user_id, course_id, enrolled_at
        ), recorded AS (
            INSERT INTO events (type, data)
            SELECT 'enrollment.created', {enrollment_created_data("inserted", "admin")}
            FROM inserted ORDER BY user_id
        )
        SELECT m.email,
               CASE WHEN m.user_id IS NULL THEN 'NO_SUCH_USER'
                    WHEN m.occurrence = 1 AND ins.user_id IS NOT NULL THEN 'ENROLLED'
                    ELSE 'ALREADY_ENROLLED' END AS status
        FROM matched m LEFT JOIN inserted ins ON ins.user_id = m.user_id
        ORDER BY m.n
        """,
        course_id,
        emails,
    )
    return rows


# ---------------------------------------------------------------------------------------------
# the heartbeat
#
# One statement, in the lock order every writer of an enrollment's rows takes (its enrollment
# row, then its lesson rows; completion does the same), so heartbeats and completions of one
# enrollment queue up and never deadlock (a deletion cascading the other way can: the service
# runs the statement again, lms.domain.learning.concurrency):
# 1. target: the enrollment, locked FOR NO KEY UPDATE (the latest version of its row, whatever
#    committed while this waited), with the rules' verdicts: `in_video` (not past the video's
#    known end) and `on_time` (at least $5 s since the enrollment's previous accepted
#    heartbeat, of any lesson), and `budget`, the real time not yet credited (now - watch_clock).
# 2. previous: the lesson's row as the last writer left it (locked too: the latest version).
# 3. span: a jump forward from the previous position that fits in the budget plus $4 s of slack
#    is playback; it is credited from where credit stopped (credited_to, at or before that
#    position) onward, as far as the budget reaches and no further than the new position. The
#    slack only decides playback from seek; it never adds a second.
# 4. credit: the lesson's new spans, their measure, and what they gained.
# 5. saved: the lesson's row (without playback, nothing is owed from the new position on, unless
#    the player stands still); clock: the enrollment's, whose watch clock moves on by what was
#    gained. It never lags now by more than $6 s: real time a heartbeat could not use (it came
#    late, or replayed a watched part) carries over that far and no further, so idle time is
#    not banked. Every credit is paid with real time, so the seconds all the enrollment's
#    lessons gain together never exceed the time between its heartbeats.
# A refused heartbeat (404, 400, 429) writes nothing. Positions are rounded to the millisecond so
# the ranges hold exact decimals. No SQL comments inside: bench.suite runs this text as one line.
HEARTBEAT = """
WITH target AS (
    SELECT l.id AS lesson_id, l.duration_seconds, e.id AS enrollment_id, e.watch_clock,
           (l.duration_seconds IS NULL OR $3 <= l.duration_seconds) AS in_video,
           (e.last_heartbeat_at IS NULL
            OR e.last_heartbeat_at <= now() - make_interval(secs => $5)) AS on_time,
           extract(epoch FROM now() - e.watch_clock)::float8 AS budget
    FROM lessons l JOIN enrollments e ON e.course_id = l.course_id AND e.user_id = $2
    WHERE l.id = $1
    FOR NO KEY UPDATE OF e
), accepted AS (
    SELECT * FROM target WHERE in_video AND on_time
), previous AS (
    SELECT p.position_seconds, coalesce(p.credited_to, p.position_seconds) AS credited_to,
           p.watched, p.watched_seconds
    FROM lesson_progress p
    WHERE p.enrollment_id = (SELECT a.enrollment_id FROM accepted a) AND p.lesson_id = $1
      AND p.last_heartbeat_at IS NOT NULL
    FOR NO KEY UPDATE OF p
), span AS (
    SELECT pr.watched, pr.watched_seconds,
           numrange(round(pr.credited_to::numeric, 3),
                    round((pr.credited_to + least($3 - pr.credited_to, a.budget))::numeric, 3))
               AS played
    FROM accepted a JOIN previous pr ON true
    WHERE $3 > pr.position_seconds AND $3 - pr.position_seconds <= a.budget + $4
), credit AS (
    SELECT w.watched, upper(s.played)::float8 AS credited_to, m.seconds AS watched_seconds,
           greatest(m.seconds - s.watched_seconds, 0) AS gained
    FROM span s,
         LATERAL (SELECT s.watched + nummultirange(s.played) AS watched) w,
         LATERAL (SELECT coalesce(sum(upper(r) - lower(r)), 0)::float8 AS seconds
                  FROM unnest(w.watched) AS r) m
), saved AS (
    INSERT INTO lesson_progress AS p (user_id, lesson_id, enrollment_id, position_seconds,
                                      credited_to, last_heartbeat_at, updated_at)
    SELECT $2, a.lesson_id, a.enrollment_id, $3, $3, now(), now() FROM accepted a
    ON CONFLICT (enrollment_id, lesson_id) DO UPDATE SET
        watched = coalesce((SELECT c.watched FROM credit c), p.watched),
        watched_seconds = coalesce((SELECT c.watched_seconds FROM credit c), p.watched_seconds),
        credited_to = coalesce(
            (SELECT c.credited_to FROM credit c),
            CASE WHEN EXCLUDED.position_seconds = p.position_seconds THEN p.credited_to
                 ELSE EXCLUDED.position_seconds END),
        position_seconds = EXCLUDED.position_seconds,
        last_heartbeat_at = EXCLUDED.last_heartbeat_at,
        updated_at = EXCLUDED.updated_at
    RETURNING p.watched_seconds, p.completed
), clock AS (
    UPDATE enrollments e
    SET last_heartbeat_at = now(),
        watch_clock = least(now(), greatest(
            coalesce(a.watch_clock
                     + make_interval(secs => coalesce((SELECT c.gained FROM credit c), 0)),
                     now()),
            now() - make_interval(secs => $6)))
    FROM accepted a
    WHERE e.id = a.enrollment_id
)
SELECT t.duration_seconds, t.in_video, t.on_time, s.watched_seconds, s.completed
FROM target t LEFT JOIN saved s ON true
"""


async def heartbeat(
    conn: Conn,
    *,
    lesson_id: uuid.UUID,
    user_id: uuid.UUID,
    position_seconds: float,
    seek_slack_seconds: float,
    min_interval_seconds: float,
    carry_seconds: float,
) -> asyncpg.Record | None:
    """Save the resume position and credit the span played since the previous heartbeat, paid
    with the enrollment's real time.

    None when the lesson does not exist or the user is not enrolled in its course; otherwise
    `in_video` false (a position past the video's known end) or `on_time` false (sooner than
    `min_interval_seconds` after the enrollment's previous heartbeat) when nothing changed."""
    return await conn.fetchrow(
        HEARTBEAT,
        lesson_id,
        user_id,
        position_seconds,
        seek_slack_seconds,
        min_interval_seconds,
        carry_seconds,
    )


# Group commit: the same statement over a batch of heartbeats ($1 [lesson, user] pairs, $2
# positions, one element per heartbeat; the rule parameters, $3 to $5, are shared), so
# heartbeats arriving together cost one statement and one commit. Each row of the answer, in
# input order (`n`, from 1), is what HEARTBEAT would have answered for that heartbeat had the
# batch run in sequence:
# - The enrollments are locked in one order (their ids), as every batch locks them, and each
#   enrollment's lesson rows after all enrollments: batches never deadlock with each other, and
#   heartbeats and completions still take an enrollment before its lesson rows.
# - Heartbeats of one enrollment in a batch: the first in the video that is on time is accepted;
#   every later one is too soon, as it would be one after the other (the first moved
#   last_heartbeat_at to now). So each enrollment, and each lesson row, is written at most once.
# - The batch comes as a JSON array of [lesson, user] pairs ($1) and an array of positions ($2):
#   the planner cannot see how many pairs a JSON value holds, so every batch costs the same to
#   it and the prepared statement keeps one generic plan. (From arrays, which it can count, it
#   made a custom plan for each batch size: planning cost more than running.)
# - Everything else is HEARTBEAT row by row, correlated by the enrollment. The enrollment is
#   found through its (user, course) key: as a lateral lookup, so that the generic plan of a
#   statement whose batch size it cannot know does not scan a course's enrollments instead.
# - progressed: a heartbeat whose credit carries its lesson over 25, 50 or 75 % of the known
#   length records one `lesson.progressed` event per milestone crossed (watched before it below
#   the mark, after it at or above). Watched time only grows and each enrollment's lesson row is
#   credited at most once a statement, so each milestone of an (enrollment, lesson) is recorded
#   once; nothing for a length unknown or 0, or a heartbeat that gained nothing. The CTE only
#   reads `credit`'s rows (the few heartbeats that gained), so heartbeats crossing nothing pay
#   for it next to nothing. (HEARTBEAT above, used by nothing in src, does not record them.)
HEARTBEATS = """
WITH input AS (
    SELECT t.n, (t.pair ->> 0)::uuid AS lesson_id, (t.pair ->> 1)::uuid AS user_id,
           ($2::float8[])[t.n] AS position_seconds
    FROM jsonb_array_elements($1::text::jsonb) WITH ORDINALITY AS t(pair, n)
), target AS (
    SELECT i.n, i.user_id, i.position_seconds, l.id AS lesson_id, l.duration_seconds,
           l.course_id, e.id AS enrollment_id, e.watch_clock,
           (l.duration_seconds IS NULL OR i.position_seconds <= l.duration_seconds) AS in_video,
           (e.last_heartbeat_at IS NULL
            OR e.last_heartbeat_at <= now() - make_interval(secs => $4)) AS on_time,
           extract(epoch FROM now() - e.watch_clock)::float8 AS budget
    FROM input i
    JOIN lessons l ON l.id = i.lesson_id
    JOIN LATERAL (
        SELECT e.* FROM enrollments e WHERE e.user_id = i.user_id AND e.course_id = l.course_id
        ORDER BY e.user_id, e.course_id
    ) e ON true
    ORDER BY e.id, i.n
    FOR NO KEY UPDATE OF e
), ranked AS (
    SELECT t.*,
           t.on_time AND coalesce(count(*) FILTER (WHERE t.in_video) OVER (
               PARTITION BY t.enrollment_id ORDER BY t.n
               ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) = 0 AS first_on_time
    FROM target t
), accepted AS (
    SELECT * FROM ranked WHERE in_video AND first_on_time
), previous AS (
    SELECT a.enrollment_id, p.position_seconds,
           coalesce(p.credited_to, p.position_seconds) AS credited_to,
           p.watched, p.watched_seconds
    FROM accepted a
    JOIN lesson_progress p ON p.enrollment_id = a.enrollment_id AND p.lesson_id = a.lesson_id
    WHERE p.last_heartbeat_at IS NOT NULL
    ORDER BY p.enrollment_id, p.lesson_id
    FOR NO KEY UPDATE OF p
), span AS (
    SELECT a.enrollment_id, pr.watched, pr.watched_seconds,
           numrange(round(pr.credited_to::numeric, 3),
                    round((pr.credited_to
                           + least(a.position_seconds - pr.credited_to, a.budget))::numeric, 3))
               AS played
    FROM accepted a JOIN previous pr ON pr.enrollment_id = a.enrollment_id
    WHERE a.position_seconds > pr.position_seconds
      AND a.position_seconds - pr.position_seconds <= a.budget + $3
), credit AS (
    SELECT s.enrollment_id, w.watched, upper(s.played)::float8 AS credited_to,
           s.watched_seconds AS watched_before, m.seconds AS watched_seconds,
           greatest(m.seconds - s.watched_seconds, 0) AS gained
    FROM span s,
         LATERAL (SELECT s.watched + nummultirange(s.played) AS watched) w,
         LATERAL (SELECT coalesce(sum(upper(r) - lower(r)), 0)::float8 AS seconds
                  FROM unnest(w.watched) AS r) m
), saved AS (
    INSERT INTO lesson_progress AS p (user_id, lesson_id, enrollment_id, position_seconds,
                                      credited_to, last_heartbeat_at, updated_at)
    SELECT a.user_id, a.lesson_id, a.enrollment_id, a.position_seconds, a.position_seconds,
           now(), now()
    FROM accepted a
    ORDER BY a.enrollment_id
    ON CONFLICT (enrollment_id, lesson_id) DO UPDATE SET
        watched = coalesce(
            (SELECT c.watched FROM credit c WHERE c.enrollment_id = EXCLUDED.enrollment_id),
            p.watched),
        watched_seconds = coalesce(
            (SELECT c.watched_seconds FROM credit c
             WHERE c.enrollment_id = EXCLUDED.enrollment_id),
            p.watched_seconds),
        credited_to = coalesce(
            (SELECT c.credited_to FROM credit c WHERE c.enrollment_id = EXCLUDED.enrollment_id),
            CASE WHEN EXCLUDED.position_seconds = p.position_seconds THEN p.credited_to
                 ELSE EXCLUDED.position_seconds END),
        position_seconds = EXCLUDED.position_seconds,
        last_heartbeat_at = EXCLUDED.last_heartbeat_at,
        updated_at = EXCLUDED.updated_at
    RETURNING p.enrollment_id, p.watched_seconds, p.completed
), clock AS (
    UPDATE enrollments e
    SET last_heartbeat_at = now(),
        watch_clock = least(now(), greatest(
            coalesce(a.watch_clock + make_interval(secs => coalesce(c.gained, 0)), now()),
            now() - make_interval(secs => $5)))
    FROM accepted a LEFT JOIN credit c ON c.enrollment_id = a.enrollment_id
    WHERE e.id = a.enrollment_id
), progressed AS (
    INSERT INTO events (type, data)
    SELECT 'lesson.progressed',
           jsonb_build_object('enrollmentId', a.enrollment_id, 'userId', a.user_id,
                              'courseId', a.course_id, 'lessonId', a.lesson_id,
                              'milestone', m.pct, 'watchedSeconds', c.watched_seconds,
                              'durationSeconds', a.duration_seconds)
    FROM credit c
    JOIN accepted a ON a.enrollment_id = c.enrollment_id
    CROSS JOIN (VALUES (25), (50), (75)) AS m(pct)
    WHERE a.duration_seconds > 0 AND c.gained > 0
      AND c.watched_before < a.duration_seconds * m.pct / 100
      AND c.watched_seconds >= a.duration_seconds * m.pct / 100
    ORDER BY a.enrollment_id, m.pct
)
SELECT i.n, r.enrollment_id IS NOT NULL AS found, r.duration_seconds, r.in_video,
       r.first_on_time AS on_time, s.watched_seconds, s.completed
FROM input i
LEFT JOIN ranked r ON r.n = i.n
LEFT JOIN saved s ON r.in_video AND r.first_on_time AND s.enrollment_id = r.enrollment_id
ORDER BY i.n
"""


async def heartbeats(
    conn: Conn,
    *,
    lesson_ids: list[uuid.UUID],
    user_ids: list[uuid.UUID],
    positions_seconds: list[float],
    seek_slack_seconds: float,
    min_interval_seconds: float,
    carry_seconds: float,
) -> list[asyncpg.Record]:
    """HEARTBEAT for a batch, in one statement (one transaction): one row per heartbeat, in
    input order, each with `found` false where HEARTBEAT would have answered None."""
    pairs = ",".join(
        f'["{lesson}","{user}"]' for lesson, user in zip(lesson_ids, user_ids, strict=True)
    )
    rows: list[asyncpg.Record] = await conn.fetch(
        HEARTBEATS,
        f"[{pairs}]",
        positions_seconds,
        seek_slack_seconds,
        min_interval_seconds,
        carry_seconds,
    )
    return rows


# ---------------------------------------------------------------------------------------------
# completion

# Step one of completing a lesson: lock the enrollment (so completions of one enrollment queue
# up and each sees the ones before it) and read what the rules and the certificate need. NO KEY
# UPDATE, the lock an UPDATE of non-key columns takes: it queues completions but not the
# foreign-key checks of heartbeats inserting a lesson's first row, which would otherwise wait on
# this lock while this transaction waits on their row.
LOCK_FOR_COMPLETION = """
SELECT e.id AS enrollment_id, e.course_id, e.user_id, e.completed AS course_completed,
       l.duration_seconds, l.video_version > 0 AS has_video,
       coalesce(p.completed, false) AS lesson_completed,
       coalesce(p.watched_seconds, 0) AS watched_seconds,
       c.title AS course_title,
       coalesce(cu.name, cu.full_name, cu.username) AS creator_name,
       coalesce(lu.full_name, lu.name, lu.username) AS learner_name,
       cert.id AS certificate_id
FROM lessons l
JOIN enrollments e ON e.course_id = l.course_id AND e.user_id = $2
JOIN courses c ON c.id = e.course_id
JOIN users cu ON cu.id = c.creator_id
JOIN users lu ON lu.id = e.user_id
LEFT JOIN lesson_progress p ON p.enrollment_id = e.id AND p.lesson_id = l.id
LEFT JOIN certificates cert ON cert.enrollment_id = e.id
WHERE l.id = $1
FOR NO KEY UPDATE OF e
"""

# Step two, under that lock: mark the lesson and recompute the enrollment from the rows. The
# count reads the other lessons' rows and adds this one (whose row the same statement writes, and
# so cannot see), so progress is always done/total of what is stored, never an increment.
MARK_COMPLETED = """
WITH marked AS (
    INSERT INTO lesson_progress AS p
        (user_id, lesson_id, enrollment_id, completed, completed_at, updated_at)
    VALUES ($3, $2, $1, true, now(), now())
    ON CONFLICT (enrollment_id, lesson_id) DO UPDATE
        SET completed = true, completed_at = coalesce(p.completed_at, now()), updated_at = now()
    RETURNING p.lesson_id
), tally AS (
    SELECT (SELECT count(*) FROM lesson_progress
            WHERE enrollment_id = $1 AND completed AND lesson_id <> $2) + 1 AS done,
           (SELECT count(*) FROM lessons WHERE course_id = $4) AS total
)
UPDATE enrollments e
SET progress = round(100.0 * least(t.done, t.total) / greatest(t.total, 1), 2),
    completed = e.completed OR t.done >= t.total,
    completed_at = CASE WHEN e.completed THEN e.completed_at
                        WHEN t.done >= t.total THEN now() END
FROM tally t, (SELECT count(*) FROM marked) m
WHERE e.id = $1
RETURNING e.progress, e.completed, e.completed_at
"""


async def lock_for_completion(
    conn: asyncpg.Connection, lesson_id: uuid.UUID, user_id: uuid.UUID
) -> asyncpg.Record | None:
    return await conn.fetchrow(LOCK_FOR_COMPLETION, lesson_id, user_id)


async def mark_completed(
    conn: asyncpg.Connection,
    *,
    enrollment_id: uuid.UUID,
    lesson_id: uuid.UUID,
    user_id: uuid.UUID,
    course_id: uuid.UUID,
) -> asyncpg.Record:
    row = await conn.fetchrow(MARK_COMPLETED, enrollment_id, lesson_id, user_id, course_id)
    return present(row, "the enrollment is locked by this transaction")


async def complete_in_one_statement(
    conn: Conn,
    lesson_id: uuid.UUID,
    user_id: uuid.UUID,
    *,
    require_watch: bool,
    threshold_percent: float,
) -> asyncpg.Record | None:
    """lms_complete_or_prepare() (migration lms_0020): LOCK_FOR_COMPLETION, the watch rule and
    MARK_COMPLETED in one round trip, for every completion that issues no certificate. None: not
    enrolled, or no such lesson; `allowed` false: the watch rule refused (nothing marked);
    `needs_certificate`: nothing marked, the lesson completes a course without a certificate,
    and the row also holds what is signed (course_id, course_title, learner_name) and a number
    from certificate_status_seq for the certificate's status list entry."""
    return await conn.fetchrow(
        "SELECT * FROM lms_complete_or_prepare($1, $2, $3, $4)",
        lesson_id,
        user_id,
        require_watch,
        threshold_percent,
    )


async def complete_with_certificate(
    conn: Conn,
    lesson_id: uuid.UUID,
    user_id: uuid.UUID,
    *,
    require_watch: bool,
    threshold_percent: float,
    lesson_completed: bool,
    completed_at: datetime,
    certificate: CertificateToStore,
    events: tuple[list[str], list[str]],
) -> asyncpg.Record | None:
    """lms_complete_with_certificate() (migration lms_0020): the lesson, its enrollment, the
    signed certificate and the completion's events (types, JSON texts) in one statement, under
    the enrollment's lock, all written only while what they were built from still holds
    (`lesson_completed` as read before, the same title and name, the course completed by this
    lesson, no certificate yet). The certificate's row, or None: nothing written, decide afresh."""
    return await conn.fetchrow(
        "SELECT * FROM lms_complete_with_certificate("
        "$1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
        lesson_id,
        user_id,
        require_watch,
        threshold_percent,
        lesson_completed,
        completed_at,
        certificate.certificate_id,
        certificate.serial_hash,
        certificate.learner_name,
        certificate.course_title,
        certificate.jws,
        certificate.issued_at,
        certificate.status_list,
        certificate.status_index,
        events[0],
        events[1],
    )


# ---------------------------------------------------------------------------------------------
# reading progress


async def progress_list_json(conn: Conn, user_id: uuid.UUID) -> str:
    """GET /progress: the caller's enrollments, newest first, each with its course summary (the
    catalog's own projection) and certificate id, as one JSON array built by PostgreSQL."""
    body: str = await conn.fetchval(
        f"""
        SELECT coalesce(json_agg({PROGRESS_ENTRY} ORDER BY e.enrolled_at DESC, e.id DESC),
                        '[]'::json)::text
        FROM enrollments e
        JOIN courses c ON c.id = e.course_id
        JOIN users u ON u.id = c.creator_id
        LEFT JOIN certificates cert ON cert.enrollment_id = e.id
        WHERE e.user_id = $1
        """,
        user_id,
    )
    return body


async def course_progress(
    conn: Conn, user_id: uuid.UUID, course_id: uuid.UUID
) -> asyncpg.Record | None:
    """The caller's enrollment in the course, with its certificate id."""
    return await conn.fetchrow(
        """
        SELECT e.id, e.progress, e.completed, e.completed_at, cert.id AS certificate_id
        FROM enrollments e LEFT JOIN certificates cert ON cert.enrollment_id = e.id
        WHERE e.user_id = $1 AND e.course_id = $2
        """,
        user_id,
        course_id,
    )


async def lesson_states(
    conn: Conn, enrollment_id: uuid.UUID, course_id: uuid.UUID
) -> list[asyncpg.Record]:
    """Every lesson of the course in order, with the enrollment's progress on it (zeros when
    the learner has not started it)."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """
        SELECT l.id AS lesson_id, l.title, l.position, l.duration_seconds,
               coalesce(p.completed, false) AS completed, p.completed_at,
               coalesce(p.position_seconds, 0) AS position_seconds,
               coalesce(p.watched_seconds, 0) AS watched_seconds,
               p.last_heartbeat_at
        FROM lessons l
        LEFT JOIN lesson_progress p ON p.enrollment_id = $1 AND p.lesson_id = l.id
        WHERE l.course_id = $2
        ORDER BY l.position
        """,
        enrollment_id,
        course_id,
    )
    return rows
