"""Apply, check and undo the schema migrations (Piccolo's), serialised by an advisory lock."""

from __future__ import annotations

import contextlib
import io
from collections.abc import AsyncIterator

import asyncpg
from piccolo.apps.migrations.commands.backwards import run_backwards
from piccolo.apps.migrations.commands.base import BaseMigrationManager
from piccolo.apps.migrations.commands.forwards import run_forwards

from lms.db.engine import check_connection, engine, piccolo_conf_for_migrations
from lms.errors import StartupError

APP_NAME = "lms"
# Two `lms migrate` (or two containers starting) at once must not both run a migration.
_ADVISORY_LOCK_KEY = 0x6C6D735F6D6967  # "lms_mig"


def known_migrations() -> list[str]:
    """Migration ids shipped with this code, oldest first."""
    piccolo_conf_for_migrations()
    manager = BaseMigrationManager()
    app_config = manager.get_app_config(APP_NAME)
    modules = manager.get_migration_modules(app_config.resolved_migrations_folder_path)
    return sorted(manager.get_migration_ids(modules))


async def applied_migrations(database_url: str) -> list[str]:
    conn = await asyncpg.connect(dsn=database_url)
    try:
        exists = await conn.fetchval("SELECT to_regclass('public.migration') IS NOT NULL")
        if not exists:
            return []
        rows = await conn.fetch("SELECT name FROM migration WHERE app_name = $1", APP_NAME)
        return sorted(r["name"] for r in rows)
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def _migrating(database_url: str) -> AsyncIterator[None]:
    """Hold the migration lock and point Piccolo's one engine at `database_url`, without its
    pool (Piccolo's migration runner always uses the global engine; a pool started for another
    database in this process must not receive the DDL)."""
    piccolo_conf_for_migrations()
    conn = await asyncpg.connect(dsn=database_url)
    db = engine()
    saved_config, saved_pool = db.config, db.pool
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _ADVISORY_LOCK_KEY)
        db.config, db.pool = {"dsn": database_url}, None
        yield
    finally:
        db.config, db.pool = saved_config, saved_pool
        await conn.close()  # closing the session releases the lock


async def migrate_forward(database_url: str, *, quiet: bool = False) -> list[str]:
    """Apply every pending migration; returns the ids applied."""
    await check_connection(database_url)
    async with _migrating(database_url):
        before = set(await applied_migrations(database_url))
        out = io.StringIO()
        with contextlib.redirect_stdout(out) if quiet else contextlib.nullcontext():
            result = await run_forwards(app_name=APP_NAME, migration_id="all")
        if not result.success:
            raise StartupError(f"migration failed: {result.message}")
        after = await applied_migrations(database_url)
    return [m for m in after if m not in before]


async def migrate_backward(database_url: str, steps: int) -> None:
    """Undo the newest `steps` migrations (each migration is reversible)."""
    await check_connection(database_url)
    async with _migrating(database_url):
        for _ in range(steps):
            result = await run_backwards(app_name=APP_NAME, migration_id="1", auto_agree=True)
            if not result.success:
                raise StartupError(f"rolling back failed: {result.message}")


async def ensure_schema_current(database_url: str) -> None:
    """Refuse to serve on a schema that is behind (or ahead of) this code."""
    applied = set(await applied_migrations(database_url))
    known = known_migrations()
    pending = [m for m in known if m not in applied]
    if pending:
        raise StartupError(
            f"database schema is behind this code ({len(pending)} migration(s) pending, "
            f"first {pending[0]}): run `lms migrate`"
        )
    unknown = sorted(applied - set(known))
    if unknown:
        raise StartupError(
            f"database has migration(s) this code does not know ({', '.join(unknown)}): "
            "deploy the newer code or roll the database back"
        )
