"""Faults, with real processes: a worker killed in the middle of a job (another finishes it and
exactly one transcript is stored), and NATS stopped before an upload (the job is delivered once
NATS is back). These tests run their own NATS server and their own `lms` processes, so they can
stop them; the machine's shared services are never touched."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import av
import httpx
import numpy as np
import pytest

from lms.embedded import EmbeddedNats
from lms.integrations.whisper import decode_audio
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
    wait_for_status,
)
from tests.integration.transcripts.worker_support import FIXTURES, SPEECH, queued_lesson
from tests.support.wer import word_error_rate

pytestmark = pytest.mark.slow
SPEECH_TEXT = (FIXTURES / "speech.txt").read_text().strip()


@pytest.fixture
def nats(tmp_path: Path) -> Iterator[EmbeddedNats]:
    server = EmbeddedNats(tmp_path / "nats")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def fault_env(settings: Settings, nats_url: str) -> dict[str, str]:
    assert settings.database_url and settings.jwt_secret
    return service_env(
        database_url=settings.database_url,
        nats_url=nats_url,
        data_dir=settings.data_dir,
        jwt_secret=settings.jwt_secret,
    )


def long_recording(path: Path, repeats: int) -> Path:
    """The speech fixture's audio `repeats` times over, as AAC in M4A: a job long enough to kill."""
    audio = np.tile(decode_audio(SPEECH), repeats)
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=16000)
        stream.layout = "mono"  # type: ignore[union-attr]
        for start in range(0, len(audio), 16000):
            frame = av.AudioFrame.from_ndarray(
                audio[None, start : start + 16000], format="flt", layout="mono"
            )
            frame.sample_rate = 16000
            for packet in stream.encode(frame):  # type: ignore[union-attr]
                container.mux(packet)
        for packet in stream.encode(None):  # type: ignore[union-attr]
            container.mux(packet)
    return path


async def test_a_killed_workers_job_is_finished_by_another(
    db: asyncpg.Pool, settings: Settings, creator: TestUser, nats: EmbeddedNats, tmp_path: Path
) -> None:
    url = nats.running_url()
    assert url
    env = fault_env(settings, url)
    queued = await queued_lesson(
        db, settings, creator, media=long_recording(tmp_path / "long.m4a", 8)
    )
    # Nobody publishes this job: the worker's sweeper finds it QUEUED and unpublished.
    first = spawn(env, "worker", log=tmp_path / "worker1.log")
    second = None
    try:
        await wait_for_status(db, queued.job_id, "PROCESSING", within=90)

        async def running_it() -> bool:
            """Mid-job: claimed, the lesson marked PROCESSING, and the worker's lease heartbeat
            has landed since (it is alive inside the job, not merely past the claim)."""
            return bool(
                await db.fetchval(
                    """SELECT j.updated_at > j.started_at AND l.transcript_status = 'PROCESSING'
                       FROM transcription_jobs j JOIN lessons l ON l.id = j.lesson_id
                       WHERE j.id = $1 AND j.status = 'PROCESSING'""",
                    queued.job_id,
                )
            )

        await eventually(running_it, within=30, what="the first worker running the job")
        os.killpg(first.pid, signal.SIGKILL)  # mid-job: no ack, no clean-up
        first.wait()
        assert (
            await db.fetchval("SELECT status FROM transcription_jobs WHERE id = $1", queued.job_id)
        ) == "PROCESSING"
        second = spawn(env, "worker", log=tmp_path / "worker2.log")
        done = await wait_for_status(db, queued.job_id, "DONE", within=240)
    finally:
        stop(first)
        if second is not None:
            stop(second)
    assert done["attempts"] == 2
    assert (
        await db.fetchval("SELECT count(*) FROM transcripts WHERE lesson_id = $1", queued.lesson_id)
        == 1
    )
    transcript = await db.fetchrow(
        "SELECT text, speech_coverage, warning FROM transcripts WHERE lesson_id = $1",
        queued.lesson_id,
    )
    # All of the speech, eight times over: this once came out with 35 words (one copy's worth)
    # when sampling in the temperature fallback judged windows silent and skipped them (see
    # lms.integrations.whisper.coverage); a short first decoding is now decoded again.
    assert transcript["warning"] is None
    assert transcript["speech_coverage"] >= 0.97
    expected = " ".join([SPEECH_TEXT] * 8)
    wer = word_error_rate(expected, transcript["text"])
    assert wer < 0.2, f"WER {wer:.3f}: {transcript['text']!r}"
    seqs = [
        r["seq"]
        for r in await db.fetch(
            "SELECT seq FROM transcript_segments WHERE lesson_id = $1 ORDER BY seq",
            queued.lesson_id,
        )
    ]
    assert seqs == list(range(len(seqs)))  # one set of segments, not two interleaved


async def test_a_job_queued_while_nats_is_down_is_delivered_when_it_returns(
    db: asyncpg.Pool, settings: Settings, creator: TestUser, nats: EmbeddedNats, tmp_path: Path
) -> None:
    url = nats.running_url()
    assert url
    env = fault_env(settings, url)
    port = free_port()
    api = spawn({**env, "LMS_PORT": str(port)}, "serve", "--workers", "1", log=tmp_path / "api.log")
    worker = None
    try:
        assert await asyncio.to_thread(wait_ready, port, 60), log_tail(tmp_path / "api.log")
        nats.stop()
        worker = spawn(env, "worker", log=tmp_path / "worker.log")  # waits for NATS
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", headers=creator.headers, timeout=30
        ) as client:
            course = (await client.post("/courses", json={"title": "Outage", "price": 0})).json()
            uploaded = await client.post(
                f"/courses/{course['id']}/lessons/upload",
                files={"file": ("speech.mp4", SPEECH.read_bytes(), "video/mp4")},
                data={"title": "Spoken"},
            )
            assert uploaded.status_code == 201, uploaded.text
            lesson = uploaded.json()
            assert lesson["transcriptStatus"] == "QUEUED"
            job = await db.fetchrow(
                "SELECT id, published_at FROM transcription_jobs WHERE lesson_id = $1",
                uuid.UUID(lesson["id"]),
            )
            assert job["published_at"] is None  # committed, but NATS could not take it

            async def worker_waiting_for_nats() -> bool:
                """The worker is up and trying to reach NATS (its retry, or the client's own
                reconnect attempts, logged)."""
                return any(
                    entry.get("logger") == "nats.aio.client"
                    or str(entry.get("msg", "")).startswith("NATS not reachable yet")
                    for entry in json_lines(tmp_path / "worker.log")
                )

            await eventually(
                worker_waiting_for_nats, within=60, what="the worker finding NATS down"
            )
            nats.start()  # same port, same store
            await wait_for_status(db, job["id"], "DONE", within=120)
            shown = (await client.get(f"/lessons/{lesson['id']}")).json()
            assert shown["transcriptStatus"] == "DONE"
    finally:
        stop(api)
        if worker is not None:
            stop(worker)
    assert (
        await db.fetchval(
            "SELECT count(*) FROM transcripts WHERE lesson_id = $1", uuid.UUID(lesson["id"])
        )
        == 1
    )
