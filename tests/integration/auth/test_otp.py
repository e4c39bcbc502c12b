"""One-time codes: wrong tries, lock-out, expiry, single use, and phone verification by SMS."""

from __future__ import annotations

import hashlib
import hmac
import re

import asyncpg
import httpx

from lms.settings import Settings
from tests.conftest import Outside
from tests.flows import bearer, profile, register_and_verify, sign_up, unique_email
from tests.helpers import eventually
from tests.support.sms_provider import code_in_sms
from tests.support.smtp import code_in

PHONE = "+14155550123"


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


async def test_five_wrong_tries_invalidate_the_code(
    api: httpx.AsyncClient, outside: Outside
) -> None:
    email = unique_email()
    await api.post("/auth/register", json={"email": email})
    code = code_in(await outside.mailbox.wait_for(email))
    for left in (4, 3, 2, 1):
        response = await api.post("/auth/verify-email", json={"email": email, "otp": wrong(code)})
        assert response.status_code == 400
        assert f"{left} tr" in response.json()["detail"]
    fifth = await api.post("/auth/verify-email", json={"email": email, "otp": wrong(code)})
    assert fifth.status_code == 429 and int(fifth.headers["Retry-After"]) >= 1
    # Invalidated: even the right code is refused now.
    right = await api.post("/auth/verify-email", json={"email": email, "otp": code})
    assert right.status_code == 429


