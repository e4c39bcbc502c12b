"""GET /healthz (the process lives), /readyz (database and NATS answer), /metrics (Prometheus)."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
from litestar import Controller, Request, Response, get
from litestar.status_codes import HTTP_200_OK, HTTP_503_SERVICE_UNAVAILABLE

from lms.api.client_ip import client_ip
from lms.api.dependencies import Db
from lms.api.openapi import FORBIDDEN, UNAUTHORIZED, errors
from lms.api.schemas import CamelStruct
from lms.api.security import PUBLIC_OPT
from lms.broker import BrokerConnection
from lms.domain.errors import Forbidden, Unauthenticated
from lms.domain.events.dispatcher import refresh_metrics as refresh_event_metrics
from lms.domain.transcripts.monitoring import refresh_queue_metrics
from lms.observability.metrics import render
from lms.observability.metrics_access import Verdict, metrics_access

READY_TIMEOUT = 2.0


class Health(CamelStruct):
    status: str


class Readiness(CamelStruct):
    status: str
    database: str
    nats: str


async def _database_ok(db: asyncpg.Pool) -> bool:
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            async with db.acquire() as conn:
                return bool(await conn.fetchval("SELECT 1") == 1)
    except Exception:
        return False


class OpsController(Controller):
    tags = ("ops",)
    opt = PUBLIC_OPT

    @get("/healthz", summary="Liveness", cache=False)
    async def healthz(self) -> Health:
        return Health(status="ok")

    @get("/readyz", summary="Readiness: PostgreSQL and NATS answer", cache=False)
    async def readyz(self, request: Request[Any, Any, Any], db: Db) -> Response[Readiness]:
        nats: BrokerConnection = request.app.state.nats
        database_ok, nats_ok = await asyncio.gather(_database_ok(db), nats.ping(READY_TIMEOUT))
        ready = database_ok and nats_ok
        body = Readiness(
            status="ready" if ready else "unavailable",
            database="ok" if database_ok else "unavailable",
            nats="ok" if nats_ok else "unavailable",
        )
        return Response(body, status_code=HTTP_200_OK if ready else HTTP_503_SERVICE_UNAVAILABLE)

    @get(
        "/metrics",
        summary="Prometheus metrics",
        description="Open unless LMS_METRICS_ALLOW (the caller's address) or LMS_METRICS_TOKEN "
        "(`Authorization: Bearer <token>`) restrict it.",
        media_type="text/plain",
        include_in_schema=True,
        responses=errors(UNAUTHORIZED, FORBIDDEN),
    )
    async def metrics(self, request: Request[Any, Any, Any], db: Db) -> Response[bytes]:
        settings = request.app.state.settings
        verdict = metrics_access(settings).check(
            client_ip(request, settings.trusted_proxies), request.headers.get("authorization")
        )
        if verdict is Verdict.ADDRESS_REFUSED:
            raise Forbidden("metrics are not served to this address")
        if verdict is Verdict.TOKEN_MISSING:
            raise Unauthenticated("metrics need the bearer token set in LMS_METRICS_TOKEN")
        await refresh_queue_metrics(db, request.app.state.nats, settings.jobs_stream)
        await refresh_event_metrics(db)
        payload, content_type = render()
        return Response(payload, media_type=content_type)
