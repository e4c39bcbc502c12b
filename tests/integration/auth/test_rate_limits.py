"""Rate limits on /auth: per endpoint and client IP (counters in PostgreSQL) and per account."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

import asyncpg
import httpx

from lms.settings import Settings
from tests.flows import unique_email


class Account(Protocol):
    """What the tests use of tests.conftest.TestUser (typed here without importing conftest)."""

    email: str
    username: str
    password: str


MakeUser = Callable[..., Awaitable[Account]]
CLIENT_IP = "127.0.0.1"  # the test client's peer address
# Refused by the login service itself, after the per-IP guard and before any password hashing.
CHEAP_LOGIN = {"password": "whatever-password"}


def assert_too_many(response: httpx.Response, longest_wait: int) -> int:
    assert response.status_code == 429, response.text
    retry_after = response.headers["Retry-After"]
    assert retry_after.isdigit(), retry_after
    seconds = int(retry_after)
    assert 1 <= seconds <= longest_wait
    body = response.json()
    assert body["status_code"] == 429 and isinstance(body["detail"], str) and body["detail"]
    return seconds


async def hits(db: asyncpg.Pool, key: str) -> int | None:
    value = await db.fetchval("SELECT hits FROM rate_limit_counters WHERE key = $1", key)
    return None if value is None else int(value)


async def test_an_ip_gets_the_configured_number_of_requests_a_minute_per_endpoint(
    api: httpx.AsyncClient, db: asyncpg.Pool, settings: Settings
) -> None:
    limit = settings.auth_rate_limit_per_minute
    assert limit == 60
    for i in range(limit):
        response = await api.post("/auth/refresh", json={"refreshToken": "x"})
        assert response.status_code == 401, (i, response.text)
    assert_too_many(await api.post("/auth/refresh", json={"refreshToken": "x"}), 60)
    # Still refused: the window has not moved, and a valid-looking body changes nothing.
    assert_too_many(await api.post("/auth/refresh", json={"refreshToken": "y" * 40}), 60)

    # Another endpoint from the same address keeps its own allowance.
    login = await api.post("/auth/login", json={"email": unique_email(), "password": "nope-nope-1"})
    assert login.status_code == 401, login.text

    # The counters are rows in PostgreSQL, shared by every API process.
    assert await hits(db, f"ip:refresh:{CLIENT_IP}:60") == limit + 2
    assert await hits(db, f"ip:login:{CLIENT_IP}:60") == 1
    # Operators see refusals in /metrics, by limit.
    metrics = (await api.get("/metrics")).text
    assert 'lms_rate_limited_total{limit="ip:refresh"}' in metrics


async def test_login_and_its_user_auth_twin_share_one_counter(api: httpx.AsyncClient) -> None:
    for i in range(60):
        path = "/auth/login" if i % 2 else "/user-auth/login"
        response = await api.post(path, json=CHEAP_LOGIN)
        assert response.status_code == 400, (i, response.text)
    assert_too_many(await api.post("/user-auth/login", json=CHEAP_LOGIN), 60)
    assert_too_many(await api.post("/auth/login", json=CHEAP_LOGIN), 60)
    # Other endpoints are untouched.
    refresh = await api.post("/auth/refresh", json={"refreshToken": "x"})
    assert refresh.status_code == 401


async def test_x_forwarded_for_does_not_escape_the_limit_without_trusted_proxies(
    api: httpx.AsyncClient, db: asyncpg.Pool, settings: Settings
) -> None:
    assert settings.trusted_proxies == ()
    for i in range(60):
        response = await api.post(
            "/auth/login", json=CHEAP_LOGIN, headers={"X-Forwarded-For": f"10.9.{i}.9"}
        )
        assert response.status_code == 400, (i, response.text)
    forged = await api.post(
        "/auth/login", json=CHEAP_LOGIN, headers={"X-Forwarded-For": "10.9.9.9"}
    )
    assert_too_many(forged, 60)
    keys = [r["key"] for r in await db.fetch("SELECT key FROM rate_limit_counters")]
    assert f"ip:login:{CLIENT_IP}:60" in keys
    assert not [k for k in keys if "10.9." in k]


async def test_hits_recorded_by_another_process_count_here(
    api: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    """The counter is the database row, not process memory: hits written by another API process
    (here, straight into the table) use up this process's allowance, and clearing them frees it."""
    key = f"ip:resend-otp:{CLIENT_IP}:60"
    await db.execute(
        "INSERT INTO rate_limit_counters (key, window_start, hits) VALUES ($1, now(), 60)", key
    )
    body = {"email": unique_email(), "channel": "email"}
    assert_too_many(await api.post("/auth/resend-otp", json=body), 60)
    assert await hits(db, key) == 61

    # A window that began over a minute ago is over: the next request starts a new one.
    await db.execute(
        "UPDATE rate_limit_counters SET window_start = now() - interval '61 seconds'"
        " WHERE key = $1",
        key,
    )
    assert (await api.post("/auth/resend-otp", json=body)).status_code == 202
    assert await hits(db, key) == 1


