"""Creator applications: learners apply, admins list, approve or reject them, under concurrency."""

from __future__ import annotations

import asyncio
import base64
import uuid
from typing import Any

import asyncpg
import httpx

from tests.conftest import Outside, TestUser
from tests.flows import all_pages as walk_pages
from tests.flows import bearer
from tests.support.smtp import text_of

BIO = "I have taught Python to working adults for six years."
APPLICATION_FIELDS = {
    "id",
    "userId",
    "bio",
    "portfolioUrl",
    "experienceYears",
    "status",
    "reviewerNotes",
    "reviewerId",
    "createdAt",
    "reviewedAt",
}


def application(**overrides: Any) -> dict[str, Any]:
    return {
        "bio": BIO,
        "experienceYears": 6,
        "portfolioUrl": "https://ada.example.test",
        **overrides,
    }


async def apply(api: httpx.AsyncClient, user: TestUser, **overrides: Any) -> dict[str, Any]:
    response = await api.post("/creator/apply", json=application(**overrides), headers=user.headers)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def decide(
    api: httpx.AsyncClient, admin: TestUser, application_id: str, verb: str, notes: str | None
) -> httpx.Response:
    body = None if notes is None else {"notes": notes}
    return await api.post(
        f"/admin/applications/{application_id}/{verb}", json=body, headers=admin.headers
    )


async def all_pages(
    api: httpx.AsyncClient, admin: TestUser, **params: Any
) -> list[list[dict[str, Any]]]:
    return await walk_pages(api, "/admin/applications", admin.headers, **params)


async def role_of(db: asyncpg.Pool, user: TestUser) -> str:
    return str(await db.fetchval("SELECT role FROM users WHERE id = $1", user.id))


async def test_a_learner_applies_and_sees_the_application_pending(
    api: httpx.AsyncClient, learner: TestUser, db: asyncpg.Pool
) -> None:
    none = await api.get("/creator/status", headers=learner.headers)
    assert none.status_code == 200 and none.json()["status"] == "NONE"
    assert none.json().get("application") is None

    created = await apply(api, learner, bio=f"  {BIO}  ", experienceYears=6)
    assert set(created) == APPLICATION_FIELDS
    assert created["userId"] == str(learner.id) and created["status"] == "PENDING"
    assert created["bio"] == BIO and created["experienceYears"] == 6
    assert created["portfolioUrl"] == "https://ada.example.test"
    assert created["reviewerNotes"] is None and created["reviewerId"] is None
    assert created["reviewedAt"] is None and created["createdAt"].endswith("Z")

    status = await api.get("/creator/status", headers=learner.headers)
    assert status.status_code == 200
    assert status.json() == {"status": "PENDING", "application": created}
    row = await db.fetchrow("SELECT user_id, status FROM creator_applications")
    assert row is not None and row["user_id"] == learner.id and row["status"] == "PENDING"


async def test_the_portfolio_url_is_optional(api: httpx.AsyncClient, make_user: Any) -> None:
    without = await apply(api, await make_user("LEARNER"), portfolioUrl=None)
    blank = await apply(api, await make_user("LEARNER"), portfolioUrl="   ")
    plain_http = await apply(api, await make_user("LEARNER"), portfolioUrl="http://me.test/a")
    assert without["portfolioUrl"] is None and blank["portfolioUrl"] is None
    assert plain_http["portfolioUrl"] == "http://me.test/a"


async def test_one_pending_application_at_a_time(
    api: httpx.AsyncClient, learner: TestUser, db: asyncpg.Pool
) -> None:
    await apply(api, learner)
    again = await api.post("/creator/apply", json=application(), headers=learner.headers)
    assert again.status_code == 409
    assert await db.fetchval("SELECT count(*) FROM creator_applications") == 1


async def test_creators_and_admins_cannot_apply(
    api: httpx.AsyncClient, creator: TestUser, admin: TestUser, db: asyncpg.Pool
) -> None:
    for user in (creator, admin):
        response = await api.post("/creator/apply", json=application(), headers=user.headers)
        assert response.status_code == 409, (user.role, response.text)
    assert await db.fetchval("SELECT count(*) FROM creator_applications") == 0


