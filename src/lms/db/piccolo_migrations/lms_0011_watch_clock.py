"""The enrollment's watch clock: when its previous heartbeat was accepted (heartbeats of one
enrollment are limited to about one a second) and up to when real time has been credited as watched
(so all its lessons together earn no more than the time that passed); per lesson, up to where its
playback has been credited; room for HOT updates on enrollments, which every heartbeat now
rewrites.

Self-contained: three nullable columns and a storage parameter, no other migration's objects.
Frozen history: never import application code here.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.apps.migrations.tables import Migration
from piccolo.columns.column_types import DoublePrecision, Timestamptz
from piccolo.columns.indexes import IndexMethod

ID = "2026-12-04T17:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "Watch clock on enrollments"

_NULLABLE = {
    "default": None,
    "null": True,
    "primary_key": False,
    "unique": False,
    "index": False,
    "index_method": IndexMethod.btree,
    "choices": None,
    "db_column_name": None,
    "secret": False,
}

STEPS: list[tuple[str, str]] = [
    # Every accepted heartbeat rewrites its enrollment's row. No index covers the columns it
    # changes, so with free room on the page each update is HOT: no index writes.
    (
        "ALTER TABLE enrollments SET (fillfactor = 80)",
        "ALTER TABLE enrollments RESET (fillfactor)",
    ),
]


async def _run(statements: list[str]) -> None:
    for sql in statements:
        await Migration.raw(sql).run()


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="lms", description=DESCRIPTION)

    for column in ("last_heartbeat_at", "watch_clock"):
        manager.add_column(
            table_class_name="Enrollment",
            tablename="enrollments",
            column_name=column,
            db_column_name=column,
            column_class_name="Timestamptz",
            column_class=Timestamptz,
            params=dict(_NULLABLE),
            schema=None,
        )

    manager.add_column(
        table_class_name="LessonProgress",
        tablename="lesson_progress",
        column_name="credited_to",
        db_column_name="credited_to",
        column_class_name="DoublePrecision",
        column_class=DoublePrecision,
        params=dict(_NULLABLE),
        schema=None,
    )

    async def run_forwards() -> None:
        await _run([forward for forward, _ in STEPS])

    async def run_backwards() -> None:
        await _run([backward for _, backward in reversed(STEPS)])

    manager.add_raw(run_forwards)
    manager.add_raw_backwards(run_backwards)
    return manager
