"""The creator dashboard: enrollments, completions and where learners drop off, per course and
per lesson of one creator, aggregated by PostgreSQL in one statement.

Raw because it aggregates the biggest tables (enrollments, and lesson_progress with a row per
learner and lesson): every step is an index lookup from the creator's own courses
(courses_creator_idx, enrollments_course_idx, lessons (course_id, position),
lesson_progress_lesson_idx), so its cost follows the creator's data, never the table's size.
tests/integration/learning/test_dashboard_plan.py checks that with EXPLAIN (ANALYZE) at
1,000,000 progress rows.
"""

from __future__ import annotations

import uuid

from lms.db.queries import Conn

CREATOR_DASHBOARD = """
WITH mine AS (
    SELECT c.id, c.title, c.status, c.lesson_count, c.created_at
    FROM courses c WHERE c.creator_id = $1
), enrolled AS (
    SELECT e.course_id, count(*) AS enrollments,
           count(*) FILTER (WHERE e.completed) AS completions,
           sum(e.progress) AS progress_sum
    FROM mine m JOIN enrollments e ON e.course_id = m.id
    GROUP BY e.course_id
), lesson_stats AS (
    SELECT l.id, l.course_id, l.title, l.position,
           count(p.lesson_id) AS started,
           count(p.lesson_id) FILTER (WHERE p.completed) AS completed,
           coalesce(avg(p.watched_seconds), 0) AS average_watched
    FROM mine m
    JOIN lessons l ON l.course_id = m.id
    LEFT JOIN lesson_progress p ON p.lesson_id = l.id
    GROUP BY l.id
), course_rows AS (
    SELECT m.id, m.title, m.status, m.lesson_count, m.created_at,
           coalesce(en.enrollments, 0) AS enrollments,
           coalesce(en.completions, 0) AS completions,
           coalesce(en.progress_sum, 0) AS progress_sum,
           (SELECT coalesce(json_agg(json_build_object(
                       'id', s.id, 'title', s.title, 'order', s.position,
                       'startedCount', s.started, 'completedCount', s.completed,
                       'averageWatchedSeconds', round(s.average_watched::numeric, 2)::float8
                   ) ORDER BY s.position), '[]'::json)
            FROM lesson_stats s WHERE s.course_id = m.id) AS lessons
    FROM mine m LEFT JOIN enrolled en ON en.course_id = m.id
)
SELECT json_build_object(
    'courses', coalesce((
        SELECT json_agg(json_build_object(
                   'id', r.id, 'title', r.title, 'status', r.status,
                   'lessonCount', r.lesson_count, 'enrollmentCount', r.enrollments,
                   'completionCount', r.completions,
                   'averageProgress',
                       round(r.progress_sum / greatest(r.enrollments, 1), 2)::float8,
                   'lessons', r.lessons
               ) ORDER BY r.created_at DESC, r.id DESC)
        FROM course_rows r), '[]'::json),
    'totals', (
        SELECT json_build_object(
                   'courseCount', count(*),
                   'lessonCount', coalesce(sum(r.lesson_count), 0),
                   'enrollmentCount', coalesce(sum(r.enrollments), 0),
                   'completionCount', coalesce(sum(r.completions), 0),
                   'learnerCount', (SELECT count(DISTINCT e.user_id)
                                    FROM mine m JOIN enrollments e ON e.course_id = m.id),
                   'averageProgress',
                       round(coalesce(sum(r.progress_sum), 0)
                             / greatest(coalesce(sum(r.enrollments), 0), 1), 2)::float8)
        FROM course_rows r)
)::text
"""


async def creator_dashboard_json(conn: Conn, creator_id: uuid.UUID) -> str:
    body: str = await conn.fetchval(CREATOR_DASHBOARD, creator_id)
    return body
