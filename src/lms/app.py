"""create_app(): the Litestar application with its plugins, routers, error handling and OpenAPI."""

from __future__ import annotations

import importlib.metadata
import logging

from litestar import Litestar
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from lms.api.errors import unhandled_exception_handler
from lms.api.openapi import docs_assets_router, openapi_config
from lms.broker import BrokerConnection, make_broker
from lms.db.engine import close_pool, start_pool
from lms.observability.logs import configure_logging
from lms.observability.middleware import RequestContextMiddleware
from lms.ops.controllers import OpsController
from lms.settings import Settings, get_settings

VERSION = importlib.metadata.version("lms")


def create_app(settings: Settings | None = None) -> Litestar:
    """Build the ASGI app for `settings` (the environment's when omitted, as under Granian)."""
    settings = settings or get_settings()
    if not settings.database_url or not settings.nats_url:
        raise RuntimeError(
            "create_app needs DATABASE_URL and NATS_URL (lms dev/serve resolve them)"
        )
    if not logging.getLogger().handlers:
        configure_logging(settings.log_level, settings.log_format)

    nats = BrokerConnection(make_broker(settings))

    async def start_services(app: Litestar) -> None:
        await start_pool(settings)
        await nats.start()

    async def stop_services(app: Litestar) -> None:
        await nats.stop()
        await close_pool()

    cors = (
        CORSConfig(
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type", "If-None-Match", "X-Request-ID"],
            expose_headers=["X-Request-ID", "ETag", "Retry-After", "Location"],
            max_age=600,
        )
        if settings.cors_origins
        else None
    )
    app = Litestar(
        route_handlers=[OpsController, docs_assets_router()],
        on_startup=[start_services],
        on_shutdown=[stop_services],
        cors_config=cors,
        openapi_config=openapi_config(VERSION),
        exception_handlers={HTTP_500_INTERNAL_SERVER_ERROR: unhandled_exception_handler},
        # Our JSON logging is configured once per process; Litestar must not install its own.
        logging_config=None,
        state=State({"settings": settings, "nats": nats, "broker": nats.broker}),
    )
    # Outermost layer, around CORS and exception handling, so every response gets a request id
    # and a log line, 404s included.
    app.asgi_handler = RequestContextMiddleware(app.asgi_handler)  # type: ignore[assignment]
    return app
