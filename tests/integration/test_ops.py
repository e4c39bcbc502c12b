"""Operational endpoints, the error shape, request ids, CORS and the offline API docs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import asyncpg
import httpx
import pytest
from httpx import AsyncClient

from lms.app import create_app
from lms.netutil import free_port
from lms.observability.logs import JsonFormatter
from lms.observability.metrics_access import metrics_access
from lms.observability.metrics_server import serve_metrics
from lms.observability.middleware import AccessLog
from lms.settings import Settings, load_settings
from tests.conftest import TestUser, http_client
from tests.helpers import eventually


async def test_healthz(client: AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_reports_database_and_nats(client: AsyncClient) -> None:
    # The app connects to NATS in the background; give it a moment on a cold start.
    for _ in range(50):
        response = await client.get("/readyz")
        if response.status_code == 200:
            break
        await asyncio.sleep(0.1)
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "ready", "database": "ok", "nats": "ok"}


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_readyz_is_503_while_nats_is_unreachable(settings, db_pool) -> None:  # type: ignore[no-untyped-def]
    app = create_app(replace(settings, nats_url=f"nats://127.0.0.1:{_closed_port()}"))
    app.state.ctx.db = db_pool  # the shared pool is already up (startup would hand it over)
    nats = app.state.nats
    await nats.start()  # only NATS is this app's own
    try:
        async with http_client(app) as client:
            response = await client.get("/readyz")
            healthz = await client.get("/healthz")
    finally:
        await nats.stop()
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "database": "ok", "nats": "unavailable"}
    assert healthz.status_code == 200  # alive, just not ready


async def test_request_id_is_generated_and_returned(client: AsyncClient) -> None:
    first = await client.get("/healthz")
    second = await client.get("/healthz")
    assert re.fullmatch(r"[0-9a-f]{32}", first.headers["x-request-id"])
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


async def test_a_plain_incoming_request_id_is_kept(client: AsyncClient) -> None:
    response = await client.get("/healthz", headers={"X-Request-ID": "gateway-42.abc"})
    assert response.headers["x-request-id"] == "gateway-42.abc"


async def test_an_unsafe_incoming_request_id_is_replaced(client: AsyncClient) -> None:
    response = await client.get("/healthz", headers={"X-Request-ID": "evil id\twith spaces" * 10})
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"])


async def test_of_repeated_request_ids_the_first_plain_one_is_kept(client: AsyncClient) -> None:
    sent = [("X-Request-ID", "evil id"), ("X-Request-ID", "first-plain"), ("X-Request-ID", "2nd")]
    response = await client.get("/healthz", headers=sent)
    assert response.headers["x-request-id"] == "first-plain"


async def test_one_json_log_line_per_request(
    client: AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="lms.request")
    response = await client.get("/healthz", headers={"X-Request-ID": "trace-me-1"})

    async def logged() -> list[logging.LogRecord]:
        # Lines of earlier tests' requests may arrive in the same batch.
        return [
            r
            for r in caplog.records
            if r.name == "lms.request" and getattr(r, "request_id", None) == "trace-me-1"
        ]

    # Lines are handed to logging in batches, at most AccessLog.FLUSH_DELAY after the request.
    lines = await eventually(logged, within=AccessLog.FLUSH_DELAY + 1, what="the request's line")
    await asyncio.sleep(AccessLog.FLUSH_DELAY * 2)
    lines = await logged()
    assert len(lines) == 1
    record = lines[0]
    assert (record.method, record.path, record.status) == ("GET", "/healthz", 200)  # type: ignore[attr-defined]
    assert record.duration_ms >= 0  # type: ignore[attr-defined]
    entry = json.loads(JsonFormatter().format(record))
    assert entry["request_id"] == "trace-me-1" == response.headers["x-request-id"]
    assert {"method", "path", "status", "duration_ms"} <= entry.keys()


async def test_unknown_route_uses_the_error_shape(client: AsyncClient) -> None:
    response = await client.get("/no/such/route")
    assert response.status_code == 404
    assert response.json() == {"status_code": 404, "detail": "Not Found"}
    assert "x-request-id" in response.headers


async def test_wrong_method_uses_the_error_shape(client: AsyncClient) -> None:
    response = await client.post("/healthz")
    assert response.status_code == 405
    body = response.json()
    assert body["status_code"] == 405 and isinstance(body["detail"], str)


async def test_metrics_are_prometheus_text_with_route_templates(client: AsyncClient) -> None:
    await client.get("/healthz")
    await client.get("/definitely-missing")
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert re.search(
        r'lms_http_requests_total\{method="GET",route="/healthz",status="200"\} \d', text
    )
    # Unknown paths share one label value: a scanner cannot blow up the series count.
    assert 'route="unmatched"' in text and "definitely-missing" not in text
    assert "lms_http_request_duration_seconds_bucket" in text


async def test_a_scrape_counts_every_request_that_ended_before_it(client: AsyncClient) -> None:
    """Requests are recorded in batches (lms.observability.middleware.RequestRecorder); a scrape
    right after them, before the batch is due, still counts each one."""

    def served(text: str) -> float:
        found = re.search(
            r'lms_http_requests_total\{method="GET",route="/healthz",status="200"\} (\S+)',
            text,
        )
        return float(found.group(1)) if found else 0.0

    before = served((await client.get("/metrics")).text)
    for _ in range(3):
        assert (await client.get("/healthz")).status_code == 200
    assert served((await client.get("/metrics")).text) == before + 3


@contextlib.asynccontextmanager
async def app_with(settings: Settings, db_pool: asyncpg.Pool, **changes: Any) -> AsyncIterator[Any]:
    """A client of an app built with `changes` to the settings, on the shared pool."""
    app = create_app(replace(settings, **changes))
    app.state.ctx.db = db_pool  # the shared pool is already up (startup would hand it over)
    async with http_client(app) as client:  # the caller is 127.0.0.1
        yield client


TOKEN = "metrics-" + "s3cret" * 6


async def test_metrics_with_a_token_want_that_bearer_token(
    settings: Settings, db_pool: asyncpg.Pool
) -> None:
    async with app_with(settings, db_pool, metrics_token=TOKEN) as client:
        missing = await client.get("/metrics")
        wrong = await client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}x"})
        not_bearer = await client.get("/metrics", headers={"Authorization": f"Basic {TOKEN}"})
        right = await client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        healthz = await client.get("/healthz")
    for refused in (missing, wrong, not_bearer):
        assert refused.status_code == 401, refused.text
        assert refused.headers["www-authenticate"] == "Bearer"
        assert refused.json()["status_code"] == 401
        assert "lms_http_requests_total" not in refused.text
    assert right.status_code == 200 and "lms_http_requests_total" in right.text
    assert healthz.status_code == 200  # only the metrics are closed


async def test_metrics_with_an_allow_list_serve_only_those_addresses(
    settings: Settings, db_pool: asyncpg.Pool
) -> None:
    async with app_with(settings, db_pool, metrics_allow=("10.0.0.0/8",)) as client:
        elsewhere = await client.get("/metrics")
        with_token = await client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert elsewhere.status_code == 403 == with_token.status_code, elsewhere.text
    assert elsewhere.json()["status_code"] == 403 and "lms_" not in elsewhere.text
    async with app_with(settings, db_pool, metrics_allow=("10.0.0.0/8", "127.0.0.1")) as client:
        listed = await client.get("/metrics")
    assert listed.status_code == 200 and "lms_http_requests_total" in listed.text


async def test_metrics_with_both_want_the_address_and_the_token(
    settings: Settings, db_pool: asyncpg.Pool
) -> None:
    changes = {"metrics_allow": ("127.0.0.0/8",), "metrics_token": TOKEN}
    async with app_with(settings, db_pool, **changes) as client:
        no_token = await client.get("/metrics")
        both = await client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert no_token.status_code == 401 and both.status_code == 200


def test_a_workers_metrics_port_follows_the_same_rule() -> None:
    port = free_port()
    access = metrics_access(replace(load_settings({}), metrics_token=TOKEN))
    server = serve_metrics("127.0.0.1", port, access)
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        missing = httpx.get(url)
        right = httpx.get(url, headers={"Authorization": f"Bearer {TOKEN}"})
    finally:
        server.shutdown()
        server.server_close()
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert missing.json() == {
        "status_code": 401,
        "detail": "metrics need the bearer token set in LMS_METRICS_TOKEN",
    }
    assert right.status_code == 200 and "python_info" in right.text
    listed_elsewhere = metrics_access(replace(load_settings({}), metrics_allow=("10.0.0.0/8",)))
    server = serve_metrics("127.0.0.1", port, listed_elsewhere)
    try:
        refused = httpx.get(f"http://127.0.0.1:{port}/metrics")
    finally:
        server.shutdown()
        server.server_close()
    assert refused.status_code == 403


async def test_openapi_document(client: AsyncClient) -> None:
    response = await client.get("/schema/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.")
    assert {"/healthz", "/readyz", "/metrics"} <= set(document["paths"])
    assert document["components"]["securitySchemes"]["BearerToken"]["scheme"] == "bearer"


async def test_interactive_docs_load_without_internet(client: AsyncClient) -> None:
    page = await client.get("/schema")
    assert page.status_code == 200
    html = page.text
    assert "SwaggerUIBundle" in html
    # Every script, stylesheet and icon is served by us: nothing points off-host.
    referenced = re.findall(r'(?:src|href)=[\'"]([^\'"]+)[\'"]', html)
    assert referenced, "the docs page should reference its assets"
    assert all(url.startswith("/") for url in referenced), referenced
    for url in referenced:
        asset = await client.get(url)
        assert asset.status_code == 200, url
        assert len(asset.content) > 100


async def test_cors_allows_configured_origin(client: AsyncClient) -> None:
    response = await client.options(
        "/healthz",
        headers={
            "Origin": "https://app.example.test",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "Authorization",
        },
    )
    assert response.status_code in (200, 204)
    assert response.headers["access-control-allow-origin"] == "https://app.example.test"
    simple = await client.get("/healthz", headers={"Origin": "https://app.example.test"})
    assert "x-request-id" in simple.headers["access-control-expose-headers"].lower()


async def test_an_answered_preflight_is_counted_and_logged_only_at_debug(
    client: AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    """A preflight the edge answers 204 is browser protocol, not a request of the app's: it is
    counted in the metrics and its line is at DEBUG; a refused one (400) is logged at INFO."""
    caplog.set_level("INFO", logger="lms.request")

    def preflights(text: str, status: int) -> float:
        series = f'method="OPTIONS",route="unmatched",status="{status}"'
        found = re.search(rf"lms_http_requests_total\{{{series}\}} (\S+)", text)
        return float(found.group(1)) if found else 0.0

    before = (await client.get("/metrics")).text
    asked = {"Access-Control-Request-Method": "POST", "X-Request-ID": "preflight-ok-1"}
    answered = await client.options(
        "/courses", headers={"Origin": "https://app.example.test", **asked}
    )
    refused = await client.options(
        "/courses",
        headers={"Origin": "https://evil.example", **asked, "X-Request-ID": "preflight-bad-1"},
    )
    assert (answered.status_code, refused.status_code) == (204, 400)
    after = (await client.get("/metrics")).text
    assert preflights(after, 204) == preflights(before, 204) + 1
    assert preflights(after, 400) == preflights(before, 400) + 1

    def lines() -> list[str]:
        return [
            getattr(r, "request_id", "")
            for r in caplog.records
            if r.name == "lms.request" and r.levelno >= logging.INFO
        ]

    async def refused_logged() -> bool:
        return "preflight-bad-1" in lines()

    # Both ended before the scrape, so both were in a batch handed to logging by now.
    await eventually(refused_logged, within=AccessLog.FLUSH_DELAY + 1, what="the refusal's line")
    assert "preflight-ok-1" not in lines()


async def test_cors_refuses_other_origins(client: AsyncClient) -> None:
    response = await client.get("/healthz", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in response.headers


async def test_cors_keeps_each_routes_vary_and_adds_origin(
    api: AsyncClient, learner: TestUser
) -> None:
    """A shared cache must not serve a signed-in learner's catalog page to an anonymous browser
    (Vary: Authorization) nor a page made for one origin to another (Vary: Origin): every answer
    keeps its route's Vary and adds Origin once, hot lane or Litestar, preflight included."""
    allowed, other = "https://app.example.test", "https://evil.example"
    signed_in = {"Authorization": f"Bearer {learner.token}"}
    for origin in ({"Origin": allowed}, {"Origin": other}, {}):
        for path, extra, vary in (
            ("/courses", {}, "Authorization, Origin"),  # the hot lane's
            ("/courses", signed_in, "Authorization, Origin"),
            ("/courses?limit=2&limit=2", {}, "Authorization, Origin"),  # handed on to Litestar
            ("/healthz", {}, "Origin"),
            ("/no/such/path", {}, "Origin"),
        ):
            response = await api.get(path, headers=origin | extra)
            assert response.headers.get_list("vary") == [vary], (path, origin, extra)
            assert (response.headers.get("access-control-allow-origin") == allowed) is (
                origin.get("Origin") == allowed
            )
    preflight = await api.options(
        "/courses", headers={"Origin": allowed, "Access-Control-Request-Method": "GET"}
    )
    assert preflight.status_code == 204
    assert preflight.headers.get_list("vary") == ["Origin"]


