"""create_app(): the Litestar application with its plugins, routers, error handling and OpenAPI."""

from __future__ import annotations

import importlib.metadata
import logging
from typing import Any

import asyncpg
from litestar import Litestar
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from lms import heap
from lms.api.allow_header import AllowHeader
from lms.api.cors import Cors
from lms.api.errors import domain_error_handler, unhandled_exception_handler
from lms.api.input_guard import InputGuard
from lms.api.openapi import docs_assets_router, finish_openapi, openapi_config
from lms.api.request import LmsRequest
from lms.api.security import authentication_middleware
from lms.broker import BrokerConnection, make_broker
from lms.context import AppContext
from lms.db.engine import close_pool, start_pool
from lms.db.replicas import ReadReplicas
from lms.domain.admin.controllers import (
    AdminAuditController,
    AdminSettingsController,
    AdminUsersController,
)
from lms.domain.admin.system_settings import CHANNEL as SETTINGS_CHANNEL
from lms.domain.admin.system_settings import SystemSettingsCache
from lms.domain.auth.controllers import AuthController
from lms.domain.auth.passwords import configure_hashing
from lms.domain.auth.session_state import CHANNEL as SESSION_CHANNEL
from lms.domain.auth.session_state import SessionStateCache
from lms.domain.auth.user_state import CHANNEL as USER_AUTH_CHANNEL
from lms.domain.auth.user_state import UserAuthCache
from lms.domain.certificates import services as certificates
from lms.domain.certificates.controllers import (
    AdminCertificateController,
    CertificateController,
    EnrollmentCertificateController,
    JwksController,
)
from lms.domain.certificates.keys import load_signing_key
from lms.domain.courses.controllers import (
    AdminCourseController,
    CourseController,
    LessonController,
    WebhookController,
)
from lms.domain.creators.controllers import ApplicationReviewController, CreatorController
from lms.domain.errors import DomainError
from lms.domain.events.controllers import AdminWebhookController
from lms.domain.learning.controllers import (
    AdminEnrollmentController,
    CreatorDashboardController,
    EnrollmentController,
    LessonProgressController,
    ProgressController,
)
from lms.domain.media.controllers import MediaController
from lms.domain.payments.controllers import (
    AdminOrderController,
    CheckoutController,
    OrderController,
    StripeWebhookController,
)
from lms.domain.payments.reconciler import reconcile_once
from lms.domain.transcripts.controllers import TranscriptController
from lms.edge import Edge
from lms.hot_lane import HotLane, lane_routes
from lms.housekeeping import Housekeeper
from lms.integrations.mail import make_mailer
from lms.integrations.sms import make_sms_sender
from lms.integrations.storages import make_storage
from lms.integrations.stripe_gateway import make_gateway
from lms.messaging.dispatcher import OutboxDispatcher
from lms.notifications.listener import ChangeListener, Subscriber
from lms.observability.logs import configure_logging
from lms.observability.tally import TALLY
from lms.ops.controllers import OpsController
from lms.settings import Settings, get_settings

VERSION = importlib.metadata.version("lms")


def _pool_of(ctx: NamedDependency[Any]) -> asyncpg.Pool:
    """The `db` dependency. `ctx` is typed Any so Litestar does not convert (walk) the context
    on every request; it is always the AppContext the `ctx` dependency gives."""
    pool: asyncpg.Pool = ctx.pool
    return pool


