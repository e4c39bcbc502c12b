"""Lessons on Cloudinary, through the API and the real SDK against a local server that speaks
Cloudinary's upload API and checks its delivery signatures: server-side upload, the signed
direct-from-browser upload, the signed notification that attaches the video and queues its
transcription (only while the course is a DRAFT, once), and the signed, expiring URLs viewers get.
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
TOKEN_KEY = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90"


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


def use_token_key(app: Litestar, settings: Settings, cloud: CloudinaryServer) -> None:
    """The account has token-based authentication: the app signs CDN URLs with its key."""
    cloud.auth_token_key = TOKEN_KEY
    url = cloud.cloudinary_url(token_key=TOKEN_KEY)
    app.state.ctx.storage = CloudinaryVideoStorage(
        dataclasses.replace(settings, cloudinary_url=url)
    )


async def upload(api: httpx.AsyncClient, user: TestUser, course_id: str) -> dict[str, Any]:
    response = await api.post(
        f"/courses/{course_id}/lessons/upload",
        headers=user.headers,
        files={"file": ("intro.mp4", VIDEO.read_bytes(), "video/mp4")},
        data={"title": "Intro"},
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def submit_and_publish(
    api: httpx.AsyncClient, creator: TestUser, admin: TestUser | None, course_id: str
) -> None:
    submitted = await api.post(f"/courses/{course_id}/submit", headers=creator.headers)
    assert submitted.status_code == 200, submitted.text
    if admin is not None:
        published = await api.post(f"/admin/courses/{course_id}/publish", headers=admin.headers)
        assert published.status_code == 200, published.text


async def direct_upload(
    api: httpx.AsyncClient, creator: TestUser, course_id: str
) -> tuple[str, dict[str, Any]]:
    """(lesson id, the signed upload the browser gets)."""
    signed = await api.post(
        f"/courses/{course_id}/lessons/upload-signature",
        json={"title": "Big lecture"},
        headers=creator.headers,
    )
    assert signed.status_code == 200, signed.text
    return signed.json()["lessonId"], signed.json()


async def browser_upload(signed: dict[str, Any], data: bytes) -> httpx.Response:
    async with httpx.AsyncClient() as browser:
        return await browser.post(
            signed["uploadUrl"], data=signed["params"], files={"file": ("big.mp4", data)}
        )


async def lesson_state(db: asyncpg.Pool, lesson_id: str) -> tuple[int, str | None, int]:
    """(video_version, video_key, transcription jobs) of a lesson."""
    row = await db.fetchrow(
        """SELECT video_version, video_key,
                  (SELECT count(*) FROM transcription_jobs WHERE lesson_id = l.id) AS jobs
           FROM lessons l WHERE id = $1""",
        uuid.UUID(lesson_id),
    )
    return row["video_version"], row["video_key"], row["jobs"]


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
    assert cloud.assets[public_id].type == "authenticated"
    # The viewer's URL is signed and expires; it plays, the stored reference does not.
    assert lesson["videoUrl"].startswith(
        f"{cloud.base_url}/v1_1/{cloud.cloud_name}/video/download?"
    )
    assert (
        "expires_at=" in lesson["videoUrl"] and public_id.replace("/", "%2F") in lesson["videoUrl"]
    )
    row = await db.fetchrow(
        "SELECT video_provider, video_key, video_url FROM lessons WHERE id = $1",
        uuid.UUID(lesson["id"]),
    )
    assert row["video_provider"] == "cloudinary" and row["video_key"] == public_id
    async with httpx.AsyncClient() as viewer:
        played = await viewer.get(lesson["videoUrl"])
        assert played.status_code == 200 and played.content == VIDEO.read_bytes()
        assert (await viewer.get(cloud.local(row["video_url"]))).status_code == 401
        cloud.clock_offset = 3700  # the URL's hour is over
        assert (await viewer.get(lesson["videoUrl"])).status_code == 401
        cloud.clock_offset = 0
        again = (await api.get(f"/lessons/{lesson['id']}", headers=creator.headers)).json()
        assert (await viewer.get(again["videoUrl"])).status_code == 200  # minted per request
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
    lesson_id, body = await direct_upload(api, creator, course["id"])
    assert body["params"]["type"] == "authenticated" and body["params"]["overwrite"] == "false"
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
    for stamp in (1, int(time.time()) - 400):  # older than a few minutes: refused
        stale = cloud.notification_headers(note.body, timestamp=stamp)
        response = await api.post("/webhooks/cloudinary", content=note.body, headers=stale)
        assert response.status_code == 401
    attached = await api.post("/webhooks/cloudinary", content=note.body, headers=note.headers)
    assert attached.status_code == 200 and attached.json() == {"result": "attached"}
    # The very same notification again (a replay, or Cloudinary retrying): nothing is done.
    again = await api.post("/webhooks/cloudinary", content=note.body, headers=note.headers)
    assert again.status_code == 200 and again.json() == {"result": "ignored: already processed"}
    # The same upload notified anew (signed again): the video is attached already.
    # Another second than the first one's (the same second would make the same notification).
    fresh = cloud.notification_headers(
        note.body, timestamp=int(note.headers["X-Cld-Timestamp"]) - 1
    )
    resent = await api.post("/webhooks/cloudinary", content=note.body, headers=fresh)
    assert resent.json() == {"result": "already attached"}

    lesson = (await api.get(f"/lessons/{lesson_id}", headers=creator.headers)).json()
    assert lesson["transcriptStatus"] == "QUEUED"
    # The length Cloudinary measured: known at once, for the watch rule.
    assert lesson["durationSeconds"] == pytest.approx(json.loads(note.body)["duration"])
    assert lesson["durationSeconds"] == pytest.approx(2.0, abs=0.2)
    async with httpx.AsyncClient() as viewer:
        assert (await viewer.get(lesson["videoUrl"])).content == VIDEO.read_bytes()
    row = await db.fetchrow("SELECT video_url FROM lessons WHERE id = $1", uuid.UUID(lesson_id))
    assert "s--" not in row["video_url"]  # Cloudinary's signed secure_url is not kept
    jobs = await db.fetch(
        "SELECT video_version, status FROM transcription_jobs WHERE lesson_id = $1",
        uuid.UUID(lesson_id),
    )
    assert [(j["video_version"], j["status"]) for j in jobs] == [(1, "QUEUED")]


@pytest.mark.parametrize(
    "duration", [None, "2.0", True, 0, -3, float("inf"), float("nan")], ids=repr
)
async def test_a_notification_without_a_usable_length_leaves_it_to_the_worker(
    api: httpx.AsyncClient,
    cloud: CloudinaryServer,
    creator: TestUser,
    db: asyncpg.Pool,
    duration: object,
) -> None:
    """A notification whose duration is missing or not a length: the video is attached with its
    length unknown (a lesson that cannot be completed while watching is required), and the
    transcription job whose worker measures the file is queued."""
    course = await new_course(api, creator)
    lesson_id, signed = await direct_upload(api, creator, course["id"])
    assert (await browser_upload(signed, VIDEO.read_bytes())).status_code == 200
    (note,) = cloud.notifications
    payload = json.loads(note.body)
    del payload["duration"]
    if duration is not None:
        payload["duration"] = duration
    body = json.dumps(payload).encode()
    attached = await api.post(
        "/webhooks/cloudinary", content=body, headers=cloud.notification_headers(body)
    )
    assert attached.status_code == 200 and attached.json() == {"result": "attached"}
    lesson = (await api.get(f"/lessons/{lesson_id}", headers=creator.headers)).json()
    assert lesson["durationSeconds"] is None and lesson["transcriptStatus"] == "QUEUED"
    assert (await lesson_state(db, lesson_id))[2] == 1


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


@pytest.mark.parametrize("reviewed", ["PENDING", "PUBLISHED"])
async def test_a_video_uploaded_after_the_course_left_draft_is_refused_and_deleted(
    api: httpx.AsyncClient,
    cloud: CloudinaryServer,
    creator: TestUser,
    admin: TestUser,
    db: asyncpg.Pool,
    reviewed: str,
) -> None:
    """Signed upload parameters outlive the DRAFT they were made in (Cloudinary takes them for
    an hour): a video that arrives once the course is under review or published is not
    attached, and is deleted from Cloudinary."""
    course = await new_course(api, creator)
    lesson_id, signed = await direct_upload(api, creator, course["id"])
    await submit_and_publish(api, creator, admin if reviewed == "PUBLISHED" else None, course["id"])

    uploaded = await browser_upload(signed, VIDEO.read_bytes())
    assert uploaded.status_code == 200
    public_id = uploaded.json()["public_id"]
    assert public_id in cloud.assets
    (note,) = cloud.notifications
    refused = await api.post("/webhooks/cloudinary", content=note.body, headers=note.headers)
    assert refused.status_code == 409, refused.text
    assert reviewed in refused.json()["detail"]
    assert public_id not in cloud.assets  # deleted through Cloudinary's API
    assert await lesson_state(db, lesson_id) == (0, None, 0)
    replay = await api.post("/webhooks/cloudinary", content=note.body, headers=note.headers)
    assert replay.json() == {"result": "ignored: already processed"}
    assert await lesson_state(db, lesson_id) == (0, None, 0)


async def test_the_reviewed_video_cannot_be_swapped_with_its_own_upload_parameters(
    api: httpx.AsyncClient,
    cloud: CloudinaryServer,
    creator: TestUser,
    admin: TestUser,
    db: asyncpg.Pool,
) -> None:
    course = await new_course(api, creator)
    lesson_id, signed = await direct_upload(api, creator, course["id"])
    assert (await browser_upload(signed, VIDEO.read_bytes())).status_code == 200
    (note,) = cloud.notifications
    attached = await api.post("/webhooks/cloudinary", content=note.body, headers=note.headers)
    assert attached.json() == {"result": "attached"}
    await submit_and_publish(api, creator, admin, course["id"])
    reviewed = await lesson_state(db, lesson_id)

    # The same signed parameters, other bytes: overwrite=false keeps the reviewed video, and
    # the notification of that (refused) attempt deletes nothing.
    swap = await browser_upload(signed, b"\x00\x00\x00\x18ftypmp42 something else entirely")
    assert swap.status_code == 200 and swap.json().get("existing") is True
    public_id = swap.json()["public_id"]
    assert cloud.assets[public_id].data == VIDEO.read_bytes()
    note = cloud.notifications[-1]
    answer = await api.post("/webhooks/cloudinary", content=note.body, headers=note.headers)
    assert answer.json() == {"result": "already attached"}
    assert cloud.assets[public_id].data == VIDEO.read_bytes()
    assert await lesson_state(db, lesson_id) == reviewed


async def test_a_video_for_a_deleted_lesson_is_deleted_too(
    api: httpx.AsyncClient, cloud: CloudinaryServer, creator: TestUser, db: asyncpg.Pool
) -> None:
    course = await new_course(api, creator)
    lesson_id, signed = await direct_upload(api, creator, course["id"])
    deleted = await api.delete(f"/lessons/{lesson_id}", headers=creator.headers)
    assert deleted.status_code == 204
    uploaded = await browser_upload(signed, VIDEO.read_bytes())
    public_id = uploaded.json()["public_id"]
    (note,) = cloud.notifications
    answer = await api.post("/webhooks/cloudinary", content=note.body, headers=note.headers)
    assert answer.status_code == 200 and answer.json() == {"result": "ignored: the lesson is gone"}
    assert public_id not in cloud.assets
    assert await db.fetchval("SELECT count(*) FROM transcription_jobs") == 0


async def test_viewers_get_expiring_cdn_urls_with_a_token_key(
    api: httpx.AsyncClient,
    app: Litestar,
    settings: Settings,
    cloud: CloudinaryServer,
    creator: TestUser,
    admin: TestUser,
    learner: TestUser,
    make_user,  # type: ignore[no-untyped-def]
) -> None:
    use_token_key(app, settings, cloud)
    course = await new_course(api, creator)
    lesson = await upload(api, creator, course["id"])
    await submit_and_publish(api, creator, admin, course["id"])
    enrolled = await api.post(f"/courses/{course['id']}/enroll", headers=learner.headers)
    assert enrolled.status_code == 201
    stranger = await make_user("LEARNER")

    seen = (await api.get(f"/lessons/{lesson['id']}", headers=learner.headers)).json()
    url = seen["videoUrl"]
    assert url.startswith(f"https://res.cloudinary.com/{cloud.cloud_name}/video/authenticated/s--")
    assert "?__cld_token__=exp=" in url
    for outsider in ({}, stranger.headers):  # anonymous, or signed in but not enrolled
        shown = (await api.get(f"/lessons/{lesson['id']}", headers=outsider)).json()
        assert shown["videoUrl"] is None
    async with httpx.AsyncClient() as player:
        assert (await player.get(cloud.local(url))).content == VIDEO.read_bytes()
        assert (await player.get(cloud.local(url.split("?")[0]))).status_code == 401
        cloud.clock_offset = 3700
        assert (await player.get(cloud.local(url))).status_code == 401
