"""The public auth endpoints do not say which addresses have accounts: a wrong code, a reset or a
resend for an address with an account gets the same status, body and headers as for an address
without one, and runs the same statements (the timing follows the work), apart from queueing the
mail, which only an account gets (its sending is off the request path)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

import asyncpg
import httpx
import pytest

from tests.conftest import Outside
from tests.flows import unique_email
from tests.integration.auth.clients import statement_logging, with_statements

# Headers that differ between any two responses.
PER_RESPONSE = {"x-request-id", "date"}


class Account(Protocol):
    email: str
    password: str


MakeUser = Callable[..., Awaitable[Account]]


def seen(response: httpx.Response) -> tuple[int, Any, dict[str, str]]:
    """What a caller can tell from an answer: status, body, headers."""
    headers = {k: v for k, v in response.headers.items() if k not in PER_RESPONSE}
    return response.status_code, response.json(), headers


@pytest.fixture
async def logged(db: asyncpg.Pool) -> AsyncIterator[None]:
    async with statement_logging(db):
        yield


async def test_wrong_reset_codes_look_the_same_with_or_without_an_account(
    api: httpx.AsyncClient, make_user: MakeUser, outside: Outside
) -> None:
    owner = await make_user()
    stranger = unique_email("nobody")
    # Nobody asked for a code yet: refusals look alike.
    for email in (owner.email, stranger):
        body = {"email": email, "otp": "123456", "newPassword": "violet-harbour-lantern-7"}
        assert (await api.post("/user-auth/reset-password", json=body)).status_code == 400
    # Both asked for a reset (only the owner gets a mail); then the same five wrong tries and a
    # sixth: each answer identical, down to the tries left and the lock-out.
    for email in (owner.email, stranger):
        assert (
            await api.post("/user-auth/forgot-password", json={"email": email})
        ).status_code == 202
    await outside.mailbox.wait_for(owner.email)  # the owner's code, which we do not use
    for attempt in range(6):
        answers = [
            seen(
                await api.post(
                    "/user-auth/reset-password",
                    json={
                        "email": email,
                        "otp": "999999" if attempt % 2 else "111111",
                        "newPassword": "violet-harbour-lantern-7",
                    },
                )
            )
            for email in (owner.email, stranger)
        ]
        assert answers[0] == answers[1], (attempt, answers)
        assert answers[0][0] == (400 if attempt < 4 else 429), answers


async def test_wrong_verification_codes_look_the_same_with_or_without_an_account(
    api: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    registered = unique_email("registered")
    assert (await api.post("/auth/register", json={"email": registered})).status_code == 201
    stranger = unique_email("nobody")
    for attempt in range(6):
        answers = [
            seen(await api.post("/auth/verify-email", json={"email": e, "otp": "424242"}))
            for e in (registered, stranger)
        ]
        assert answers[0] == answers[1], (attempt, answers)
    # A new code for each (the same request, accepted for both) starts the tries afresh for both.
    await db.execute("TRUNCATE rate_limit_counters")  # past the one-code-per-30-s throttle
    for email in (registered, stranger):
        resend = await api.post("/auth/resend-otp", json={"email": email, "channel": "email"})
        assert resend.status_code == 202
    answers = [
        seen(await api.post("/auth/verify-email", json={"email": e, "otp": "424242"}))
        for e in (registered, stranger)
    ]
    assert answers[0] == answers[1] and answers[0][0] == 400, answers
    assert "4 tries left" in answers[0][1]["detail"]


def alike(first: httpx.Response, second: httpx.Response) -> None:
    """The same answer, but for the seconds a throttle names (its window started a moment apart
    for the two)."""
    assert first.status_code == second.status_code, (first.text, second.text)
    if first.status_code == 429:
        for answer in (first, second):
            assert 1 <= int(answer.headers["Retry-After"]) <= 30
        assert digitless(first) == digitless(second)
    else:
        assert seen(first) == seen(second)


def digitless(response: httpx.Response) -> tuple[Any, ...]:
    status, body, headers = seen(response)
    headers.pop("retry-after")
    return status, re.sub(r"\d+", "N", body["detail"]), headers


def writes_mail(statement: str) -> bool:
    return "outbound_messages" in statement


async def test_forgot_password_answers_and_works_alike_for_any_address(
    api: httpx.AsyncClient, make_user: MakeUser, outside: Outside, logged: None
) -> None:
    owner = await make_user()
    stranger = unique_email("nobody")
    # One request first, so the settings cache (emptied by NOTIFY when the fixtures reset the
    # tables) is read now rather than inside one of the two compared requests.
    await api.post("/user-auth/forgot-password", json={"email": unique_email("warm")})
    mine, known = await with_statements(
        api.post("/user-auth/forgot-password", json={"email": owner.email})
    )
    theirs, unknown = await with_statements(
        api.post("/user-auth/forgot-password", json={"email": stranger})
    )
    alike(mine, theirs)
    assert mine.status_code == 202
    assert [s for s in known if not writes_mail(s)] == unknown
    assert any(writes_mail(s) for s in known)  # the owner's mail, only
    await outside.mailbox.wait_for(owner.email)
    # The same throttle for both: one code per 30 s per address, whether or not it has an account.
    alike(
        await api.post("/user-auth/forgot-password", json={"email": owner.email}),
        await api.post("/user-auth/forgot-password", json={"email": stranger}),
    )


async def test_resend_otp_answers_and_works_alike_for_any_address(
    api: httpx.AsyncClient, db: asyncpg.Pool, outside: Outside, logged: None
) -> None:
    registered = unique_email("registered")
    assert (await api.post("/auth/register", json={"email": registered})).status_code == 201
    await outside.mailbox.wait_for(registered)
    await db.execute("TRUNCATE rate_limit_counters")  # past the one-code-per-30-s throttle
    stranger = unique_email("nobody")
    body = {"channel": "email"}
    mine, known = await with_statements(
        api.post("/auth/resend-otp", json={"email": registered, **body})
    )
    theirs, unknown = await with_statements(
        api.post("/auth/resend-otp", json={"email": stranger, **body})
    )
    alike(mine, theirs)
    assert mine.status_code == 202
    assert [s for s in known if not writes_mail(s)] == unknown
    alike(
        await api.post("/auth/resend-otp", json={"email": registered, **body}),
        await api.post("/auth/resend-otp", json={"email": stranger, **body}),
    )


async def test_a_wrong_reset_code_costs_the_same_with_or_without_an_account(
    api: httpx.AsyncClient, make_user: MakeUser, outside: Outside, logged: None
) -> None:
    owner = await make_user()
    stranger = unique_email("nobody")
    for email in (owner.email, stranger):
        await api.post("/user-auth/forgot-password", json={"email": email})
    await outside.mailbox.wait_for(owner.email)
    runs = [
        await with_statements(
            api.post(
                "/user-auth/reset-password",
                json={"email": email, "otp": "000000", "newPassword": "violet-harbour-lantern-7"},
            )
        )
        for email in (owner.email, stranger)
    ]
    (mine, known), (theirs, unknown) = runs
    alike(mine, theirs)
    assert mine.status_code == 400
    assert known == unknown and known


async def test_a_wrong_verification_code_costs_the_same_with_or_without_an_account(
    api: httpx.AsyncClient, outside: Outside, logged: None
) -> None:
    registered = unique_email("registered")
    assert (await api.post("/auth/register", json={"email": registered})).status_code == 201
    stranger = unique_email("nobody")
    runs = [
        await with_statements(api.post("/auth/verify-email", json={"email": e, "otp": "000000"}))
        for e in (registered, stranger)
    ]
    (mine, known), (theirs, unknown) = runs
    alike(mine, theirs)
    assert mine.status_code == 400
    assert known == unknown and known
