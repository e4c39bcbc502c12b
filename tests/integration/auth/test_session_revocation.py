"""A login that ends takes its access tokens with it: a replayed refresh token (token theft),
logout, a refresh that raced a revocation. Checked on a Litestar route (/auth/me) and on a route
the hot lane answers (the progress heartbeat)."""

from __future__ import annotations

import time
import uuid
from typing import Any

import asyncpg
import httpx
import jwt
import pytest

from lms.derived_keys import Purpose, derived_key
from lms.settings import Settings
from tests.conftest import TestUser
from tests.flows import bearer
from tests.integration.learning.helpers import course_with_lessons, enroll, wait_seconds

REVOKED = "this login is revoked; log in again"


async def login(api: httpx.AsyncClient, user: TestUser) -> dict[str, Any]:
    response = await api.post("/auth/login", json={"email": user.email, "password": user.password})
    assert response.status_code == 200, response.text
    return dict(response.json())


async def refresh(api: httpx.AsyncClient, refresh_token: str) -> httpx.Response:
    return await api.post("/auth/refresh", json={"refreshToken": refresh_token})


def sid_of(access_token: str, settings: Settings) -> uuid.UUID:
    key = derived_key(str(settings.jwt_secret), Purpose.ACCESS_TOKEN)
    return uuid.UUID(jwt.decode(access_token, key, algorithms=["HS256"])["sid"])


def signed_access_token(settings: Settings, user: TestUser, **claims: object) -> str:
    """An access token signed with the access key: live, of `user` at its token version."""
    now = int(time.time())
    return jwt.encode(
        {"sub": str(user.id), "role": user.role, "ver": 0, "typ": "access"}
        | {"iat": now, "exp": now + 60}
        | claims,
        derived_key(str(settings.jwt_secret), Purpose.ACCESS_TOKEN),
        algorithm=settings.jwt_algorithm,
    )


@pytest.fixture
async def video_lesson(
    api: httpx.AsyncClient, db: asyncpg.Pool, creator: TestUser, admin: TestUser, learner: TestUser
) -> str:
    """A lesson `learner` is enrolled in, for heartbeats (a route the hot lane answers)."""
    course, lessons = await course_with_lessons(api, db, creator, admin, [600.0])
    await enroll(api, learner, course["id"])
    return str(lessons[0]["id"])


class Routes:
    """One Litestar route and one hot-lane route, asked with a given access token."""

    def __init__(
        self, api: httpx.AsyncClient, lesson_id: str, db: asyncpg.Pool, learner: TestUser
    ) -> None:
        self.api = api
        self.lesson_id = lesson_id
        self.db = db
        self.learner = learner  # every token asked with is one of this learner's logins
        self.position = 0.0

    async def statuses(self, access_token: str) -> tuple[int, int]:
        me = await self.api.get("/auth/me", headers=bearer(access_token))
        self.position += 1
        # A second passes between heartbeats (those of one enrollment come at most one per half
        # second), so that only the token decides the answer.
        await wait_seconds(self.db, self.learner, self.lesson_id, 1.0)
        beat = await self.api.post(
            f"/lessons/{self.lesson_id}/progress",
            json={"positionSeconds": self.position},
            headers=bearer(access_token),
        )
        for refused in (me, beat):
            if refused.status_code == 401:
                assert refused.json()["detail"] == REVOKED, refused.text
        return me.status_code, beat.status_code


