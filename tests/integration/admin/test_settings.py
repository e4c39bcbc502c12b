"""Runtime settings: read, change within limits, audited, in effect here and in other processes."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from typing import Any

import asyncpg
import httpx

from lms.domain.admin.system_settings import CHANNEL, RuntimeSettings, SystemSettingsCache
from lms.notifications.listener import ChangeListener
from lms.settings import Settings
from tests.conftest import Outside, TestUser
from tests.flows import unique_email
from tests.support.smtp import code_in

DEFAULTS = {
    "registrationOpen": True,
    "otpTtlSeconds": 600,
    "otpMaxAttempts": 5,
    "completionThresholdPercent": 95.0,
    "requireWatchToComplete": False,
    "maxUploadBytes": 2147483648,
}


def values(body: dict[str, Any]) -> dict[str, Any]:
    """The settings themselves, without updatedAt/updatedBy."""
    return {key: body[key] for key in DEFAULTS}


async def read(api: httpx.AsyncClient, admin: TestUser) -> dict[str, Any]:
    response = await api.get("/admin/settings", headers=admin.headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def change(api: httpx.AsyncClient, admin: TestUser, **body: Any) -> dict[str, Any]:
    response = await api.patch("/admin/settings", json=body, headers=admin.headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def test_defaults(api: httpx.AsyncClient, admin: TestUser) -> None:
    body = await read(api, admin)
    assert values(body) == DEFAULTS
    assert "updatedAt" in body and body["updatedBy"] is None


async def test_a_partial_change_is_saved_and_audited(
    api: httpx.AsyncClient, db: asyncpg.Pool, admin: TestUser
) -> None:
    changed = await change(api, admin, otpTtlSeconds=900, completionThresholdPercent=75.5)
    expected = {**DEFAULTS, "otpTtlSeconds": 900, "completionThresholdPercent": 75.5}
    assert values(changed) == expected
    assert changed["updatedBy"] == str(admin.id) and changed["updatedAt"]
    assert values(await read(api, admin)) == expected

    row = await db.fetchrow("SELECT * FROM system_settings")
    assert row is not None
    assert row["otp_ttl_seconds"] == 900 and row["completion_threshold_percent"] == Decimal("75.5")
    assert row["updated_by_id"] == admin.id

    entries = await db.fetch("SELECT * FROM audit_log")
    assert len(entries) == 1
    entry = entries[0]
    assert entry["action"] == "settings.update" and entry["actor_id"] == admin.id
    assert entry["target_type"] == "system_settings" and entry["target_id"] == "1"
    assert (
        set(entry["before"])
        == set(entry["after"])
        == {"otpTtlSeconds", "completionThresholdPercent"}  # named as on the wire
    )
    assert entry["before"]["otpTtlSeconds"] == 600 and entry["after"]["otpTtlSeconds"] == 900
    assert entry["before"]["completionThresholdPercent"] == 95.0
    assert entry["after"]["completionThresholdPercent"] == 75.5


async def test_every_setting_accepts_its_limits(api: httpx.AsyncClient, admin: TestUser) -> None:
    low = {
        "registrationOpen": False,
        "otpTtlSeconds": 60,
        "otpMaxAttempts": 1,
        "completionThresholdPercent": 0.01,
        "requireWatchToComplete": True,
        "maxUploadBytes": 1024**2,
    }
    assert values(await change(api, admin, **low)) == low
    high = {
        "registrationOpen": True,
        "otpTtlSeconds": 86400,
        "otpMaxAttempts": 20,
        "completionThresholdPercent": 100.0,
        "requireWatchToComplete": False,
        "maxUploadBytes": 1024**4,
    }
    assert values(await change(api, admin, **high)) == high
    assert values(await read(api, admin)) == high


async def test_out_of_range_and_unknown_settings_change_nothing(
    api: httpx.AsyncClient, db: asyncpg.Pool, admin: TestUser
) -> None:
    bad: list[Any] = [
        {"otpTtlSeconds": 59},
        {"otpTtlSeconds": 86401},
        {"otpMaxAttempts": 0},
        {"otpMaxAttempts": 21},
        {"completionThresholdPercent": 0},
        {"completionThresholdPercent": -5},
        {"completionThresholdPercent": 100.5},
        {"maxUploadBytes": 1000},
        {"maxUploadBytes": 1024**4 + 1},
        {"registrationOpen": "no"},
        {"otpTtlSeconds": 900, "otpMaxAttempts": 0},  # one bad value spoils the whole change
        {"otpTtlSeconds": 900, "colour": "blue"},
        {"updatedBy": None},
        {"otp_ttl_seconds": 900},
        {},
        [],
    ]
    for body in bad:
        response = await api.patch("/admin/settings", json=body, headers=admin.headers)
        assert response.status_code == 400, (body, response.text)
        assert set(response.json()) >= {"status_code", "detail"}
    body = await read(api, admin)
    assert values(body) == DEFAULTS and body["updatedBy"] is None
    assert await db.fetchval("SELECT count(*) FROM audit_log") == 0


async def test_a_threshold_that_rounds_to_zero_is_refused(
    api: httpx.AsyncClient, admin: TestUser
) -> None:
    """Stored with two decimals: 0.001 would become 0, which the threshold must never be."""
    response = await api.patch(
        "/admin/settings", json={"completionThresholdPercent": 0.001}, headers=admin.headers
    )
    assert response.status_code == 400, response.text
    assert values(await read(api, admin)) == DEFAULTS


async def test_closing_registration_refuses_sign_ups(
    api: httpx.AsyncClient, admin: TestUser
) -> None:
    await change(api, admin, registrationOpen=False)
    closed = await api.post("/auth/register", json={"email": unique_email()})
    assert closed.status_code == 403
    await change(api, admin, registrationOpen=True)
    opened = await api.post("/auth/register", json={"email": unique_email()})
    assert opened.status_code == 201


async def test_fewer_otp_attempts_apply_to_new_codes(
    api: httpx.AsyncClient, outside: Outside, admin: TestUser
) -> None:
    await change(api, admin, otpMaxAttempts=2)
    email = unique_email()
    assert (await api.post("/auth/register", json={"email": email})).status_code == 201
    code = code_in(await outside.mailbox.wait_for(email))
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"

    first = await api.post("/auth/verify-email", json={"email": email, "otp": wrong})
    assert first.status_code == 400
    second = await api.post("/auth/verify-email", json={"email": email, "otp": wrong})
    assert second.status_code == 429
    assert int(second.headers["Retry-After"]) > 0
    # The code is spent: even the right one no longer works.
    right = await api.post("/auth/verify-email", json={"email": email, "otp": code})
    assert right.status_code == 429


async def test_another_process_hears_the_change(
    api: httpx.AsyncClient, settings: Settings, admin: TestUser
) -> None:
    cache = SystemSettingsCache()
    listener = ChangeListener(settings.database_url)
    listener.subscribe(CHANNEL, cache.subscriber())
    await listener.start()
    try:
        assert listener.connected
        assert (await cache.get()).otp_ttl_seconds == 600
        await change(api, admin, otpTtlSeconds=1234, registrationOpen=False)

        seen: RuntimeSettings = await cache.get()
        deadline = time.monotonic() + 5.0
        while seen.otp_ttl_seconds != 1234 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
            seen = await cache.get()
        assert seen.otp_ttl_seconds == 1234 and seen.registration_open is False
        assert seen.updated_by == admin.id
    finally:
        await listener.stop()


async def test_settings_are_for_admins_only(
    api: httpx.AsyncClient, learner: TestUser, creator: TestUser, admin: TestUser
) -> None:
    for headers, expected in ((learner.headers, 403), (creator.headers, 403), ({}, 401)):
        assert (await api.get("/admin/settings", headers=headers)).status_code == expected
        response = await api.patch(
            "/admin/settings", json={"registrationOpen": False}, headers=headers
        )
        assert response.status_code == expected
    assert values(await read(api, admin)) == DEFAULTS
