"""The transcription worker is not a proxy into our network or our disk (issue 11).

A lesson's external videoUrl is the creator's choice. The worker refuses, before a byte is sent,
a URL that leads to loopback, a private network or a cloud metadata service, however the address
is written and at whichever redirect it appears; it opens what it downloads as a self-contained
media file only, so a playlist naming another lesson's stored video is refused instead of being
transcribed for the attacker; and a download is bounded in size and in time. Refusals fail the
job at once with the reason kept on it. The API refuses the URLs it can judge from their text.

Local media servers run on 127.0.0.1, which production refuses: the runtime here allows exactly
one of them (LMS_VIDEO_FETCH_ALLOW=127.0.0.1:<its port>), and the "target" server, which holds
what an attacker wants, stays refused and must see no request at all.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator

import asyncpg
import httpx
import pytest

from lms.domain.transcripts.tasks import WorkerRuntime, run_job
from lms.integrations.storage import LocalVideoStorage
from lms.integrations.whisper import Transcriber, choose_device, resolve_model
from lms.settings import Settings
from tests.conftest import TestUser
from tests.integration.courses.helpers import new_course
from tests.integration.transcripts.helpers import MakeUser
from tests.integration.transcripts.worker_support import (
    FIXTURES,
    SPEECH,
    external_lesson,
    queued_lesson,
)
from tests.support.media_server import MediaServer, media_server
from tests.support.wer import word_error_rate

SPEECH_BYTES = SPEECH.read_bytes()


@pytest.fixture(scope="module")
def transcriber() -> Transcriber:
    # Loaded on first use: only the jobs that get as far as transcribing pay for it.
    return Transcriber(resolve_model("default"), choose_device("cpu"))


@pytest.fixture
def allowed() -> Iterator[MediaServer]:
    """Where the operator hosts media: the one server the runtime's allow-list names."""
    with media_server() as server:
        yield server


@pytest.fixture
def target() -> Iterator[MediaServer]:
    """An internal service on loopback, not allowed: it serves a real recording, so a fetch
    that got through would end in a transcript."""
    with media_server() as server:
        server.serve("/speech.mp4", SPEECH_BYTES)
        yield server


def worker_runtime(
    db: asyncpg.Pool, settings: Settings, transcriber: Transcriber, **changes: object
) -> WorkerRuntime:
    fast = dataclasses.replace(settings, jobs_max_deliver=2, jobs_ack_wait_seconds=3, **changes)
    return WorkerRuntime(fast, LocalVideoStorage(fast), transcriber, db)


@pytest.fixture
def runtime(
    db: asyncpg.Pool, settings: Settings, transcriber: Transcriber, allowed: MediaServer
) -> WorkerRuntime:
    return worker_runtime(db, settings, transcriber, video_fetch_allow=(allowed.endpoint,))


async def job_row(db: asyncpg.Pool, job_id: object) -> asyncpg.Record:
    row = await db.fetchrow("SELECT * FROM transcription_jobs WHERE id = $1", job_id)
    assert row is not None
    return row


async def assert_failed_at_once(db: asyncpg.Pool, job_id: object, error: str) -> None:
    """FAILED on the first attempt, the reason kept, the lesson FAILED, and no transcript."""
    job = await job_row(db, job_id)
    assert job["status"] == "FAILED" and job["attempts"] == 1, dict(job)
    assert error in job["error"], job["error"]
    status = await db.fetchval(
        "SELECT transcript_status FROM lessons WHERE id = $1", job["lesson_id"]
    )
    assert status == "FAILED"
    assert await db.fetchval("SELECT count(*) FROM transcripts") == 0


Url = Callable[[MediaServer, MediaServer], str]
REFUSED: dict[str, Url] = {
    "loopback": lambda target, allowed: f"http://127.0.0.1:{target.port}/speech.mp4",
    "localhost": lambda target, allowed: f"http://localhost:{target.port}/speech.mp4",
    "short-form": lambda target, allowed: f"http://127.1:{target.port}/speech.mp4",
    "integer-form": lambda target, allowed: f"http://2130706433:{target.port}/speech.mp4",
    "ipv4-mapped": lambda target, allowed: f"http://[::ffff:127.0.0.1]:{target.port}/speech.mp4",
    "private": lambda target, allowed: "http://10.255.255.1:8080/speech.mp4",
    "metadata": lambda target, allowed: "http://169.254.169.254/latest/meta-data/iam/",
    "redirect-to-loopback": lambda target, allowed: allowed.redirect(
        "/speech.mp4", f"http://127.0.0.1:{target.port}/speech.mp4"
    ),
    "redirect-to-localhost": lambda target, allowed: allowed.redirect(
        "/moved.mp4", f"http://localhost:{target.port}/speech.mp4", status=307
    ),
}


@pytest.mark.parametrize("kind", sorted(REFUSED))
async def test_urls_into_our_network_fail_the_job_unfetched(
    runtime: WorkerRuntime,
    db: asyncpg.Pool,
    creator: TestUser,
    target: MediaServer,
    allowed: MediaServer,
    kind: str,
) -> None:
    lesson = await external_lesson(db, creator, REFUSED[kind](target, allowed))
    await run_job(runtime, lesson.job_id)
    await assert_failed_at_once(db, lesson.job_id, "DownloadRefused: refused to fetch")
    assert target.requests == []
    assert list(runtime.scratch_dir.iterdir()) == []


PLAYLIST = (
    "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:20\n#EXT-X-MEDIA-SEQUENCE:0\n"
    "#EXTINF:13.0,\n{}\n#EXT-X-ENDLIST\n"
)


