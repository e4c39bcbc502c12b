"""Multi-step API flows the tests share (sign-up from register to tokens)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from tests.support.smtp import Mailbox, code_in

STRONG_PASSWORD = "plum-orbit-cascade-91"


def unique_email(tag: str = "user") -> str:
    return f"{tag}-{uuid.uuid4().hex[:10]}@example.test"


async def register_and_verify(
    api: httpx.AsyncClient, mailbox: Mailbox, email: str, **extra: Any
) -> str:
    """Register `email`, read the mailed code, verify it: the profile token."""
    response = await api.post("/auth/register", json={"email": email, **extra})
    assert response.status_code == 201, response.text
    code = code_in(await mailbox.wait_for(email))
    verified = await api.post("/auth/verify-email", json={"email": email, "otp": code})
    assert verified.status_code == 200, verified.text
    return str(verified.json()["profileToken"])


def profile(
    username: str | None = None, password: str = STRONG_PASSWORD, **extra: Any
) -> dict[str, Any]:
    return {
        "username": username or f"u{uuid.uuid4().hex[:10]}",
        "password": password,
        "fullName": "Ada Lovelace",
        "country": "UK",
        "state": "London",
        "zip": "NW1",
        **extra,
    }


async def sign_up(
    api: httpx.AsyncClient, mailbox: Mailbox, email: str | None = None, **profile_fields: Any
) -> dict[str, Any]:
    """A complete sign-up: the Tokens body."""
    email = email or unique_email()
    profile_token = await register_and_verify(api, mailbox, email)
    response = await api.post(
        "/auth/complete-profile",
        json=profile(**profile_fields),
        headers={"Authorization": f"Bearer {profile_token}"},
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def all_pages(
    api: httpx.AsyncClient, path: str, headers: dict[str, str], **params: Any
) -> list[list[dict[str, Any]]]:
    """Every page of a keyset-paginated list, following nextCursor to the end."""
    pages: list[list[dict[str, Any]]] = []
    cursor: str | None = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = await api.get(path, params=query, headers=headers)
        assert response.status_code == 200, response.text
        pages.append(response.json()["items"])
        cursor = response.json()["nextCursor"]
        if cursor is None:
            return pages
        assert len(pages) < 20, "pagination does not end"
