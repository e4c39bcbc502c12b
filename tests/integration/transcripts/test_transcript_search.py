"""GET /courses/:id/search: stemming, scope, current transcripts only, q rules, access, GIN plan."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import httpx
import pytest

from lms.db.queries import transcripts as sql
from tests.conftest import TestUser
from tests.integration.transcripts.helpers import (
    MakeUser,
    course_with_videos,
    enroll,
    new_video_version,
    store_transcript,
)


async def search(
    api: httpx.AsyncClient, course: dict[str, Any], user: TestUser | None, q: str | None
) -> httpx.Response:
    params = {} if q is None else {"q": q}
    headers = user.headers if user else {}
    return await api.get(f"/courses/{course['id']}/search", params=params, headers=headers)


def hits(response: httpx.Response) -> list[tuple[str, float, float, str]]:
    assert response.status_code == 200, response.text
    return [(h["lessonTitle"], h["start"], h["end"], h["text"]) for h in response.json()["items"]]


async def test_finds_the_lessons_and_times_where_words_are_spoken(
    api: httpx.AsyncClient, db: asyncpg.Pool, creator: TestUser, admin: TestUser, learner: TestUser
) -> None:
    course, (warmup, race) = await course_with_videos(
        api, creator, ["Warm-up", "Race day"], publish_as=admin
    )
    await store_transcript(
        db,
        warmup["id"],
        [
            (0.0, 4.0, "Before we start, stretch your legs."),
            (4.0, 9.5, "A slow run wakes the body up."),
            (9.5, 14.0, "Garbage collection is not part of running."),
        ],
    )
    await store_transcript(
        db,
        race["id"],
        [
            (0.0, 3.0, "Welcome to race day."),
            (3725.25, 3731.0, "After an hour she runs the last mile."),
        ],
    )
    # Another course of the same creator that says the same words: never in this course's results.
    other, (elsewhere,) = await course_with_videos(api, creator, ["Elsewhere"], publish_as=admin)
    await store_transcript(db, elsewhere["id"], [(1.0, 2.0, "Running and running again.")])
    await enroll(db, learner, course["id"])
    await enroll(db, learner, other["id"])

    # "running" stems to "run": it finds run, running and runs, by lesson order then time.
    response = await search(api, course, learner, "running")
    assert hits(response) == [
        ("Warm-up", 4.0, 9.5, "A slow run wakes the body up."),
        ("Warm-up", 9.5, 14.0, "Garbage collection is not part of running."),
        ("Race day", 3725.25, 3731.0, "After an hour she runs the last mile."),
    ]
    item = response.json()["items"][0]
    assert item.keys() == {"lessonId", "lessonTitle", "start", "end", "text"}
    assert item["lessonId"] == warmup["id"]

    # Web search syntax: a quoted phrase, "or", and "-" to exclude.
    assert [h[3] for h in hits(await search(api, course, learner, '"garbage collection"'))] == [
        "Garbage collection is not part of running."
    ]
    assert [h[1] for h in hits(await search(api, course, learner, "run -garbage"))] == [
        4.0,
        3725.25,
    ]
    assert [h[1] for h in hits(await search(api, course, learner, "stretch or welcome"))] == [
        0.0,
        0.0,
    ]
    assert hits(await search(api, course, learner, "marathon")) == []
    # Only stop words, or only punctuation: nothing to find, and no error.
    assert hits(await search(api, course, learner, "the and of")) == []
    assert hits(await search(api, course, learner, '"-" !!')) == []

    # The other course finds only its own lesson.
    assert [h[0] for h in hits(await search(api, other, learner, "run"))] == ["Elsewhere"]
    for user in (creator, admin):
        assert len(hits(await search(api, course, user, "run"))) == 3


async def test_only_current_finished_transcripts_are_searched(
    api: httpx.AsyncClient, db: asyncpg.Pool, creator: TestUser
) -> None:
    course, (stale, requeued, fresh) = await course_with_videos(
        api, creator, ["Stale", "Requeued", "Fresh"]
    )
    for lesson in (stale, requeued, fresh):
        await store_transcript(db, lesson["id"], [(1.0, 2.0, f"Compilers in {lesson['title']}.")])
    assert len(hits(await search(api, course, creator, "compiler"))) == 3

    # A new video: the old transcript's words are no longer in the lesson ...
    await new_video_version(db, stale["id"])
    # ... and while a lesson is transcribed again, it is not searched (as it is not shown).
    await db.execute(
        "UPDATE lessons SET transcript_status = 'PROCESSING' WHERE id = $1",
        uuid.UUID(requeued["id"]),
    )
    assert [h[0] for h in hits(await search(api, course, creator, "compiler"))] == ["Fresh"]
    # Even a lesson that says DONE does not offer a transcript of an older video.
    await db.execute(
        "UPDATE lessons SET transcript_status = 'DONE' WHERE id = $1", uuid.UUID(stale["id"])
    )
    assert [h[0] for h in hits(await search(api, course, creator, "compiler"))] == ["Fresh"]
    await store_transcript(db, stale["id"], [(5.0, 6.0, "A new compiler take.")])
    assert [h[:2] for h in hits(await search(api, course, creator, "compiler"))] == [
        ("Stale", 5.0),
        ("Fresh", 1.0),
    ]


async def test_q_is_required_and_bounded(
    api: httpx.AsyncClient, db: asyncpg.Pool, creator: TestUser
) -> None:
    course, (lesson,) = await course_with_videos(api, creator, ["Intro"])
    await store_transcript(db, lesson["id"], [(0.0, 1.0, "word " * 3)])
    # Control characters are refused at the edge, like in any other parameter.
    for q in (None, "", " ", "\t\n", "\x00", "\x00word\x1b", "x" * 201):
        response = await search(api, course, creator, q)
        assert response.status_code == 400, (q, response.text)
        assert response.json()["status_code"] == 400
    assert hits(await search(api, course, creator, "word " + "x" * 195)) == []
    assert len(hits(await search(api, course, creator, " word "))) == 1
    # Anything else in q is words to look for, never an error.
    for q in ("'; DROP TABLE lessons; --", "a & b | !c", "<script>", '"unclosed', "(()", "-", "\\"):
        assert (await search(api, course, creator, q)).status_code == 200, q


async def test_the_transcript_access_rules_hold_at_course_level(
    api: httpx.AsyncClient,
    db: asyncpg.Pool,
    creator: TestUser,
    admin: TestUser,
    learner: TestUser,
    make_user: MakeUser,
) -> None:
    published, (lesson,) = await course_with_videos(api, creator, ["Public"], publish_as=admin)
    await store_transcript(db, lesson["id"], [(0.0, 1.0, "secret sauce")])
    draft, (draft_lesson,) = await course_with_videos(api, creator, ["Draft"])
    await store_transcript(db, draft_lesson["id"], [(0.0, 1.0, "secret sauce")])
    other_creator = await make_user("CREATOR")

    for user in (learner, other_creator):  # may see the course, may not read its transcripts
        response = await search(api, published, user, "secret")
        assert response.status_code == 403, (user.role, response.text)
        # The draft is not even there for them.
        response = await search(api, draft, user, "secret")
        assert response.status_code == 404, (user.role, response.text)
        assert response.json()["detail"] == "no such course"
    await enroll(db, learner, published["id"])
    assert len(hits(await search(api, published, learner, "secret"))) == 1
    for user in (creator, admin):
        assert len(hits(await search(api, published, user, "secret"))) == 1
        assert len(hits(await search(api, draft, user, "secret"))) == 1
    assert (await search(api, published, None, "secret")).status_code == 401
    assert (await search(api, {"id": uuid.uuid4()}, admin, "secret")).status_code == 404


def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


@pytest.mark.parametrize("plan_mode", ["force_custom_plan", "force_generic_plan"])
async def test_a_rare_word_is_found_through_the_gin_index(
    api: httpx.AsyncClient, db: asyncpg.Pool, creator: TestUser, plan_mode: str
) -> None:
    course = (await course_with_videos(api, creator, []))[0]
    async with db.acquire() as conn:
        # 30 courses of 5 lessons of 40 segments (6,000 segments in all), the searched one among
        # them: "common" is said in every segment, the rare "xylophone" in 3 segments of the
        # searched course and once in 5 others.
        await conn.execute(
            """
            WITH others AS (
                INSERT INTO courses (creator_id, title, lesson_count)
                SELECT $2, 'Course ' || i, 5 FROM generate_series(1, 29) AS i RETURNING id
            ), c AS (
                SELECT $1::uuid AS id, true AS rare
                UNION ALL SELECT id, row_number() OVER () <= 5 FROM others
            ), l AS (
                INSERT INTO lessons (course_id, title, position, video_version, transcript_status)
                SELECT c.id, 'Lesson ' || p, p, 1, 'DONE' FROM c, generate_series(1, 5) AS p
                RETURNING id, course_id, position
            ), t AS (
                INSERT INTO transcripts (lesson_id, video_version, text)
                SELECT id, 1, 'filler' FROM l RETURNING lesson_id
            )
            INSERT INTO transcript_segments (lesson_id, seq, start_seconds, end_seconds, text)
            SELECT l.id, s, s * 5, s * 5 + 5,
                   CASE WHEN l.course_id = $1 AND (l.position, s) IN ((2, 3), (2, 9), (4, 3))
                          OR l.course_id <> $1 AND c.rare AND l.position = 1 AND s = 0
                        THEN 'a rare xylophone and common words'
                        ELSE 'segment ' || s || ' on topic ' || (s * 7 + l.position) % 97
                             || ' and common words'
                   END
            FROM l JOIN t ON t.lesson_id = l.id JOIN c ON c.id = l.course_id,
                 generate_series(0, 39) AS s
            """,
            uuid.UUID(course["id"]),
            creator.id,
        )
        assert await conn.fetchval("SELECT count(*) FROM transcript_segments") == 6000
        # VACUUM also moves the new entries from the GIN index's pending list into the index
        # proper, as autovacuum does in a running system (the planner rightly avoids a long
        # pending list, which every search would read through).
        await conn.execute("VACUUM ANALYZE transcript_segments, lessons, transcripts")

        await conn.execute(f"SET plan_cache_mode = {plan_mode}")
        try:
            raw = await conn.fetchval(
                f"EXPLAIN (FORMAT JSON) {sql.SEARCH_IN_COURSE}",
                uuid.UUID(course["id"]),
                "xylophone",
                sql.SEARCH_LIMIT,
            )
        finally:
            await conn.execute("RESET plan_cache_mode")
    plan = list(nodes(json.loads(raw)[0]["Plan"]))
    on_segments = [n for n in plan if n.get("Relation Name") == "transcript_segments"]
    assert [n["Node Type"] for n in on_segments] == ["Bitmap Heap Scan"], plan
    gin = [n for n in plan if n.get("Index Name") == "transcript_segments_search_idx"]
    assert gin and gin[0]["Node Type"] == "Bitmap Index Scan", plan

    found = hits(await search(api, course, creator, "xylophones"))
    assert [h[:2] for h in found] == [("Lesson 2", 15.0), ("Lesson 2", 45.0), ("Lesson 4", 15.0)]
    # A word in every segment: the first 100 by lesson and time, not all 200.
    common = hits(await search(api, course, creator, "common"))
    assert len(common) == sql.SEARCH_LIMIT
    assert [h[:2] for h in common[::40]] == [
        ("Lesson 1", 0.0),
        ("Lesson 2", 0.0),
        ("Lesson 3", 0.0),
    ]
