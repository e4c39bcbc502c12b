"""Rate limits on /auth: per endpoint and client IP (counters in PostgreSQL) and per account."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

import asyncpg
import httpx
from litestar import Litestar

from lms.domain.rate_limits import FAILED_LOGINS_PER_ACCOUNT
from lms.settings import Settings
from tests.flows import unique_email
from tests.integration.auth.clients import client_from, forwarded_for


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


async def test_an_ip_gets_the_configured_number_of_requests_a_minute_per_endpoint(
    api: httpx.AsyncClient, app: Litestar, settings: Settings
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
    # Another address keeps its own allowance on the same endpoint.
    async with client_from(app, "198.51.100.77") as elsewhere:
        other = await elsewhere.post("/auth/refresh", json={"refreshToken": "x"})
        assert other.status_code == 401, other.text
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
    api: httpx.AsyncClient, settings: Settings
) -> None:
    assert settings.trusted_proxies == ()
    for i in range(60):
        response = await api.post(
            "/auth/login", json=CHEAP_LOGIN, headers={"X-Forwarded-For": f"10.9.{i}.9"}
        )
        assert response.status_code == 400, (i, response.text)
    # Every forged address was counted as the peer's: none of them has an allowance of its own,
    # and the peer without the header is refused too.
    for forged in ("10.9.9.9", "10.9.200.1"):
        assert_too_many(
            await api.post("/auth/login", json=CHEAP_LOGIN, headers={"X-Forwarded-For": forged}),
            60,
        )
    assert_too_many(await api.post("/auth/login", json=CHEAP_LOGIN), 60)


async def test_hits_counted_by_another_process_count_here(
    api: httpx.AsyncClient, proxied_app: Litestar, db: asyncpg.Pool
) -> None:
    """The counter is the database row, not process memory: requests answered by another API
    process (another app on the same database) use up this process's allowance."""
    async with client_from(proxied_app, CLIENT_IP) as other_process:
        for i in range(60):
            response = await other_process.post("/auth/refresh", json={"refreshToken": "x"})
            assert response.status_code == 401, (i, response.text)
    assert_too_many(await api.post("/auth/refresh", json={"refreshToken": "x"}), 60)

    # A window that began over a minute ago is over: the next request starts a new one.
    await db.execute("UPDATE rate_limit_counters SET window_start = window_start - interval '61 s'")
    for i in range(60):
        response = await api.post("/auth/refresh", json={"refreshToken": "x"})
        assert response.status_code == 401, (i, response.text)
    assert_too_many(await api.post("/auth/refresh", json={"refreshToken": "x"}), 60)


async def test_ipv6_clients_are_counted_by_their_64_network(via_proxy: httpx.AsyncClient) -> None:
    """An IPv6 client holds a whole /64 (2**64 addresses): one counter for all of it, or it would
    never run out of fresh addresses."""
    for i in range(60):
        response = await via_proxy.post(
            "/auth/refresh",
            json={"refreshToken": "x"},
            headers=forwarded_for(f"2001:db8:abcd:12::{i + 1:x}"),
        )
        assert response.status_code == 401, (i, response.text)
    for same_network in ("2001:db8:abcd:12:ffff:ffff:ffff:fffe", "2001:DB8:ABCD:0012::ab"):
        assert_too_many(
            await via_proxy.post(
                "/auth/refresh",
                json={"refreshToken": "x"},
                headers=forwarded_for(same_network),
            ),
            60,
        )
    # The next /64 is someone else.
    neighbour = await via_proxy.post(
        "/auth/refresh", json={"refreshToken": "x"}, headers=forwarded_for("2001:db8:abcd:13::1")
    )
    assert neighbour.status_code == 401, neighbour.text


async def test_ipv4_clients_are_counted_by_address_however_written(
    via_proxy: httpx.AsyncClient,
) -> None:
    """An IPv4 address is one client, whether it arrives plain or IPv4-mapped (::ffff:a.b.c.d,
    as a dual-stack balancer may write it); its neighbour is another client."""
    for i in range(60):
        spelling = "198.51.100.20" if i % 2 else "::ffff:198.51.100.20"
        response = await via_proxy.post(
            "/auth/refresh", json={"refreshToken": "x"}, headers=forwarded_for(spelling)
        )
        assert response.status_code == 401, (i, response.text)
    for spelling in ("198.51.100.20", "::ffff:c633:6414"):
        assert_too_many(
            await via_proxy.post(
                "/auth/refresh", json={"refreshToken": "x"}, headers=forwarded_for(spelling)
            ),
            60,
        )
    neighbour = await via_proxy.post(
        "/auth/refresh", json={"refreshToken": "x"}, headers=forwarded_for("198.51.100.21")
    )
    assert neighbour.status_code == 401, neighbour.text


