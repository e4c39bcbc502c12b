"""NATS restarted under load: creators keep uploading lessons while the NATS server of the test's
own stops and comes back. Every upload succeeds (the job row commits with the lesson; publishing
happens after commit and, when NATS is away, is left to the worker's sweeper), /readyz reports NATS
down while it is, and afterwards every job is transcribed exactly once: DONE after one claim, one
transcript per lesson, one "transcribed" log line per job in the worker's log."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from lms.embedded import EmbeddedNats
from lms.netutil import free_port
from lms.settings import Settings
from tests.conftest import TestUser
from tests.helpers import eventually, wait_ready
from tests.integration.faults.processes import (
    Uploads,
    assert_each_job_ran_once,
    every_job_done,
    log_tail,
    service_env,
    spawn,
    stop,
    uploader,
)

pytestmark = pytest.mark.slow

UPLOADERS = 2  # each a creator with a course of their own


@pytest.fixture
def nats(tmp_path: Path) -> Iterator[EmbeddedNats]:
    server = EmbeddedNats(tmp_path / "nats")
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def test_uploads_ride_out_a_nats_restart_and_every_job_runs_once(
    db: asyncpg.Pool,
    settings: Settings,
    make_user: Callable[..., Awaitable[TestUser]],
    nats: EmbeddedNats,
    tmp_path: Path,
) -> None:
    url = nats.running_url()
    assert url and settings.database_url and settings.jwt_secret
    port = free_port()
    env = service_env(
        database_url=settings.database_url,
        nats_url=url,
        data_dir=settings.data_dir,  # the API stores the videos where the worker reads them
        jwt_secret=settings.jwt_secret,
        LMS_PORT=str(port),
        # Uploads pile up faster than one worker transcribes them: no per-creator cap here.
        LMS_MAX_QUEUED_TRANSCRIPTIONS="1000",
    )
    api_log, worker_log = tmp_path / "api.log", tmp_path / "worker.log"
    api = spawn(env, "serve", "--workers", "1", log=api_log)
    worker = spawn(env, "worker", log=worker_log)
    creators = [await make_user("CREATOR") for _ in range(UPLOADERS)]
    uploads = Uploads()
    load: list[asyncio.Task[None]] = []
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        try:
            assert await asyncio.to_thread(wait_ready, port, 60), log_tail(api_log)
            load = [
                asyncio.create_task(uploader(client, creator.headers, uploads))
                for creator in creators
            ]

            await eventually(
                lambda: uploads.reached(0, 2), within=30, what="uploads before the outage"
            )

            await asyncio.to_thread(nats.stop)
            stopped_at = len(uploads.lessons)

            async def nats_reported_down() -> dict[str, str] | None:
                ready = await client.get("/readyz")
                body: dict[str, str] = ready.json()
                return body if ready.status_code == 503 and body["nats"] == "unavailable" else None

            report = await eventually(nats_reported_down, within=10, what="/readyz naming NATS")
            assert report == {"status": "unavailable", "database": "ok", "nats": "unavailable"}
            await eventually(
                lambda: uploads.reached(stopped_at, 3), within=30, what="uploads during the outage"
            )
            during = uploads.lessons[stopped_at:]
            assert await db.fetchval(
                "SELECT count(*) FROM transcription_jobs"
                " WHERE lesson_id = ANY($1::uuid[]) AND published_at IS NULL",
                during,
            ), "an upload while NATS is down leaves its job for the sweeper"

            await asyncio.to_thread(nats.start)  # same port, same store
            restarted_at = len(uploads.lessons)
            await eventually(
                lambda: uploads.reached(restarted_at, 2), within=30, what="uploads after the outage"
            )

            async def ready_again() -> bool:
                return (await client.get("/readyz")).status_code == 200

            await eventually(ready_again, within=15, what="/readyz ready once NATS is back")
        finally:
            for task in load:
                task.cancel()
            await asyncio.gather(*load, return_exceptions=True)
        assert not uploads.refused, uploads.refused[:10]

        try:
            jobs = await every_job_done(db, within=120)
        finally:
            stop(api)
            stop(worker)

    assert set(uploads.lessons) <= {j["lesson_id"] for j in jobs}
    await assert_each_job_ran_once(db, jobs, [worker_log])
