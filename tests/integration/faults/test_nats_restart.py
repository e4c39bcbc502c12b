"""NATS restarted under load: creators keep uploading lessons while the NATS server of the test's
own stops and comes back. Every upload succeeds (the job row commits with the lesson; publishing
happens after commit and, when NATS is away, is left to the worker's sweeper), /readyz reports NATS
down while it is, and afterwards every job is transcribed exactly once: DONE after one claim, one
transcript per lesson, one "transcribed" log line per job in the worker's log."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
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
    json_lines,
    log_tail,
    service_env,
    spawn,
    stop,
)
from tests.integration.transcripts.worker_support import SPEECH

pytestmark = pytest.mark.slow

UPLOADERS = 2  # each a creator with a course of their own


@dataclass
class Uploads:
    lessons: list[uuid.UUID] = field(default_factory=list)  # acknowledged with a 201
    refused: list[str] = field(default_factory=list)

    def since(self, mark: int) -> int:
        return len(self.lessons) - mark


@pytest.fixture
def nats(tmp_path: Path) -> Iterator[EmbeddedNats]:
    server = EmbeddedNats(tmp_path / "nats")
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def uploader(client: httpx.AsyncClient, headers: dict[str, str], uploads: Uploads) -> None:
    course = await client.post("/courses", json={"title": "Outage", "price": 0}, headers=headers)
    assert course.status_code == 201, course.text
    url = f"/courses/{course.json()['id']}/lessons/upload"
    media = SPEECH.read_bytes()
    n = 0
    while True:
        n += 1
        try:
            response = await client.post(
                url,
                files={"file": ("speech.mp4", media, "video/mp4")},
                data={"title": f"Spoken {n}"},
                headers=headers,
            )
        except httpx.HTTPError as exc:
            uploads.refused.append(f"{type(exc).__name__}: {exc}")
        else:
            if response.status_code == 201 and response.json()["transcriptStatus"] == "QUEUED":
                uploads.lessons.append(uuid.UUID(response.json()["id"]))
            else:
                uploads.refused.append(f"{response.status_code} {response.text[:300]}")
        await asyncio.sleep(0.2)


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

            async def uploaded(after: int, count: int) -> bool:
                return uploads.since(after) >= count or bool(uploads.refused)

            await eventually(lambda: uploaded(0, 2), within=30, what="uploads before the outage")

            await asyncio.to_thread(nats.stop)
            stopped_at = len(uploads.lessons)

            async def nats_reported_down() -> dict[str, str] | None:
                ready = await client.get("/readyz")
                body: dict[str, str] = ready.json()
                return body if ready.status_code == 503 and body["nats"] == "unavailable" else None

            report = await eventually(nats_reported_down, within=10, what="/readyz naming NATS")
            assert report == {"status": "unavailable", "database": "ok", "nats": "unavailable"}
            await eventually(
                lambda: uploaded(stopped_at, 3), within=30, what="uploads during the outage"
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
                lambda: uploaded(restarted_at, 2), within=30, what="uploads after the outage"
            )

            async def ready_again() -> bool:
                return (await client.get("/readyz")).status_code == 200

            await eventually(ready_again, within=15, what="/readyz ready once NATS is back")
        finally:
            for task in load:
                task.cancel()
            await asyncio.gather(*load, return_exceptions=True)
        assert not uploads.refused, uploads.refused[:10]

        # Every job, the acknowledged uploads' and any whose answer the stopped load never read.
        async def all_done() -> list[asyncpg.Record] | None:
            jobs = await db.fetch("SELECT id, lesson_id, status, attempts FROM transcription_jobs")
            return jobs if all(j["status"] == "DONE" for j in jobs) else None

        try:
            jobs = await eventually(all_done, within=120, what="every job transcribed", every=0.5)
        finally:
            stop(api)
            stop(worker)

    assert set(uploads.lessons) <= {j["lesson_id"] for j in jobs}
    assert [j for j in jobs if j["attempts"] != 1] == []  # claimed once: no second run
    transcripts = await db.fetch("SELECT lesson_id FROM transcripts")
    assert sorted(t["lesson_id"] for t in transcripts) == sorted(j["lesson_id"] for j in jobs)
    transcribed = Counter(
        entry.get("job_id")
        for entry in json_lines(worker_log)
        if entry.get("msg", "").startswith("transcribed ")
    )
    assert transcribed == Counter({str(j["id"]): 1 for j in jobs}), log_tail(worker_log)
