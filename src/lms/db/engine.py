"""The Piccolo engine's lifecycle: point it at the database, check it answers, run its asyncpg pool.

Piccolo's query builder and our raw hot-path SQL share the engine's one asyncpg pool, so a request
never holds two connections. start_pool() returns it; the app and the worker hand it on (Litestar's
DI, the worker runtime) rather than code reaching for it from a module.
"""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import urlsplit

import asyncpg
from piccolo.engine.postgres import PostgresEngine

from lms.errors import StartupError
from lms.settings import Settings, redact_url

CONNECT_TIMEOUT = 5.0
# Multiranges (the watched spans of lesson progress) arrived in 14; migrations are tested on 15
# and 16.
MIN_SERVER_VERSION = 14


PICCOLO_CONF = "lms.db.piccolo_conf"


def engine() -> PostgresEngine:
    from lms.db.piccolo_conf import DB

    return DB


def configure(database_url: str) -> PostgresEngine:
    """Point the engine at `database_url` (before its pool starts), and bind every table to it:
    Piccolo would otherwise look the engine up through the PICCOLO_CONF environment variable."""
    from lms.db.tables import ALL_TABLES

    db = engine()
    db.config = {"dsn": database_url}
    for table in ALL_TABLES:
        table._meta.db = db
    return db


def piccolo_conf_for_migrations() -> None:
    """Piccolo's migration runner finds its app registry only through PICCOLO_CONF; set it (for
    this process) when migrating, rather than whenever `lms` is imported."""
    os.environ.setdefault("PICCOLO_CONF", PICCOLO_CONF)


def describe(database_url: str) -> str:
    parts = urlsplit(database_url)
    return f"{parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path or '/'}"


async def _init_connection(conn: asyncpg.Connection) -> None:
    # jsonb in and out as Python objects for the raw queries; Piccolo passes JSON as text anyway.
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def check_connection(database_url: str) -> None:
    """Fail with one clear line when PostgreSQL cannot be reached or refuses us."""
    where = describe(database_url)
    try:
        conn = await asyncpg.connect(dsn=database_url, timeout=CONNECT_TIMEOUT)
    except (TimeoutError, OSError) as exc:
        reason = str(exc) or type(exc).__name__
        raise StartupError(f"cannot connect to PostgreSQL at {where}: {reason}") from None
    except asyncpg.PostgresError as exc:
        raise StartupError(f"PostgreSQL at {where} refused the connection: {exc}") from None
    except ValueError as exc:  # malformed DSN
        url = redact_url(database_url)
        raise StartupError(f"DATABASE_URL {url!r} is not a valid PostgreSQL URL: {exc}") from None
    try:
        version = conn.get_server_version()
    finally:
        await conn.close()
    if version.major < MIN_SERVER_VERSION:
        raise StartupError(
            f"PostgreSQL at {where} is version {version.major}; "
            f"lms needs {MIN_SERVER_VERSION} or newer"
        )


async def start_pool(settings: Settings) -> asyncpg.Pool:
    if not settings.database_url:
        raise RuntimeError("database_url must be resolved before the pool starts")
    await check_connection(settings.database_url)
    db = configure(settings.database_url)
    if db.pool is None:
        db.pool = await open_pool(settings.database_url, settings)
    return db.pool


async def open_pool(dsn: str, settings: Settings, **connect: Any) -> asyncpg.Pool:
    """An asyncpg pool of LMS_DB_POOL_MIN..MAX connections to `dsn`, set up as every pooled
    connection is (the primary's, a read replica's); `connect` adds connection arguments."""
    return await asyncpg.create_pool(
        dsn=dsn,
        min_size=settings.db_pool_min,
        max_size=settings.db_pool_max,
        init=_init_connection,
        # Prepared statements are cached per connection; hot queries are planned once.
        statement_cache_size=256,
        max_inactive_connection_lifetime=300,
        reset=_keep_session,
        **connect,
    )


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Released connections are not reset. asyncpg's default reset runs `RESET ALL`, `UNLISTEN
    *`, `CLOSE ALL` and `pg_advisory_unlock_all()` on every release: a second round trip for each
    one-statement request (the heartbeat's included). Pooled code keeps no session state (no
    SET, LISTEN, cursors or session locks: those live on connections of their own), and asyncpg
    still rolls back a transaction left open before this hook runs."""


async def close_pool() -> None:
    db = engine()
    if db.pool is not None:
        await db.pool.close()
        db.pool = None
