"""The `lms.transcribe` task run by workers: claim the job, fetch the media and record its length
(the watch rule needs it, and transcription takes a while), decode it, run Whisper, store text and
timed segments in one transaction, and record the outcome.

At-most-once in effect, at-least-once underneath: JetStream may deliver a job again (a worker
died), so the claim is a lease in PostgreSQL (renewed by a heartbeat while the job runs) and the
write replaces the lesson's transcript rather than adding one. A job that fails is retried by the
sweeper after a pause, up to LMS_JOBS_MAX_DELIVER attempts, then marked FAILED with its error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from lms.broker import JobsBroker
from lms.db.queries import events as events_sql
from lms.db.queries import lessons as lessons_sql
from lms.db.queries import transcription_jobs as sql
from lms.db.tables import JobStatus, TranscriptStatus
from lms.domain.events.log import record_event
from lms.domain.transcripts.jobs import TRANSCRIBE_TASK, record_transcript_failed
from lms.integrations.fetch_policy import FetchPolicy
from lms.integrations.media import media_duration
from lms.integrations.storage import LocalVideoStorage, VideoStorage
from lms.integrations.whisper import (
    Transcriber,
    TranscriptResult,
    WhisperError,
    decode_audio,
    download,
)
from lms.invariants import present
from lms.observability.metrics import (
    TRANSCRIBED_AUDIO_SECONDS,
    TRANSCRIPT_SPEECH_COVERAGE,
    TRANSCRIPTION_COMPUTE_SECONDS,
    TRANSCRIPTION_OUTCOMES,
    TRANSCRIPTION_REDECODES,
    TRANSCRIPTION_SPEED,
)
from lms.settings import Settings

log = logging.getLogger("lms.transcribe")


@dataclass
class WorkerRuntime:
    """What the task needs, built once per worker process by run_worker."""

    settings: Settings
    storage: VideoStorage
    transcriber: Transcriber
    db: asyncpg.Pool

    @property
    def lease_seconds(self) -> float:
        return float(self.settings.jobs_ack_wait_seconds)

    @property
    def scratch_dir(self) -> Path:
        return self.settings.data_dir / "tmp" / "worker"

    @property
    def fetch_policy(self) -> FetchPolicy:
        """Where media may be downloaded from (lms.integrations.fetch_policy)."""
        return FetchPolicy.from_entries(self.settings.video_fetch_allow)


_runtime: WorkerRuntime | None = None


def install(runtime: WorkerRuntime) -> None:
    global _runtime
    _runtime = runtime


def register(broker: JobsBroker) -> None:
    broker.register_task(transcribe, task_name=TRANSCRIBE_TASK)


async def transcribe(job_id: str) -> None:
    runtime = present(_runtime, "run_worker installs the runtime before listening")
    await run_job(runtime, uuid.UUID(job_id))


async def claim_when_free(
    db: asyncpg.Pool, job_id: uuid.UUID, lease: float
) -> asyncpg.Record | None:
    """Claim the job; while another worker's lease is live (it heartbeats), wait for it to finish
    or lapse: a redelivery is either a duplicate (nothing to do) or a dead worker's job."""
    deadline = time.monotonic() + 3 * lease
    while True:
        job = await sql.claim(db, job_id, lease)
        if job is not None:
            return job
        current = await sql.get(db, job_id)
        if current is None or current["status"] in (JobStatus.DONE, JobStatus.FAILED):
            return None
        if time.monotonic() > deadline:
            log.warning("job %s is still held by a live worker; leaving it", job_id)
            return None
        await asyncio.sleep(min(lease / 3, 2.0))


async def run_job(runtime: WorkerRuntime, job_id: uuid.UUID) -> None:
    db = runtime.db
    job = await claim_when_free(db, job_id, runtime.lease_seconds)
    if job is None:
        return
    beating = asyncio.create_task(_heartbeat(db, job_id, runtime.lease_seconds / 3))
    lesson_id, version = job["lesson_id"], job["video_version"]
    try:
        await sql.set_lesson_status(db, lesson_id, version, TranscriptStatus.PROCESSING.value)
        lesson = await lessons_sql.by_id(db, lesson_id)
        if lesson is None or lesson["video_version"] != version:
            await _finish(db, job_id, JobStatus.FAILED, "superseded: the lesson has a newer video")
            return
        async with media_file(runtime, lesson) as path:
            await _record_duration(db, lesson, path)
            audio = await asyncio.to_thread(decode_audio, path)
        result = await asyncio.to_thread(runtime.transcriber.transcribe, audio)
        stored = await _store(db, job_id, lesson_id, version, result)
        _record(job_id, lesson_id, result, stored)
    except Exception as exc:
        # Media refused for what it is (a URL into our network, a playlist) fails at once:
        # another attempt would only be refused again.
        final = isinstance(exc, WhisperError) and exc.permanent
        await _failed(
            db, job, f"{type(exc).__name__}: {exc}", runtime.settings.jobs_max_deliver, final=final
        )
    finally:
        beating.cancel()


async def _record_duration(db: asyncpg.Pool, lesson: asyncpg.Record, path: Path) -> None:
    """A lesson whose video length is unknown (a videoUrl, a Cloudinary notification without
    one) cannot be completed while watching is required: record it as soon as the file is here,
    before the transcription, which may take minutes or fail."""
    if lesson["duration_seconds"] is not None:
        return
    seconds = await asyncio.to_thread(media_duration, path)
    if seconds is not None:
        await sql.record_duration(db, lesson["id"], lesson["video_version"], seconds)


async def _heartbeat(db: asyncpg.Pool, job_id: uuid.UUID, every: float) -> None:
    while True:
        await asyncio.sleep(every)
        with contextlib.suppress(Exception):  # the database briefly away: the lease is generous
            await sql.heartbeat(db, job_id)


