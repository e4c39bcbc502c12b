"""Piccolo's configuration module (PICCOLO_CONF points here): the one engine and app registry.

The engine is created without connecting; `lms.db.engine.configure` gives it the real DSN once
settings (and any embedded PostgreSQL) are known.
"""

from piccolo.conf.apps import AppRegistry
from piccolo.engine.postgres import PostgresEngine

from lms.settings import get_settings


class DeferredPostgresEngine(PostgresEngine):
    """Piccolo's engine minus the blocking connection its constructor opens to log the server
    version: at import time the URL may not be known yet (embedded PostgreSQL) or may be bad, and
    `lms.db.engine.check_connection` reports that with a clear error instead."""

    async def check_version(self) -> None:
        return None


DB = DeferredPostgresEngine(
    config={"dsn": get_settings().database_url or "postgresql://127.0.0.1/lms"}
)

APP_REGISTRY = AppRegistry(apps=["lms.db.piccolo_app"])
