"""Admin bulk enrollment: JSON or CSV in, one result per row out, one statement, audited, and a
clear 4xx that changes nothing for anything malformed."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest

from lms.domain.learning.schemas import BulkEnrollmentResponse
from tests.conftest import TestUser
from tests.integration.courses.helpers import new_course, new_lesson
from tests.integration.learning.helpers import course_with_lessons, enroll


@pytest.fixture
async def course(
    api: httpx.AsyncClient, db: asyncpg.Pool, creator: TestUser, admin: TestUser
) -> dict[str, Any]:
    published, _ = await course_with_lessons(api, db, creator, admin, [None])
    return published


def path(course: dict[str, Any]) -> str:
    return f"/admin/courses/{course['id']}/enrollments"


async def enrolled(db: asyncpg.Pool, course: dict[str, Any]) -> set[uuid.UUID]:
    rows = await db.fetch(
        "SELECT user_id FROM enrollments WHERE course_id = $1", uuid.UUID(course["id"])
    )
    return {r["user_id"] for r in rows}


async def test_json_rows_get_one_result_each_in_order(
    api: httpx.AsyncClient,
    db: asyncpg.Pool,
    admin: TestUser,
    course: dict[str, Any],
    make_user,  # type: ignore[no-untyped-def]
) -> None:
    new, already, other = [await make_user("LEARNER") for _ in range(3)]
    await enroll(api, already, course["id"])
    emails = [
        f"  {new.email.upper()} ",  # addresses match whatever their case and spacing
        "nobody@example.test",
        already.email,
        new.email,  # the same account again: enrolled by the first row
        other.email,
    ]
    response = await api.post(path(course), json={"emails": emails}, headers=admin.headers)
    assert response.status_code == 200, response.text
    body = msgspec.json.decode(response.content, type=BulkEnrollmentResponse, strict=True)
    assert [(r.email, r.status) for r in body.results] == [
        (new.email.upper(), "ENROLLED"),
        ("nobody@example.test", "NO_SUCH_USER"),
        (already.email, "ALREADY_ENROLLED"),
        (new.email, "ALREADY_ENROLLED"),
        (other.email, "ENROLLED"),
    ]
    assert (body.counts.enrolled, body.counts.already_enrolled, body.counts.no_such_user) == (
        2,
        2,
        1,
    )
    assert await enrolled(db, course) == {new.id, already.id, other.id}

    # They are enrolled like anyone: their progress lists the course.
    progress = await api.get("/progress", headers=new.headers)
    assert [e["course"]["id"] for e in progress.json()] == [course["id"]]

    audit = await api.get("/admin/audit?action=course.bulk_enroll", headers=admin.headers)
    [entry] = audit.json()["items"]
    assert entry["targetId"] == course["id"] and entry["actorId"] == str(admin.id)
    assert entry["after"] == {"rows": 5, "enrolled": 2, "alreadyEnrolled": 2, "noSuchUser": 1}


@pytest.mark.parametrize(
    "template",
    [
        "email\n{a}\n{b}\nghost@example.test\n",  # a header
        "{a}\n\n{b}\r\nghost@example.test",  # no header, blank and CRLF lines
        # A byte-order mark and a quoted name with a comma.
        '\ufeffName,Email\n"Ada, Countess",{a}\nBob,{b}\nGhost,ghost@example.test\n',
        "{a},extra,columns\n{b}\nghost@example.test\n",
    ],
    ids=["header", "plain", "named-column", "extra-columns"],
)
async def test_csv_bodies(
    api: httpx.AsyncClient,
    db: asyncpg.Pool,
    admin: TestUser,
    course: dict[str, Any],
    make_user,  # type: ignore[no-untyped-def]
    template: str,
) -> None:
    a, b = [await make_user("LEARNER") for _ in range(2)]
    body = template.format(a=a.email, b=b.email).encode()
    response = await api.post(
        path(course), content=body, headers={**admin.headers, "Content-Type": "text/csv"}
    )
    assert response.status_code == 200, response.text
    assert [(r["email"], r["status"]) for r in response.json()["results"]] == [
        (a.email, "ENROLLED"),
        (b.email, "ENROLLED"),
        ("ghost@example.test", "NO_SUCH_USER"),
    ]
    assert await enrolled(db, course) == {a.id, b.id}


@pytest.mark.parametrize(
    ("content_type", "body", "status"),
    [
        ("application/json", b'{"emails": []}', 400),
        ("application/json", b'{"emails": ["a@b.test", "bad\\u0000@b.test"]}', 400),
        ("application/json", b'{"emails": ["a@b.test", ""]}', 400),
        ("application/json", b'{"emails": "a@b.test"}', 400),
        ("application/json", b'{"emails": ["a@b.test"], "role": "ADMIN"}', 400),
        ("application/json", b'{"emails": [', 400),
        ("application/json", b"[" * 5000, 400),
        ("text/csv", b"\xff\xfe\x00a", 400),
        ("text/csv", b"", 400),
        ("text/csv", b"email\n", 400),
        ("application/xml", b"<emails/>", 415),
        ("multipart/form-data; boundary=x", b"--x--", 415),
    ],
)
async def test_malformed_requests_are_4xx_and_enroll_nobody(
    api: httpx.AsyncClient,
    db: asyncpg.Pool,
    admin: TestUser,
    learner: TestUser,
    course: dict[str, Any],
    content_type: str,
    body: bytes,
    status: int,
) -> None:
    response = await api.post(
        path(course), content=body, headers={**admin.headers, "Content-Type": content_type}
    )
    assert response.status_code == status, response.text
    assert response.json()["status_code"] == status and response.json()["detail"]
    assert await enrolled(db, course) == set()


async def test_too_many_rows_are_refused(
    api: httpx.AsyncClient, db: asyncpg.Pool, admin: TestUser, course: dict[str, Any]
) -> None:
    rows = "\n".join(f"user{i}@example.test" for i in range(50_001)).encode()
    response = await api.post(
        path(course), content=rows, headers={**admin.headers, "Content-Type": "text/csv"}
    )
    assert response.status_code == 400 and "50000" in response.json()["detail"]


class Body:
    """A request body sent in chunks as the server asks for them, counting what it took."""

    def __init__(self, chunk: bytes, size: int) -> None:
        self.chunk = chunk
        self.size = size
        self.taken = 0

    async def __aiter__(self):  # type: ignore[no-untyped-def]
        while self.taken < self.size:
            chunk = self.chunk[: self.size - self.taken]
            self.taken += len(chunk)
            yield chunk


async def test_ten_megabytes_of_rows_are_refused_without_reading_them(
    api: httpx.AsyncClient, db: asyncpg.Pool, admin: TestUser, course: dict[str, Any]
) -> None:
    """10 MB of "a\n" (five million rows): a 4xx that reads no more of the body than the row
    cap needs, and enrolls no one. Announced with its length it is refused before a byte is
    read (the route's body limit); streamed without one (chunked), the reading stops once the
    rows pass the cap."""
    ten_mb = 10_000_000
    announced = Body(b"a\n" * 32_768, ten_mb)
    headers = {**admin.headers, "Content-Type": "text/csv", "Content-Length": str(ten_mb)}
    response = await api.post(path(course), content=announced, headers=headers)
    assert response.status_code == 413, response.text
    assert announced.taken <= 65_536

    streamed = Body(b"a\n" * 32_768, ten_mb)
    headers = {**admin.headers, "Content-Type": "text/csv"}
    response = await api.post(path(course), content=streamed, headers=headers)
    assert response.status_code == 400 and "50000" in response.json()["detail"], response.text
    # The cap is 50,000 rows (100,000 bytes here): the server stopped reading right after.
    assert streamed.taken <= 4 * 65_536
    assert await enrolled(db, course) == set()


async def test_a_streamed_body_past_the_routes_limit_is_413(
    api: httpx.AsyncClient, db: asyncpg.Pool, admin: TestUser, course: dict[str, Any]
) -> None:
    """Few rows but a huge one (a quoted field running on) is cut off at the body limit, or
    sooner by the longest row the CSV may have; nothing is enrolled."""
    body = Body(b'"' + b"x" * 65_535, 20_000_000)
    headers = {**admin.headers, "Content-Type": "text/csv"}
    response = await api.post(path(course), content=body, headers=headers)
    assert response.status_code in (400, 413), response.text
    assert body.taken <= 9 * 1024 * 1024
    long_rows = Body(b"a" * 65_536, 20_000_000)
    response = await api.post(path(course), content=long_rows, headers=headers)
    assert response.status_code in (400, 413), response.text
    assert long_rows.taken <= 9 * 1024 * 1024
    assert await enrolled(db, course) == set()


@pytest.mark.parametrize("character", ["\u202e", "\u2066", "\u200f", "\x07", "\x85"])
async def test_csv_rows_follow_the_text_rules_of_json_rows(
    api: httpx.AsyncClient,
    db: asyncpg.Pool,
    admin: TestUser,
    course: dict[str, Any],
    learner: TestUser,
    character: str,
) -> None:
    """A bidirectional override (U+202E shows "moc.elpmaxe@..." reversed) or a control
    character in an address is a 400 whichever way the rows come, and nothing is enrolled."""
    spoofed = f"{character}{learner.email}"
    csv_body = f"email\n{learner.email}\n{spoofed}\n".encode()
    as_csv = await api.post(
        path(course), content=csv_body, headers={**admin.headers, "Content-Type": "text/csv"}
    )
    assert as_csv.status_code == 400, as_csv.text
    assert f"U+{ord(character):04X}" in as_csv.json()["detail"] and "2" in as_csv.json()["detail"]
    as_json = await api.post(
        path(course), json={"emails": [learner.email, spoofed]}, headers=admin.headers
    )
    assert as_json.status_code == 400, as_json.text
    assert await enrolled(db, course) == set()


async def test_only_published_courses_and_only_admins(
    api: httpx.AsyncClient,
    db: asyncpg.Pool,
    admin: TestUser,
    creator: TestUser,
    learner: TestUser,
    course: dict[str, Any],
) -> None:
    draft = await new_course(api, creator)
    await new_lesson(api, creator, draft["id"])
    body = {"emails": [learner.email]}
    refused = await api.post(path(draft), json=body, headers=admin.headers)
    assert refused.status_code == 409 and "PUBLISHED" in refused.json()["detail"]
    missing = await api.post(path({"id": str(uuid.uuid4())}), json=body, headers=admin.headers)
    assert missing.status_code == 404
    for user in (learner, creator):
        assert (await api.post(path(course), json=body, headers=user.headers)).status_code == 403
    assert await db.fetchval("SELECT count(*) FROM enrollments") == 0


async def test_bulk_and_self_enrollment_racing_make_one_enrollment(
    api: httpx.AsyncClient,
    db: asyncpg.Pool,
    admin: TestUser,
    course: dict[str, Any],
    make_user,  # type: ignore[no-untyped-def]
) -> None:
    for _ in range(3):
        await db.execute("DELETE FROM enrollments")
        learners = [await make_user("LEARNER") for _ in range(20)]
        body = {"emails": [u.email for u in learners]}
        results = await asyncio.gather(
            api.post(path(course), json=body, headers=admin.headers),
            *(api.post(f"/courses/{course['id']}/enroll", headers=u.headers) for u in learners),
            api.post(path(course), json={"emails": body["emails"][::-1]}, headers=admin.headers),
        )
        assert all(r.status_code in (200, 201) for r in results), [r.text for r in results]
        assert await enrolled(db, course) == {u.id for u in learners}
        bulk_enrolled = sum(r.json()["counts"]["enrolled"] for r in (results[0], results[-1]))
        self_enrolled = sum(1 for r in results[1:-1] if r.status_code == 201)
        assert bulk_enrolled + self_enrolled == 20
