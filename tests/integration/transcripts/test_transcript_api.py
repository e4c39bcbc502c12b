"""GET /lessons/:id/transcript: who may read it, its shape before DONE, stale transcripts unseen."""

from __future__ import annotations

import uuid

import asyncpg
import httpx
import pytest

from tests.conftest import TestUser
from tests.integration.transcripts.helpers import (
    MakeUser,
    course_with_videos,
    enroll,
    new_video_version,
    store_transcript,
)

SPOKEN = [
    (0.0, 2.5, "Welcome to the course."),
    (2.5, 6.25, "Today we write a parser."),
    (6.25, 9.0, "Tokens first, then trees."),
]
EMPTY: dict[str, object] = {
    "language": None,
    "text": "",
    "durationSeconds": None,
    "segments": [],
    "speechCoverage": None,
    "warning": None,
}


def url(lesson: dict[str, object]) -> str:
    return f"/lessons/{lesson['id']}/transcript"


async def test_the_enrolled_learner_the_owner_and_admins_read_it(
    api: httpx.AsyncClient,
    db: asyncpg.Pool,
    creator: TestUser,
    admin: TestUser,
    learner: TestUser,
    make_user: MakeUser,
) -> None:
    course, (lesson,) = await course_with_videos(api, creator, ["Intro"], publish_as=admin)
    await store_transcript(db, lesson["id"], SPOKEN)
    await enroll(db, learner, course["id"])

    expected = {
        "status": "DONE",
        "language": "en",
        "text": "Welcome to the course. Today we write a parser. Tokens first, then trees.",
        "durationSeconds": 9.0,
        "segments": [{"start": s, "end": e, "text": t} for s, e, t in SPOKEN],
        "speechCoverage": None,  # written before coverage was measured
        "warning": None,
    }
    for user in (learner, creator, admin):
        response = await api.get(url(lesson), headers=user.headers)
        assert response.status_code == 200, (user.role, response.text)
        assert response.json() == expected

    # The course is public, so strangers learn the lesson exists, but not what is said in it.
    stranger = await make_user("LEARNER")
    other_creator = await make_user("CREATOR")
    for user in (stranger, other_creator):
        response = await api.get(url(lesson), headers=user.headers)
        assert response.status_code == 403, (user.role, response.text)
        assert "enrolled" in response.json()["detail"]

    assert (await api.get(url(lesson))).status_code == 401
    assert (
        await api.get(url(lesson), headers={"Authorization": "Bearer not-a-token"})
    ).status_code == 401
    missing = await api.get(f"/lessons/{uuid.uuid4()}/transcript", headers=admin.headers)
    assert missing.status_code == 404


async def test_a_draft_course_hides_the_lesson_from_others(
    api: httpx.AsyncClient,
    db: asyncpg.Pool,
    creator: TestUser,
    admin: TestUser,
    learner: TestUser,
    make_user: MakeUser,
) -> None:
    _, (lesson,) = await course_with_videos(api, creator, ["Draft lesson"])
    await store_transcript(db, lesson["id"], SPOKEN)
    other_creator = await make_user("CREATOR")
    for user in (other_creator, learner):
        response = await api.get(url(lesson), headers=user.headers)
        assert response.status_code == 404, (user.role, response.text)
        assert response.json()["detail"] == "no such lesson"
    for user in (creator, admin):
        response = await api.get(url(lesson), headers=user.headers)
        assert response.status_code == 200 and response.json()["status"] == "DONE"


@pytest.mark.parametrize("status", ["QUEUED", "PROCESSING", "FAILED"])
async def test_until_done_there_is_no_text(
    api: httpx.AsyncClient, db: asyncpg.Pool, creator: TestUser, status: str
) -> None:
    _, (lesson,) = await course_with_videos(api, creator, ["Intro"])
    response = await api.get(url(lesson), headers=creator.headers)
    assert response.status_code == 200
    assert response.json() == {"status": "QUEUED", **EMPTY}

    # A transcript on file (of this very video) stays hidden while the lesson is being
    # transcribed again, or after that failed: only a DONE transcript is shown.
    await store_transcript(db, lesson["id"], SPOKEN, status=status)
    response = await api.get(url(lesson), headers=creator.headers)
    assert response.json() == {"status": status, **EMPTY}


async def test_a_lesson_without_video_has_status_none(
    api: httpx.AsyncClient, creator: TestUser
) -> None:
    course = await api.post(
        "/courses", json={"title": "T", "description": "", "price": 0}, headers=creator.headers
    )
    lesson = await api.post(
        f"/courses/{course.json()['id']}/lessons",
        json={"title": "Text only"},
        headers=creator.headers,
    )
    response = await api.get(url(lesson.json()), headers=creator.headers)
    assert response.status_code == 200 and response.json() == {"status": "NONE", **EMPTY}


async def test_a_transcript_of_an_older_video_is_not_served(
    api: httpx.AsyncClient, db: asyncpg.Pool, creator: TestUser, admin: TestUser
) -> None:
    _, (lesson,) = await course_with_videos(api, creator, ["Intro"])
    await store_transcript(db, lesson["id"], SPOKEN)
    assert (await api.get(url(lesson), headers=creator.headers)).json()["status"] == "DONE"

    # A new video: the lesson is QUEUED again and the old words are not shown meanwhile.
    await new_video_version(db, lesson["id"])
    response = await api.get(url(lesson), headers=creator.headers)
    assert response.json() == {"status": "QUEUED", **EMPTY}

    # Should the lesson claim DONE while the transcript on file is of the older video, the API
    # says there is no transcript of this video (NONE) rather than DONE with no words.
    await db.execute(
        "UPDATE lessons SET transcript_status = 'DONE' WHERE id = $1", uuid.UUID(lesson["id"])
    )
    response = await api.get(url(lesson), headers=admin.headers)
    assert response.json() == {"status": "NONE", **EMPTY}
    # ... and the same with no transcript row at all.
    await db.execute("DELETE FROM transcripts WHERE lesson_id = $1", uuid.UUID(lesson["id"]))
    assert (await api.get(url(lesson), headers=admin.headers)).json() == {"status": "NONE", **EMPTY}

    # The worker's transcript of the new video replaces it.
    await store_transcript(db, lesson["id"], [(0.0, 1.5, "Second take.")])
    response = await api.get(url(lesson), headers=creator.headers)
    body = response.json()
    assert body["status"] == "DONE" and body["text"] == "Second take."
    assert body["segments"] == [{"start": 0.0, "end": 1.5, "text": "Second take."}]
