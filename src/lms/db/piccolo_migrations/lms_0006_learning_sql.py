"""Raw SQL for learning: the watched spans of each lesson (a multirange Piccolo cannot declare),
room for HOT updates on the heartbeat table, range checks, a public-keys-only guard on the signing
key set, a covering index for the creator dashboard, and the new default completion threshold for
installations that never changed it.

Frozen history: never import application code here.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.apps.migrations.tables import Migration

ID = "2026-11-30T18:40:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "Watched spans, heartbeat table fill factor, learning constraints"

STEPS: list[tuple[str, str]] = [
    # The spans of the video a learner really played, in seconds: a union, so watching a span
    # twice counts it once and watched_seconds (its measure) can never exceed the video.
    (
        "ALTER TABLE lesson_progress"
        " ADD COLUMN watched nummultirange NOT NULL DEFAULT nummultirange()",
        "ALTER TABLE lesson_progress DROP COLUMN IF EXISTS watched",
    ),
    (
        "ALTER TABLE lesson_progress ADD CONSTRAINT lesson_progress_watched_check"
        " CHECK (watched_seconds >= 0)",
        "ALTER TABLE lesson_progress DROP CONSTRAINT IF EXISTS lesson_progress_watched_check",
    ),
    # Every playing video rewrites its row every few seconds. No index covers the columns a
    # heartbeat changes, so with free room on the page each update is HOT: no index writes.
    (
        "ALTER TABLE lesson_progress SET (fillfactor = 80)",
        "ALTER TABLE lesson_progress RESET (fillfactor)",
    ),
    (
        "ALTER TABLE certificate_signing_keys ADD CONSTRAINT certificate_signing_keys_public_check"
        " CHECK (public_jwk ? 'x' AND NOT public_jwk ? 'd')",
        "ALTER TABLE certificate_signing_keys"
        " DROP CONSTRAINT IF EXISTS certificate_signing_keys_public_check",
    ),
    (
        "ALTER TABLE certificates ADD CONSTRAINT certificates_names_check"
        " CHECK (char_length(learner_name) > 0 AND char_length(course_title) > 0)",
        "ALTER TABLE certificates DROP CONSTRAINT IF EXISTS certificates_names_check",
    ),
    # The creator dashboard aggregates a course's enrollments from the index alone.
    (
        "CREATE INDEX enrollments_course_stats_idx ON enrollments (course_id)"
        " INCLUDE (user_id, completed, progress)",
        "DROP INDEX IF EXISTS enrollments_course_stats_idx",
    ),
    (
        "DROP INDEX IF EXISTS enrollments_course_idx",
        "CREATE INDEX enrollments_course_idx ON enrollments (course_id)",
    ),
    # The threshold's default moved from 90 to 95 percent: a row no admin ever changed follows.
    (
        "UPDATE system_settings SET completion_threshold_percent = 95"
        " WHERE id = 1 AND updated_by_id IS NULL AND completion_threshold_percent = 90",
        "SELECT 1",
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
