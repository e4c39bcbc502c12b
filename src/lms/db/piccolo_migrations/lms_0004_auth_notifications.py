"""Raw SQL for identity and messaging: the outbox's constraints and dispatch index, unlogged rate
limit counters, and the triggers that NOTIFY every API process when a user's role, activity or
token version changes, when system settings change, and when a message is queued. Triggers
rather than application code, so no write path (the CLI, an operator's psql) can forget.

Frozen history: never import application code here.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.apps.migrations.tables import Migration

ID = "2026-11-25T13:20:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "Outbox constraints, unlogged rate limits, change notifications"

STEPS: list[tuple[str, str]] = [
    (
        "ALTER TABLE rate_limit_counters SET UNLOGGED",
        "ALTER TABLE rate_limit_counters SET LOGGED",
    ),
    (
        "ALTER TABLE outbound_messages ADD CONSTRAINT outbound_messages_status_check"
        " CHECK (status IN ('PENDING', 'SENT', 'FAILED'))",
        "ALTER TABLE outbound_messages DROP CONSTRAINT IF EXISTS outbound_messages_status_check",
    ),
    (
        "ALTER TABLE outbound_messages ADD CONSTRAINT outbound_messages_channel_check"
        " CHECK (channel IN ('EMAIL', 'SMS'))",
        "ALTER TABLE outbound_messages DROP CONSTRAINT IF EXISTS outbound_messages_channel_check",
    ),
    (
        "CREATE INDEX outbound_messages_due_idx ON outbound_messages (next_attempt_at)"
        " WHERE status = 'PENDING'",
        "DROP INDEX IF EXISTS outbound_messages_due_idx",
    ),
    (
        "CREATE INDEX outbound_messages_created_idx ON outbound_messages (created_at)",
        "DROP INDEX IF EXISTS outbound_messages_created_idx",
    ),
    (
        """
        CREATE FUNCTION lms_notify_user_auth() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'DELETE' THEN
                PERFORM pg_notify('lms_user_auth', OLD.id::text);
                RETURN OLD;
            END IF;
            PERFORM pg_notify('lms_user_auth', NEW.id::text);
            RETURN NEW;
        END $$
        """,
        "DROP FUNCTION IF EXISTS lms_notify_user_auth()",
    ),
    (
        """
        CREATE TRIGGER users_auth_changed AFTER UPDATE OF role, is_active, token_version ON users
        FOR EACH ROW WHEN (OLD.role IS DISTINCT FROM NEW.role
                           OR OLD.is_active IS DISTINCT FROM NEW.is_active
                           OR OLD.token_version IS DISTINCT FROM NEW.token_version)
        EXECUTE FUNCTION lms_notify_user_auth()
        """,
        "DROP TRIGGER IF EXISTS users_auth_changed ON users",
    ),
    (
        "CREATE TRIGGER users_deleted AFTER DELETE ON users"
        " FOR EACH ROW EXECUTE FUNCTION lms_notify_user_auth()",
        "DROP TRIGGER IF EXISTS users_deleted ON users",
    ),
    (
        """
        CREATE FUNCTION lms_notify_channel() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify(TG_ARGV[0], '');
            RETURN NULL;
        END $$
        """,
        "DROP FUNCTION IF EXISTS lms_notify_channel()",
    ),
    (
        "CREATE TRIGGER system_settings_changed AFTER INSERT OR UPDATE OR DELETE ON system_settings"
        " FOR EACH STATEMENT EXECUTE FUNCTION lms_notify_channel('lms_system_settings')",
        "DROP TRIGGER IF EXISTS system_settings_changed ON system_settings",
    ),
    (
        "CREATE TRIGGER outbound_messages_queued AFTER INSERT ON outbound_messages"
        " FOR EACH STATEMENT EXECUTE FUNCTION lms_notify_channel('lms_outbox')",
        "DROP TRIGGER IF EXISTS outbound_messages_queued ON outbound_messages",
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
