"""Transcripts record how much of the speech they cover, and say so when they fall short.

speech_seconds is the speech voice-activity detection found in the audio, speech_coverage the
share of it the segments cover (0 to 1), warning a sentence for readers when a transcript is
still short after a second decoding. All three are NULL for transcripts made before this.
Self-contained: it touches only the transcripts table's own new columns.

Frozen history: never import application code here.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.apps.migrations.tables import Migration

ID = "2026-12-04T18:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "Transcript speech coverage and warning"

STEPS: list[tuple[str, str]] = [
    (
        "ALTER TABLE transcripts ADD COLUMN speech_seconds double precision"
        " CHECK (speech_seconds >= 0)",
        "ALTER TABLE transcripts DROP COLUMN IF EXISTS speech_seconds",
    ),
    (
        "ALTER TABLE transcripts ADD COLUMN speech_coverage double precision"
        " CHECK (speech_coverage BETWEEN 0 AND 1)",
        "ALTER TABLE transcripts DROP COLUMN IF EXISTS speech_coverage",
    ),
    (
        "ALTER TABLE transcripts ADD COLUMN warning text CHECK (length(warning) <= 1000)",
        "ALTER TABLE transcripts DROP COLUMN IF EXISTS warning",
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