async def test_concurrent_wrong_tries_are_all_counted(
    api: httpx.AsyncClient, outside: Outside, db: asyncpg.Pool
) -> None:
    import asyncio

    email = unique_email()
    await api.post("/auth/register", json={"email": email})
    code = code_in(await outside.mailbox.wait_for(email))
    responses = await asyncio.gather(
        *(
            api.post("/auth/verify-email", json={"email": email, "otp": wrong(code)})
            for _ in range(8)
        )
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [400] * 4 + [429] * 4
    attempts = await db.fetchval("SELECT attempts FROM otp_codes WHERE destination = $1", email)
    assert attempts == 5


async def test_an_expired_code_is_refused(
    api: httpx.AsyncClient, outside: Outside, db: asyncpg.Pool
) -> None:
    email = unique_email()
    await api.post("/auth/register", json={"email": email})
    code = code_in(await outside.mailbox.wait_for(email))
    await db.execute("UPDATE otp_codes SET expires_at = now() - interval '1 second'")
    response = await api.post("/auth/verify-email", json={"email": email, "otp": code})
    assert response.status_code == 400 and "expired" in response.json()["detail"]
    assert not await db.fetchval("SELECT email_verified FROM users WHERE email = $1", email)


async def test_otp_expiry_follows_the_runtime_setting(
    api: httpx.AsyncClient, outside: Outside, db: asyncpg.Pool, app
) -> None:  # type: ignore[no-untyped-def]
    await db.execute("UPDATE system_settings SET otp_ttl_seconds = 120, otp_max_attempts = 3")
    await app.state.ctx.system.reload()
    email = unique_email()
    await api.post("/auth/register", json={"email": email})
    await outside.mailbox.wait_for(email)
    row = await db.fetchrow(
        "SELECT max_attempts, extract(epoch FROM expires_at - created_at) AS ttl FROM otp_codes"
    )
    assert row["max_attempts"] == 3 and 119 <= row["ttl"] <= 121


async def test_codes_are_stored_hashed(
    api: httpx.AsyncClient, outside: Outside, db: asyncpg.Pool
) -> None:
    email = unique_email()
    await api.post("/auth/register", json={"email": email})
    code = code_in(await outside.mailbox.wait_for(email))
    stored = await db.fetchval("SELECT code_hash FROM otp_codes")
    assert code not in stored and re.fullmatch(r"k2:[0-9a-f]{64}", stored)
    # Delivered messages do not keep the code either. The mail arrives before the dispatcher
    # records it SENT (it commits after the server accepted it): wait for that record.
    sent = await eventually(
        lambda: db.fetchrow(
            "SELECT status, body_text, body_html FROM outbound_messages WHERE status = 'SENT'"
        ),
        within=10,
        what="the message recorded as sent",
    )
    assert sent["body_text"] is None and sent["body_html"] is None


async def test_a_code_stored_before_the_keys_were_derived_still_verifies(
    api: httpx.AsyncClient, outside: Outside, db: asyncpg.Pool, settings: Settings
) -> None:
    """Codes in flight across the upgrade to per-purpose keys (lms.derived_keys): a hash stored
    by the earlier release (keyed by an HMAC of the secret, no prefix) is checked that way, so
    the code mailed just before the upgrade still works, and a wrong one is still wrong."""
    assert settings.jwt_secret
    email = unique_email()
    await api.post("/auth/register", json={"email": email})
    code = code_in(await outside.mailbox.wait_for(email))
    otp_id = await db.fetchval("SELECT id FROM otp_codes WHERE destination = $1", email)
    old_key = hmac.new(settings.jwt_secret.encode(), b"lms otp", hashlib.sha256).digest()
    earlier = hmac.new(old_key, f"{otp_id}:{code}".encode(), hashlib.sha256).hexdigest()
    await db.execute("UPDATE otp_codes SET code_hash = $2 WHERE id = $1", otp_id, earlier)
    refused = await api.post("/auth/verify-email", json={"email": email, "otp": wrong(code)})
    assert refused.status_code == 400
    verified = await api.post("/auth/verify-email", json={"email": email, "otp": code})
    assert verified.status_code == 200, verified.text
    assert await db.fetchval("SELECT email_verified FROM users WHERE email = $1", email)


async def test_verify_email_for_an_unknown_address_is_a_plain_refusal(
    api: httpx.AsyncClient,
) -> None:
    response = await api.post("/auth/verify-email", json={"email": unique_email(), "otp": "123456"})
    assert response.status_code == 400
    for bad in (
        {"email": unique_email(), "otp": "12345"},
        {"email": unique_email(), "otp": "abcdef"},
        {},
    ):
        assert (await api.post("/auth/verify-email", json=bad)).status_code == 400


async def test_phone_given_at_register_is_verified_by_sms(
    api: httpx.AsyncClient, outside: Outside, db: asyncpg.Pool
) -> None:
    email = unique_email()
    profile_token = await register_and_verify(
        api, outside.mailbox, email, phoneNumber="+1 (415) 555-0123"
    )
    sms = await outside.sms.wait_for(PHONE)
    assert sms["From"] == "+15005550006"
    code = code_in_sms(sms)
    headers = bearer(profile_token)
    other = await api.post(
        "/auth/verify-phone", json={"phoneNumber": "+14155550124", "otp": code}, headers=headers
    )
    assert other.status_code == 400
    assert (
        await api.post(
            "/auth/verify-phone", json={"phoneNumber": "123", "otp": code}, headers=headers
        )
    ).status_code == 400
    assert (
        await api.post("/auth/verify-phone", json={"phoneNumber": PHONE, "otp": code})
    ).status_code == 401
    verified = await api.post(
        "/auth/verify-phone", json={"phoneNumber": PHONE, "otp": code}, headers=headers
    )
    assert verified.status_code == 200 and verified.json() == {"phoneVerified": True}
    user = await db.fetchrow(
        "SELECT phone_number, phone_verified FROM users WHERE email = $1", email
    )
    assert user["phone_number"] == PHONE and user["phone_verified"]
    done = await api.post("/auth/complete-profile", json=profile(), headers=headers)
    assert done.json()["user"]["phoneNumber"] == PHONE and done.json()["user"]["phoneVerified"]


async def test_phone_given_at_complete_profile_is_verified_with_the_access_token(
    api: httpx.AsyncClient, outside: Outside
) -> None:
    tokens = await sign_up(api, outside.mailbox, phoneNumber=PHONE)
    assert tokens["user"]["phoneVerified"] is False and tokens["user"]["phoneNumber"] is None
    code = code_in_sms(await outside.sms.wait_for(PHONE))
    headers = bearer(tokens["accessToken"])
    verified = await api.post(
        "/auth/verify-phone", json={"phoneNumber": PHONE, "otp": code}, headers=headers
    )
    assert verified.status_code == 200
    me = await api.get("/auth/me", headers=headers)
    assert me.json()["phoneNumber"] == PHONE and me.json()["phoneVerified"] is True


async def test_a_phone_verified_elsewhere_is_a_conflict(
    api: httpx.AsyncClient, outside: Outside, db: asyncpg.Pool
) -> None:
    first = await sign_up(api, outside.mailbox, phoneNumber=PHONE)
    code = code_in_sms(await outside.sms.wait_for(PHONE))
    headers = bearer(first["accessToken"])
    assert (
        await api.post(
            "/auth/verify-phone", json={"phoneNumber": PHONE, "otp": code}, headers=headers
        )
    ).status_code == 200
    await db.execute("TRUNCATE rate_limit_counters")
    second = await sign_up(api, outside.mailbox, phoneNumber=PHONE)
    code = code_in_sms(await outside.sms.wait_for(PHONE, count=2))
    taken = await api.post(
        "/auth/verify-phone",
        json={"phoneNumber": PHONE, "otp": code},
        headers=bearer(second["accessToken"]),
    )
    assert taken.status_code == 409


async def test_resend_by_sms_goes_to_the_pending_number(
    api: httpx.AsyncClient, outside: Outside, db: asyncpg.Pool
) -> None:
    email = unique_email()
    profile_token = await register_and_verify(api, outside.mailbox, email, phoneNumber=PHONE)
    first = code_in_sms(await outside.sms.wait_for(PHONE))
    await db.execute("TRUNCATE rate_limit_counters")
    assert (
        await api.post("/auth/resend-otp", json={"email": email, "channel": "sms"})
    ).status_code == 202
    second = code_in_sms(await outside.sms.wait_for(PHONE, count=2))
    live = await db.fetchval(
        "SELECT count(*) FROM otp_codes WHERE purpose = 'VERIFY_PHONE' AND invalidated_at IS NULL"
    )
    assert live == 1
    headers = bearer(profile_token)
    if first != second:
        stale = await api.post(
            "/auth/verify-phone", json={"phoneNumber": PHONE, "otp": first}, headers=headers
        )
        assert stale.status_code == 400
    fresh = await api.post(
        "/auth/verify-phone", json={"phoneNumber": PHONE, "otp": second}, headers=headers
    )
    assert fresh.status_code == 200
    assert (
        await api.post("/auth/resend-otp", json={"email": email, "channel": "fax"})
    ).status_code == 400
