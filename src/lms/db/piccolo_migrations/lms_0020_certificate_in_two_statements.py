"""A completion that issues a certificate in two round trips, not eight.

lms_complete_lesson() (lms_0017/0018) answers needs_certificate and marks nothing when the lesson
would complete a course that has no certificate yet; the service then ran a transaction of its
own: BEGIN, lock and read the facts, mark, take a status number, insert the certificate, insert
the events, COMMIT. Measured on the bench's completion (one completion in three issues a
certificate), those round trips cost the API process as much CPU as every other completion's one
statement together.

- lms_complete_or_prepare() is lms_complete_lesson() that, when it answers needs_certificate,
  also answers what the certificate is signed over (the course's title and the learner's name,
  read under the enrollment's lock) and a status number from certificate_status_seq: the service
  signs with no transaction open.
- lms_complete_with_certificate() then completes the lesson, the enrollment and the certificate
  in one statement, under the enrollment's lock, with the signed credential and the events the
  service built, but only while everything they were built from still holds: the lesson still
  not completed, the course still completed by it, no certificate yet, the watch rule still met,
  the same title and name. Otherwise it writes nothing and returns no row, and the service runs
  its general transaction (which decides afresh); the status number is then left unused, a bit
  that stays 0 in its status list.

The times written (the lesson's and the enrollment's completed_at) are the caller's, given as
p_completed_at, because the course.completed event the caller built carries that time.

lms_complete_lesson() stays for processes of the previous release while they drain.

Self-contained: functions over the learning tables. Frozen history: never import application
code here (a change to a function is a new migration with CREATE OR REPLACE).
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.apps.migrations.tables import Migration

ID = "2026-12-05T07:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "A completion that issues a certificate in two statements"

COMPLETE_OR_PREPARE = """
CREATE FUNCTION lms_complete_or_prepare(
    p_lesson uuid, p_user uuid, p_require_watch boolean, p_threshold_percent float8
) RETURNS TABLE (
    enrollment_id uuid, course_id uuid, duration_seconds float8, has_video boolean,
    lesson_completed boolean, watched_seconds float8, certificate_id uuid, allowed boolean,
    needs_certificate boolean, progress numeric, completed boolean,
    course_title text, learner_name text, status_number bigint
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
    course_id := f.course_id;
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
            SELECT c.title, coalesce(lu.full_name, lu.name, lu.username)
            INTO course_title, learner_name
            FROM courses c, users lu
            WHERE c.id = f.course_id AND lu.id = p_user;
            status_number := nextval('certificate_status_seq');
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
    IF NOT f.lesson_completed THEN
        INSERT INTO events (type, data)
        VALUES ('lesson.completed',
                jsonb_build_object('enrollmentId', f.enrollment_id, 'userId', p_user,
                                   'courseId', f.course_id, 'lessonId', p_lesson,
                                   'progress', progress));
    END IF;
    RETURN NEXT;
END
$$
"""

COMPLETE_WITH_CERTIFICATE = """
CREATE FUNCTION lms_complete_with_certificate(
    p_lesson uuid, p_user uuid, p_require_watch boolean, p_threshold_percent float8,
    p_lesson_completed boolean, p_completed_at timestamptz,
    p_certificate_id uuid, p_serial_hash text, p_learner_name text, p_course_title text,
    p_jws text, p_issued_at timestamptz, p_status_list integer, p_status_index integer,
    p_event_types text[], p_event_data text[]
) RETURNS SETOF certificates LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    f record;
    n_done bigint;
    n_total bigint;
BEGIN
    SELECT e.id AS enrollment_id, e.course_id, e.completed AS course_completed,
           l.duration_seconds AS duration, l.video_version > 0 AS has_video,
           coalesce(p.completed, false) AS lesson_completed,
           coalesce(p.watched_seconds, 0) AS watched,
           c.title AS course_title,
           coalesce(cu.name, cu.full_name, cu.username) AS creator_name,
           coalesce(lu.full_name, lu.name, lu.username) AS learner_name,
           EXISTS (SELECT 1 FROM certificates cert WHERE cert.enrollment_id = e.id) AS certified
    INTO f
    FROM lessons l
    JOIN enrollments e ON e.course_id = l.course_id AND e.user_id = p_user
    JOIN courses c ON c.id = e.course_id
    JOIN users cu ON cu.id = c.creator_id
    JOIN users lu ON lu.id = e.user_id
    LEFT JOIN lesson_progress p ON p.enrollment_id = e.id AND p.lesson_id = l.id
    WHERE l.id = p_lesson
    FOR NO KEY UPDATE OF e;
    -- What the caller signed and built its events from must still hold; if not, nothing is
    -- written and the caller decides afresh in its general transaction.
    IF NOT FOUND OR f.certified OR f.course_completed
       OR f.lesson_completed IS DISTINCT FROM p_lesson_completed
       OR f.course_title IS DISTINCT FROM p_course_title
       OR f.learner_name IS DISTINCT FROM p_learner_name THEN
        RETURN;
    END IF;
    IF p_require_watch AND f.has_video AND NOT f.lesson_completed
       AND NOT (coalesce(f.duration, 0) <> 0
                AND f.watched >= f.duration * p_threshold_percent / 100.0::float8) THEN
        RETURN;
    END IF;
    SELECT (SELECT count(*) FROM lesson_progress lp
            WHERE lp.enrollment_id = f.enrollment_id AND lp.completed
              AND lp.lesson_id <> p_lesson) + 1,
           (SELECT count(*) FROM lessons ls WHERE ls.course_id = f.course_id)
    INTO n_done, n_total;
    IF n_done < n_total THEN
        RETURN;
    END IF;
    INSERT INTO lesson_progress AS p
        (user_id, lesson_id, enrollment_id, completed, completed_at, updated_at)
    VALUES (p_user, p_lesson, f.enrollment_id, true, p_completed_at, p_completed_at)
    ON CONFLICT ON CONSTRAINT lesson_progress_enrollment_lesson_key DO UPDATE
        SET completed = true, completed_at = coalesce(p.completed_at, p_completed_at),
            updated_at = p_completed_at;
    UPDATE enrollments
    SET progress = 100, completed = true, completed_at = p_completed_at
    WHERE id = f.enrollment_id;
    -- No ON CONFLICT: under this lock a certificate cannot appear, and should the unique
    -- enrollment_id ever say otherwise, the error undoes the whole statement.
    RETURN QUERY
    INSERT INTO certificates (id, user_id, course_id, enrollment_id, serial_hash, learner_name,
                              course_title, creator_name, jws, issued_at, status_list,
                              status_index)
    VALUES (p_certificate_id, p_user, f.course_id, f.enrollment_id, p_serial_hash,
            p_learner_name, p_course_title, f.creator_name, p_jws, p_issued_at, p_status_list,
            p_status_index)
    RETURNING *;
    INSERT INTO events (type, data)
    SELECT t, d::jsonb FROM unnest(p_event_types, p_event_data) WITH ORDINALITY AS e(t, d, n)
    ORDER BY n;
END
$$
"""

STEPS: list[tuple[str, str]] = [
    (
        COMPLETE_OR_PREPARE,
        "DROP FUNCTION IF EXISTS lms_complete_or_prepare(uuid, uuid, boolean, float8)",
    ),
    (
        COMPLETE_WITH_CERTIFICATE,
        "DROP FUNCTION IF EXISTS lms_complete_with_certificate(uuid, uuid, boolean, float8,"
        " boolean, timestamptz, uuid, text, text, text, text, timestamptz, integer, integer,"
        " text[], text[])",
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