async def test_apply_refuses_bad_bodies(
    api: httpx.AsyncClient, learner: TestUser, db: asyncpg.Pool
) -> None:
    cases: list[dict[str, Any]] = [
        application(bio="x" * 19),
        application(bio="   short bio   "),
        application(bio="x" * 5001),
        application(experienceYears=-1),
        application(experienceYears=81),
        application(experienceYears="five"),
        application(portfolioUrl="ftp://files.example.test/me"),
        application(portfolioUrl="not a url"),
        application(portfolioUrl="http://"),
        application(portfolioUrl="javascript:alert(1)"),
        {"experienceYears": 3},
        {"bio": BIO},
        {},
    ]
    for body in cases:
        response = await api.post("/creator/apply", json=body, headers=learner.headers)
        assert response.status_code == 400, (body, response.text)
        assert set(response.json()) >= {"status_code", "detail"}
    assert await db.fetchval("SELECT count(*) FROM creator_applications") == 0

    # The limits themselves are accepted.
    edge = await apply(api, learner, bio="y" * 20, experienceYears=0, portfolioUrl=None)
    assert edge["bio"] == "y" * 20 and edge["experienceYears"] == 0


async def test_experience_of_eighty_years_is_accepted(
    api: httpx.AsyncClient, learner: TestUser
) -> None:
    created = await apply(api, learner, bio="z" * 5000, experienceYears=80)
    assert created["experienceYears"] == 80 and len(created["bio"]) == 5000


async def test_apply_and_status_need_a_token(api: httpx.AsyncClient, db: asyncpg.Pool) -> None:
    assert (await api.post("/creator/apply", json=application())).status_code == 401
    assert (
        await api.post("/creator/apply", json=application(), headers=bearer("garbage"))
    ).status_code == 401
    assert (await api.get("/creator/status")).status_code == 401
    assert await db.fetchval("SELECT count(*) FROM creator_applications") == 0


async def test_concurrent_applies_make_exactly_one_application(
    api: httpx.AsyncClient, learner: TestUser, db: asyncpg.Pool
) -> None:
    responses = await asyncio.gather(
        *(api.post("/creator/apply", json=application(), headers=learner.headers) for _ in range(5))
    )
    assert sorted(r.status_code for r in responses) == [201, 409, 409, 409, 409]
    assert await db.fetchval("SELECT count(*) FROM creator_applications") == 1


async def test_admin_pages_through_applications_newest_first(
    api: httpx.AsyncClient, make_user: Any, admin: TestUser
) -> None:
    created = [await apply(api, await make_user("LEARNER")) for _ in range(5)]
    newest_first = [a["id"] for a in reversed(created)]

    pages = await all_pages(api, admin, limit=2)
    assert [len(page) for page in pages] == [2, 2, 1]
    seen = [item["id"] for page in pages for item in page]
    assert seen == newest_first and len(set(seen)) == 5
    assert all(set(item) == APPLICATION_FIELDS for page in pages for item in page)

    everything = await api.get("/admin/applications", headers=admin.headers)
    assert everything.status_code == 200
    assert [a["id"] for a in everything.json()["items"]] == newest_first
    assert everything.json()["nextCursor"] is None

    exact = await api.get("/admin/applications", params={"limit": 5}, headers=admin.headers)
    assert len(exact.json()["items"]) == 5 and exact.json()["nextCursor"] is None


async def test_admin_filters_applications_by_status(
    api: httpx.AsyncClient, make_user: Any, admin: TestUser
) -> None:
    approved, rejected, pending = [await apply(api, await make_user("LEARNER")) for _ in range(3)]
    assert (await decide(api, admin, approved["id"], "approve", None)).status_code == 200
    assert (await decide(api, admin, rejected["id"], "reject", "Not yet")).status_code == 200

    for status, expected in (
        ("PENDING", pending),
        ("APPROVED", approved),
        ("REJECTED", rejected),
    ):
        pages = await all_pages(api, admin, status=status, limit=1)
        items = [item for page in pages for item in page]
        assert [(i["id"], i["status"]) for i in items] == [(expected["id"], status)], status