def create_app(settings: Settings | None = None) -> Litestar:
    """Build the ASGI app for `settings` (the environment's when omitted, as under Granian)."""
    settings = settings or get_settings()
    if not settings.database_url or not settings.nats_url:
        raise RuntimeError(
            "create_app needs DATABASE_URL and NATS_URL (lms dev/serve resolve them)"
        )
    if not logging.getLogger().handlers:
        configure_logging(settings.log_level, settings.log_format)

    if not settings.jwt_secret:
        raise RuntimeError("create_app needs LMS_JWT_SECRET (lms dev/serve resolve it)")
    if not settings.cert_signing_key:
        raise RuntimeError("create_app needs LMS_CERT_SIGNING_KEY (lms dev/serve resolve it)")

    # argon2's own bounded executor in this process (Granian builds the app once per worker).
    configure_hashing(settings.password_hash_threads, settings.password_hash_queue)
    nats = BrokerConnection(make_broker(settings))
    ctx = AppContext(
        settings=settings,
        users=UserAuthCache(),
        system=SystemSettingsCache(),
        listener=ChangeListener(settings.database_url),
        sessions=SessionStateCache(),
        nats=nats,
        storage=make_storage(settings),
        signing_key=load_signing_key(settings.cert_signing_key),
        payments=make_gateway(settings),
    )
    ctx.listener.subscribe(USER_AUTH_CHANNEL, ctx.users.subscriber())
    ctx.listener.subscribe(SESSION_CHANNEL, ctx.sessions.subscriber())
    ctx.listener.subscribe(SETTINGS_CHANNEL, ctx.system.subscriber())
    housekeeper = Housekeeper()

    async def start_services(app: Litestar) -> None:
        db_pool = await start_pool(settings)
        ctx.db = db_pool
        ctx.replicas = ReadReplicas(settings, db_pool)
        await ctx.replicas.start()
        ctx.users.bind(db_pool)
        ctx.sessions.bind(db_pool)
        await certificates.register_signing_key(ctx, db_pool)
        ctx.outbox = OutboxDispatcher(
            db_pool,
            make_mailer(settings.smtp_url, settings.email_from),
            make_sms_sender(settings.sms_url, settings.sms_from),
        )
        ctx.listener.subscribe("lms_outbox", Subscriber(ctx.outbox.wake))
        await ctx.listener.start()
        ctx.outbox.start()
        stripe = ctx.payments
        housekeeper.start(
            db_pool, None if stripe is None else (lambda: reconcile_once(db_pool, stripe))
        )
        await nats.start()
        heap.settle()  # what exists now lives as long as the process (lms.heap)

    async def stop_services(app: Litestar) -> None:
        await nats.stop()
        await housekeeper.stop()
        if ctx.outbox is not None:
            await ctx.outbox.stop()
        await ctx.listener.stop()
        if ctx.replicas is not None:
            await ctx.replicas.stop()
        await close_pool()
        edge.recorder.stop()
        TALLY.flush()

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
        route_handlers=[
            OpsController,
            docs_assets_router(),
            AuthController,
            CreatorController,
            ApplicationReviewController,
            AdminUsersController,
            AdminSettingsController,
            AdminAuditController,
            CourseController,
            LessonController,
            AdminCourseController,
            WebhookController,
            MediaController,
            TranscriptController,
            EnrollmentController,
            ProgressController,
            LessonProgressController,
            CreatorDashboardController,
            AdminEnrollmentController,
            CertificateController,
            EnrollmentCertificateController,
            JwksController,
            AdminCertificateController,
            CheckoutController,
            StripeWebhookController,
            OrderController,
            AdminOrderController,
            AdminWebhookController,
        ],
        # Bad characters and malformed headers are refused before anything else looks at them;
        # JSON bodies get the same rules where LmsRequest decodes them.
        middleware=[InputGuard, AllowHeader, authentication_middleware()],
        request_class=LmsRequest,
        # `db` is derived from `ctx` so the two resolve one after the other: Litestar resolves
        # independent dependencies of a handler concurrently, in an anyio task group per request,
        # which cost some 14% of a simple request's CPU (py-spy, GET /certificates/verify).
        dependencies={
            "ctx": Provide(lambda: ctx, sync_to_thread=False),
            "db": Provide(_pool_of, sync_to_thread=False),
        },
        on_startup=[start_services],
        on_shutdown=[stop_services],
        openapi_config=openapi_config(VERSION),
        exception_handlers={
            DomainError: domain_error_handler,
            HTTP_500_INTERNAL_SERVER_ERROR: unhandled_exception_handler,
        },
        # Our JSON logging is configured once per process; Litestar must not install its own.
        logging_config=None,
        state=State(
            {"settings": settings, "nats": nats, "broker": nats.broker, "ctx": ctx, "cors": cors}
        ),
    )
    # The hot routes' common requests skip Litestar's per-request machinery (lms.hot_lane): the
    # handlers naming an answer function, read from the app as built; the rest, and anything
    # unusual about those, go on to it.
    litestar = app.asgi_handler
    hot_lane = HotLane(ctx, lane_routes(app))
    # The edge around both (lms.edge): request id, CORS for every response, one implementation
    # (lms.api.cors) instead of Litestar's cors_config (whose middleware replaced a route's
    # Vary; the config is app.state.cors), the log line and metrics, 404s, preflights and
    # hot-lane answers included.
    edge = Edge(
        litestar,  # type: ignore[arg-type]
        hot_lane,
        None if cors is None else Cors(cors),
        app,  # type: ignore[arg-type]
    )
    app.asgi_handler = edge  # type: ignore[assignment]
    finish_openapi(app)
    return app


def serve_app() -> Edge:
    """What `lms serve` hands Granian: the app's edge itself, lifespan passed to the app
    (lms.edge.Edge). The app's own call adds nothing else while it has no before-send hook."""
    app = create_app()
    if app.before_send:
        raise RuntimeError("serve_app: the app has before-send hooks; serve create_app instead")
    edge = app.asgi_handler
    assert isinstance(edge, Edge)  # noqa: S101 - create_app makes it
    return edge
