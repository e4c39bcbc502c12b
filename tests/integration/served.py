"""`lms serve` as a real process on a free port, for tests that drive the API over the network
(generated clients, schemathesis): the session's database, NATS and mail catcher."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from lms.netutil import free_port
from lms.settings import Settings
from tests.conftest import Outside, ServerUrls
from tests.helpers import child_env, wait_ready


def settings_of_payments(settings: Settings) -> dict[str, str]:
    if not settings.stripe_secret_key or not settings.stripe_webhook_secret:
        return {}
    return {
        "LMS_STRIPE_SECRET_KEY": settings.stripe_secret_key,
        "LMS_STRIPE_WEBHOOK_SECRET": settings.stripe_webhook_secret,
        "LMS_STRIPE_API_BASE": settings.stripe_api_base,
    }


@contextlib.contextmanager
def lms_serving(
    *,
    database_url: str,
    nats_url: str,
    settings: Settings,
    outside: Outside,
    folder: Path,
    **env: str,
) -> Iterator[str]:
    """`lms serve` (one Granian worker) on a free port; yields its base URL. `env` adds settings
    (LMS_...) for the test at hand."""
    assert settings.jwt_secret and settings.cert_signing_key and settings.public_base_url
    port = free_port()
    child = child_env(
        DATABASE_URL=database_url,
        NATS_URL=nats_url,
        LMS_DATA_DIR=str(folder / "lms-data"),
        LMS_PORT=str(port),
        LMS_SMTP_URL=outside.smtp_url,
        LMS_JWT_SECRET=settings.jwt_secret,
        # The session's key and public URL: the key row it registers is the one already there.
        LMS_CERT_SIGNING_KEY=settings.cert_signing_key,
        LMS_PUBLIC_BASE_URL=settings.public_base_url,
        LMS_JOBS_STREAM=settings.jobs_stream,
        LMS_JOBS_SUBJECT=settings.jobs_subject,
        # The session's localstripe, so checkout and refunds reach a Stripe.
        **settings_of_payments(settings),
        **env,
    )
    log = folder / "lms-serve.log"
    with log.open("wb") as sink:  # a file, not a pipe nobody reads that could fill and block it
        proc = subprocess.Popen(
            [sys.executable, "-m", "lms", "serve", "--workers", "1"],
            env=child,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        ready = False
        while not ready and proc.poll() is None and time.monotonic() < deadline:
            ready = wait_ready(port, 1)  # a server that dies at startup fails the test at once
        assert ready, log.read_text(errors="replace")[-3000:]
        yield f"http://127.0.0.1:{port}"
    finally:
        with contextlib.suppress(ProcessLookupError):  # gone already if it died at startup
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture
def served_lms(
    db: asyncpg.Pool,
    database_url: str,
    server_urls: ServerUrls,
    settings: Settings,
    outside: Outside,
    tmp_path: Path,
) -> Iterator[str]:
    """`lms serve` on a free port, on the session's (emptied) database, mailing `outside`."""
    with lms_serving(
        database_url=database_url,
        nats_url=server_urls.nats,
        settings=settings,
        outside=outside,
        folder=tmp_path,
    ) as url:
        yield url
