"""Test infrastructure: real PostgreSQL and real NATS for every test that touches them.

DATABASE_URL / NATS_URL, when set, name servers to use (CI points them at the machine's
PostgreSQL 15 and NATS); otherwise the embedded ones are started once for the session under a
temporary LMS_DATA_DIR. Either way the session gets its own database and its own JetStream
stream, so parallel runs and a developer's `make run` never see each other's data. Tests are
isolated by truncating every table before each test that uses the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
from litestar import Litestar

from lms.db.engine import close_pool, start_pool
from lms.db.migrate import migrate_forward
from lms.domain.auth.logins import open_login
from lms.domain.auth.passwords import hash_password
from lms.domain.certificates.keys import new_private_key_pem
from lms.domain.courses import catalog
from lms.embedded import EmbeddedServices
from lms.netutil import free_port
from lms.settings import Settings, load_settings
from tests.support.localstripe import LocalStripe, running_localstripe
from tests.support.sms_provider import SmsProvider, start_sms_provider
from tests.support.smtp import Mailbox, start_smtp_server

# Fixtures shared by tests in several folders.
pytest_plugins = ["tests.integration.served"]

TEST_PASSWORD = "correct horse battery"


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@dataclass(frozen=True)
class ServerUrls:
    postgres: str  # any database on the server; tests create their own
    nats: str
    embedded: bool


@pytest.fixture(scope="session")
def server_urls() -> Iterator[ServerUrls]:
    database_url = os.environ.get("DATABASE_URL")
    nats_url = os.environ.get("NATS_URL")
    if database_url and nats_url:
        yield ServerUrls(database_url, nats_url, embedded=False)
        return
    # Not under pytest's basetemp: a pytest session started meanwhile deletes all but the newest
    # three basetemps, and with them the data of a PostgreSQL still running for this session.
    data_dir = Path(tempfile.mkdtemp(prefix="lms-test-embedded-"))
    embedded = EmbeddedServices(data_dir)
    urls = embedded.acquire()
    try:
        assert urls.database_url and urls.nats_url
        yield ServerUrls(urls.database_url, urls.nats_url, embedded=True)
    finally:
        embedded.release()
        shutil.rmtree(data_dir, ignore_errors=True)


async def create_database(server_url: str, name: str) -> str:
    conn = await asyncpg.connect(with_database(server_url, "postgres"))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return with_database(server_url, name)


async def drop_database(server_url: str, name: str) -> None:
    conn = await asyncpg.connect(with_database(server_url, "postgres"))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture
async def scratch_database(server_urls: ServerUrls) -> AsyncIterator[str]:
    """An empty database (no migrations) of its own, dropped after the test."""
    name = f"lms_scratch_{uuid.uuid4().hex[:10]}"
    url = await create_database(server_urls.postgres, name)
    yield url
    await drop_database(server_urls.postgres, name)


@pytest.fixture(scope="session")
async def database_url(server_urls: ServerUrls) -> AsyncIterator[str]:
    """A fresh, migrated database for this test session."""
    name = f"lms_test_{uuid.uuid4().hex[:12]}"
    url = await create_database(server_urls.postgres, name)
    await migrate_forward(url, quiet=True)
    yield url
    await close_pool()
    await drop_database(server_urls.postgres, name)


@dataclass
class Outside:
    """The outside world the app talks to: a real SMTP server and an SMS provider, on loopback."""

    mailbox: Mailbox
    sms: SmsProvider
    smtp_url: str


@pytest.fixture(scope="session")
def outside() -> Iterator[Outside]:
    port = free_port()
    controller, mailbox = start_smtp_server(port)
    sms = start_sms_provider()
    try:
        yield Outside(mailbox, sms, f"smtp://127.0.0.1:{port}")
    finally:
        controller.stop()
        assert sms.server is not None
        sms.server.shutdown()


# The webhook signing secret the session's app and localstripe share.
STRIPE_WEBHOOK_SECRET = "whsec_test_" + secrets.token_hex(16)


@pytest.fixture(scope="session")
def localstripe(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStripe]:
    """A real Stripe-compatible server (localstripe) for the session's app."""
    with running_localstripe(tmp_path_factory.mktemp("localstripe") / "localstripe.log") as server:
        yield server


@pytest.fixture(scope="session")
def settings(
    database_url: str,
    server_urls: ServerUrls,
    tmp_path_factory: pytest.TempPathFactory,
    outside: Outside,
    localstripe: LocalStripe,
) -> Settings:
    tag = uuid.uuid4().hex[:10]
    return load_settings(
        {
            "DATABASE_URL": database_url,
            "NATS_URL": server_urls.nats,
            "LMS_DATA_DIR": str(tmp_path_factory.mktemp("lms-data")),
            "LMS_JWT_SECRET": secrets.token_urlsafe(48),
            "LMS_JOBS_STREAM": f"LMS_TEST_{tag}",
            "LMS_JOBS_SUBJECT": f"lmstest.{tag}",
            "LMS_CORS_ORIGINS": "https://app.example.test",
            "LMS_LOG_FORMAT": "json",
            "LMS_SMTP_URL": outside.smtp_url,
            "LMS_SMS_URL": outside.sms.url,
            "LMS_SMS_FROM": "+15005550006",
            "LMS_CERT_SIGNING_KEY": new_private_key_pem(),
            "LMS_PUBLIC_BASE_URL": "https://lms.example.test",
            "LMS_STRIPE_SECRET_KEY": "sk_test_lms",
            "LMS_STRIPE_WEBHOOK_SECRET": STRIPE_WEBHOOK_SECRET,
            "LMS_STRIPE_API_BASE": localstripe.url,
            # Webhook receivers of the tests run on loopback; retries come quickly.
            "LMS_WEBHOOK_ALLOW": "127.0.0.1/32",
            "LMS_WEBHOOK_RETRY_BASE_MS": "50",
            "LMS_WEBHOOK_RETRY_MAX": "1",
            "LMS_WEBHOOK_TIMEOUT": "2",
        }
    )


