"""Per-account limits on video work: uploads in flight through the API per user (counted in
PostgreSQL, so every API process shares them; a dead upload's slot lapses), and transcriptions
QUEUED or PROCESSING per creator. Past either, a 429 with Retry-After that changes nothing,
also when concurrent requests race for the last place."""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
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

VIDEO = (Path(__file__).resolve().parents[2] / "fixtures" / "tiny.mp4").read_bytes()
BOUNDARY = "lms-test-boundary"
# Generous: only a broken limit (a request stalled that should have been refused) waits this long.
SETTLE_SECONDS = 30


@pytest.fixture(autouse=True)
def empty_media(settings: Settings) -> None:
    shutil.rmtree(settings.media_dir, ignore_errors=True)
    shutil.rmtree(settings.data_dir / "tmp" / "uploads", ignore_errors=True)


@pytest.fixture
def limits(app: Litestar, settings: Settings) -> Iterator[None]:
    """Small limits for the test: 2 uploads in flight per user, 3 transcriptions per creator."""
    ctx = app.state.ctx
    ctx.settings = dataclasses.replace(
        settings, max_uploads_per_user=2, max_queued_transcriptions=3
    )
    yield
    ctx.settings = settings


def set_limits(app: Litestar, **values: int) -> None:
    app.state.ctx.settings = dataclasses.replace(app.state.ctx.settings, **values)


def form_head(title: str = "Intro") -> bytes:
    return (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="title"\r\n\r\n{title}\r\n'
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="v.mp4"\r\n'
        "Content-Type: video/mp4\r\n\r\n"
    ).encode()


FORM_TAIL = f"\r\n--{BOUNDARY}--\r\n".encode()


async def held_body(release: asyncio.Event) -> AsyncIterator[bytes]:
    """A form whose file arrives in two parts, the second only once `release` is set: an upload
    held in flight for as long as the test wants."""
    yield form_head() + VIDEO[:1000]
    await release.wait()
    yield VIDEO[1000:] + FORM_TAIL


class HeldUploads:
    """Uploads held in flight until released; whatever a test leaves running is released and
    awaited when it ends, so no request outlives its test."""

    def __init__(self, api: httpx.AsyncClient) -> None:
        self.api = api
        self.release = asyncio.Event()
        self.tasks: list[asyncio.Task[httpx.Response]] = []

    def start(self, user: TestUser, course_id: str) -> asyncio.Task[httpx.Response]:
        content_type = f"multipart/form-data; boundary={BOUNDARY}"
        task = asyncio.create_task(
            self.api.post(
                f"/courses/{course_id}/lessons/upload",
                headers={**user.headers, "Content-Type": content_type},
                content=held_body(self.release),
            )
        )
        self.tasks.append(task)
        return task

    async def close(self) -> None:
        self.release.set()
        await asyncio.gather(*self.tasks, return_exceptions=True)


@pytest.fixture
async def held(api: httpx.AsyncClient) -> AsyncIterator[HeldUploads]:
    uploads = HeldUploads(api)
    yield uploads
    await uploads.close()


async def upload(api: httpx.AsyncClient, user: TestUser, course_id: str) -> httpx.Response:
    return await api.post(
        f"/courses/{course_id}/lessons/upload",
        headers=user.headers,
        files={"file": ("v.mp4", VIDEO, "video/mp4")},
        data={"title": "Intro"},
    )


async def slots(db: asyncpg.Pool, user: TestUser) -> int:
    """The user's live upload slots."""
    count: int = await db.fetchval(
        "SELECT count(*) FROM upload_slots WHERE user_id = $1 AND expires_at > now()", user.id
    )
    return count