async def test_role_fixtures_give_each_role_a_working_token(
    learner, creator, admin, db, settings
) -> None:  # type: ignore[no-untyped-def]
    import jwt

    from lms.derived_keys import Purpose, derived_key

    key = derived_key(settings.jwt_secret, Purpose.ACCESS_TOKEN)
    for user in (learner, creator, admin):
        claims = jwt.decode(user.token, key, algorithms=[settings.jwt_algorithm])
        assert claims["sub"] == str(user.id) and claims["role"] == user.role
        login = "SELECT user_id FROM refresh_tokens WHERE family_id = $1 AND revoked_at IS NULL"
        assert await db.fetchval(login, uuid.UUID(claims["sid"])) == user.id  # a live login's
        row = await db.fetchrow("SELECT role, is_active FROM users WHERE id = $1", user.id)
        assert row["role"] == user.role and row["is_active"]


async def test_pooled_connections_are_released_without_a_reset_round_trip(
    api: AsyncClient, db: asyncpg.Pool
) -> None:
    """A request costs its own statements only: releasing a pooled connection sends nothing (the
    default reset would be one more round trip per request, and stays visible as the backend's
    last query)."""
    for _ in range(5):
        assert (await api.get("/readyz")).status_code == 200
        assert (await api.get("/courses")).status_code == 200
    resets = await db.fetchval(
        """SELECT count(*) FROM pg_stat_activity
           WHERE datname = current_database() AND pid <> pg_backend_pid()
             AND query LIKE '%pg_advisory_unlock_all%'"""
    )
    assert resets == 0
