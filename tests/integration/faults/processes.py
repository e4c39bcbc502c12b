"""Fault tests run `lms serve` and `lms worker` as real processes against servers of their own, so
they can stop and restart those servers; the machine's shared services are never touched."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import asyncpg

from tests.helpers import child_env, eventually


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
