"""Raw SQL: the trigger that NOTIFYs every API process when a login ends (a refresh token of its
family is revoked), so each drops its cached "this login is live" and refuses the login's access
tokens on their next request. A trigger rather than application code, so no write path (an
operator's psql revoking a session) can forget.

Frozen history: never import application code here.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.apps.migrations.tables import Migration

ID = "2026-12-02T09:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "Notify revoked logins"

STEPS: list[tuple[str, str]] = [
    (
        """
        CREATE FUNCTION lms_notify_session_revoked() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            -- One notification per family and transaction: PostgreSQL folds identical ones.
            PERFORM pg_notify('lms_session_revoked', NEW.family_id::text);
            RETURN NULL;
        END $$
        """,
        "DROP FUNCTION IF EXISTS lms_notify_session_revoked()",
    ),
    (
        """
        CREATE TRIGGER refresh_tokens_revoked AFTER UPDATE OF revoked_at ON refresh_tokens
        FOR EACH ROW WHEN (OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL)
        EXECUTE FUNCTION lms_notify_session_revoked()
        """,
        "DROP TRIGGER IF EXISTS refresh_tokens_revoked ON refresh_tokens",
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
