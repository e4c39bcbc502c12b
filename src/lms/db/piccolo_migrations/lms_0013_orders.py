"""Paid enrollment (issue 21): orders of priced courses and the Stripe events already handled.

One PENDING order per (learner, course) is the partial unique index's rule, not the code's; a
Stripe event id is a primary key, so a replayed or concurrently duplicated delivery inserts
nothing and does nothing. Orders keep their course and buyer (RESTRICT): money taken is never
forgotten by deleting a course or an account.

A refund ends access by deleting the enrollment; a certificate it earned stays (revoked, still
verifiable by its serial), so the certificate's foreign key to its enrollment is dropped: its
enrollment_id remains the id its signed credential names.

Frozen history: never import application code here.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.apps.migrations.tables import Migration

ID = "2026-12-04T19:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "Orders, handled Stripe events; certificates outlive a refunded enrollment"

_DROP_CERTIFICATE_ENROLLMENT_FK = """
DO $$
DECLARE name text;
BEGIN
    FOR name IN
        SELECT conname FROM pg_constraint
        WHERE conrelid = 'certificates'::regclass AND contype = 'f'
          AND conkey = ARRAY[(SELECT attnum FROM pg_attribute
                              WHERE attrelid = 'certificates'::regclass
                                AND attname = 'enrollment_id')]::smallint[]
    LOOP
        EXECUTE format('ALTER TABLE certificates DROP CONSTRAINT %I', name);
    END LOOP;
END $$
"""

# No braces in these statements: Piccolo's raw queries treat them as placeholders.
STEPS: list[tuple[str, str]] = [
    (
        """
        CREATE TABLE orders (
            id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            user_id uuid NOT NULL REFERENCES users (id) ON DELETE RESTRICT,
            course_id uuid NOT NULL REFERENCES courses (id) ON DELETE RESTRICT,
            amount numeric(10, 2) NOT NULL CHECK (amount > 0),
            currency varchar(3) NOT NULL CHECK (currency ~ '^[a-z][a-z][a-z]$'),
            status varchar(16) NOT NULL DEFAULT 'PENDING'
                CHECK (status IN ('PENDING', 'PAID', 'FAILED', 'REFUNDED')),
            provider varchar(16) NOT NULL DEFAULT 'stripe',
            payment_intent_id varchar(255) UNIQUE,
            client_secret text,
            flag text CHECK (length(flag) <= 1000),
            failure_reason text CHECK (length(failure_reason) <= 1000),
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            checked_at timestamptz,
            paid_at timestamptz,
            refunded_at timestamptz,
            CHECK ((status IN ('PAID', 'REFUNDED')) = (paid_at IS NOT NULL)),
            CHECK ((status = 'REFUNDED') = (refunded_at IS NOT NULL))
        )
        """,
        "DROP TABLE IF EXISTS orders",
    ),
    (
        "CREATE UNIQUE INDEX orders_one_pending_idx ON orders (user_id, course_id)"
        " WHERE status = 'PENDING'",
        "DROP INDEX IF EXISTS orders_one_pending_idx",
    ),
    (
        "CREATE INDEX orders_user_created_idx ON orders (user_id, created_at DESC, id DESC)",
        "DROP INDEX IF EXISTS orders_user_created_idx",
    ),
    (
        "CREATE INDEX orders_created_idx ON orders (created_at DESC, id DESC)",
        "DROP INDEX IF EXISTS orders_created_idx",
    ),
    (
        "CREATE INDEX orders_course_status_idx ON orders (course_id, status)",
        "DROP INDEX IF EXISTS orders_course_status_idx",
    ),
    # The reconciler walks only the (few) PENDING orders.
    (
        "CREATE INDEX orders_pending_idx ON orders (created_at) WHERE status = 'PENDING'",
        "DROP INDEX IF EXISTS orders_pending_idx",
    ),
    (
        """
        CREATE TABLE stripe_events (
            id varchar(255) PRIMARY KEY,
            type varchar(100) NOT NULL,
            order_id uuid REFERENCES orders (id) ON DELETE SET NULL,
            outcome varchar(32) NOT NULL,
            received_at timestamptz NOT NULL DEFAULT now()
        )
        """,
        "DROP TABLE IF EXISTS stripe_events",
    ),
    (
        _DROP_CERTIFICATE_ENROLLMENT_FK,
        "ALTER TABLE certificates ADD CONSTRAINT certificates_enrollment_id_fkey"
        " FOREIGN KEY (enrollment_id) REFERENCES enrollments (id) ON DELETE RESTRICT NOT VALID",
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
