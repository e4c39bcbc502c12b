"""The event log and webhooks: what happened, written in the transaction that made it happen,
and the endpoints and deliveries that tell integrators about it.

events is append-only: `seq` orders it, `dispatched_at` is NULL until the dispatcher has fanned
the event out to every sink (webhook deliveries, xAPI), in one transaction with that fan-out.
webhook_deliveries holds one row per (endpoint, event), PENDING until the endpoint answered 2xx;
an endpoint carries its own backoff state, since deliveries to it go out in order, one at a time.
Self-contained: new tables only.

Frozen history: never import application code here.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.apps.migrations.tables import Migration

ID = "2026-12-04T20:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "Event log, webhook endpoints and deliveries"

STEPS: list[tuple[str, str]] = [
    (
        """
        CREATE TABLE events (
            id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            seq bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
            type text NOT NULL CHECK (type ~ '^[a-z]+(_[a-z]+)*\\.[a-z]+(_[a-z]+)*$'),
            occurred_at timestamptz NOT NULL DEFAULT now(),
            data jsonb NOT NULL CHECK (jsonb_typeof(data) = 'object'),
            dispatched_at timestamptz
        )
        """,
        "DROP TABLE IF EXISTS events",
    ),
    (
        # The dispatcher's only question: what is not fanned out yet, oldest first.
        "CREATE INDEX events_undispatched ON events (seq) WHERE dispatched_at IS NULL",
        "DROP INDEX IF EXISTS events_undispatched",
    ),
    (
        """
        CREATE TABLE webhook_endpoints (
            id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            url text NOT NULL CHECK (length(url) BETWEEN 1 AND 2000),
            events text[] NOT NULL CHECK (cardinality(events) BETWEEN 1 AND 100),
            description text NOT NULL DEFAULT '' CHECK (length(description) <= 500),
            secret text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            disabled_at timestamptz,
            disabled_reason text,
            failing_since timestamptz,
            consecutive_failures integer NOT NULL DEFAULT 0,
            next_attempt_at timestamptz NOT NULL DEFAULT now(),
            lease_until timestamptz,
            last_success_at timestamptz
        )
        """,
        "DROP TABLE IF EXISTS webhook_endpoints",
    ),
    (
        """
        CREATE TABLE webhook_deliveries (
            id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            endpoint_id uuid NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
            event_id uuid NOT NULL REFERENCES events (id),
            event_seq bigint NOT NULL,
            type text NOT NULL,
            status text NOT NULL DEFAULT 'PENDING' CHECK (status IN ('PENDING', 'DELIVERED')),
            attempts integer NOT NULL DEFAULT 0,
            response_status integer,
            error text,
            created_at timestamptz NOT NULL DEFAULT now(),
            last_attempt_at timestamptz,
            delivered_at timestamptz,
            UNIQUE (endpoint_id, event_id)
        )
        """,
        "DROP TABLE IF EXISTS webhook_deliveries",
    ),
    (
        # The deliverer's queue per endpoint, in event order.
        "CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (endpoint_id, event_seq)"
        " WHERE status = 'PENDING'",
        "DROP INDEX IF EXISTS webhook_deliveries_pending",
    ),
    (
        # The admin's delivery log, newest first, keyset-paged.
        "CREATE INDEX webhook_deliveries_log ON webhook_deliveries"
        " (endpoint_id, created_at DESC, id DESC)",
        "DROP INDEX IF EXISTS webhook_deliveries_log",
    ),
    (
        "CREATE INDEX webhook_deliveries_event ON webhook_deliveries (event_id)",
        "DROP INDEX IF EXISTS webhook_deliveries_event",
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
