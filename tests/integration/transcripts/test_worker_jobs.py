"""The transcription task in-process with the real tiny.en model and real PostgreSQL: a job
becomes a transcript; running it again changes nothing; a superseded video, a failing job and a
job held by a live worker are handled; the sweeper re-publishes what NATS never got."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from lms.broker import make_broker
from lms.domain.transcripts import tasks
from lms.domain.transcripts.sweeper import sweep_once
from lms.domain.transcripts.tasks import WorkerRuntime, run_job
from lms.integrations.storage import LocalVideoStorage
from lms.integrations.whisper import (
    Segment,
    Transcriber,
    TranscriptResult,
    choose_device,
    resolve_model,
)
from lms.integrations.whisper.coverage import measure
from lms.settings import Settings
from tests.conftest import TestUser
from tests.integration.transcripts.worker_support import FIXTURES, queued_lesson
from tests.support.wer import word_error_rate


@pytest.fixture(scope="module")
def transcriber() -> Transcriber:
    model = Transcriber(resolve_model("default"), choose_device("cpu"))
    model.load()
    return model


@pytest.fixture
def runtime(db: asyncpg.Pool, settings: Settings, transcriber: Transcriber) -> WorkerRuntime:
    fast = dataclasses.replace(settings, jobs_max_deliver=2, jobs_ack_wait_seconds=3)
    return WorkerRuntime(fast, LocalVideoStorage(fast), transcriber, db)


async def job(db: asyncpg.Pool, job_id: uuid.UUID) -> asyncpg.Record:
    row = await db.fetchrow("SELECT * FROM transcription_jobs WHERE id = $1", job_id)
    assert row is not None
    return row


async def test_a_job_becomes_one_transcript(
    runtime: WorkerRuntime,
    db: asyncpg.Pool,
    settings: Settings,
    creator: TestUser,
    api: httpx.AsyncClient,
) -> None:
    queued = await queued_lesson(db, settings, creator)
    await run_job(runtime, queued.job_id)
    done = await job(db, queued.job_id)
    assert done["status"] == "DONE" and done["attempts"] == 1 and done["finished_at"] is not None
    transcript = await db.fetchrow(
        "SELECT * FROM transcripts WHERE lesson_id = $1", queued.lesson_id
    )
    expected = (FIXTURES / "speech.txt").read_text()
    assert word_error_rate(expected, transcript["text"]) < 0.2, transcript["text"]
    assert transcript["language"] == "en" and transcript["video_version"] == 1
    # Coverage recorded: VAD found the clip's 13 s of speech and the segments cover it.
    assert transcript["speech_seconds"] > 10.0
    assert transcript["speech_coverage"] >= 0.9
    assert transcript["warning"] is None
    shown = await api.get(f"/lessons/{queued.lesson_id}/transcript", headers=creator.headers)
    assert shown.json()["speechCoverage"] == transcript["speech_coverage"]
    assert shown.json()["warning"] is None
    segments = await db.fetch(
        "SELECT seq, start_seconds, end_seconds, text, words FROM transcript_segments"
        " WHERE lesson_id = $1 ORDER BY seq",
        queued.lesson_id,
    )
    assert segments and [s["seq"] for s in segments] == list(range(len(segments)))
    starts = [s["start_seconds"] for s in segments]
    assert starts == sorted(starts) and all(
        s["end_seconds"] >= s["start_seconds"] for s in segments
    )
    assert all(
        s["words"] and {"start", "end", "word", "probability"} <= set(s["words"][0])
        for s in segments
    )
    assert (
        await db.fetchval("SELECT transcript_status FROM lessons WHERE id = $1", queued.lesson_id)
        == "DONE"
    )

    # Delivered again (JetStream redelivery): a DONE job is not run twice.
    await run_job(runtime, queued.job_id)
    assert (await job(db, queued.job_id))["attempts"] == 1
    # Run again for real (re-queued): still exactly one transcript, segments replaced not added.
    await db.execute("UPDATE transcription_jobs SET status = 'QUEUED' WHERE id = $1", queued.job_id)
    await run_job(runtime, queued.job_id)
    assert (
        await db.fetchval("SELECT count(*) FROM transcripts WHERE lesson_id = $1", queued.lesson_id)
        == 1
    )
    count = await db.fetchval(
        "SELECT count(*) FROM transcript_segments WHERE lesson_id = $1", queued.lesson_id
    )
    assert count == len(segments)


async def test_a_transcript_still_short_is_done_with_its_warning(
    db: asyncpg.Pool, settings: Settings, creator: TestUser, api: httpx.AsyncClient
) -> None:
    # What Transcriber.transcribe returns when even the decoding that cannot skip leaves most of
    # the speech without text (a minute of speech, two seconds of words): stored DONE, never
    # quietly, with the warning shown to readers.
    queued = await queued_lesson(db, settings, creator)
    coverage = measure([(0.0, 60.0)], [(0.5, 2.5)])
    short = TranscriptResult(
        language="en",
        language_probability=None,
        duration_seconds=61.0,
        text="Welcome.",
        segments=[Segment(0.5, 2.5, "Welcome.")],
        compute_seconds=3.0,
        coverage=coverage,
        redecoded=True,
    )
    await db.execute(
        "UPDATE transcription_jobs SET status = 'PROCESSING', attempts = 1 WHERE id = $1",
        queued.job_id,
    )
    assert await tasks._store(db, queued.job_id, queued.lesson_id, 1, short)
    assert (await job(db, queued.job_id))["status"] == "DONE"
    shown = await api.get(f"/lessons/{queued.lesson_id}/transcript", headers=creator.headers)
    body = shown.json()
    assert body["status"] == "DONE"
    assert body["speechCoverage"] == pytest.approx(coverage.ratio, abs=1e-4)
    assert body["warning"] == coverage.warning()
    assert body["warning"].startswith("incomplete: 56 s of the 60 s of speech detected")


async def test_a_superseded_video_is_not_transcribed(
    runtime: WorkerRuntime, db: asyncpg.Pool, settings: Settings, creator: TestUser
) -> None:
    queued = await queued_lesson(db, settings, creator)
    await db.execute("UPDATE lessons SET video_version = 2 WHERE id = $1", queued.lesson_id)
    await run_job(runtime, queued.job_id)
    failed = await job(db, queued.job_id)
    assert failed["status"] == "FAILED" and "superseded" in failed["error"]
    assert await db.fetchval("SELECT count(*) FROM transcripts") == 0


async def test_failures_retry_then_fail_and_can_be_requeued(
    runtime: WorkerRuntime,
    db: asyncpg.Pool,
    settings: Settings,
    creator: TestUser,
    api: httpx.AsyncClient,
) -> None:
    queued = await queued_lesson(db, settings, creator, copy=False)  # the stored file is missing
    await run_job(runtime, queued.job_id)
    first = await job(db, queued.job_id)
    assert first["status"] == "QUEUED" and first["attempts"] == 1 and first["published_at"] is None
    assert "missing" in first["error"]
    assert (
        await db.fetchval("SELECT transcript_status FROM lessons WHERE id = $1", queued.lesson_id)
        == "QUEUED"
    )
    await run_job(runtime, queued.job_id)
    second = await job(db, queued.job_id)
    assert second["status"] == "FAILED" and second["attempts"] == 2
    assert (
        await db.fetchval("SELECT transcript_status FROM lessons WHERE id = $1", queued.lesson_id)
        == "FAILED"
    )
    lesson = await api.get(f"/lessons/{queued.lesson_id}", headers=creator.headers)
    assert lesson.json()["transcriptStatus"] == "FAILED"
    requeued = await api.post(f"/lessons/{queued.lesson_id}/transcribe", headers=creator.headers)
    assert requeued.status_code == 202
    again = await job(db, queued.job_id)
    assert again["status"] == "QUEUED" and again["attempts"] == 0 and again["error"] is None


async def test_a_job_held_by_a_live_worker_is_left_to_it(
    runtime: WorkerRuntime, db: asyncpg.Pool, settings: Settings, creator: TestUser
) -> None:
    queued = await queued_lesson(db, settings, creator)
    await db.execute(
        "UPDATE transcription_jobs SET status = 'PROCESSING', attempts = 1, updated_at = now()"
        " WHERE id = $1",
        queued.job_id,
    )

    async def the_other_worker_finishes() -> None:
        await asyncio.sleep(1.0)
        await db.execute(
            "UPDATE transcription_jobs SET status = 'DONE' WHERE id = $1", queued.job_id
        )

    await asyncio.gather(run_job(runtime, queued.job_id), the_other_worker_finishes())
    assert (await job(db, queued.job_id))["attempts"] == 1  # never claimed twice
    assert await db.fetchval("SELECT count(*) FROM transcripts") == 0


@pytest.fixture
async def stream_counter(settings: Settings) -> AsyncIterator[object]:
    broker = make_broker(settings)
    await broker.startup()
    try:
        yield broker
    finally:
        await broker.shutdown()


async def messages(broker: object, stream: str) -> int:
    info = await broker.client.jetstream().stream_info(stream)  # type: ignore[attr-defined]
    return int(info.state.messages)


async def test_the_sweeper_publishes_what_nats_never_got(
    db: asyncpg.Pool, settings: Settings, creator: TestUser, stream_counter: object
) -> None:
    broker = stream_counter
    fresh = await queued_lesson(db, settings, creator, copy=False)
    old = await queued_lesson(db, settings, creator, copy=False)
    await db.execute(
        "UPDATE transcription_jobs SET updated_at = now() - interval '1 minute' WHERE id = $1",
        old.job_id,
    )
    dead = await queued_lesson(db, settings, creator, copy=False)
    await db.execute(
        """UPDATE transcription_jobs SET status = 'PROCESSING', attempts = 1,
                  updated_at = now() - interval '1 hour' WHERE id = $1""",
        dead.job_id,
    )
    spent = await queued_lesson(db, settings, creator, copy=False)
    await db.execute(
        """UPDATE transcription_jobs SET status = 'PROCESSING', attempts = $2,
                  updated_at = now() - interval '1 hour' WHERE id = $1""",
        spent.job_id,
        settings.jobs_max_deliver,
    )
    before = await messages(broker, settings.jobs_stream)
    published = await sweep_once(db, settings, broker)  # type: ignore[arg-type]
    assert published == 1  # the old unpublished one; the fresh one is left to the API
    assert (await job(db, old.job_id))["published_at"] is not None
    assert (await job(db, fresh.job_id))["published_at"] is None
    assert (await job(db, dead.job_id))["status"] == "QUEUED"  # re-queued, published next pass
    assert (await job(db, spent.job_id))["status"] == "FAILED"
    assert await messages(broker, settings.jobs_stream) == before + 1
    assert await sweep_once(db, settings, broker) == 0  # published once, not on every pass  # type: ignore[arg-type]
