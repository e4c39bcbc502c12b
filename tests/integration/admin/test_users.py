"""Admin user management: listing, search, paging, role changes and deactivation."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import httpx
from litestar import Litestar

from lms.domain.paging import encode_cursor
from tests.conftest import TestUser
from tests.flows import all_pages as walk_pages

USER_FIELDS = {
    "id",
    "email",
    "phoneNumber",
    "name",
    "username",
    "fullName",
    "country",
    "state",
    "zip",
    "emailVerified",
    "phoneVerified",
    "isProfileComplete",
    "isActive",
    "role",
    "createdAt",
    "updatedAt",
    "lastLoginAt",
}


async def list_users(
    api: httpx.AsyncClient, admin: TestUser, **params: Any
) -> list[dict[str, Any]]:
    """One page (the first) of /admin/users."""
    response = await api.get("/admin/users", params=params, headers=admin.headers)
    assert response.status_code == 200, (params, response.text)
    return list(response.json()["items"])


async def all_pages(
    api: httpx.AsyncClient, admin: TestUser, **params: Any
) -> list[list[dict[str, Any]]]:
    return await walk_pages(api, "/admin/users", admin.headers, **params)


async def patch_user(
    api: httpx.AsyncClient, admin: TestUser, user_id: uuid.UUID | str, body: Any
) -> httpx.Response:
    return await api.patch(f"/admin/users/{user_id}", json=body, headers=admin.headers)


async def login(api: httpx.AsyncClient, user: TestUser) -> httpx.Response:
    return await api.post("/auth/login", json={"email": user.email, "password": user.password})


async def state_of(db: asyncpg.Pool, user: TestUser) -> tuple[str, bool]:
    row = await db.fetchrow("SELECT role, is_active FROM users WHERE id = $1", user.id)
    assert row is not None
    return row["role"], row["is_active"]


async def test_users_are_listed_newest_first_without_secrets(
    api: httpx.AsyncClient, make_user: Any, admin: TestUser
) -> None:
    others = [await make_user(role) for role in ("LEARNER", "CREATOR", "LEARNER")]
    response = await api.get("/admin/users", headers=admin.headers)
    assert response.status_code == 200
    page = response.json()
    assert page["nextCursor"] is None
    assert [u["id"] for u in page["items"]] == [str(u.id) for u in [*reversed(others), admin]]
    for user in page["items"]:
        assert set(user) >= USER_FIELDS
        assert not [key for key in user if "password" in key.lower() or "hash" in key.lower()]
    assert "argon2" not in response.text and "tokenVersion" not in response.text


async def test_users_are_filtered_by_role(
    api: httpx.AsyncClient, make_user: Any, admin: TestUser
) -> None:
    learners = {str((await make_user("LEARNER")).id) for _ in range(2)}
    creator = await make_user("CREATOR")
    assert {u["id"] for u in await list_users(api, admin, role="LEARNER")} == learners
    assert [u["id"] for u in await list_users(api, admin, role="CREATOR")] == [str(creator.id)]
    assert [u["id"] for u in await list_users(api, admin, role="ADMIN")] == [str(admin.id)]
    for bogus in ("GOD", "learner", ""):
        response = await api.get("/admin/users", params={"role": bogus}, headers=admin.headers)
        assert response.status_code == 400, bogus


async def test_users_are_found_by_prefixes_of_name_email_and_username(
    api: httpx.AsyncClient, db: asyncpg.Pool, make_user: Any, admin: TestUser
) -> None:
    ada, grace, kim = [await make_user(role) for role in ("LEARNER", "LEARNER", "CREATOR")]
    # Names without the random hex tags make_user puts in, so no prefix matches by chance.
    people = [
        (ada, "countess@example.test", "countess", "Ada Lovelace"),
        (grace, "grace.hopper@navy.example.test", "amazing_g", "Grace Hopper"),
        (kim, "kim@example.test", "kim_w", "Kim Wu"),
        (admin, "root@example.test", "root", "Rex Root"),
    ]
    for user, email, username, full_name in people:
        await db.execute(
            "UPDATE users SET email = $2, username = $3, full_name = $4, name = $4 WHERE id = $1",
            user.id,
            email,
            username,
            full_name,
        )

    def ids(items: list[dict[str, Any]]) -> set[str]:
        return {u["id"] for u in items}

    assert ids(await list_users(api, admin, q="ada")) == {str(ada.id)}
    assert ids(await list_users(api, admin, q="LOVE")) == {str(ada.id)}
    assert ids(await list_users(api, admin, q="ada lov")) == {str(ada.id)}
    assert ids(await list_users(api, admin, q="ada hop")) == set()
    assert ids(await list_users(api, admin, q="count")) == {str(ada.id)}
    assert ids(await list_users(api, admin, q="grace.hop")) == {str(grace.id)}
    assert ids(await list_users(api, admin, q="navy")) == {str(grace.id)}
    assert ids(await list_users(api, admin, q="amazing")) == {str(grace.id)}
    assert ids(await list_users(api, admin, q="kim_w")) == {str(kim.id)}
    assert ids(await list_users(api, admin, q="ada", role="CREATOR")) == set()
    assert ids(await list_users(api, admin, q="kim", role="CREATOR")) == {str(kim.id)}
    assert ids(await list_users(api, admin, q="example")) == {str(u.id) for u, *_ in people}
    assert ids(await list_users(api, admin, q="   ")) == {str(u.id) for u, *_ in people}


async def test_search_text_cannot_break_the_query(
    api: httpx.AsyncClient, make_user: Any, admin: TestUser
) -> None:
    await make_user("LEARNER")
    for q in ("a & | ! ('", "':*", "!", "&&", "(((", "a:*b", "\\", "_", "%", "' OR 1=1 --", "<->"):
        response = await api.get("/admin/users", params={"q": q}, headers=admin.headers)
        assert response.status_code == 200, (q, response.text)
    too_long = await api.get("/admin/users", params={"q": "a" * 201}, headers=admin.headers)
    assert too_long.status_code == 400


async def test_users_page_through_with_a_cursor(
    api: httpx.AsyncClient, make_user: Any, admin: TestUser
) -> None:
    learners = [await make_user("LEARNER") for _ in range(5)]
    pages = await all_pages(api, admin, limit=2)
    assert [len(p) for p in pages] == [2, 2, 2]
    seen = [u["id"] for p in pages for u in p]
    assert seen == [str(u.id) for u in [*reversed(learners), admin]]

    filtered = await all_pages(api, admin, limit=2, role="LEARNER")
    assert [len(p) for p in filtered] == [2, 2, 1]
    assert [u["id"] for p in filtered for u in p] == [str(u.id) for u in reversed(learners)]


async def test_user_list_refuses_bad_cursors_and_limits(
    api: httpx.AsyncClient, app: Litestar, make_user: Any, admin: TestUser
) -> None:
    await make_user("LEARNER")
    secret = app.state.ctx.secret
    real = encode_cursor(secret, "users", "2026-01-01T00:00:00+00:00", str(uuid.uuid4()))
    assert (
        await api.get("/admin/users", params={"cursor": real}, headers=admin.headers)
    ).status_code == 200
    bad: list[dict[str, Any]] = [
        {"cursor": "garbage"},
        {"cursor": "a.b"},
        {"cursor": "é.é"},
        {"cursor": "x" * 600},
        {
            "cursor": encode_cursor(
                "another secret", "users", "2026-01-01T00:00:00", str(uuid.uuid4())
            )
        },
        {"cursor": encode_cursor(secret, "audit", "2026-01-01T00:00:00", str(uuid.uuid4()))},
        {"cursor": encode_cursor(secret, "users", "yesterday", "not-a-uuid")},
        {"cursor": encode_cursor(secret, "users", "2026-01-01T00:00:00")},
        {"cursor": encode_cursor(secret, "users")},
        {"limit": 0},
        {"limit": 101},
        {"limit": -5},
    ]
    for params in bad:
        response = await api.get("/admin/users", params=params, headers=admin.headers)
        assert response.status_code == 400, (params, response.text)
        assert set(response.json()) >= {"status_code", "detail"}
    assert len(await list_users(api, admin, limit=100)) == 2


async def test_patch_refuses_bad_bodies_and_unknown_users(
    api: httpx.AsyncClient, db: asyncpg.Pool, learner: TestUser, admin: TestUser
) -> None:
    bad_bodies: list[Any] = [
        {},
        {"role": "GOD"},
        {"role": "learner"},
        {"role": None},
        {"isActive": "no"},
        {"role": "CREATOR", "isAdmin": True},
        {"passwordHash": "x"},
        [],
    ]
    for body in bad_bodies:
        response = await patch_user(api, admin, learner.id, body)
        assert response.status_code == 400, (body, response.text)
    missing = await patch_user(api, admin, uuid.uuid4(), {"role": "CREATOR"})
    assert missing.status_code == 404
    assert await state_of(db, learner) == ("LEARNER", True)
    assert await db.fetchval("SELECT count(*) FROM audit_log") == 0


async def test_admins_cannot_demote_or_deactivate_themselves(
    api: httpx.AsyncClient, db: asyncpg.Pool, admin: TestUser
) -> None:
    for body in (
        {"role": "LEARNER"},
        {"role": "CREATOR"},
        {"isActive": False},
        {"role": "ADMIN", "isActive": False},
    ):
        response = await patch_user(api, admin, admin.id, body)
        assert response.status_code == 409, (body, response.text)
    assert await state_of(db, admin) == ("ADMIN", True)
    assert await db.fetchval("SELECT count(*) FROM audit_log") == 0
    assert (await api.get("/admin/users", headers=admin.headers)).status_code == 200

    # Saying what already holds is allowed, and changes (and audits) nothing.
    same = await patch_user(api, admin, admin.id, {"role": "ADMIN", "isActive": True})
    assert same.status_code == 200 and same.json()["role"] == "ADMIN"
    assert await db.fetchval("SELECT count(*) FROM audit_log") == 0


async def test_promotion_changes_the_role_and_is_audited(
    api: httpx.AsyncClient, db: asyncpg.Pool, learner: TestUser, admin: TestUser
) -> None:
    response = await patch_user(api, admin, learner.id, {"role": "CREATOR"})
    assert response.status_code == 200, response.text
    user = response.json()
    assert user["id"] == str(learner.id) and user["role"] == "CREATOR" and user["isActive"]
    assert set(user) >= USER_FIELDS and "passwordHash" not in user
    assert await state_of(db, learner) == ("CREATOR", True)
    me = await api.get("/auth/me", headers=learner.headers)
    assert me.status_code == 200 and me.json()["role"] == "CREATOR"

    rows = await db.fetch("SELECT * FROM audit_log")
    assert len(rows) == 1
    entry = rows[0]
    assert entry["action"] == "user.role_change" and entry["actor_id"] == admin.id
    assert entry["target_type"] == "user" and entry["target_id"] == str(learner.id)
    assert entry["before"] == {"role": "LEARNER"} and entry["after"] == {"role": "CREATOR"}


async def test_deactivation_ends_every_session_and_reactivation_allows_login(
    api: httpx.AsyncClient, db: asyncpg.Pool, learner: TestUser, admin: TestUser
) -> None:
    session = await login(api, learner)
    assert session.status_code == 200, session.text
    refresh_token = session.json()["refreshToken"]
    assert (await api.get("/auth/me", headers=learner.headers)).status_code == 200

    response = await patch_user(api, admin, learner.id, {"isActive": False})
    assert response.status_code == 200 and response.json()["isActive"] is False
    assert await state_of(db, learner) == ("LEARNER", False)
    entry = await db.fetchrow("SELECT * FROM audit_log")
    assert entry is not None and entry["action"] == "user.deactivate"
    assert entry["actor_id"] == admin.id and entry["target_id"] == str(learner.id)
    assert entry["before"] == {"isActive": True} and entry["after"] == {"isActive": False}

    assert (await api.get("/auth/me", headers=learner.headers)).status_code == 401
    session_token = {"Authorization": f"Bearer {session.json()['accessToken']}"}
    assert (await api.get("/auth/me", headers=session_token)).status_code == 401
    assert (await login(api, learner)).status_code == 403
    refreshed = await api.post("/auth/refresh", json={"refreshToken": refresh_token})
    assert refreshed.status_code == 401
    live = await db.fetchval(
        "SELECT count(*) FROM refresh_tokens WHERE user_id = $1 AND revoked_at IS NULL", learner.id
    )
    assert live == 0

    back = await patch_user(api, admin, learner.id, {"isActive": True})
    assert back.status_code == 200 and back.json()["isActive"] is True
    actions = [
        r["action"] for r in await db.fetch("SELECT action FROM audit_log ORDER BY created_at")
    ]
    assert actions == ["user.deactivate", "user.activate"]
    again = await login(api, learner)
    assert again.status_code == 200, again.text
    fresh = {"Authorization": f"Bearer {again.json()['accessToken']}"}
    assert (await api.get("/auth/me", headers=fresh)).status_code == 200
    # What was revoked stays revoked.
    assert (await api.get("/auth/me", headers=learner.headers)).status_code == 401
    assert (
        await api.post("/auth/refresh", json={"refreshToken": refresh_token})
    ).status_code == 401


async def test_a_demoted_admin_loses_admin_access_on_the_next_request(
    api: httpx.AsyncClient, make_user: Any, admin: TestUser
) -> None:
    other = await make_user("ADMIN")
    assert (await api.get("/admin/users", headers=other.headers)).status_code == 200
    response = await patch_user(api, admin, other.id, {"role": "LEARNER"})
    assert response.status_code == 200 and response.json()["role"] == "LEARNER"
    assert (await api.get("/admin/users", headers=other.headers)).status_code == 403
    me = await api.get("/auth/me", headers=other.headers)
    assert me.status_code == 200 and me.json()["role"] == "LEARNER"


async def test_user_management_is_for_admins_only(
    api: httpx.AsyncClient, db: asyncpg.Pool, learner: TestUser, creator: TestUser
) -> None:
    for headers, expected in ((learner.headers, 403), (creator.headers, 403), ({}, 401)):
        assert (await api.get("/admin/users", headers=headers)).status_code == expected
        response = await api.patch(
            f"/admin/users/{learner.id}", json={"role": "ADMIN"}, headers=headers
        )
        assert response.status_code == expected
    assert await state_of(db, learner) == ("LEARNER", True)
