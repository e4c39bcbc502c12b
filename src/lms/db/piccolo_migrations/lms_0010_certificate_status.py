"""Certificate status (W3C Bitstring Status List): each certificate's place in a revocation list,
allocated from a sequence, and signing keys of every algorithm (RSA and P-256 beside Ed25519).

Frozen history: never import application code here.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.apps.migrations.tables import Migration

ID = "2026-12-04T16:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "Certificate status list entries, RSA and P-256 signing keys"

STEPS: list[tuple[str, str]] = [
    # One number per certificate, never handed out twice and never waited for: nextval() takes
    # no lock, so concurrent completions never queue behind each other. Number n is bit
    # n % 131072 of list n / 131072 + 1; a gap (a rolled-back issue) is a bit nobody holds.
    (
        "CREATE SEQUENCE certificate_status_seq AS bigint MINVALUE 0 START WITH 0",
        "DROP SEQUENCE IF EXISTS certificate_status_seq",
    ),
    # Null for certificates issued before status lists: their credential names no list.
    (
        "ALTER TABLE certificates ADD COLUMN status_list integer, ADD COLUMN status_index integer",
        "ALTER TABLE certificates DROP COLUMN IF EXISTS status_list,"
        " DROP COLUMN IF EXISTS status_index",
    ),
    (
        "ALTER TABLE certificates ADD CONSTRAINT certificates_status_entry_check CHECK ("
        " (status_list IS NULL AND status_index IS NULL) OR"
        " (status_list >= 1 AND status_index >= 0 AND status_index < 131072))",
        "ALTER TABLE certificates DROP CONSTRAINT IF EXISTS certificates_status_entry_check",
    ),
    # The last word on "a unique index in a list", whatever happens to the sequence.
    (
        "ALTER TABLE certificates ADD CONSTRAINT certificates_status_entry_key"
        " UNIQUE (status_list, status_index)",
        "ALTER TABLE certificates DROP CONSTRAINT IF EXISTS certificates_status_entry_key",
    ),
    # Publishing a list reads only its revoked entries, from this (small) index alone.
    (
        "CREATE INDEX certificates_revoked_status_idx ON certificates (status_list, status_index)"
        " WHERE status = 'REVOKED'",
        "DROP INDEX IF EXISTS certificates_revoked_status_idx",
    ),
    # RSA keys publish n and e, not x; no private member of any key type may be stored.
    (
        "ALTER TABLE certificate_signing_keys"
        " DROP CONSTRAINT IF EXISTS certificate_signing_keys_public_check",
        "ALTER TABLE certificate_signing_keys ADD CONSTRAINT certificate_signing_keys_public_check"
        " CHECK (public_jwk ? 'x' AND NOT public_jwk ? 'd') NOT VALID",
    ),
    (
        "ALTER TABLE certificate_signing_keys ADD CONSTRAINT certificate_signing_keys_public_check"
        " CHECK ((public_jwk ? 'x' OR public_jwk ? 'n')"
        " AND NOT public_jwk ?| array['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'])",
        "ALTER TABLE certificate_signing_keys"
        " DROP CONSTRAINT IF EXISTS certificate_signing_keys_public_check",
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
