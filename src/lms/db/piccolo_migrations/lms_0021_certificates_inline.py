"""Certificates keep their credential in the row.

A certificate's VC-JWT is about 2.4 KB, which puts its row (about 2.6 KB) over PostgreSQL's
default toast threshold (about 2 KB): every insert tried to compress the credential (base64
does not compress) and then moved it to the TOAST table in two chunks, each with an index entry,
and every verification (the public hot path, which answers with the credential) read it back
through the TOAST index. With toast_tuple_target at its maximum, a row is toasted only past
8,160 bytes, which no certificate's row reaches (a title and names at their 200-character
limits in two-byte characters make about 4.5 KB): three certificates a page, read with the row.
Measured (quick data, alternating runs): the bench's completion 1,909 and 1,859 requests/s
against 1,826 and 1,803; verification of 2,000 random serials (wrk -c64, 8 s) 10,367 and 10,384
against 10,066 and 10,110.

Rows written before keep their toasted credential until they are next updated; nothing needs
them moved.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.apps.migrations.tables import Migration

ID = "2026-12-05T08:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "Certificates keep their credential in the row"

STEPS: list[tuple[str, str]] = [
    (
        "ALTER TABLE certificates SET (toast_tuple_target = 8160)",
        "ALTER TABLE certificates RESET (toast_tuple_target)",
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