async def test_application_list_refuses_bad_queries(
    api: httpx.AsyncClient, make_user: Any, admin: TestUser
) -> None:
    for _ in range(3):
        await apply(api, await make_user("LEARNER"))
    first = await api.get("/admin/applications", params={"limit": 1}, headers=admin.headers)
    cursor = first.json()["nextCursor"]
    assert cursor
    body, signature = cursor.split(".")
    payload = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    forged = payload.replace(b"applications", b"applicationz")
    forged_cursor = base64.urlsafe_b64encode(forged).rstrip(b"=").decode() + "." + signature
    flipped = signature[:-1] + ("A" if signature[-1] != "A" else "B")
    users_cursor = (
        await api.get("/admin/users", params={"limit": 1}, headers=admin.headers)
    ).json()["nextCursor"]
    assert users_cursor

    bad_queries: list[dict[str, Any]] = [
        {"cursor": "garbage"},
        {"cursor": "not.base64!!"},
        {"cursor": f"{body}.{flipped}"},
        {"cursor": forged_cursor},
        {"cursor": users_cursor},
        {"cursor": "x" * 600},
        {"limit": 0},
        {"limit": 101},
        {"limit": "ten"},
        {"status": "BOGUS"},
    ]
    for params in bad_queries:
        response = await api.get("/admin/applications", params=params, headers=admin.headers)
        assert response.status_code == 400, (params, response.text)

    following = await api.get(
        "/admin/applications", params={"limit": 1, "cursor": cursor}, headers=admin.headers
    )
    assert following.status_code == 200
    assert following.json()["items"][0]["id"] != first.json()["items"][0]["id"]


async def test_approval_makes_the_applicant_a_creator_at_once(
    api: httpx.AsyncClient, outside: Outside, db: asyncpg.Pool, learner: TestUser, admin: TestUser
) -> None:
    created = await apply(api, learner)
    response = await decide(api, admin, created["id"], "approve", "Welcome aboard")
    assert response.status_code == 200, response.text
    approved = response.json()
    assert approved["id"] == created["id"] and approved["status"] == "APPROVED"
    assert approved["reviewerId"] == str(admin.id) and approved["reviewedAt"]
    assert approved["reviewerNotes"] == "Welcome aboard"

    assert await role_of(db, learner) == "CREATOR"
    me = await api.get("/auth/me", headers=learner.headers)  # the token issued to a LEARNER
    assert me.status_code == 200 and me.json()["role"] == "CREATOR"
    status = await api.get("/creator/status", headers=learner.headers)
    assert status.json()["status"] == "APPROVED"
    assert status.json()["application"]["id"] == created["id"]

    mail = await outside.mailbox.wait_for(learner.email)
    assert "approved" in text_of(mail) and "Welcome aboard" in text_of(mail)

    rows = await db.fetch("SELECT * FROM audit_log")
    assert len(rows) == 1
    entry = rows[0]
    assert entry["action"] == "application.approve" and entry["actor_id"] == admin.id
    assert entry["target_type"] == "creator_application"
    assert entry["target_id"] == created["id"]
    assert entry["before"] == {"status": "PENDING"}
    assert entry["after"]["status"] == "APPROVED" and entry["after"]["roleChanged"] is True
    assert entry["after"]["userId"] == str(learner.id)


async def test_approval_needs_no_body(
    api: httpx.AsyncClient, db: asyncpg.Pool, make_user: Any, admin: TestUser
) -> None:
    first, second = await make_user("LEARNER"), await make_user("LEARNER")
    a, b = await apply(api, first), await apply(api, second)
    bare = await api.post(f"/admin/applications/{a['id']}/approve", headers=admin.headers)
    empty = await api.post(f"/admin/applications/{b['id']}/approve", json={}, headers=admin.headers)
    for response in (bare, empty):
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "APPROVED"
        assert response.json()["reviewerNotes"] is None
    assert await role_of(db, first) == await role_of(db, second) == "CREATOR"


async def test_a_decided_application_cannot_be_decided_again(
    api: httpx.AsyncClient, db: asyncpg.Pool, make_user: Any, admin: TestUser
) -> None:
    approved = await apply(api, await make_user("LEARNER"))
    rejected_by = await make_user("LEARNER")
    rejected = await apply(api, rejected_by)
    assert (await decide(api, admin, approved["id"], "approve", None)).status_code == 200
    assert (await decide(api, admin, rejected["id"], "reject", "No")).status_code == 200

    assert (await decide(api, admin, approved["id"], "approve", None)).status_code == 409
    assert (
        await decide(api, admin, approved["id"], "reject", "Changed my mind")
    ).status_code == 409
    assert (await decide(api, admin, rejected["id"], "approve", None)).status_code == 409
    assert (await decide(api, admin, rejected["id"], "reject", "Again")).status_code == 409

    statuses = dict(await db.fetch("SELECT id::text, status FROM creator_applications"))
    assert statuses == {approved["id"]: "APPROVED", rejected["id"]: "REJECTED"}
    assert await role_of(db, rejected_by) == "LEARNER"
    assert await db.fetchval("SELECT count(*) FROM audit_log") == 2


async def test_unknown_application_is_404(api: httpx.AsyncClient, admin: TestUser) -> None:
    unknown = str(uuid.uuid4())
    assert (await decide(api, admin, unknown, "approve", None)).status_code == 404
    assert (await decide(api, admin, unknown, "reject", "No")).status_code == 404


