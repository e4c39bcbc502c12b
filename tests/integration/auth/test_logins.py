"""Logins opened without a sign-in (lms.domain.auth.logins), as tests, the bench and tools open
them: real logins, so everything the API does with a login applies to them."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from lms.domain.auth.logins import UnknownUser, open_login, open_logins
from lms.settings import Settings
from tests.conftest import TestUser
from tests.flows import bearer


async def test_many_logins_open_in_one_go_each_its_own(
    api: httpx.AsyncClient, db: asyncpg.Pool, settings: Settings, make_user: Any
) -> None:
    learner, creator = await make_user("LEARNER"), await make_user("CREATOR")
    users = [learner.id, creator.id, learner.id]  # a user named twice gets two logins
    logins = await open_logins(db, settings, users)
    assert [login.user_id for login in logins] == users
    assert len({login.session_id for login in logins}) == 3
    rows = await db.fetch(
        "SELECT user_id, family_id, expires_at - created_at AS ttl, revoked_at FROM refresh_tokens"
        " WHERE family_id = ANY($1::uuid[])",
        [login.session_id for login in logins],
    )
    assert sorted((r["user_id"], r["family_id"]) for r in rows) == sorted(
        (login.user_id, login.session_id) for login in logins
    )
    assert all(r["revoked_at"] is None for r in rows)
    assert {r["ttl"].total_seconds() for r in rows} == {settings.refresh_token_ttl_seconds}
    for login, role in zip(logins, ("LEARNER", "CREATOR", "LEARNER"), strict=True):
        me = await api.get("/auth/me", headers=bearer(login.access_token))
        assert me.status_code == 200, me.text
        assert (me.json()["id"], me.json()["role"]) == (str(login.user_id), role)


async def test_such_a_login_refreshes_and_ends_as_a_sign_in_does(
    api: httpx.AsyncClient, db: asyncpg.Pool, settings: Settings, learner: TestUser
) -> None:
    mine = await open_login(db, settings, learner.id)
    other = await open_login(db, settings, learner.id)
    rotated = await api.post("/auth/refresh", json={"refreshToken": mine.refresh_token})
    assert rotated.status_code == 200, rotated.text
    out = await api.post(
        "/auth/logout",
        json={"refreshToken": mine.refresh_token},
        headers=bearer(mine.access_token),
    )
    assert out.status_code == 204
    for ended in (mine.access_token, rotated.json()["accessToken"]):
        refused = await api.get("/auth/me", headers=bearer(ended))
        assert refused.status_code == 401 and "this login is revoked" in refused.json()["detail"]
    assert (await api.get("/auth/me", headers=bearer(other.access_token))).status_code == 200


async def test_a_user_id_of_no_user_opens_no_login(
    db: asyncpg.Pool, settings: Settings, learner: TestUser
) -> None:
    before = await db.fetchval("SELECT count(*) FROM refresh_tokens")
    with pytest.raises(UnknownUser):
        await open_logins(db, settings, [learner.id, uuid.uuid4()])
    assert await db.fetchval("SELECT count(*) FROM refresh_tokens") == before
    assert await open_logins(db, settings, []) == []