@contextlib.asynccontextmanager
async def media_file(runtime: WorkerRuntime, lesson: asyncpg.Record) -> AsyncIterator[Path]:
    """A local file with the lesson's media: the stored file itself, or a download (the audio-only
    rendition where the store has one) removed afterwards."""
    provider, key = lesson["video_provider"], lesson["video_key"]
    if provider == "local":
        path = LocalVideoStorage(runtime.settings).local_path(key)
        if path is None or not path.exists():
            raise FileNotFoundError(f"the stored video {key} is missing")
        yield path
        return
    if provider == "cloudinary":
        url = runtime.storage.audio_url(key) or runtime.storage.playback_url(key)
    else:
        url = lesson["video_url"]
    runtime.scratch_dir.mkdir(parents=True, exist_ok=True)
    # Cloudinary's URLs (public, ours) take the same guarded path as a creator's: one way in,
    # so no caller can forget the guard.
    path = await download(
        url,
        runtime.scratch_dir,
        policy=runtime.fetch_policy,
        max_bytes=runtime.settings.video_fetch_max_bytes,
        total_seconds=runtime.settings.video_fetch_timeout_seconds,
    )
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


async def _store(
    db: asyncpg.Pool,
    job_id: uuid.UUID,
    lesson_id: uuid.UUID,
    version: int,
    result: TranscriptResult,
) -> bool:
    segments = [
        (
            seq,
            s.start,
            s.end,
            s.text.strip(),
            [
                {"start": w.start, "end": w.end, "word": w.word, "probability": w.probability}
                for w in s.words
            ],
        )
        for seq, s in enumerate(result.segments)
    ]
    async with db.acquire() as conn, conn.transaction():
        if await sql.lock_lesson_version(conn, lesson_id) != version:
            await sql.finish(
                conn, job_id, JobStatus.FAILED.value, "superseded: the lesson has a newer video"
            )
            return False
        await sql.store_transcript(
            conn,
            lesson_id=lesson_id,
            video_version=version,
            language=result.language,
            duration_seconds=result.duration_seconds,
            text=result.text,
            segments=segments,
            speech_seconds=result.coverage.speech_seconds,
            speech_coverage=round(result.coverage.ratio, 4),
            warning=result.warning,
        )
        await sql.finish(conn, job_id, JobStatus.DONE.value, None)
        await record_event(
            conn,
            "transcript.ready",
            {
                "lessonId": lesson_id,
                "courseId": await events_sql.course_of_lesson(conn, lesson_id),
                "jobId": job_id,
                "videoVersion": version,
                "language": result.language,
                "durationSeconds": result.duration_seconds,
                "speechCoverage": round(result.coverage.ratio, 4),
            },
        )
    return True


async def _finish(
    db: asyncpg.Pool, job_id: uuid.UUID, status: JobStatus, error: str | None
) -> None:
    await sql.finish(db, job_id, status.value, error)


def _record(
    job_id: uuid.UUID, lesson_id: uuid.UUID, result: TranscriptResult, stored: bool
) -> None:
    TRANSCRIPTION_OUTCOMES.labels("done" if stored else "superseded").inc()
    TRANSCRIBED_AUDIO_SECONDS.inc(result.duration_seconds)
    TRANSCRIPTION_COMPUTE_SECONDS.inc(result.compute_seconds)
    TRANSCRIPTION_SPEED.set(result.realtime_factor)
    TRANSCRIPT_SPEECH_COVERAGE.observe(result.coverage.ratio)
    if result.redecoded:
        TRANSCRIPTION_REDECODES.labels(
            "still_short" if result.coverage.short else "recovered"
        ).inc()
    extra = {
        "job_id": str(job_id),
        "lesson_id": str(lesson_id),
        "segments": len(result.segments),
        "language": result.language,
        "realtime_factor": round(result.realtime_factor, 2),
        "speech_seconds": result.coverage.speech_seconds,
        "speech_coverage": round(result.coverage.ratio, 4),
        "redecoded": result.redecoded,
    }
    if result.warning:
        # Stored on the transcript too (its readers see it); here for the operator.
        log.warning("transcript is short of speech: %s", result.warning, extra=extra)
    log.info(
        "transcribed %.1fs of audio in %.1fs (%.1fx real time), %.0f%% of the speech covered",
        result.duration_seconds,
        result.compute_seconds,
        result.realtime_factor,
        result.coverage.ratio * 100,
        extra=extra,
    )


async def _failed(
    db: asyncpg.Pool, job: asyncpg.Record, error: str, max_attempts: int, *, final: bool = False
) -> None:
    job_id, lesson_id, version = job["id"], job["lesson_id"], job["video_version"]
    final = final or job["attempts"] >= max_attempts
    async with db.acquire() as conn, conn.transaction():
        if final:
            await sql.finish(conn, job_id, JobStatus.FAILED.value, error)
            await sql.set_lesson_status(conn, lesson_id, version, TranscriptStatus.FAILED.value)
            await record_transcript_failed(conn, job_id, lesson_id, version, error)
        else:
            await sql.retry_later(conn, job_id, error)
            await sql.set_lesson_status(conn, lesson_id, version, TranscriptStatus.QUEUED.value)
    TRANSCRIPTION_OUTCOMES.labels("failed" if final else "retry").inc()
    log.error(
        "job %s failed (attempt %d of %d%s): %s",
        job_id,
        job["attempts"],
        max_attempts,
        ", giving up" if final else ", will retry",
        error,
        extra={"job_id": str(job_id), "lesson_id": str(lesson_id)},
    )


__all__ = ["WorkerRuntime", "install", "register", "run_job"]
