"""The audit log: admin actions listed newest first, filtered by action and actor, paged."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from tests.conftest import TestUser
from tests.flows import all_pages as walk_pages

ENTRY_FIELDS = {
    "id",
    "actorId",
    "action",
    "targetType",
    "targetId",
    "before",
    "after",
    "createdAt",
}


async def entries(api: httpx.AsyncClient, admin: TestUser, **params: Any) -> list[dict[str, Any]]:
    """The first page of /admin/audit."""
    response = await api.get("/admin/audit", params=params, headers=admin.headers)
    assert response.status_code == 200, (params, response.text)
    return list(response.json()["items"])


async def all_pages(
    api: httpx.AsyncClient, admin: TestUser, **params: Any
) -> list[list[dict[str, Any]]]:
    return await walk_pages(api, "/admin/audit", admin.headers, **params)


async def set_role(api: httpx.AsyncClient, admin: TestUser, user: TestUser, role: str) -> None:
    response = await api.patch(
        f"/admin/users/{user.id}", json={"role": role}, headers=admin.headers
    )
    assert response.status_code == 200, response.text


async def set_ttl(api: httpx.AsyncClient, admin: TestUser, seconds: int) -> None:
    response = await api.patch(
        "/admin/settings", json={"otpTtlSeconds": seconds}, headers=admin.headers
    )
    assert response.status_code == 200, response.text


async def test_admin_actions_are_listed_newest_first(
    api: httpx.AsyncClient, make_user: Any, admin: TestUser
) -> None:
    learner, applicant = await make_user("LEARNER"), await make_user("LEARNER")
    await set_role(api, admin, learner, "CREATOR")
    await set_ttl(api, admin, 900)
    applied = await api.post(
        "/creator/apply",
        json={"bio": "Twenty years of teaching chemistry.", "experienceYears": 20},
        headers=applicant.headers,
    )
    application_id = applied.json()["id"]
    approve = f"/admin/applications/{application_id}/approve"
    assert (await api.post(approve, headers=admin.headers)).status_code == 200

    response = await api.get("/admin/audit", headers=admin.headers)
    assert response.status_code == 200
    assert response.json()["nextCursor"] is None
    items = response.json()["items"]
    assert [e["action"] for e in items] == [
        "application.approve",
        "settings.update",
        "user.role_change",
    ]
    assert all(set(e) >= ENTRY_FIELDS and e["actorId"] == str(admin.id) for e in items)
    assert [e["createdAt"] for e in items] == sorted((e["createdAt"] for e in items), reverse=True)
    approval, settings, role_change = items
    assert approval["targetType"] == "creator_application"
    assert approval["targetId"] == application_id
    assert approval["before"] == {"status": "PENDING"}
    assert settings["targetType"] == "system_settings" and settings["targetId"] == "1"
    assert settings["before"] == {"otpTtlSeconds": 600}
    assert settings["after"] == {"otpTtlSeconds": 900}
    assert role_change["targetType"] == "user" and role_change["targetId"] == str(learner.id)
    assert role_change["before"] == {"role": "LEARNER"}
    assert role_change["after"] == {"role": "CREATOR"}


async def test_entries_are_filtered_by_action_and_actor(
    api: httpx.AsyncClient, make_user: Any, admin: TestUser
) -> None:
    other_admin = await make_user("ADMIN")
    first, second, third = [await make_user("LEARNER") for _ in range(3)]
    await set_role(api, admin, first, "CREATOR")
    await set_role(api, other_admin, second, "CREATOR")
    deactivate = await api.patch(
        f"/admin/users/{third.id}", json={"isActive": False}, headers=admin.headers
    )
    assert deactivate.status_code == 200
    await set_ttl(api, other_admin, 700)

    role_changes = await entries(api, admin, action="user.role_change")
    assert [e["targetId"] for e in role_changes] == [str(second.id), str(first.id)]

    by_admin = await entries(api, admin, actorId=str(admin.id))
    assert [(e["action"], e["targetId"]) for e in by_admin] == [
        ("user.deactivate", str(third.id)),
        ("user.role_change", str(first.id)),
    ]
    by_other = await entries(api, other_admin, actorId=str(other_admin.id))
    assert [e["action"] for e in by_other] == ["settings.update", "user.role_change"]
    assert all(e["actorId"] == str(other_admin.id) for e in by_other)

    both = await entries(api, admin, actorId=str(other_admin.id), action="settings.update")
    assert [e["action"] for e in both] == ["settings.update"]
    assert await entries(api, admin, actorId=str(admin.id), action="settings.update") == []
    assert await entries(api, admin, action="no.such.action") == []
    assert await entries(api, admin, actorId=str(uuid.uuid4())) == []
    assert len(await entries(api, admin)) == 4


async def test_entries_page_through_with_a_cursor(
    api: httpx.AsyncClient, make_user: Any, admin: TestUser
) -> None:
    for seconds in (601, 602, 603, 604, 605):
        await set_ttl(api, admin, seconds)
    await set_role(api, admin, await make_user("LEARNER"), "CREATOR")

    everything = await entries(api, admin)
    pages = await all_pages(api, admin, limit=2)
    assert [len(p) for p in pages] == [2, 2, 2]
    seen = [e["id"] for p in pages for e in p]
    assert seen == [e["id"] for e in everything] and len(set(seen)) == 6
    newest_first = [e["after"]["otpTtlSeconds"] for e in everything[1:]]
    assert newest_first == [605, 604, 603, 602, 601]

    filtered = await all_pages(api, admin, limit=2, action="settings.update")
    assert [len(p) for p in filtered] == [2, 2, 1]
    assert [e["id"] for p in filtered for e in p] == [e["id"] for e in everything[1:]]


async def test_audit_list_refuses_bad_queries(
    api: httpx.AsyncClient, make_user: Any, admin: TestUser
) -> None:
    for seconds in (601, 602):
        await set_ttl(api, admin, seconds)
    await make_user("LEARNER")
    users_cursor = (
        await api.get("/admin/users", params={"limit": 1}, headers=admin.headers)
    ).json()["nextCursor"]
    audit_cursor = (
        await api.get("/admin/audit", params={"limit": 1}, headers=admin.headers)
    ).json()["nextCursor"]
    assert users_cursor and audit_cursor
    body, signature = audit_cursor.split(".")

    bad: list[dict[str, Any]] = [
        {"cursor": "garbage"},
        {"cursor": users_cursor},
        {"cursor": f"{body}.{signature[::-1]}"},
        {"cursor": f"{body[:-2]}.{signature}"},
        {"actorId": "not-a-uuid"},
        {"actorId": "12345"},
        {"limit": 0},
        {"limit": 101},
        {"action": "x" * 65},
    ]
    for params in bad:
        response = await api.get("/admin/audit", params=params, headers=admin.headers)
        assert response.status_code == 400, (params, response.text)
        assert set(response.json()) >= {"status_code", "detail"}
    following = await entries(api, admin, limit=1, cursor=audit_cursor)
    assert [e["after"]["otpTtlSeconds"] for e in following] == [601]


async def test_the_audit_log_is_for_admins_only(
    api: httpx.AsyncClient, learner: TestUser, creator: TestUser
) -> None:
    for headers, expected in ((learner.headers, 403), (creator.headers, 403), ({}, 401)):
        assert (await api.get("/admin/audit", headers=headers)).status_code == expected
