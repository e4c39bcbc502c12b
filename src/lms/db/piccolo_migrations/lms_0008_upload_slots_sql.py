"""Raw SQL for the upload slots and processed Cloudinary notifications: the indexes their
statements walk, and a lease that cannot end before it began.

Frozen history: never import application code here.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.apps.migrations.tables import Migration

ID = "2026-11-30T21:10:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "Upload slot and notification indexes"

STEPS: list[tuple[str, str]] = [
    # Taking a slot counts the user's live leases; the count reads this index alone.
    (
        "CREATE INDEX upload_slots_user_idx ON upload_slots (user_id, expires_at)",
        "DROP INDEX IF EXISTS upload_slots_user_idx",
    ),
    (
        "ALTER TABLE upload_slots ADD CONSTRAINT upload_slots_lease_check"
        " CHECK (expires_at > created_at)",
        "ALTER TABLE upload_slots DROP CONSTRAINT IF EXISTS upload_slots_lease_check",
    ),
    # Every notification prunes the ones too old to be accepted again.
    (
        "CREATE INDEX cloudinary_notifications_signed_idx ON cloudinary_notifications (signed_at)",
        "DROP INDEX IF EXISTS cloudinary_notifications_signed_idx",
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