async def test_a_replayed_refresh_token_ends_both_access_tokens_of_that_login(
    api: httpx.AsyncClient,
    learner: TestUser,
    video_lesson: str,
    settings: Settings,
    db: asyncpg.Pool,
) -> None:
    routes = Routes(api, video_lesson, db, learner)
    first = await login(api, learner)
    other_login = await login(api, learner)
    rotated = await refresh(api, first["refreshToken"])
    assert rotated.status_code == 200
    second = rotated.json()
    key = derived_key(str(settings.jwt_secret), Purpose.ACCESS_TOKEN)
    claims = [jwt.decode(t["accessToken"], key, algorithms=["HS256"]) for t in (first, second)]
    assert claims[0]["sid"] == claims[1]["sid"] != "", "both name the same login"
    for tokens in (first, second, other_login):
        assert await routes.statuses(tokens["accessToken"]) == (200, 204)

    # The attacker (or the victim) presents the already-used refresh token.
    replay = await refresh(api, first["refreshToken"])
    assert replay.status_code == 401 and "this login is revoked" in replay.json()["detail"]

    # Every token of that login is dead on the next request, whichever path answers it.
    assert await routes.statuses(first["accessToken"]) == (401, 401)
    assert await routes.statuses(second["accessToken"]) == (401, 401)
    assert (await refresh(api, second["refreshToken"])).status_code == 401
    # Another login of the same user goes on.
    assert await routes.statuses(other_login["accessToken"]) == (200, 204)


async def test_logout_ends_the_access_tokens_of_that_login_only(
    api: httpx.AsyncClient, learner: TestUser, video_lesson: str, db: asyncpg.Pool
) -> None:
    routes = Routes(api, video_lesson, db, learner)
    mine, other = await login(api, learner), await login(api, learner)
    out = await api.post(
        "/auth/logout",
        json={"refreshToken": mine["refreshToken"]},
        headers=bearer(mine["accessToken"]),
    )
    assert out.status_code == 204
    assert await routes.statuses(mine["accessToken"]) == (401, 401)
    assert await routes.statuses(other["accessToken"]) == (200, 204)


async def test_a_token_minted_by_a_refresh_that_raced_the_revocation_is_refused(
    api: httpx.AsyncClient,
    learner: TestUser,
    video_lesson: str,
    db: asyncpg.Pool,
    settings: Settings,
) -> None:
    """The revoking UPDATE does not see a token that a concurrent refresh inserted after it
    began: that newest token is left unrevoked in a revoked family. It must not refresh, and its
    access token must not pass."""
    routes = Routes(api, video_lesson, db, learner)
    first = await login(api, learner)
    second = (await refresh(api, first["refreshToken"])).json()
    # As the race leaves it: the older token revoked, the newest one (second's) not.
    await db.execute(
        "UPDATE refresh_tokens SET revoked_at = now() WHERE token_hash = encode(sha256($1), 'hex')",
        first["refreshToken"].encode(),
    )
    live = "SELECT count(*) FROM refresh_tokens WHERE revoked_at IS NULL AND family_id = $1"
    assert await db.fetchval(live, sid_of(second["accessToken"], settings)) == 1
    assert await routes.statuses(second["accessToken"]) == (401, 401)
    assert (await refresh(api, second["refreshToken"])).status_code == 401


async def test_an_access_token_that_names_no_login_is_refused_as_invalid(
    api: httpx.AsyncClient,
    learner: TestUser,
    video_lesson: str,
    settings: Settings,
    db: asyncpg.Pool,
) -> None:
    """Signed with the access key, live, of a user who exists at its token version, but without
    `sid`: it would skip the login check, so it is no access token at all."""
    routes = Routes(api, video_lesson, db, learner)
    assert await routes.statuses(learner.token) == (200, 204)  # the same user, with a login
    sidless = bearer(signed_access_token(settings, learner))
    for answer in (
        await api.get("/auth/me", headers=sidless),
        await api.post(
            f"/lessons/{video_lesson}/progress", json={"positionSeconds": 9}, headers=sidless
        ),
    ):
        assert answer.status_code == 401
        assert answer.json()["detail"] == "invalid token"
        assert answer.headers["www-authenticate"].startswith("Bearer")


async def test_an_access_token_naming_a_login_that_does_not_exist_is_refused(
    api: httpx.AsyncClient,
    learner: TestUser,
    video_lesson: str,
    settings: Settings,
    db: asyncpg.Pool,
) -> None:
    """A made-up `sid` (or a login purged long after it expired) is no live login."""
    routes = Routes(api, video_lesson, db, learner)
    made_up = signed_access_token(settings, learner, sid=str(uuid.uuid4()))
    assert await routes.statuses(made_up) == (401, 401)