@pytest.mark.parametrize("reference", ["relative", "absolute"])
async def test_a_playlist_naming_another_lessons_video_is_not_transcribed(
    runtime: WorkerRuntime,
    db: asyncpg.Pool,
    settings: Settings,
    creator: TestUser,
    make_user: MakeUser,
    allowed: MediaServer,
    reference: str,
) -> None:
    """Another creator's stored video (LMS_DATA_DIR/media/lessons/<id>/v1.mp4) named by an HLS
    playlist the attacker serves: the worker downloads the playlist to LMS_DATA_DIR/tmp/worker,
    and FFmpeg, left to itself, would read the stored video and transcribe it into the
    attacker's lesson."""
    victim = await queued_lesson(db, settings, await make_user("CREATOR"))
    stored = settings.media_dir / victim.key
    assert stored.exists()
    segment = f"../../media/{victim.key}" if reference == "relative" else str(stored)
    url = allowed.serve("/lesson.m3u8", PLAYLIST.format(segment).encode())
    attack = await external_lesson(db, creator, url)
    await run_job(runtime, attack.job_id)
    # Saved without the URL's .m3u8, FFmpeg does not take it for a playlist; were it named so,
    # the demuxer allow-list would refuse it (tests/unit/test_media_probe.py).
    await assert_failed_at_once(db, attack.job_id, "UnsupportedMedia: not a media file")
    assert allowed.paths() == ["/lesson.m3u8"]


async def test_an_allowed_server_is_fetched_and_transcribed(
    runtime: WorkerRuntime, db: asyncpg.Pool, creator: TestUser, allowed: MediaServer
) -> None:
    url = allowed.serve("/lectures/speech.mp4", SPEECH_BYTES)
    lesson = await external_lesson(db, creator, allowed.redirect("/short", url))
    await run_job(runtime, lesson.job_id)
    assert (await job_row(db, lesson.job_id))["status"] == "DONE"
    text = await db.fetchval("SELECT text FROM transcripts WHERE lesson_id = $1", lesson.lesson_id)
    assert word_error_rate((FIXTURES / "speech.txt").read_text(), text) < 0.2, text
    assert allowed.paths() == ["/short", "/lectures/speech.mp4"]
    assert list(runtime.scratch_dir.iterdir()) == []  # the download is gone


async def test_a_download_over_the_size_limit_is_cut_off(
    db: asyncpg.Pool,
    settings: Settings,
    transcriber: Transcriber,
    creator: TestUser,
    allowed: MediaServer,
) -> None:
    runtime = worker_runtime(
        db, settings, transcriber, video_fetch_allow=(allowed.endpoint,), video_fetch_max_bytes=1000
    )
    lesson = await external_lesson(db, creator, allowed.serve("/speech.mp4", SPEECH_BYTES))
    await run_job(runtime, lesson.job_id)
    job = await job_row(db, lesson.job_id)
    assert job["status"] == "QUEUED" and "over the 1000 byte limit" in job["error"], dict(job)
    assert list(runtime.scratch_dir.iterdir()) == []


async def test_a_download_that_never_ends_is_cut_off(
    db: asyncpg.Pool,
    settings: Settings,
    transcriber: Transcriber,
    creator: TestUser,
    allowed: MediaServer,
) -> None:
    """A server that is never silent long enough to trip the stall bound, but never done:
    sending a byte every 0.1 s, it would take 6 s; the whole download is given 1 s."""
    runtime = worker_runtime(
        db,
        settings,
        transcriber,
        video_fetch_allow=(allowed.endpoint,),
        video_fetch_timeout_seconds=1,
    )
    url = allowed.serve("/slow.mp4", SPEECH_BYTES[:60], trickle=0.1)
    lesson = await external_lesson(db, creator, url)
    await run_job(runtime, lesson.job_id)
    job = await job_row(db, lesson.job_id)
    assert job["status"] == "QUEUED" and "took longer than 1 s" in job["error"], dict(job)
    assert list(runtime.scratch_dir.iterdir()) == []


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/v.mp4",
        "http://127.1/v.mp4",
        "http://2130706433/v.mp4",
        "http://[::1]/v.mp4",
        "http://[::ffff:127.0.0.1]/v.mp4",
        "http://localhost:8080/v.mp4",
        "http://10.0.0.5/v.mp4",
        "https://192.168.1.20/v.mp4",
        "http://100.64.0.1/v.mp4",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://8.8.8.8:5432/v.mp4",
    ],
)
async def test_the_api_refuses_what_the_url_itself_shows(
    api: httpx.AsyncClient, db: asyncpg.Pool, creator: TestUser, url: str
) -> None:
    course = await new_course(api, creator)
    response = await api.post(
        f"/courses/{course['id']}/lessons",
        json={"title": "Lesson", "videoUrl": url},
        headers=creator.headers,
    )
    assert response.status_code == 400, response.text
    # An IPv6 literal may already be refused by the body's URL pattern (Validation failed).
    assert response.json()["detail"].startswith(
        ("videoUrl must be a public http(s) URL: ", "Validation failed")
    ), response.text
    assert await db.fetchval("SELECT count(*) FROM lessons") == 0
    assert await db.fetchval("SELECT count(*) FROM transcription_jobs") == 0


async def test_the_api_takes_names_and_public_addresses(
    api: httpx.AsyncClient, db: asyncpg.Pool, creator: TestUser
) -> None:
    course = await new_course(api, creator)
    for url in ("https://videos.example.test/1.mp4", "http://93.184.216.34/2.mp4"):
        response = await api.post(
            f"/courses/{course['id']}/lessons",
            json={"title": "Lesson", "videoUrl": url},
            headers=creator.headers,
        )
        assert response.status_code == 201, response.text
    assert await db.fetchval("SELECT count(*) FROM transcription_jobs") == 2