async def test_ten_failed_logins_lock_the_account_for_a_while(
    api: httpx.AsyncClient, make_user: MakeUser
) -> None:
    victim, bystander = await make_user(), await make_user()
    for i in range(10):
        wrong = await api.post(
            "/auth/login", json={"email": victim.email, "password": f"bad-{i}-pw"}
        )
        assert wrong.status_code == 401, (i, wrong.text)
    # The right password does not help this client now: its guessing must stop.
    right = {"email": victim.email, "password": victim.password}
    seconds = assert_too_many(await api.post("/auth/login", json=right), 15 * 60)
    assert seconds > 60  # the account window is 15 minutes, not the per-IP minute
    # The same account by other spellings of its email is the same account.
    assert_too_many(
        await api.post(
            "/auth/login", json={"email": victim.email.upper(), "password": victim.password}
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
    """The contract caps an account at 10 failed logins (from a client) in 15 minutes, however
    it is named."""
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


async def test_a_guesser_elsewhere_does_not_lock_the_owner_out(
    app: Litestar, api: httpx.AsyncClient, make_user: MakeUser
) -> None:
    """Failures count per account and client: ten wrong passwords from an attacker lock the
    attacker's client out of the account, not the owner's phone, which has signed in before."""
    owner = await make_user()
    right = {"email": owner.email, "password": owner.password}
    async with client_from(app, "198.51.100.7") as owners_phone:
        assert (await owners_phone.post("/auth/login", json=right)).status_code == 200
    async with client_from(app, "203.0.113.66") as attacker:
        for i in range(10):
            wrong = await attacker.post(
                "/auth/login", json={"email": owner.email, "password": f"guess-{i}-pw"}
            )
            assert wrong.status_code == 401, (i, wrong.text)
        assert_too_many(await attacker.post("/auth/login", json=right), 15 * 60)
    async with client_from(app, "198.51.100.7") as owners_phone:
        signed_in = await owners_phone.post("/auth/login", json=right)
        assert signed_in.status_code == 200, signed_in.text
    # The attacker is still locked out, by username as well.
    async with client_from(app, "203.0.113.66") as attacker:
        by_username = {"username": owner.username, "password": owner.password}
        assert_too_many(await attacker.post("/auth/login", json=by_username), 15 * 60)


async def test_a_guesser_cannot_escape_its_lock_by_moving_within_its_64(
    via_proxy: httpx.AsyncClient, make_user: MakeUser
) -> None:
    owner = await make_user()
    for i in range(10):
        wrong = await via_proxy.post(
            "/auth/login",
            json={"email": owner.email, "password": f"guess-{i}-pw"},
            headers=forwarded_for(f"2001:db8:66:1::{i + 1:x}"),
        )
        assert wrong.status_code == 401, (i, wrong.text)
    next_address = await via_proxy.post(
        "/auth/login",
        json={"email": owner.email, "password": "guess-10-pw"},
        headers=forwarded_for("2001:db8:66:1:aaaa::1"),
    )
    assert_too_many(next_address, 15 * 60)


async def test_distributed_guessing_meets_a_per_account_ceiling_that_spares_known_clients(
    app: Litestar, api: httpx.AsyncClient, make_user: MakeUser
) -> None:
    """Many clients of ten guesses each add up to a ceiling on the whole account; past it a new
    client is refused even with the right password, while a client that holds a login to the
    account (it has signed in before from that address) still signs in."""
    ceiling = FAILED_LOGINS_PER_ACCOUNT.count
    assert ceiling % 10 == 0
    owner = await make_user()
    right = {"email": owner.email, "password": owner.password}
    async with client_from(app, "198.51.100.10") as owners_laptop:
        assert (await owners_laptop.post("/auth/login", json=right)).status_code == 200
    for n in range(ceiling // 10):
        async with client_from(app, f"203.0.113.{n + 1}") as attacker:
            for i in range(10):
                wrong = await attacker.post(
                    "/auth/login", json={"email": owner.email, "password": f"guess-{n}-{i}"}
                )
                assert wrong.status_code == 401, (n, i, wrong.text)
    async with client_from(app, "192.0.2.200") as newcomer:
        assert_too_many(await newcomer.post("/auth/login", json=right), 15 * 60)
    async with client_from(app, "198.51.100.10") as owners_laptop:
        signed_in = await owners_laptop.post("/auth/login", json=right)
        assert signed_in.status_code == 200, signed_in.text
        # Known, not exempt: its own failures still count against it.
        for i in range(10):
            wrong = await owners_laptop.post(
                "/auth/login", json={"email": owner.email, "password": f"typo-{i}-pw"}
            )
            assert wrong.status_code == 401, (i, wrong.text)
        assert_too_many(await owners_laptop.post("/auth/login", json=right), 15 * 60)