async def test_rejection_keeps_the_learner_and_allows_a_new_application(
    api: httpx.AsyncClient, outside: Outside, db: asyncpg.Pool, learner: TestUser, admin: TestUser
) -> None:
    created = await apply(api, learner)
    response = await decide(api, admin, created["id"], "reject", "Show us a sample lesson")
    assert response.status_code == 200, response.text
    rejected = response.json()
    assert (
        rejected["status"] == "REJECTED" and rejected["reviewerNotes"] == "Show us a sample lesson"
    )
    assert rejected["reviewerId"] == str(admin.id) and rejected["reviewedAt"]

    assert await role_of(db, learner) == "LEARNER"
    assert (await api.get("/auth/me", headers=learner.headers)).json()["role"] == "LEARNER"
    mail = await outside.mailbox.wait_for(learner.email)
    assert "not approved" in text_of(mail) and "Show us a sample lesson" in text_of(mail)

    entry = await db.fetchrow("SELECT * FROM audit_log")
    assert entry is not None and entry["action"] == "application.reject"
    assert entry["actor_id"] == admin.id and entry["target_id"] == created["id"]
    assert entry["after"]["status"] == "REJECTED" and entry["after"]["roleChanged"] is False

    status = await api.get("/creator/status", headers=learner.headers)
    assert status.json()["status"] == "REJECTED"
    second = await apply(api, learner)
    assert second["id"] != created["id"] and second["status"] == "PENDING"
    status = await api.get("/creator/status", headers=learner.headers)
    assert (
        status.json()["status"] == "PENDING" and status.json()["application"]["id"] == second["id"]
    )


async def test_rejection_needs_notes(
    api: httpx.AsyncClient, db: asyncpg.Pool, learner: TestUser, admin: TestUser
) -> None:
    created = await apply(api, learner)
    path = f"/admin/applications/{created['id']}/reject"
    for body in (None, {}, {"notes": ""}, {"notes": None}, {"notes": "x" * 5001}):
        response = await api.post(path, json=body, headers=admin.headers)
        assert response.status_code == 400, (body, response.text)
    status = await db.fetchval("SELECT status FROM creator_applications")
    assert status == "PENDING"
    assert await db.fetchval("SELECT count(*) FROM audit_log") == 0


async def test_blank_rejection_notes_are_refused(
    api: httpx.AsyncClient, db: asyncpg.Pool, learner: TestUser, admin: TestUser
) -> None:
    """Notes are required: whitespace alone is no explanation for the applicant."""
    created = await apply(api, learner)
    response = await decide(api, admin, created["id"], "reject", " \n\t ")
    assert response.status_code == 400, response.text
    assert await db.fetchval("SELECT status FROM creator_applications") == "PENDING"


async def test_concurrent_decisions_have_one_winner(
    api: httpx.AsyncClient, db: asyncpg.Pool, make_user: Any, admin: TestUser
) -> None:
    for _ in range(3):
        created = await apply(api, await make_user("LEARNER"))
        approve, reject = await asyncio.gather(
            decide(api, admin, created["id"], "approve", None),
            decide(api, admin, created["id"], "reject", "Too late?"),
        )
        assert sorted((approve.status_code, reject.status_code)) == [200, 409]
        winner = approve if approve.status_code == 200 else reject
        stored = await db.fetchval(
            "SELECT status FROM creator_applications WHERE id = $1", uuid.UUID(created["id"])
        )
        assert stored == winner.json()["status"]
        audited = await db.fetchval(
            "SELECT count(*) FROM audit_log WHERE target_id = $1", created["id"]
        )
        assert audited == 1


async def test_review_is_for_admins_only(
    api: httpx.AsyncClient, db: asyncpg.Pool, learner: TestUser, creator: TestUser
) -> None:
    created = await apply(api, learner)
    approve = f"/admin/applications/{created['id']}/approve"
    reject = f"/admin/applications/{created['id']}/reject"
    for headers, expected in ((learner.headers, 403), (creator.headers, 403), ({}, 401)):
        assert (await api.get("/admin/applications", headers=headers)).status_code == expected
        assert (await api.post(approve, headers=headers)).status_code == expected
        assert (
            await api.post(reject, json={"notes": "no"}, headers=headers)
        ).status_code == expected
    assert await db.fetchval("SELECT status FROM creator_applications") == "PENDING"
    assert await role_of(db, learner) == "LEARNER"
