"""A lesson's video length is known as soon as the video is: an upload is measured by its probe
(test_upload.py), a Cloudinary notification carries it (test_cloudinary_flow.py), and where
neither can say (a videoUrl, a notification without one) the worker measures the file it fetches
before it transcribes it, so a transcription that takes long or fails leaves the watch rule
(requireWatchToComplete) something to measure against."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import av
import pytest

from lms.domain.transcripts.tasks import WorkerRuntime, run_job
from lms.integrations.media import media_duration, probe_video
from lms.integrations.storage import LocalVideoStorage
from lms.integrations.whisper import Transcriber, choose_device, resolve_model
from lms.settings import Settings
from tests.conftest import TestUser
from tests.integration.transcripts.worker_support import (
    FIXTURES,
    external_lesson,
    queued_lesson,
)
from tests.support.media_server import MediaServer, media_server

TINY = FIXTURES / "tiny.mp4"  # 2 s of video with a tone


@pytest.fixture(scope="module")
def transcriber() -> Transcriber:
    # Loaded on first use: none of these jobs gets as far as transcribing.
    return Transcriber(resolve_model("default"), choose_device("cpu"))


@pytest.fixture
def allowed() -> Iterator[MediaServer]:
    with media_server() as server:
        yield server


@pytest.fixture
def runtime(
    db: asyncpg.Pool, settings: Settings, transcriber: Transcriber, allowed: MediaServer
) -> WorkerRuntime:
    fast = dataclasses.replace(
        settings,
        jobs_max_deliver=2,
        jobs_ack_wait_seconds=3,
        video_fetch_allow=(allowed.endpoint,),
    )
    return WorkerRuntime(fast, LocalVideoStorage(fast), transcriber, db)


def silent(target: Path) -> Path:
    """tiny.mp4 without its sound: a real video whose transcription fails (no audio stream)."""
    with av.open(str(TINY)) as src, av.open(str(target), "w", format="mp4") as out:
        video = src.streams.video[0]
        stream = out.add_stream_from_template(video)
        for packet in src.demux(video):
            if packet.dts is None:
                continue
            packet.stream = stream
            out.mux(packet)
    return target


async def duration_of(db: asyncpg.Pool, lesson_id: uuid.UUID) -> float | None:
    seconds: float | None = await db.fetchval(
        "SELECT duration_seconds FROM lessons WHERE id = $1", lesson_id
    )
    return seconds


async def test_a_linked_video_is_measured_before_its_transcription(
    runtime: WorkerRuntime,
    db: asyncpg.Pool,
    creator: TestUser,
    allowed: MediaServer,
    tmp_path: Path,
) -> None:
    """A videoUrl: nothing measures it until the worker has the file. Its transcription fails
    here (the video has no sound), and its length is recorded all the same."""
    video = silent(tmp_path / "silent.mp4")
    lesson = await external_lesson(db, creator, allowed.serve("/silent.mp4", video.read_bytes()))
    assert await duration_of(db, lesson.lesson_id) is None
    await run_job(runtime, lesson.job_id)
    job = await db.fetchrow(
        "SELECT status, error FROM transcription_jobs WHERE id = $1", lesson.job_id
    )
    assert "no audio stream" in job["error"], dict(job)
    expected = probe_video(video).duration_seconds
    assert await duration_of(db, lesson.lesson_id) == pytest.approx(expected, abs=0.01)


async def test_a_stored_video_of_unknown_length_is_measured_too(
    runtime: WorkerRuntime, db: asyncpg.Pool, settings: Settings, creator: TestUser, tmp_path: Path
) -> None:
    queued = await queued_lesson(db, settings, creator, silent(tmp_path / "silent.mp4"))
    await run_job(runtime, queued.job_id)
    assert await duration_of(db, queued.lesson_id) == pytest.approx(2.0, abs=0.2)


async def test_a_length_measured_when_the_video_was_attached_stays(
    runtime: WorkerRuntime, db: asyncpg.Pool, settings: Settings, creator: TestUser, tmp_path: Path
) -> None:
    queued = await queued_lesson(db, settings, creator, silent(tmp_path / "silent.mp4"))
    await db.execute("UPDATE lessons SET duration_seconds = 2.5 WHERE id = $1", queued.lesson_id)
    await run_job(runtime, queued.job_id)
    assert await duration_of(db, queued.lesson_id) == 2.5


def test_an_audio_rendition_is_measured_like_the_video() -> None:
    """Cloudinary gives the worker an audio-only rendition of the video: its length is the
    video's."""
    assert media_duration(FIXTURES / "tone.m4a") == pytest.approx(1.0, abs=0.1)
    assert media_duration(TINY) == pytest.approx(probe_video(TINY).duration_seconds)
    assert media_duration(FIXTURES / "not-a-video.txt") is None
    assert media_duration(FIXTURES / "pixel.png") is None
