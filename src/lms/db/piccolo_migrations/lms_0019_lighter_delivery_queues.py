"""Delivery queues that cost PostgreSQL one row per delivery, not three row versions and nine
index entries.

Measured with two webhook endpoints and an LRS (bench/events.py's set-up, 15,000 events at
1,500/s): the webhook sink cost the server 110 us of CPU per event and the xAPI sink 76 us per
statement, more than the request that recorded the event (about 140 us). Each webhook delivery
was inserted PENDING under five indexes and updated to DELIVERED under four (a status change in
a partial index's predicate is never a HOT update); each statement was inserted, leased by an
UPDATE and marked SENT by another, its JSON copied each time.

- webhook_queue holds what an endpoint has still to receive: a narrow row under its primary key
  (endpoint, event seq), which is the order the deliverer reads. The delivery's outcome is
  written once, into webhook_deliveries (the admin's log) with the queue row's delete, in one
  statement per batch of successes. webhook_deliveries loses the indexes nothing reads on the
  hot path (the pending one, (endpoint_id, event_id), event_id): its id is the queue row's
  delivery_id, given when the event is fanned out, so a failing delivery's row is the same row
  on every attempt.
- Neither table has foreign keys: each checked row costs a lookup and a row lock on the parent
  (3.5 us per row, measured), four times per event with two endpoints. Deleting an endpoint
  deletes its queue and log in the same transaction, serialised with the fan-out by the
  dispatcher's advisory lock (lms.db.queries.webhooks.delete_endpoint); the event log is purged
  only of events no queue row names.
- xapi_statements holds only what the LRS has not taken: a statement sent is deleted (the LRS
  keeps it; a REJECTED one stays for an operator). Senders take turns through an advisory lock
  instead of leasing rows, so sending writes nothing but the delete; the statement id, derived
  from the event id, needs no unique index of its own.

Deliveries PENDING at migration time move to the queue; SENT statements are forgotten.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.apps.migrations.tables import Migration

ID = "2026-12-05T01:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "webhook_queue; deliveries and statements written once"

STEPS: list[tuple[str, str]] = [
    (
        """
        CREATE TABLE webhook_queue (
            endpoint_id uuid NOT NULL,
            event_seq bigint NOT NULL,
            event_id uuid NOT NULL,
            delivery_id uuid NOT NULL,
            type text NOT NULL,
            attempts integer NOT NULL DEFAULT 0,
            created_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (endpoint_id, event_seq)
        )
        """,
        "DROP TABLE IF EXISTS webhook_queue",
    ),
    (
        """
        INSERT INTO webhook_queue
            (endpoint_id, event_seq, event_id, delivery_id, type, attempts, created_at)
        SELECT endpoint_id, event_seq, event_id, id, type, attempts, created_at
        FROM webhook_deliveries WHERE status = 'PENDING'
        """,
        """
        UPDATE webhook_deliveries d SET status = 'PENDING', delivered_at = NULL
        FROM webhook_queue q WHERE q.delivery_id = d.id
        """,
    ),
    (
        # A queued delivery never attempted has no row here until its first outcome.
        "DELETE FROM webhook_deliveries WHERE status = 'PENDING' AND attempts = 0",
        """
        INSERT INTO webhook_deliveries
            (id, endpoint_id, event_id, event_seq, type, attempts, created_at)
        SELECT delivery_id, endpoint_id, event_id, event_seq, type, attempts, created_at
        FROM webhook_queue q
        WHERE NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.id = q.delivery_id)
        """,
    ),
    (
        "DROP INDEX IF EXISTS webhook_deliveries_pending",
        "CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (endpoint_id, event_seq)"
        " WHERE status = 'PENDING'",
    ),
    (
        "DROP INDEX IF EXISTS webhook_deliveries_event",
        "CREATE INDEX webhook_deliveries_event ON webhook_deliveries (event_id)",
    ),
    (
        "ALTER TABLE webhook_deliveries DROP CONSTRAINT IF EXISTS"
        " webhook_deliveries_endpoint_id_event_id_key",
        "ALTER TABLE webhook_deliveries ADD CONSTRAINT webhook_deliveries_endpoint_id_event_id_key"
        " UNIQUE (endpoint_id, event_id)",
    ),
    (
        "ALTER TABLE webhook_deliveries DROP CONSTRAINT IF EXISTS webhook_deliveries_event_id_fkey",
        "ALTER TABLE webhook_deliveries ADD CONSTRAINT webhook_deliveries_event_id_fkey"
        " FOREIGN KEY (event_id) REFERENCES events (id)",
    ),
    (
        "ALTER TABLE webhook_deliveries DROP CONSTRAINT IF EXISTS"
        " webhook_deliveries_endpoint_id_fkey",
        "ALTER TABLE webhook_deliveries ADD CONSTRAINT webhook_deliveries_endpoint_id_fkey"
        " FOREIGN KEY (endpoint_id) REFERENCES webhook_endpoints (id) ON DELETE CASCADE",
    ),
    (
        "ALTER TABLE webhook_deliveries ALTER COLUMN id DROP DEFAULT",
        "ALTER TABLE webhook_deliveries ALTER COLUMN id SET DEFAULT gen_random_uuid()",
    ),
    (
        "DELETE FROM xapi_statements WHERE status = 'SENT'",
        "SELECT 1",  # the LRS has them; nothing to put back
    ),
    (
        "DROP INDEX IF EXISTS xapi_statements_sent",
        "CREATE INDEX xapi_statements_sent ON xapi_statements (sent_at) WHERE status = 'SENT'",
    ),
    (
        "ALTER TABLE xapi_statements DROP COLUMN lease_until, DROP COLUMN sent_at",
        "ALTER TABLE xapi_statements ADD COLUMN lease_until timestamptz,"
        " ADD COLUMN sent_at timestamptz",
    ),
    (
        "ALTER TABLE xapi_statements DROP CONSTRAINT IF EXISTS xapi_statements_statement_id_key",
        "ALTER TABLE xapi_statements ADD CONSTRAINT xapi_statements_statement_id_key"
        " UNIQUE (statement_id)",
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
