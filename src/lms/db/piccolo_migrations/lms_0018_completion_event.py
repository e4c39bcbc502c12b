"""lms_complete_lesson() writes the lesson.completed event, in its own statement's transaction.

The one-statement completion (lms_0017) marks a lesson without the event log's row that the
transaction path writes (lms.domain.learning.completion): integrators never heard of lessons
completed that way. Same function, plus the event when the lesson was not completed before.
The function text is lms_0017's (frozen history, imported as such), not application code.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.apps.migrations.tables import Migration

from lms.db.piccolo_migrations.lms_0017_completion_function import COMPLETE_LESSON

ID = "2026-12-04T23:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "lesson.completed from the one-statement completion"

_END = "    RETURN NEXT;\nEND\n$$"
_EVENT = """    IF NOT f.lesson_completed THEN
        INSERT INTO events (type, data)
        VALUES ('lesson.completed',
                jsonb_build_object('enrollmentId', f.enrollment_id, 'userId', p_user,
                                   'courseId', f.course_id, 'lessonId', p_lesson,
                                   'progress', progress));
    END IF;
"""
_REPLACE = COMPLETE_LESSON.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)
if not _REPLACE.rstrip().endswith(_END):
    raise RuntimeError("lms_0017's function does not end as this migration expects")
WITH_EVENT = _REPLACE.rstrip()[: -len(_END)] + _EVENT + _END + "\n"

STEPS: list[tuple[str, str]] = [(WITH_EVENT, _REPLACE)]


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
