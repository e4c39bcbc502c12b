"""Lessons on Cloudinary, through the API and the real SDK against a local server that speaks
Cloudinary's upload API: server-side upload, the signed direct-from-browser upload, and the
signed notification that attaches the video and queues its transcription."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from litestar import Litestar

from lms.integrations.cloudinary import CloudinaryVideoStorage
from lms.settings import Settings
from tests.conftest import TestUser
from tests.integration.courses.helpers import new_course
from tests.support.cloudinary_server import CloudinaryServer, start_cloudinary_server

VIDEO = Path(__file__).resolve().parents[2] / "fixtures" / "tiny.mp4"


@pytest.fixture(scope="module")
def cloud_server() -> Iterator[CloudinaryServer]:
    server = start_cloudinary_server()
    yield server
    assert server.server is not None
    server.server.shutdown()


@pytest.fixture
def cloud(
    cloud_server: CloudinaryServer, app: Litestar, settings: Settings
) -> Iterator[CloudinaryServer]:
    """The app's storage switched to Cloudinary (this server) for one test."""
    cloud_server.clear()
    ctx = app.state.ctx
    local = ctx.storage
    ctx.storage = CloudinaryVideoStorage(
        dataclasses.replace(settings, cloudinary_url=cloud_server.cloudinary_url())
    )
    yield cloud_server
    ctx.storage = local


async def test_server_side_upload_goes_to_cloudinary(
    api: httpx.AsyncClient,
    cloud: CloudinaryServer,
    creator: TestUser,
    db: asyncpg.Pool,
    settings: Settings,
) -> None:
    course = await new_course(api, creator)
    response = await api.post(
        f"/courses/{course['id']}/lessons/upload",
        headers=creator.headers,
        files={"file": ("intro.mp4", VIDEO.read_bytes(), "video/mp4")},
        data={"title": "Intro"},
    )
    assert response.status_code == 201, response.text
    lesson = response.json()
    public_id = f"lessons/{lesson['id']}/v1"
    assert cloud.assets[public_id].data == VIDEO.read_bytes()
    assert (
        lesson["videoUrl"].startswith("https://res.cloudinary.com/")
        and public_id in lesson["videoUrl"]
    )
    row = await db.fetchrow(
        "SELECT video_provider, video_key FROM lessons WHERE id = $1", uuid.UUID(lesson["id"])
    )
    assert row["video_provider"] == "cloudinary" and row["video_key"] == public_id
    assert not (settings.media_dir / "lessons" / lesson["id"]).exists()  # nothing kept locally
    # Deleting the lesson destroys the asset.
    assert (
        await api.delete(f"/lessons/{lesson['id']}", headers=creator.headers)
    ).status_code == 204
    assert public_id not in cloud.assets


async def test_a_cloudinary_outage_fails_the_upload_cleanly(
    api: httpx.AsyncClient,
    cloud: CloudinaryServer,
    creator: TestUser,
    db: asyncpg.Pool,
    settings: Settings,
) -> None:
    course = await new_course(api, creator)
    cloud.fail_with = 500
    response = await api.post(
        f"/courses/{course['id']}/lessons/upload",
        headers=creator.headers,
        files={"file": ("intro.mp4", VIDEO.read_bytes(), "video/mp4")},
        data={"title": "Intro"},
    )
    assert response.status_code == 502
    assert await db.fetchval("SELECT count(*) FROM lessons") == 0
    assert await db.fetchval("SELECT count(*) FROM transcription_jobs") == 0
    tmp = settings.data_dir / "tmp" / "uploads"
    assert not tmp.exists() or list(tmp.iterdir()) == []


async def test_direct_upload_then_signed_notification_attaches_the_video(
    api: httpx.AsyncClient, cloud: CloudinaryServer, creator: TestUser, db: asyncpg.Pool
) -> None:
    course = await new_course(api, creator)
    signed = await api.post(
        f"/courses/{course['id']}/lessons/upload-signature",
        json={"title": "Big lecture"},
        headers=creator.headers,
    )
    assert signed.status_code == 200, signed.text
    body = signed.json()
    lesson_id = body["lessonId"]
    lesson = (await api.get(f"/lessons/{lesson_id}", headers=creator.headers)).json()
    assert lesson["title"] == "Big lecture" and lesson["transcriptStatus"] == "NONE"

    # The browser's part: POST the file with the signed params straight to Cloudinary.
    async with httpx.AsyncClient() as browser:
        tampered = dict(body["params"], public_id="lessons/someone-else/v1")
        refused = await browser.post(
            body["uploadUrl"], data=tampered, files={"file": ("big.mp4", VIDEO.read_bytes())}
        )
        assert refused.status_code == 401
        uploaded = await browser.post(
            body["uploadUrl"], data=body["params"], files={"file": ("big.mp4", VIDEO.read_bytes())}
        )
        assert uploaded.status_code == 200, uploaded.text
    (note,) = cloud.notifications
    assert note.url.endswith("/webhooks/cloudinary")

    # Cloudinary's part: the signed notification. A forged one is refused.
    forged = await api.post(
        "/webhooks/cloudinary",
        content=note.body,
        headers=dict(note.headers, **{"X-Cld-Signature": "0" * 40}),
    )
    assert forged.status_code == 401
    stale = cloud.notification_headers(note.body, timestamp=1)
    assert (
        await api.post("/webhooks/cloudinary", content=note.body, headers=stale)
    ).status_code == 401
    attached = await api.post("/webhooks/cloudinary", content=note.body, headers=note.headers)
    assert attached.status_code == 200 and attached.json() == {"result": "attached"}
    again = await api.post("/webhooks/cloudinary", content=note.body, headers=note.headers)
    assert again.json() == {"result": "already attached"}

    lesson = (await api.get(f"/lessons/{lesson_id}", headers=creator.headers)).json()
    assert lesson["transcriptStatus"] == "QUEUED" and lesson["videoUrl"].startswith(
        "https://res.cloudinary.com/"
    )
    jobs = await db.fetch(
        "SELECT video_version, status FROM transcription_jobs WHERE lesson_id = $1",
        uuid.UUID(lesson_id),
    )
    assert [(j["video_version"], j["status"]) for j in jobs] == [(1, "QUEUED")]


async def test_notifications_that_are_not_ours_are_acknowledged_and_ignored(
    api: httpx.AsyncClient, cloud: CloudinaryServer, db: asyncpg.Pool
) -> None:
    for payload in (
        {
            "notification_type": "upload",
            "public_id": "marketing/banner",
            "secure_url": "https://x",
            "resource_type": "video",
        },
        {
            "notification_type": "upload",
            "public_id": f"lessons/{uuid.uuid4()}/v1",
            "secure_url": "https://x",
        },
        {"notification_type": "delete", "public_id": "lessons/x/v1"},
    ):
        body = json.dumps(payload).encode()
        response = await api.post(
            "/webhooks/cloudinary", content=body, headers=cloud.notification_headers(body)
        )
        assert response.status_code == 200 and response.json()["result"].startswith("ignored"), (
            response.text
        )
    body = b"not json"
    assert (
        await api.post(
            "/webhooks/cloudinary", content=body, headers=cloud.notification_headers(body)
        )
    ).status_code == 400
    assert await db.fetchval("SELECT count(*) FROM transcription_jobs") == 0
