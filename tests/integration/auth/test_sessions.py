"""Login, refresh-token rotation with reuse detection, logout and password reset."""

from __future__ import annotations

import asyncio

import asyncpg
import httpx
from argon2 import PasswordHasher

from tests.conftest import Outside, TestUser
from tests.flows import STRONG_PASSWORD, bearer, register_and_verify, sign_up, unique_email
from tests.helpers import eventually
from tests.support.smtp import code_in


async def login(api: httpx.AsyncClient, user: TestUser) -> dict[str, object]:
    response = await api.post("/auth/login", json={"email": user.email, "password": user.password})
    assert response.status_code == 200, response.text
    return dict(response.json())


async def test_login_by_email_or_username(
    api: httpx.AsyncClient, learner: TestUser, db: asyncpg.Pool
) -> None:
    families = "SELECT count(DISTINCT family_id) FROM refresh_tokens WHERE user_id = $1"
    before = await db.fetchval(families, learner.id)
    by_email = await api.post(
        "/auth/login", json={"email": learner.email.upper(), "password": learner.password}
    )
    by_name = await api.post(
        "/auth/login", json={"username": learner.username, "password": learner.password}
    )
    assert by_email.status_code == by_name.status_code == 200
    tokens = by_email.json()
    assert tokens["user"]["id"] == str(learner.id) and tokens["tokenType"] == "Bearer"
    assert tokens["user"]["lastLoginAt"] is not None
    assert (await api.get("/auth/me", headers=bearer(tokens["accessToken"]))).status_code == 200
    assert await db.fetchval(families, learner.id) == before + 2  # a login each


async def test_unknown_user_and_wrong_password_look_the_same(
    api: httpx.AsyncClient, learner: TestUser
) -> None:
    unknown = await api.post(
        "/auth/login", json={"email": unique_email(), "password": learner.password}
    )
    wrong = await api.post(
        "/auth/login", json={"email": learner.email, "password": "not the password"}
    )
    assert unknown.status_code == wrong.status_code == 401
    assert unknown.json() == wrong.json()


async def test_login_needs_exactly_one_identifier(
    api: httpx.AsyncClient, learner: TestUser
) -> None:
    both = {"email": learner.email, "username": learner.username, "password": learner.password}
    for body in (both, {"password": learner.password}, {"email": learner.email}):
        assert (await api.post("/auth/login", json=body)).status_code == 400


async def test_unverified_incomplete_and_inactive_accounts_are_forbidden(
    api: httpx.AsyncClient, outside: Outside, make_user, db: asyncpg.Pool
) -> None:  # type: ignore[no-untyped-def]
    # Registered with a password, never verified: right password, 403.
    email = unique_email()
    await api.post("/auth/register", json={"email": email, "password": STRONG_PASSWORD})
    unverified = await api.post("/auth/login", json={"email": email, "password": STRONG_PASSWORD})
    assert unverified.status_code == 403 and "verified" in unverified.json()["detail"]
    # Verified but the profile is not complete.
    await db.execute("TRUNCATE rate_limit_counters")
    await api.post("/auth/resend-otp", json={"email": email})
    code = code_in(await outside.mailbox.wait_for(email, count=2))
    assert (
        await api.post("/auth/verify-email", json={"email": email, "otp": code})
    ).status_code == 200
    incomplete = await api.post("/auth/login", json={"email": email, "password": STRONG_PASSWORD})
    assert incomplete.status_code == 403 and "profile" in incomplete.json()["detail"]
    # Wrong password on an incomplete account is still the plain 401.
    assert (
        await api.post("/auth/login", json={"email": email, "password": "wrong password!"})
    ).status_code == 401
    inactive = await make_user("LEARNER")
    await db.execute("UPDATE users SET is_active = false WHERE id = $1", inactive.id)
    refused = await api.post(
        "/auth/login", json={"email": inactive.email, "password": inactive.password}
    )
    assert refused.status_code == 403 and "deactivated" in refused.json()["detail"]


async def test_a_weaker_hash_is_upgraded_at_login(
    api: httpx.AsyncClient, learner: TestUser, db: asyncpg.Pool
) -> None:
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(learner.password)
    await db.execute("UPDATE users SET password_hash = $2 WHERE id = $1", learner.id, weak)
    await login(api, learner)
    upgraded = await db.fetchval("SELECT password_hash FROM users WHERE id = $1", learner.id)
    assert upgraded != weak and "m=65536" in upgraded and upgraded.startswith("$argon2id$")
    await login(api, learner)  # and it still verifies


async def test_refresh_rotates_and_reuse_revokes_the_login(
    api: httpx.AsyncClient, learner: TestUser
) -> None:
    first = await login(api, learner)
    other_login = await login(api, learner)
    rotated = await api.post("/auth/refresh", json={"refreshToken": first["refreshToken"]})
    assert rotated.status_code == 200
    second = rotated.json()
    assert second["refreshToken"] != first["refreshToken"] and second["user"]["id"] == str(
        learner.id
    )
    assert (await api.get("/auth/me", headers=bearer(second["accessToken"]))).status_code == 200

    # The old token again: refused, and the whole family dies with it.
    replay = await api.post("/auth/refresh", json={"refreshToken": first["refreshToken"]})
    assert replay.status_code == 401
    revoked = await api.post("/auth/refresh", json={"refreshToken": second["refreshToken"]})
    assert revoked.status_code == 401
    # Another login of the same user is untouched.
    assert (
        await api.post("/auth/refresh", json={"refreshToken": other_login["refreshToken"]})
    ).status_code == 200