async def until(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    """Wait for `condition` to hold (the requests under test run concurrently), polling."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while time.monotonic() < deadline:
        if await condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never came to pass: {what}")


async def holding(db: asyncpg.Pool, user: TestUser, n: int) -> None:
    """Wait until `user` holds `n` upload slots."""

    async def held() -> bool:
        return await slots(db, user) == n

    await until(held, f"{n} upload(s) in flight")


async def counts(db: asyncpg.Pool) -> tuple[int, int]:
    row = await db.fetchrow(
        "SELECT (SELECT count(*) FROM lessons) AS lessons,"
        " (SELECT count(*) FROM transcription_jobs) AS jobs"
    )
    return row["lessons"], row["jobs"]


def leftovers(settings: Settings) -> list[Path]:
    tmp = settings.data_dir / "tmp" / "uploads"
    return list(tmp.iterdir()) if tmp.exists() else []


def stored(settings: Settings) -> list[Path]:
    media = settings.media_dir
    return [p for p in media.rglob("*") if p.is_file()] if media.exists() else []


def assert_too_many(response: httpx.Response, what: str) -> None:
    assert response.status_code == 429, response.text
    assert int(response.headers["retry-after"]) >= 1
    assert response.json()["status_code"] == 429 and what in response.json()["detail"]


# --- uploads in flight per user ----------------------------------------------------------------


async def test_a_user_has_at_most_n_uploads_in_flight(
    api: httpx.AsyncClient,
    held: HeldUploads,
    limits: None,
    make_user,  # type: ignore[no-untyped-def]
    db: asyncpg.Pool,
    settings: Settings,
) -> None:
    creator, other = await make_user("CREATOR"), await make_user("CREATOR")
    course = await new_course(api, creator)
    in_flight = [held.start(creator, course["id"]) for _ in range(2)]
    await holding(db, creator, 2)

    refused = await upload(api, creator, course["id"])
    assert_too_many(refused, "uploads in flight")
    assert await counts(db) == (0, 0)
    assert len(leftovers(settings)) == 2  # only the two held uploads' own temp files
    # The limit is the user's: someone else uploads meanwhile.
    assert (await upload(api, other, (await new_course(api, other))["id"])).status_code == 201

    held.release.set()
    assert [(await task).status_code for task in in_flight] == [201, 201]
    assert await slots(db, creator) == 0
    assert (await upload(api, creator, course["id"])).status_code == 201
    assert await db.fetchval("SELECT count(*) FROM upload_slots") == 0


async def test_concurrent_uploads_racing_for_the_last_slot_get_it_once(
    api: httpx.AsyncClient, held: HeldUploads, limits: None, creator: TestUser, db: asyncpg.Pool
) -> None:
    course = await new_course(api, creator)
    first = held.start(creator, course["id"])
    await holding(db, creator, 1)

    racers = [held.start(creator, course["id"]) for _ in range(6)]

    async def refused() -> bool:
        return sum(task.done() for task in racers) == 5

    await until(refused, "all but one racer refused")
    assert await slots(db, creator) == 2
    held.release.set()
    answers = [await task for task in [first, *racers]]
    assert sorted(a.status_code for a in answers) == [201, 201, 429, 429, 429, 429, 429]
    for answer in answers:
        if answer.status_code == 429:
            assert_too_many(answer, "uploads in flight")
    assert await counts(db) == (2, 2)
    assert await slots(db, creator) == 0


async def test_an_upload_that_dies_gives_its_slot_back(
    api: httpx.AsyncClient,
    held: HeldUploads,
    limits: None,
    creator: TestUser,
    db: asyncpg.Pool,
    settings: Settings,
) -> None:
    course = await new_course(api, creator)
    # The client goes away mid-body: the slot is released with the request.
    gone = held.start(creator, course["id"])
    await holding(db, creator, 1)
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert await slots(db, creator) == 0
    assert leftovers(settings) == []

    # A process killed mid-upload cannot release its slots: their leases lapse instead.
    await db.execute(
        """INSERT INTO upload_slots (id, user_id, created_at, expires_at)
           SELECT gen_random_uuid(), $1, now() - interval '10 minutes', now() - interval '1 second'
           FROM generate_series(1, 5)""",
        creator.id,
    )
    assert (await upload(api, creator, course["id"])).status_code == 201
    # While the leases run, they count.
    await db.execute(
        """INSERT INTO upload_slots (id, user_id, expires_at)
           SELECT gen_random_uuid(), $1, now() + interval '1 minute' FROM generate_series(1, 2)""",
        creator.id,
    )
    assert_too_many(await upload(api, creator, course["id"]), "uploads in flight")


# --- transcriptions queued per creator ----------------------------------------------------------


async def test_a_creator_has_at_most_m_transcriptions_waiting(
    api: httpx.AsyncClient,
    limits: None,
    make_user,  # type: ignore[no-untyped-def]
    db: asyncpg.Pool,
    settings: Settings,
) -> None:
    creator, other = await make_user("CREATOR"), await make_user("CREATOR")
    course = await new_course(api, creator)
    for _ in range(3):
        assert (await upload(api, creator, course["id"])).status_code == 201
    files = stored(settings)

    refused = await upload(api, creator, course["id"])
    assert_too_many(refused, "transcriptions")
    assert await counts(db) == (3, 3)
    assert stored(settings) == files and leftovers(settings) == []
    # Another creator's queue is their own.
    assert (await upload(api, other, (await new_course(api, other))["id"])).status_code == 201

    # A job that is DONE or FAILED no longer waits: room for one more.
    await db.execute(
        """UPDATE transcription_jobs SET status = 'DONE'
           WHERE id = (SELECT j.id FROM transcription_jobs j JOIN lessons l ON l.id = j.lesson_id
                       WHERE l.course_id = $1 LIMIT 1)""",
        uuid.UUID(course["id"]),
    )
    assert (await upload(api, creator, course["id"])).status_code == 201
    assert_too_many(await upload(api, creator, course["id"]), "transcriptions")


async def test_concurrent_uploads_racing_for_the_last_transcription_get_it_once(
    api: httpx.AsyncClient,
    app: Litestar,
    limits: None,
    creator: TestUser,
    db: asyncpg.Pool,
    settings: Settings,
) -> None:
    set_limits(app, max_uploads_per_user=10)
    course = await new_course(api, creator)
    for _ in range(2):
        assert (await upload(api, creator, course["id"])).status_code == 201
    answers = await asyncio.gather(*(upload(api, creator, course["id"]) for _ in range(5)))
    assert sorted(a.status_code for a in answers) == [201, 429, 429, 429, 429]
    assert await counts(db) == (3, 3)
    assert len(stored(settings)) == 3 and leftovers(settings) == []


# --- direct uploads (Cloudinary) ----------------------------------------------------------------


@pytest.fixture
def cloud(app: Litestar, settings: Settings) -> Iterator[CloudinaryServer]:
    server = start_cloudinary_server()
    ctx = app.state.ctx
    local = ctx.storage
    url = server.cloudinary_url()
    ctx.storage = CloudinaryVideoStorage(dataclasses.replace(settings, cloudinary_url=url))
    yield server
    ctx.storage = local
    assert server.server is not None
    server.server.shutdown()


async def test_direct_uploads_respect_the_transcription_limit(
    api: httpx.AsyncClient,
    app: Litestar,
    limits: None,
    cloud: CloudinaryServer,
    creator: TestUser,
    db: asyncpg.Pool,
) -> None:
    set_limits(app, max_queued_transcriptions=1)
    course = await new_course(api, creator)
    signature = f"/courses/{course['id']}/lessons/upload-signature"
    signed = await api.post(signature, json={"title": "First"}, headers=creator.headers)
    assert signed.status_code == 200
    second = await api.post(signature, json={"title": "Second"}, headers=creator.headers)
    assert second.status_code == 200  # nothing is queued yet: both may upload
    for answer in (signed, second):
        async with httpx.AsyncClient() as browser:
            uploaded = await browser.post(
                answer.json()["uploadUrl"],
                data=answer.json()["params"],
                files={"file": ("v.mp4", VIDEO)},
            )
        assert uploaded.status_code == 200
    first_note, second_note = cloud.notifications
    attached = await api.post(
        "/webhooks/cloudinary", content=first_note.body, headers=first_note.headers
    )
    assert attached.json() == {"result": "attached"}

    # At the limit: a new signature is refused; a video already uploaded is attached, but
    # nothing is queued (the creator queues it with POST /lessons/:id/transcribe later).
    assert_too_many(
        await api.post(signature, json={"title": "Third"}, headers=creator.headers),
        "transcriptions",
    )
    late = await api.post(
        "/webhooks/cloudinary", content=second_note.body, headers=second_note.headers
    )
    assert late.status_code == 200
    assert late.json()["result"].startswith("attached; transcription not queued")
    lesson_id = uuid.UUID(second.json()["lessonId"])
    row = await db.fetchrow(
        "SELECT video_version, transcript_status FROM lessons WHERE id = $1", lesson_id
    )
    assert (row["video_version"], row["transcript_status"]) == (1, "NONE")
    assert await db.fetchval("SELECT count(*) FROM transcription_jobs") == 1
    assert await db.fetchval("SELECT count(*) FROM lessons") == 2
