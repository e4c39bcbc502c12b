"""Sign-up end to end: register, the mailed code, verify, complete the profile, tokens."""

from __future__ import annotations

import asyncpg
import httpx

from tests.conftest import Outside
from tests.flows import STRONG_PASSWORD, bearer, profile, register_and_verify, sign_up, unique_email
from tests.support.smtp import SIX_DIGITS, code_in, html_of, text_of


async def test_register_verify_complete_profile_gives_a_learner(
    api: httpx.AsyncClient, outside: Outside
) -> None:
    email = unique_email("Ada")
    response = await api.post("/auth/register", json={"email": email.upper()})
    assert response.status_code == 201
    body = response.json()
    assert body["email"] == email.lower() and body["next"] == "verify-email"

    mail = await outside.mailbox.wait_for(email.lower())
    code = code_in(mail)
    assert code in html_of(mail) and len(SIX_DIGITS.findall(text_of(mail))) == 1
    assert mail["From"] and mail["Subject"]

    verified = await api.post("/auth/verify-email", json={"email": email, "otp": code})
    assert verified.status_code == 200
    assert verified.json()["verified"] is True and verified.json()["next"] == "complete-profile"
    profile_token = verified.json()["profileToken"]

    # The profile token is for finishing sign-up, not for the API.
    assert (await api.get("/auth/me", headers=bearer(profile_token))).status_code == 401

    done = await api.post(
        "/auth/complete-profile", json=profile("ada_l"), headers=bearer(profile_token)
    )
    assert done.status_code == 200, done.text
    tokens = done.json()
    assert tokens["tokenType"] == "Bearer" and tokens["expiresIn"] == 900
    user = tokens["user"]
    assert user["role"] == "LEARNER" and user["username"] == "ada_l"
    assert user["emailVerified"] and user["isProfileComplete"] and user["isActive"]
    assert "password" not in str(user).lower() and "hash" not in str(user).lower()

    me = await api.get("/auth/me", headers=bearer(tokens["accessToken"]))
    assert me.status_code == 200 and me.json()["id"] == body["userId"]

    # Completing twice is a conflict; the code cannot be used again.
    again = await api.post(
        "/auth/complete-profile", json=profile("ada_2"), headers=bearer(profile_token)
    )
    assert again.status_code == 409
    reuse = await api.post("/auth/verify-email", json={"email": email, "otp": code})
    assert reuse.status_code == 400


async def test_user_auth_twins_behave_the_same(api: httpx.AsyncClient, outside: Outside) -> None:
    email = unique_email("twin")
    assert (await api.post("/user-auth/register", json={"email": email})).status_code == 201
    code = code_in(await outside.mailbox.wait_for(email))
    verified = await api.post("/user-auth/verify-email-otp", json={"email": email, "otp": code})
    assert verified.status_code == 200
    done = await api.post(
        "/user-auth/complete-profile",
        json=profile("twin_user"),
        headers=bearer(verified.json()["profileToken"]),
    )
    assert done.status_code == 200
    login = await api.post(
        "/user-auth/login", json={"username": "twin_user", "password": STRONG_PASSWORD}
    )
    assert login.status_code == 200 and login.json()["user"]["email"] == email


async def test_a_verified_email_cannot_register_again(
    api: httpx.AsyncClient, outside: Outside
) -> None:
    email = unique_email()
    await sign_up(api, outside.mailbox, email)
    response = await api.post("/auth/register", json={"email": email})
    assert response.status_code == 409


async def test_an_unverified_email_gets_a_fresh_code_and_the_old_one_dies(
    api: httpx.AsyncClient, outside: Outside, db: asyncpg.Pool
) -> None:
    email = unique_email()
    first = await api.post("/auth/register", json={"email": email})
    old_code = code_in(await outside.mailbox.wait_for(email))
    await db.execute("TRUNCATE rate_limit_counters")  # past the resend throttle
    second = await api.post("/auth/register", json={"email": email})
    assert second.status_code == 201 and second.json()["userId"] == first.json()["userId"]
    new_code = code_in(await outside.mailbox.wait_for(email, count=2))
    if old_code != new_code:
        stale = await api.post("/auth/verify-email", json={"email": email, "otp": old_code})
        assert stale.status_code == 400
    assert (
        await api.post("/auth/verify-email", json={"email": email, "otp": new_code})
    ).status_code == 200
    assert await db.fetchval("SELECT count(*) FROM users WHERE email = $1", email) == 1


async def test_register_refuses_bad_input(api: httpx.AsyncClient, db: asyncpg.Pool) -> None:
    cases = [
        {"email": "not-an-email"},
        {"email": unique_email(), "password": "short"},
        {"email": unique_email(), "password": "password123"},
        {"email": unique_email(), "password": "iloveyou!!"},
        {"email": unique_email(), "phoneNumber": "12345"},
        {"email": unique_email(), "phoneNumber": "+1 555 000"},
        {},
        {"email": 42},
    ]
    for body in cases:
        response = await api.post("/auth/register", json=body)
        assert response.status_code == 400, (body, response.text)
        assert set(response.json()) >= {"status_code", "detail"}
    assert await db.fetchval("SELECT count(*) FROM users") == 0


async def test_registration_can_be_closed(api: httpx.AsyncClient, db: asyncpg.Pool, app) -> None:  # type: ignore[no-untyped-def]
    await db.execute("UPDATE system_settings SET registration_open = false")
    await app.state.ctx.system.reload()
    response = await api.post("/auth/register", json={"email": unique_email()})
    assert response.status_code == 403 and "closed" in response.json()["detail"]


async def test_complete_profile_refusals(api: httpx.AsyncClient, outside: Outside) -> None:
    await sign_up(api, outside.mailbox, username="taken_name")
    token = await register_and_verify(api, outside.mailbox, unique_email())
    headers = bearer(token)
    taken = await api.post("/auth/complete-profile", json=profile("Taken_Name"), headers=headers)
    assert taken.status_code == 409
    for bad in (
        profile("x"),
        profile(password="qwertyuiop"),
        profile(password="short"),
        {"username": "abc"},
    ):
        assert (
            await api.post("/auth/complete-profile", json=bad, headers=headers)
        ).status_code == 400
    assert (await api.post("/auth/complete-profile", json=profile())).status_code == 401
    assert (
        await api.post("/auth/complete-profile", json=profile(), headers=bearer("nope"))
    ).status_code == 401
    # Still completable after the refusals.
    assert (
        await api.post("/auth/complete-profile", json=profile(), headers=headers)
    ).status_code == 200


async def test_resend_otp_is_accepted_for_anyone(
    api: httpx.AsyncClient, outside: Outside, db: asyncpg.Pool
) -> None:
    unknown = await api.post("/auth/resend-otp", json={"email": unique_email()})
    assert unknown.status_code == 202
    email = unique_email()
    await api.post("/auth/register", json={"email": email})
    await outside.mailbox.wait_for(email)
    throttled = await api.post("/auth/resend-otp", json={"email": email})
    assert throttled.status_code == 429 and int(throttled.headers["Retry-After"]) >= 1
    await db.execute("TRUNCATE rate_limit_counters")
    assert (await api.post("/auth/resend-otp", json={"email": email})).status_code == 202
    code = code_in(await outside.mailbox.wait_for(email, count=2))
    assert (
        await api.post("/auth/verify-email", json={"email": email, "otp": code})
    ).status_code == 200
