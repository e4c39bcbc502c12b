"""The public catalog: published only, newest first, keyset pages with signed cursors, ranked
full-text search, the creator filter, ETag / 304 and caching headers, and the limits on searches
(per client, and at once per process)."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import httpx
import pytest
from litestar import Litestar

from lms.settings import Settings
from tests.conftest import TestUser
from tests.integration.auth.clients import client_from
from tests.integration.courses.helpers import new_course, published_course


async def seed_published(
    db: asyncpg.Pool, creator: TestUser, count: int, title: str = "Course"
) -> list[str]:
    """Published courses straight into the table, one minute apart (newest is the last)."""
    rows = await db.fetch(
        """
        INSERT INTO courses
            (creator_id, title, description, price, status, submitted_at, published_at)
        SELECT $1, $2 || ' ' || i, 'About ' || $2, 10, 'PUBLISHED', now(),
               now() - (($3 - i) || ' minutes')::interval
        FROM generate_series(1, $3) AS i
        RETURNING id, published_at
        """,
        creator.id,
        title,
        count,
    )
    return [str(r["id"]) for r in sorted(rows, key=lambda r: r["published_at"], reverse=True)]


async def test_only_published_courses_newest_first(
    api: httpx.AsyncClient, creator: TestUser, admin: TestUser
) -> None:
    await new_course(api, creator, title="A draft")
    first = await published_course(api, creator, admin, title="First")
    second = await published_course(api, creator, admin, title="Second", price="49.99")
    page = await api.get("/courses")
    assert page.status_code == 200
    items = page.json()["items"]
    assert [c["id"] for c in items] == [second["id"], first["id"]] and page.json()[
        "nextCursor"
    ] is None
    summary = items[0]
    assert set(summary) == {
        "id",
        "title",
        "description",
        "thumbnailUrl",
        "price",
        "status",
        "creator",
        "lessonCount",
        "publishedAt",
    }
    assert (
        summary["price"] == "49.99"
        and summary["lessonCount"] == 1
        and summary["status"] == "PUBLISHED"
    )
    assert summary["creator"] == {"id": str(creator.id), "name": creator_name(summary)}


def creator_name(summary: dict[str, object]) -> object:
    creator = summary["creator"]
    assert isinstance(creator, dict)
    return creator["name"]


async def test_keyset_pages_cover_everything_once(
    api: httpx.AsyncClient, creator: TestUser, db: asyncpg.Pool
) -> None:
    expected = await seed_published(db, creator, 45)
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        params: dict[str, object] = {"limit": 20}
        if cursor:
            params["cursor"] = cursor
        page = (await api.get("/courses", params=params)).json()
        seen += [c["id"] for c in page["items"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert seen == expected


async def test_bad_cursors_and_limits_are_400(
    api: httpx.AsyncClient, creator: TestUser, db: asyncpg.Pool
) -> None:
    await seed_published(db, creator, 3)
    cursor = (await api.get("/courses", params={"limit": 1})).json()["nextCursor"]
    assert cursor
    body, signature = cursor.split(".")
    for bad in ("garbage", cursor + "x", body[:-2] + "AA." + signature, "." + signature, "a.b.c"):
        assert (await api.get("/courses", params={"cursor": bad})).status_code == 400, bad
    # A cursor is bound to its listing: not valid for a search or another creator.
    assert (await api.get("/courses", params={"cursor": cursor, "q": "course"})).status_code == 400
    assert (
        await api.get("/courses", params={"cursor": cursor, "creatorId": str(creator.id)})
    ).status_code == 400
    for limit in (0, 101, -1):
        assert (await api.get("/courses", params={"limit": limit})).status_code == 400
    assert (await api.get("/courses", params={"creatorId": "nope"})).status_code == 400
    assert (await api.get("/courses", params={"q": "x" * 201})).status_code == 400


async def test_search_is_ranked_and_pages(
    api: httpx.AsyncClient, creator: TestUser, db: asyncpg.Pool
) -> None:
    await seed_published(db, creator, 5, title="Gardening")
    in_title = await db.fetchval(
        """INSERT INTO courses
               (creator_id, title, description, price, status, submitted_at, published_at)
           VALUES ($1, 'Quantum computing for everyone', 'Qubits and gates', 0, 'PUBLISHED',
                   now(), now() - interval '1 day')
           RETURNING id""",
        creator.id,
    )
    in_text = await db.fetchval(
        """INSERT INTO courses
               (creator_id, title, description, price, status, submitted_at, published_at)
           VALUES ($1, 'Physics', 'A short look at quantum ideas', 0, 'PUBLISHED', now(), now())
           RETURNING id""",
        creator.id,
    )
    await db.execute(
        """INSERT INTO courses (creator_id, title, description, price, status)
           VALUES ($1, 'Quantum draft', 'unpublished', 0, 'DRAFT')""",
        creator.id,
    )
    found = (await api.get("/courses", params={"q": "quantum"})).json()
    assert [c["id"] for c in found["items"]] == [str(in_title), str(in_text)]
    first = (await api.get("/courses", params={"q": "quantum", "limit": 1})).json()
    assert first["items"][0]["id"] == str(in_title)
    second = (
        await api.get(
            "/courses", params={"q": "quantum", "limit": 1, "cursor": first["nextCursor"]}
        )
    ).json()
    assert [c["id"] for c in second["items"]] == [str(in_text)] and second["nextCursor"] is None
    assert (await api.get("/courses", params={"q": "gardens"})).json()["items"]  # stemming
    assert (await api.get("/courses", params={"q": "'\"&|!():*"})).status_code == 200
    assert (await api.get("/courses", params={"q": "nothing-matches-this"})).json() == {
        "items": [],
        "nextCursor": None,
    }


async def test_creator_filter(
    api: httpx.AsyncClient, creator: TestUser, make_user, db: asyncpg.Pool
) -> None:  # type: ignore[no-untyped-def]
    other = await make_user("CREATOR")
    mine = await seed_published(db, creator, 3)
    await seed_published(db, other, 2)
    page = (await api.get("/courses", params={"creatorId": str(creator.id), "limit": 2})).json()
    rest = (
        await api.get(
            "/courses", params={"creatorId": str(creator.id), "cursor": page["nextCursor"]}
        )
    ).json()
    assert [c["id"] for c in page["items"] + rest["items"]] == mine
    assert (await api.get("/courses", params={"creatorId": str(uuid.uuid4())})).json()[
        "items"
    ] == []


async def test_etag_and_caching_headers(
    api: httpx.AsyncClient, creator: TestUser, admin: TestUser, learner: TestUser
) -> None:
    course = await published_course(api, creator, admin)
    for url in ("/courses", f"/courses/{course['id']}"):
        first = await api.get(url)
        etag = first.headers["ETag"]
        assert first.headers["Cache-Control"].startswith("public")
        again = await api.get(url, headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.content == b"" and again.headers["ETag"] == etag
        assert (await api.get(url, headers={"If-None-Match": '"other"'})).status_code == 200
        signed_in = await api.get(url, headers=learner.headers)
        assert signed_in.headers["Cache-Control"].startswith("private")
    before = (await api.get("/courses")).headers["ETag"]
    await published_course(api, creator, admin, title="Another")
    assert (await api.get("/courses", headers={"If-None-Match": before})).status_code == 200


async def test_a_search_past_its_time_budget_is_cut_off_with_503(
    api: httpx.AsyncClient, creator: TestUser, db: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lms.domain.courses import catalog

    await seed_published(db, creator, 30, title="Gardening")
    # A search held up in PostgreSQL (a lock here, a common word in a huge catalog in life)
    # past its budget: the statement is cancelled, not awaited. (A budget too short for the
    # query instead would race the answer on a busy machine.)
    monkeypatch.setattr(catalog, "SEARCH_TIMEOUT_SECONDS", 0.2)
    async with db.acquire() as blocker:
        transaction = blocker.transaction()
        await transaction.start()
        try:
            await blocker.execute("LOCK TABLE courses IN ACCESS EXCLUSIVE MODE")
            response = await api.get("/courses", params={"q": "gardening"})
        finally:
            await transaction.rollback()
    assert response.status_code == 503 and response.headers["Retry-After"] == "1"
    monkeypatch.undo()
    # The pool is healthy afterwards: the same search answers.
    again = await api.get("/courses", params={"q": "gardening"})
    assert again.status_code == 200 and len(again.json()["items"]) == 20


async def test_searches_are_rate_limited_per_client(
    api: httpx.AsyncClient, app: Litestar, creator: TestUser, db: asyncpg.Pool, settings: Settings
) -> None:
    await seed_published(db, creator, 3, title="Gardening")
    limit = settings.search_rate_limit_per_minute
    for i in range(limit):
        page = await api.get("/courses", params={"q": f"gardening {i % 3}"})
        assert page.status_code == 200, (i, page.text)
    refused = await api.get("/courses", params={"q": "gardening"})
    assert refused.status_code == 429, refused.text
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.json()["detail"]
    # Browsing without a search is not limited by it; another client searches on.
    assert (await api.get("/courses")).status_code == 200
    async with client_from(app, "198.51.100.31") as other:
        assert (await other.get("/courses", params={"q": "gardening"})).status_code == 200


async def searches_waiting_on_a_lock(db: asyncpg.Pool) -> int:
    count: int = await db.fetchval(
        """
        SELECT count(*) FROM pg_stat_activity
        WHERE datname = current_database() AND wait_event_type = 'Lock'
          AND query LIKE '%websearch_to_tsquery%'
        """
    )
    return count


async def until_searches_wait(db: asyncpg.Pool, count: int) -> None:
    """Polls PostgreSQL (nothing in this process can say when a statement starts waiting)."""
    for _ in range(3000):  # a minute at most: a guard against a hang, not a measurement
        if await searches_waiting_on_a_lock(db) >= count:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{count} searches never waited on the lock")


async def test_searches_past_the_concurrency_cap_wait_briefly_then_are_refused(
    api: httpx.AsyncClient,
    creator: TestUser,
    learner: TestUser,
    db: asyncpg.Pool,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Searches held up in PostgreSQL (a lock on courses here; an expensive query in life) fill
    the cap; one more waits SEARCH_WAIT_SECONDS for a slot, never for a pool connection (it never
    reaches PostgreSQL), and is refused with 503; the pool still serves other requests."""
    from lms.domain.courses import catalog

    await seed_published(db, creator, 3, title="Gardening")
    cap = settings.search_concurrency
    assert cap < settings.db_pool_max
    # The held searches must outlive the test's steps however slow the machine.
    monkeypatch.setattr(catalog, "SEARCH_TIMEOUT_SECONDS", 600.0)
    search = {"q": "gardening"}
    async with db.acquire() as blocker:
        transaction = blocker.transaction()
        await transaction.start()
        await blocker.execute("LOCK TABLE courses IN ACCESS EXCLUSIVE MODE")
        # Each a different page (any would do: no page is kept between searches).
        held = [
            asyncio.ensure_future(api.get("/courses", params={**search, "limit": str(10 + i)}))
            for i in range(cap)
        ]
        try:
            await until_searches_wait(db, cap)
            extra = asyncio.ensure_future(api.get("/courses", params={**search, "limit": "5"}))
            queued = asyncio.ensure_future(until_searches_wait(db, cap + 1))
            done, _ = await asyncio.wait(
                {extra, queued}, timeout=60, return_when=asyncio.FIRST_COMPLETED
            )
            queued.cancel()
            assert extra in done, "the search over the cap reached PostgreSQL"
            refused = extra.result()
            assert refused.status_code == 503, refused.text
            assert refused.headers["Retry-After"].isdigit()
            # Other requests still get a connection while the searches hold theirs.
            me = await asyncio.wait_for(api.get("/auth/me", headers=learner.headers), 60)
            assert me.status_code == 200, me.text
            assert not any(h.done() for h in held)
        finally:
            await transaction.rollback()
        answers = await asyncio.gather(*held)
    assert [a.status_code for a in answers] == [200] * cap
    # The cap counts searches in flight, not searches ever made.
    assert (await api.get("/courses", params=search)).status_code == 200


async def test_a_search_sees_a_publish_at_once_with_the_same_etag_for_everyone(
    api: httpx.AsyncClient, creator: TestUser, learner: TestUser, db: asyncpg.Pool
) -> None:
    """No page is kept in a process: a course published is found by the next search, anonymous
    or not, and the same answer has the same ETag whoever asks."""
    await seed_published(db, creator, 2, title="Beekeeping")
    search = {"q": "beekeeping"}
    first = await api.get("/courses", params=search)
    assert len(first.json()["items"]) == 2
    assert "max-age=30" in first.headers["Cache-Control"]
    again = await api.get("/courses", params=search)
    assert again.headers["ETag"] == first.headers["ETag"]
    await seed_published(db, creator, 1, title="Beekeeping for winter")
    after = await api.get("/courses", params=search)
    assert len(after.json()["items"]) == 3
    assert after.headers["ETag"] != first.headers["ETag"]
    signed_in = await api.get("/courses", params=search, headers=learner.headers)
    assert len(signed_in.json()["items"]) == 3
