"""The xAPI queue: one statement per event that has one, waiting until the LRS has taken it.

A row is written when the event is fanned out (the statement built then, from the event alone, so
every send of it is byte-for-byte the same statement under the same id), and stays PENDING until a
sender's batch is answered 2xx. `lease_until` is a sender's claim on it (a sender that dies frees
its rows when the lease ends); `next_attempt_at` is the backoff while the LRS is down. REJECTED is
a statement the LRS refused as such (4xx other than 429/401/403): retrying it would not help.
Self-contained: no foreign key, so it does not depend on the event log's migration order.

Frozen history: never import application code here.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.apps.migrations.tables import Migration

ID = "2026-12-04T20:30:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "xAPI statement queue"

STEPS: list[tuple[str, str]] = [
    (
        """
        CREATE TABLE xapi_statements (
            event_id uuid PRIMARY KEY,
            statement_id uuid NOT NULL UNIQUE,
            event_type text NOT NULL,
            statement jsonb NOT NULL CHECK (jsonb_typeof(statement) = 'object'),
            status text NOT NULL DEFAULT 'PENDING'
                CHECK (status IN ('PENDING', 'SENT', 'REJECTED')),
            attempts integer NOT NULL DEFAULT 0,
            last_error text,
            created_at timestamptz NOT NULL DEFAULT now(),
            next_attempt_at timestamptz NOT NULL DEFAULT now(),
            lease_until timestamptz,
            sent_at timestamptz
        )
        """,
        "DROP TABLE IF EXISTS xapi_statements",
    ),
    (
        # The senders' only question: what is due, oldest first.
        "CREATE INDEX xapi_statements_due ON xapi_statements (next_attempt_at, created_at)"
        " WHERE status = 'PENDING'",
        "DROP INDEX IF EXISTS xapi_statements_due",
    ),
    (
        # The housekeeper's purge of what the LRS has had for a while.
        "CREATE INDEX xapi_statements_sent ON xapi_statements (sent_at) WHERE status = 'SENT'",
        "DROP INDEX IF EXISTS xapi_statements_sent",
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
