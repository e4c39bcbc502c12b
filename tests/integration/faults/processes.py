"""Fault tests run `lms serve` and `lms worker` as real processes against servers of their own, so
they can stop and restart those servers; the machine's shared services are never touched."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from tests.helpers import child_env, eventually
from tests.integration.transcripts.worker_support import SPEECH


def service_env(
    *, database_url: str, nats_url: str, data_dir: Path, jwt_secret: str, **extra: str
) -> dict[str, str]:
    """The environment of an `lms` child: these servers, a job stream of its own, JSON logs."""
    tag = uuid.uuid4().hex[:8]
    return child_env(
        DATABASE_URL=database_url,
        NATS_URL=nats_url,
        LMS_DATA_DIR=str(data_dir),
        LMS_JWT_SECRET=jwt_secret,
        LMS_JOBS_STREAM=f"FAULTS_{tag}",
        LMS_JOBS_SUBJECT=f"faults.{tag}",
        LMS_JOBS_ACK_WAIT="3",
        LMS_SWEEP_INTERVAL="1",
        LMS_WHISPER_DEVICE="cpu",
        LMS_LOG_FORMAT="json",
        **extra,
    )


def spawn(env: dict[str, str], *args: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "lms", *args],
            env=env,
            stdout=out,
            stderr=out,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the process group (Granian's workers too), SIGKILL if it lingers."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def log_tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"


def json_lines(path: Path) -> list[dict[str, Any]]:
    """The JSON log lines a child wrote (LMS_LOG_FORMAT=json); other output is skipped."""
    entries = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                entries.append(json.loads(line))
            except ValueError:
                continue
    return entries


async def job_row(db: asyncpg.Pool, job_id: uuid.UUID) -> asyncpg.Record | None:
    return await db.fetchrow("SELECT * FROM transcription_jobs WHERE id = $1", job_id)


async def wait_for_status(
    db: asyncpg.Pool, job_id: uuid.UUID, status: str, within: float
) -> asyncpg.Record:
    async def reached() -> asyncpg.Record | None:
        row = await job_row(db, job_id)
        return row if row is not None and row["status"] == status else None

    return await eventually(reached, within=within, what=f"job {job_id} reaching {status}")


@dataclass
class Uploads:
    lessons: list[uuid.UUID] = field(default_factory=list)  # acknowledged with a 201
    refused: list[str] = field(default_factory=list)
    # (when it was sent, on time.monotonic(); how long the answer took), one per answered upload
    timings: list[tuple[float, float]] = field(default_factory=list)

    def since(self, mark: int) -> int:
        return len(self.lessons) - mark

    async def reached(self, after: int, count: int) -> bool:
        """`count` uploads acknowledged since `after` did, or one refused (the test then fails on
        it rather than waiting out its patience)."""
        return self.since(after) >= count or bool(self.refused)

    def slowest(self, since: float, until: float = float("inf")) -> float:
        """The longest an upload sent between `since` and `until` (time.monotonic()) waited for
        its answer."""
        return max((took for sent, took in self.timings if since <= sent < until), default=0.0)


async def uploader(
    client: httpx.AsyncClient, headers: dict[str, str], uploads: Uploads, pause: float = 0.2
) -> None:
    """One creator uploading a short spoken lesson to a course of their own, `pause` seconds
    after each answer, until cancelled."""
    course = await client.post("/courses", json={"title": "Outage", "price": 0}, headers=headers)
    assert course.status_code == 201, course.text
    url = f"/courses/{course.json()['id']}/lessons/upload"
    media = SPEECH.read_bytes()
    n = 0
    while True:
        n += 1
        sent = time.monotonic()
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
            uploads.timings.append((sent, time.monotonic() - sent))
            if response.status_code == 201 and response.json()["transcriptStatus"] == "QUEUED":
                uploads.lessons.append(uuid.UUID(response.json()["id"]))
            else:
                uploads.refused.append(f"{response.status_code} {response.text[:300]}")
        await asyncio.sleep(pause)


async def logged(path: Path, message: str) -> bool:
    """Whether the child's JSON log has a line whose message is `message`."""
    return any(entry.get("msg") == message for entry in json_lines(path))


async def every_job_done(db: asyncpg.Pool, within: float) -> list[asyncpg.Record]:
    """Every job in the database DONE: the acknowledged uploads' and any whose answer a stopped
    load never read."""

    async def all_done() -> list[asyncpg.Record] | None:
        jobs = await db.fetch("SELECT id, lesson_id, status, attempts FROM transcription_jobs")
        return jobs if all(j["status"] == "DONE" for j in jobs) else None

    return await eventually(all_done, within=within, what="every job transcribed", every=0.5)


async def assert_each_job_ran_once(
    db: asyncpg.Pool, jobs: list[asyncpg.Record], worker_logs: list[Path]
) -> None:
    """Claimed once (no second run), one transcript per lesson, and one "transcribed" log line
    per job across the workers' logs."""
    assert [j for j in jobs if j["attempts"] != 1] == []
    transcripts = await db.fetch("SELECT lesson_id FROM transcripts")
    assert sorted(t["lesson_id"] for t in transcripts) == sorted(j["lesson_id"] for j in jobs)
    transcribed = Counter(
        entry.get("job_id")
        for log in worker_logs
        for entry in json_lines(log)
        if entry.get("msg", "").startswith("transcribed ")
    )
    assert transcribed == Counter({str(j["id"]): 1 for j in jobs}), "\n".join(
        log_tail(log) for log in worker_logs
    )