async def test_concurrent_refreshes_with_one_token_let_at_most_one_through(
    api: httpx.AsyncClient, learner: TestUser
) -> None:
    tokens = await login(api, learner)
    responses = await asyncio.gather(
        *(
            api.post("/auth/refresh", json={"refreshToken": tokens["refreshToken"]})
            for _ in range(5)
        )
    )
    assert sorted(r.status_code for r in responses) == [200] + [401] * 4


async def test_refresh_refusals(
    api: httpx.AsyncClient, learner: TestUser, db: asyncpg.Pool
) -> None:
    assert (await api.post("/auth/refresh", json={"refreshToken": "made-up"})).status_code == 401
    assert (await api.post("/auth/refresh", json={})).status_code == 400
    tokens = await login(api, learner)
    await db.execute("UPDATE refresh_tokens SET expires_at = now() - interval '1 second'")
    assert (
        await api.post("/auth/refresh", json={"refreshToken": tokens["refreshToken"]})
    ).status_code == 401


async def test_logout_ends_that_login_only(
    api: httpx.AsyncClient, learner: TestUser, make_user
) -> None:  # type: ignore[no-untyped-def]
    first = await login(api, learner)
    second = await login(api, learner)
    rotated = (await api.post("/auth/refresh", json={"refreshToken": first["refreshToken"]})).json()
    headers = bearer(rotated["accessToken"])
    assert (
        await api.post(
            "/auth/logout", json={"refreshToken": rotated["refreshToken"]}, headers=headers
        )
    ).status_code == 204
    assert (
        await api.post("/auth/refresh", json={"refreshToken": rotated["refreshToken"]})
    ).status_code == 401
    assert (
        await api.post("/auth/refresh", json={"refreshToken": second["refreshToken"]})
    ).status_code == 200
    # Someone else's refresh token is not ours to end.
    stranger = await make_user("LEARNER")
    theirs = await login(api, stranger)
    await api.post("/auth/logout", json={"refreshToken": theirs["refreshToken"]}, headers=headers)
    assert (
        await api.post("/auth/refresh", json={"refreshToken": theirs["refreshToken"]})
    ).status_code == 200
    assert (await api.post("/auth/logout", json={"refreshToken": "x"})).status_code == 401


async def test_password_reset_revokes_everything(
    api: httpx.AsyncClient, outside: Outside, db: asyncpg.Pool
) -> None:
    email = unique_email()
    tokens = await sign_up(api, outside.mailbox, email)
    assert (await api.post("/user-auth/forgot-password", json={"email": email})).status_code == 202
    code = code_in(await outside.mailbox.wait_for(email, count=2))
    new_password = "violet-harbour-lantern-7"
    weak = await api.post(
        "/user-auth/reset-password",
        json={"email": email, "otp": code, "newPassword": "123456789012"},
    )
    assert weak.status_code == 400
    wrong = await api.post(
        "/user-auth/reset-password",
        json={"email": email, "otp": f"{(int(code) + 1) % 10**6:06d}", "newPassword": new_password},
    )
    assert wrong.status_code == 400
    reset = await api.post(
        "/user-auth/reset-password", json={"email": email, "otp": code, "newPassword": new_password}
    )
    assert reset.status_code == 200
    assert (await api.get("/auth/me", headers=bearer(tokens["accessToken"]))).status_code == 401
    assert (
        await api.post("/auth/refresh", json={"refreshToken": tokens["refreshToken"]})
    ).status_code == 401
    assert (
        await api.post("/auth/login", json={"email": email, "password": STRONG_PASSWORD})
    ).status_code == 401
    assert (
        await api.post("/auth/login", json={"email": email, "password": new_password})
    ).status_code == 200
    again = await api.post(
        "/user-auth/reset-password", json={"email": email, "otp": code, "newPassword": new_password}
    )
    assert again.status_code == 400


async def test_forgot_password_says_nothing_about_unknown_accounts(
    api: httpx.AsyncClient, outside: Outside, db: asyncpg.Pool, learner: TestUser
) -> None:
    email = unique_email()
    assert (await api.post("/user-auth/forgot-password", json={"email": email})).status_code == 202
    await register_and_verify(api, outside.mailbox, email)  # exists, but cannot log in yet
    assert (
        await api.post("/user-auth/forgot-password", json={"email": unique_email()})
    ).status_code == 202
    # A mail that must arrive, asked for after the ones that must not exist: once it is in and
    # the outbox has nothing left to send, anything those requests had queued would be too.
    assert (
        await api.post("/user-auth/forgot-password", json={"email": learner.email})
    ).status_code == 202
    await outside.mailbox.wait_for(learner.email)

    async def outbox_settled() -> bool:
        pending = "SELECT count(*) FROM outbound_messages WHERE status = 'PENDING'"
        return bool(await db.fetchval(pending) == 0)

    await eventually(outbox_settled, within=10, what="the outbox delivering everything")
    assert len(outside.mailbox.to(email)) == 1  # only the sign-up code
    assert (
        await db.fetchval("SELECT count(*) FROM outbound_messages WHERE recipient = $1", email) == 1
    )
    unknown = await api.post(
        "/user-auth/reset-password",
        json={"email": unique_email(), "otp": "123456", "newPassword": "violet-harbour-lantern-7"},
    )
    assert unknown.status_code == 400