@pytest.fixture(scope="session")
async def db_pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    pool = await start_pool(settings)
    yield pool
    await close_pool()


# Kept across tests: the schema's own rows, and the signing key each app registers at startup.
TRUNCATE_EXCEPT = {"migration", "system_settings", "certificate_signing_keys"}


@pytest.fixture
async def db(db_pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Pool]:
    """The pool, on a database emptied before the test (settings back to their defaults)."""
    # Search counts not yet added to the shared counters would land after the emptying.
    catalog.forget_kept_searches()
    async with db_pool.acquire() as conn:
        tables = await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
        )
        names = [t["tablename"] for t in tables if t["tablename"] not in TRUNCATE_EXCEPT]
        # A background task of the previous test's app (a search-top fill, the event dispatcher)
        # may still hold row locks the TRUNCATE queues behind; PostgreSQL then picks one of the
        # two as a deadlock victim. The TRUNCATE is the one to retry.
        for attempt in range(5):
            try:
                await conn.execute(f"TRUNCATE {', '.join(names)} RESTART IDENTITY CASCADE")
                break
            except asyncpg.exceptions.DeadlockDetectedError:
                if attempt == 4:
                    raise
                await asyncio.sleep(0.2)
        await conn.execute(
            "DELETE FROM system_settings; INSERT INTO system_settings (id) VALUES (1)"
        )
    return db_pool


@pytest.fixture(scope="session")
def app(settings: Settings, db_pool: asyncpg.Pool) -> Litestar:
    from lms.app import create_app

    return create_app(settings)


@contextlib.asynccontextmanager
async def http_client(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client calling `app` in this event loop (the pool and NATS connection live here;
    Litestar's AsyncTestClient would run the app on a loop of its own thread)."""
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as test_client:
        yield test_client


@pytest.fixture(scope="session")
async def client(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    for hook in app.on_startup:
        await hook(app)  # type: ignore[call-arg]
    async with http_client(app) as test_client:
        yield test_client
    for hook in app.on_shutdown:
        await hook(app)  # type: ignore[call-arg]


@pytest.fixture
async def api(
    db: asyncpg.Pool, client: httpx.AsyncClient, app: Litestar, outside: Outside
) -> httpx.AsyncClient:
    """The client, on an emptied database, with the app's caches and the outside world reset."""
    await app.state.ctx.system.reload()
    catalog.forget_kept_searches()
    outside.mailbox.clear()
    outside.sms.clear()
    return client


@dataclass(frozen=True)
class TestUser:
    __test__ = False  # a fixture value, not a test class

    id: uuid.UUID
    email: str
    username: str
    password: str
    role: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture(scope="session")
async def password_hash() -> str:
    return await hash_password(TEST_PASSWORD)


@pytest.fixture
def make_user(db: asyncpg.Pool, settings: Settings, password_hash: str):  # type: ignore[no-untyped-def]
    """Factory: a verified, profile-complete user of `role` with a valid access token (of a
    login of its own, opened as a sign-in opens one)."""

    async def make(role: str = "LEARNER", **fields: object) -> TestUser:
        tag = uuid.uuid4().hex[:8]
        email = str(fields.pop("email", f"{role.lower()}-{tag}@example.test"))
        username = str(fields.pop("username", f"{role.lower()}_{tag}"))
        row = await db.fetchrow(
            """
            INSERT INTO users (email, username, password_hash, full_name, name, role,
                               email_verified, is_profile_complete, is_active)
            VALUES ($1, $2, $3, $4, $4, $5, true, true, true)
            RETURNING id, token_version
            """,
            email,
            username,
            password_hash,
            f"Test {role.title()} {tag}",
            role,
        )
        login = await open_login(db, settings, row["id"])
        return TestUser(row["id"], email, username, TEST_PASSWORD, role, login.access_token)

    return make


@pytest.fixture
async def learner(make_user) -> TestUser:  # type: ignore[no-untyped-def]
    return await make_user("LEARNER")


@pytest.fixture
async def creator(make_user) -> TestUser:  # type: ignore[no-untyped-def]
    return await make_user("CREATOR")


@pytest.fixture
async def admin(make_user) -> TestUser:  # type: ignore[no-untyped-def]
    return await make_user("ADMIN")


@pytest.fixture(scope="session")
def project_root() -> Path:
    return Path(__file__).resolve().parent.parent
