"""POST /courses/:id/lessons/upload against local storage: the video is streamed to disk, judged
by its bytes, stored under LMS_DATA_DIR/media, served back with a signed URL and Range support,
and committed with its lesson and transcription job; every refusal leaves nothing behind."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import asyncpg
import httpx
import pytest

from lms.settings import Settings
from tests.conftest import TestUser
from tests.integration.courses.helpers import new_course, published_course

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


@pytest.fixture(autouse=True)
def empty_media(settings: Settings) -> None:
    """Stored files outlive the tables the db fixture empties: start each test without any."""
    shutil.rmtree(settings.media_dir, ignore_errors=True)


def form(path: Path, title: str = "Intro", **fields: str) -> dict[str, object]:
    return {
        "files": {"file": (path.name, path.read_bytes(), "application/octet-stream")},
        "data": {"title": title, **fields},
    }


def stored_files(settings: Settings) -> list[Path]:
    return (
        [p for p in settings.media_dir.rglob("*") if p.is_file()]
        if settings.media_dir.exists()
        else []
    )


def leftover_uploads(settings: Settings) -> list[Path]:
    tmp = settings.data_dir / "tmp" / "uploads"
    return list(tmp.iterdir()) if tmp.exists() else []


async def test_upload_makes_a_lesson_with_its_video_and_job(
    api: httpx.AsyncClient, creator: TestUser, db: asyncpg.Pool, settings: Settings
) -> None:
    course = await new_course(api, creator)
    video = FIXTURES / "tiny.mp4"
    response = await api.post(
        f"/courses/{course['id']}/lessons/upload",
        headers=creator.headers,
        **form(video, description="First steps"),
    )
    assert response.status_code == 201, response.text
    lesson = response.json()
    assert (
        lesson["title"] == "Intro"
        and lesson["order"] == 1
        and lesson["transcriptStatus"] == "QUEUED"
    )
    assert lesson["description"] == "First steps" and lesson["durationSeconds"] == pytest.approx(
        2.0, abs=0.3
    )
    row = await db.fetchrow(
        "SELECT video_provider, video_key, video_version FROM lessons WHERE id = $1",
        uuid.UUID(lesson["id"]),
    )
    assert row["video_provider"] == "local" and row["video_version"] == 1
    assert (settings.media_dir / row["video_key"]).read_bytes() == video.read_bytes()
    job = await db.fetchrow("SELECT status, video_version, published_at FROM transcription_jobs")
    assert (
        job["status"] == "QUEUED" and job["video_version"] == 1 and job["published_at"] is not None
    )
    assert leftover_uploads(settings) == []

    # The owner's videoUrl is signed and serves the bytes, ranges included.
    url = httpx.URL(lesson["videoUrl"])
    whole = await api.get(url.raw_path.decode())
    assert whole.status_code == 200 and whole.content == video.read_bytes()
    part = await api.get(url.raw_path.decode(), headers={"Range": "bytes=0-99"})
    assert part.status_code == 206 and part.content == video.read_bytes()[:100]
    unsigned = await api.get(url.path)
    assert unsigned.status_code == 403


@pytest.mark.parametrize("name", ["not-a-video.txt", "pixel.png", "tone.m4a"])
async def test_not_a_video_is_415_and_leaves_nothing(
    api: httpx.AsyncClient, creator: TestUser, db: asyncpg.Pool, settings: Settings, name: str
) -> None:
    course = await new_course(api, creator)
    # Whatever the client claims: the bytes decide.
    body = form(FIXTURES / name)
    body["files"] = {"file": ("lesson.mp4", (FIXTURES / name).read_bytes(), "video/mp4")}
    response = await api.post(
        f"/courses/{course['id']}/lessons/upload", headers=creator.headers, **body
    )
    assert response.status_code == 415, response.text
    assert await db.fetchval("SELECT count(*) FROM lessons") == 0
    assert await db.fetchval("SELECT count(*) FROM transcription_jobs") == 0
    assert stored_files(settings) == [] and leftover_uploads(settings) == []


async def test_over_the_configured_maximum_is_413(
    api: httpx.AsyncClient,
    creator: TestUser,
    db: asyncpg.Pool,
    settings: Settings,
    app,  # type: ignore[no-untyped-def]
) -> None:
    await db.execute("UPDATE system_settings SET max_upload_bytes = 1048576")
    await app.state.ctx.system.reload()
    course = await new_course(api, creator)
    big = settings.data_dir / "big.mp4"
    big.write_bytes((FIXTURES / "tiny.mp4").read_bytes() + b"\0" * (1024 * 1024 + 1))
    try:
        response = await api.post(
            f"/courses/{course['id']}/lessons/upload", headers=creator.headers, **form(big)
        )
    finally:
        big.unlink()
    assert response.status_code == 413, response.text
    assert await db.fetchval("SELECT count(*) FROM lessons") == 0
    assert stored_files(settings) == [] and leftover_uploads(settings) == []


async def test_upload_refusals(
    api: httpx.AsyncClient,
    creator: TestUser,
    make_user,
    admin: TestUser,
    learner: TestUser,
    db: asyncpg.Pool,
) -> None:  # type: ignore[no-untyped-def]
    course = await new_course(api, creator)
    url = f"/courses/{course['id']}/lessons/upload"
    video = FIXTURES / "tiny.mp4"
    assert (
        await api.post(url, headers=creator.headers, **form(video, title=" "))
    ).status_code == 400
    no_file = await api.post(
        url, headers=creator.headers, data={"title": "x"}, files={"other": ("a", b"b")}
    )
    assert no_file.status_code == 400
    assert (await api.post(url, headers=creator.headers, json={"title": "x"})).status_code == 415
    other = await make_user("CREATOR")
    assert (await api.post(url, headers=other.headers, **form(video))).status_code == 404
    assert (await api.post(url, headers=admin.headers, **form(video))).status_code == 403
    assert (await api.post(url, headers=learner.headers, **form(video))).status_code == 403
    assert (await api.post(url, **form(video))).status_code == 401
    live = await published_course(api, creator, admin)
    assert (
        await api.post(
            f"/courses/{live['id']}/lessons/upload", headers=creator.headers, **form(video)
        )
    ).status_code == 409
    assert (
        await db.fetchval(
            "SELECT count(*) FROM lessons WHERE course_id = $1", uuid.UUID(course["id"])
        )
        == 0
    )


async def test_direct_upload_needs_cloudinary(api: httpx.AsyncClient, creator: TestUser) -> None:
    course = await new_course(api, creator)
    response = await api.post(
        f"/courses/{course['id']}/lessons/upload-signature",
        json={"title": "x"},
        headers=creator.headers,
    )
    assert response.status_code == 409 and "Cloudinary" in response.json()["detail"]
    webhook = await api.post("/webhooks/cloudinary", content=b"{}")
    assert webhook.status_code == 409


async def test_deleting_a_lesson_removes_its_video(
    api: httpx.AsyncClient, creator: TestUser, settings: Settings
) -> None:
    course = await new_course(api, creator)
    lesson = (
        await api.post(
            f"/courses/{course['id']}/lessons/upload",
            headers=creator.headers,
            **form(FIXTURES / "tiny.mp4"),
        )
    ).json()
    assert len(stored_files(settings)) == 1
    assert (
        await api.delete(f"/lessons/{lesson['id']}", headers=creator.headers)
    ).status_code == 204
    assert stored_files(settings) == []
