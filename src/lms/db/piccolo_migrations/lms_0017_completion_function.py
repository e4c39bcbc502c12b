"""Completing a lesson in one round trip: lms_complete_lesson() runs, inside the statement that
calls it, what the completion transaction ran as separate statements (lock the enrollment, check
the watch rule, mark the lesson, recompute the enrollment from the rows), each statement of the
function with a snapshot taken after the ones before it, so the tally taken after the lock sees
every completion that committed while it waited, as the separate statements did.

It never issues a certificate: when the lesson would complete a course that has no certificate
yet, it marks nothing and answers needs_certificate, and the service completes that lesson in a
transaction that signs and stores the certificate with it (lms.domain.learning.completion).
allowed false: the watch rule refused, nothing marked. No row: no such lesson, or not enrolled.

Self-contained: one function over the learning tables. Frozen history: never import application
code here (a change to the function is a new migration with CREATE OR REPLACE).
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.apps.migrations.tables import Migration

ID = "2026-12-04T22:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "Lesson completion in one statement"

COMPLETE_LESSON = """
CREATE FUNCTION lms_complete_lesson(
    p_lesson uuid, p_user uuid, p_require_watch boolean, p_threshold_percent float8
) RETURNS TABLE (
    enrollment_id uuid, duration_seconds float8, has_video boolean, lesson_completed boolean,
    watched_seconds float8, certificate_id uuid, allowed boolean, needs_certificate boolean,
    progress numeric, completed boolean
) LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    f record;
    n_done bigint;
    n_total bigint;
BEGIN
    SELECT e.id AS enrollment_id, e.course_id, l.duration_seconds AS duration,
           l.video_version > 0 AS has_video,
           coalesce(p.completed, false) AS lesson_completed,
           coalesce(p.watched_seconds, 0) AS watched,
           cert.id AS certificate_id
    INTO f
    FROM lessons l
    JOIN enrollments e ON e.course_id = l.course_id AND e.user_id = p_user
    LEFT JOIN lesson_progress p ON p.enrollment_id = e.id AND p.lesson_id = l.id
    LEFT JOIN certificates cert ON cert.enrollment_id = e.id
    WHERE l.id = p_lesson
    FOR NO KEY UPDATE OF e;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    enrollment_id := f.enrollment_id;
    duration_seconds := f.duration;
    has_video := f.has_video;
    lesson_completed := f.lesson_completed;
    watched_seconds := f.watched;
    certificate_id := f.certificate_id;
    needs_certificate := false;
    allowed := NOT p_require_watch OR NOT f.has_video OR f.lesson_completed
        OR (coalesce(f.duration, 0) <> 0
            AND f.watched >= f.duration * p_threshold_percent / 100.0::float8);
    IF NOT allowed THEN
        RETURN NEXT;
        RETURN;
    END IF;
    IF f.certificate_id IS NULL THEN
        SELECT (SELECT count(*) FROM lesson_progress lp
                WHERE lp.enrollment_id = f.enrollment_id AND lp.completed
                  AND lp.lesson_id <> p_lesson) + 1,
               (SELECT count(*) FROM lessons ls WHERE ls.course_id = f.course_id)
        INTO n_done, n_total;
        IF n_done >= n_total THEN
            needs_certificate := true;
            RETURN NEXT;
            RETURN;
        END IF;
    END IF;
    WITH marked AS (
        INSERT INTO lesson_progress AS p
            (user_id, lesson_id, enrollment_id, completed, completed_at, updated_at)
        VALUES (p_user, p_lesson, f.enrollment_id, true, now(), now())
        ON CONFLICT ON CONSTRAINT lesson_progress_enrollment_lesson_key DO UPDATE
            SET completed = true, completed_at = coalesce(p.completed_at, now()),
                updated_at = now()
        RETURNING p.lesson_id
    ), tally AS (
        SELECT (SELECT count(*) FROM lesson_progress lp
                WHERE lp.enrollment_id = f.enrollment_id AND lp.completed
                  AND lp.lesson_id <> p_lesson) + 1 AS done,
               (SELECT count(*) FROM lessons ls WHERE ls.course_id = f.course_id) AS total
    )
    UPDATE enrollments e
    SET progress = round(100.0 * least(t.done, t.total) / greatest(t.total, 1), 2),
        completed = e.completed OR t.done >= t.total,
        completed_at = CASE WHEN e.completed THEN e.completed_at
                            WHEN t.done >= t.total THEN now() END
    FROM tally t, (SELECT count(*) FROM marked) m
    WHERE e.id = f.enrollment_id
    RETURNING e.progress, e.completed INTO progress, completed;
    RETURN NEXT;
END
$$
"""

STEPS: list[tuple[str, str]] = [
    (
        COMPLETE_LESSON,
        "DROP FUNCTION IF EXISTS lms_complete_lesson(uuid, uuid, boolean, float8)",
    ),
]


async def _run(statements: list[str]) -> None:
    for sql in statements:
        await Migration.raw(sql).run()


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="lms", description=DESCRIPTION)

    async def run_forwards() -> None:
        await _run([forward for forward, _ in STEPS])

    async def run_backwards() -> None:
        await _run([backward for _, backward in reversed(STEPS)])

    manager.add_raw(run_forwards)
    manager.add_raw_backwards(run_backwards)
    return manager
