"""The kept tops of common searches (lms_0016) give exactly what the plain ranked search gives,
page by page, and stay exact through publishes, unpublishes, edits and concurrent writes."""

from __future__ import annotations

import asyncio
import json
import random
import uuid

import asyncpg
import httpx
import pytest

from lms.db.queries import catalog as sql
from lms.domain.courses import catalog
from tests.conftest import TestUser

WORDS = ("python", "garden", "design", "baking", "chess", "violin", "pottery", "sailing")
# Single words common to rare, pairs (ANDed), a phrase, an OR, a negation, a stop word with one.
QUERIES = (
    "python",
    "garden",
    "sailing",
    "python garden",
    "design baking",
    '"python garden"',
    "chess or violin",
    "python -design",
    "the python",
    "pottery sailing chess",
)
PAGE = 7


async def seed_varied(db: asyncpg.Pool, creator: TestUser, count: int, seed: int = 5) -> None:
    """Courses of few words (so ranks tie a great deal), more of the first words than the last."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        title = " ".join(rng.choices(WORDS, weights=range(len(WORDS), 0, -1), k=rng.randint(1, 3)))
        description = " ".join(rng.choices(WORDS, k=rng.randint(0, 4)))
        rows.append((creator.id, title, description))
    await db.executemany(
        """INSERT INTO courses
               (creator_id, title, description, price, status, submitted_at, published_at)
           VALUES ($1, $2, $3, 10, 'PUBLISHED', now(), now())""",
        rows,
    )


async def walk(db: asyncpg.Pool, query: str, *, kept: bool) -> list[str]:
    """Every page of `query` in order, from the kept top (falling back to the plain search
    below its boundary, as the catalog does) or from the plain search alone."""
    ids: list[str] = []
    after: tuple[float, uuid.UUID] | None = None
    while True:
        row = None
        if kept:
            row = await sql.kept_search_page(db, query=query, limit=PAGE, after=after)
        if row is None:
            row = await sql.search_page(db, query=query, limit=PAGE, after=after, creator_id=None)
        ids += [item["id"] for item in json.loads(row["items"])]
        if not row["more"]:
            return ids
        after = (float(row["last_key"]), row["last_id"])


async def keep_all(db: asyncpg.Pool, rows: int) -> None:
    async with db.acquire() as conn:
        for query in QUERIES:
            await sql.keep_top(conn, query=query, rows=rows, queries=100)


async def assert_same(db: asyncpg.Pool) -> None:
    for query in QUERIES:
        plain = await walk(db, query, kept=False)
        assert plain, query
        assert await walk(db, query, kept=True) == plain, query


async def kept_pages_served(db: asyncpg.Pool, query: str) -> bool:
    return await sql.kept_search_page(db, query=query, limit=PAGE, after=None) is not None


async def test_kept_tops_page_exactly_as_the_plain_search(
    api: httpx.AsyncClient, creator: TestUser, db: asyncpg.Pool
) -> None:
    await seed_varied(db, creator, 400)
    # A top smaller than the matches: pages past its boundary fall back to the plain search.
    await keep_all(db, rows=30)
    assert await kept_pages_served(db, "python")
    assert await db.fetchval("SELECT count(*) FROM search_tops WHERE NOT complete") >= 3
    await assert_same(db)


async def test_publish_unpublish_and_edit_keep_the_tops_exact(
    api: httpx.AsyncClient, creator: TestUser, db: asyncpg.Pool
) -> None:
    await seed_varied(db, creator, 300)
    await keep_all(db, rows=40)
    await seed_varied(db, creator, 60, seed=9)  # published after the tops were kept
    ids = [r["id"] for r in await db.fetch("SELECT id FROM courses ORDER BY id LIMIT 120")]
    await db.execute("UPDATE courses SET status = 'DRAFT' WHERE id = ANY($1)", ids[:40])
    await db.execute(
        "UPDATE courses SET title = 'python python python garden' WHERE id = ANY($1)", ids[40:80]
    )
    await db.execute(
        "UPDATE courses SET title = 'pottery' , description = '' WHERE id = ANY($1)", ids[80:100]
    )
    # A write that changes nothing searchable leaves the kept rows as they are.
    await db.execute("UPDATE courses SET price = 12 WHERE id = ANY($1)", ids[100:])
    await db.execute("DELETE FROM courses WHERE id = ANY($1)", ids[100:110])
    await assert_same(db)
    # Republished: back in.
    await db.execute("UPDATE courses SET status = 'PUBLISHED' WHERE id = ANY($1)", ids[:40])
    await assert_same(db)


async def test_concurrent_publishes_while_tops_are_kept(
    api: httpx.AsyncClient, creator: TestUser, db: asyncpg.Pool
) -> None:
    await seed_varied(db, creator, 300)

    async def publish(seed: int) -> None:
        for i in range(8):
            await seed_varied(db, creator, 5, seed=seed * 100 + i)
            await asyncio.sleep(0)

    async def unpublish() -> None:
        for _ in range(8):
            await db.execute(
                "UPDATE courses SET status = 'DRAFT' WHERE id IN ("
                " SELECT id FROM courses WHERE status = 'PUBLISHED' ORDER BY random() LIMIT 3)"
            )

    await asyncio.gather(
        keep_all(db, rows=25), *(publish(s) for s in range(4)), unpublish(), keep_all(db, rows=25)
    )
    await assert_same(db)


async def test_the_catalog_keeps_a_common_search_and_answers_it_the_same(
    api: httpx.AsyncClient, creator: TestUser, db: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(catalog, "KEEP_FROM_MATCHES", 50)
    monkeypatch.setattr(catalog, "KEPT_ROWS", 30)
    await seed_varied(db, creator, 200)
    first = await api.get("/courses", params={"q": "python", "limit": "10"})
    assert first.status_code == 200, first.text
    await catalog.keeping_done()
    assert await kept_pages_served(db, "python")
    again = await api.get("/courses", params={"q": "python", "limit": "10"})
    assert again.content == first.content and again.headers["ETag"] == first.headers["ETag"]
    # Cursor pages through the kept top and past it match the plain search's ids.
    ids, cursor = [], None
    while True:
        params = {"q": "python", "limit": "10", **({"cursor": cursor} if cursor else {})}
        page = (await api.get("/courses", params=params)).json()
        ids += [item["id"] for item in page["items"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert ids == await walk(db, "python", kept=False)