async def test_ten_failed_logins_lock_the_account_for_a_while(
    api: httpx.AsyncClient, make_user: MakeUser
) -> None:
    victim, bystander = await make_user(), await make_user()
    for i in range(10):
        wrong = await api.post(
            "/auth/login", json={"email": victim.email, "password": f"bad-{i}-pw"}
        )
        assert wrong.status_code == 401, (i, wrong.text)
    # The right password does not help now: guessing must stop, whoever guesses.
    right = {"email": victim.email, "password": victim.password}
    seconds = assert_too_many(await api.post("/auth/login", json=right), 15 * 60)
    assert seconds > 60  # the account window is 15 minutes, not the per-IP minute
    # The same account by other spellings of its email is the same account.
    assert_too_many(
        await api.post(
            "/auth/login", json={"email": f"  {victim.email.upper()} ", "password": victim.password}
        ),
        15 * 60,
    )
    # Others are unaffected.
    other = await api.post(
        "/auth/login", json={"email": bystander.email, "password": bystander.password}
    )
    assert other.status_code == 200, other.text


async def test_failures_by_username_and_by_email_count_against_the_same_account(
    api: httpx.AsyncClient, make_user: MakeUser
) -> None:
    """The contract caps an account at 10 failed logins in 15 minutes, however it is named."""
    victim = await make_user()
    for i in range(10):
        login = {"email": victim.email} if i % 2 else {"username": victim.username}
        wrong = await api.post("/auth/login", json={**login, "password": f"bad-{i}-pw"})
        assert wrong.status_code == 401, (i, wrong.text)
    by_username = {"username": victim.username, "password": "eleventh-guess"}
    assert_too_many(await api.post("/auth/login", json=by_username), 15 * 60)
    by_email = {"email": victim.email, "password": "twelfth-guess"}
    assert_too_many(await api.post("/auth/login", json=by_email), 15 * 60)


async def test_a_successful_login_does_not_count_as_a_failure(
    api: httpx.AsyncClient, make_user: MakeUser
) -> None:
    user = await make_user()
    wrong = {"email": user.email, "password": "not-the-password"}
    for i in range(9):
        assert (await api.post("/auth/login", json=wrong)).status_code == 401, i
    success = await api.post("/auth/login", json={"email": user.email, "password": user.password})
    assert success.status_code == 200, success.text
    assert success.json()["accessToken"]
    # The tenth failure is still answered; only the eleventh attempt is refused.
    assert (await api.post("/auth/login", json=wrong)).status_code == 401
    assert_too_many(await api.post("/auth/login", json=wrong), 15 * 60)


async def test_failed_logins_for_unknown_accounts_are_limited_too(api: httpx.AsyncClient) -> None:
    """No account, same answers: 401 until the limit, then 429, so probing reveals nothing."""
    ghost = unique_email("ghost")
    for i in range(10):
        response = await api.post("/auth/login", json={"email": ghost, "password": f"guess-{i}-x"})
        assert response.status_code == 401, (i, response.text)
    assert_too_many(await api.post("/auth/login", json={"email": ghost, "password": "more"}), 900)
