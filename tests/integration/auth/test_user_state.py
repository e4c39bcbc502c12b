"""The per-process cache of users' auth state: invalidated across processes by PostgreSQL NOTIFY,
bypassed while the LISTEN connection is down. The second cache here plays another API process."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable

import asyncpg
import httpx
import pytest

from lms.domain.auth.user_state import CHANNEL, UserAuthCache, UserAuthState
from lms.notifications.listener import ChangeListener
from lms.settings import Settings
from tests.conftest import TestUser


@pytest.fixture
async def other_process(
    settings: Settings, db: asyncpg.Pool
) -> AsyncIterator[tuple[UserAuthCache, ChangeListener]]:
    cache = UserAuthCache()
    cache.bind(db)
    assert settings.database_url
    listener = ChangeListener(settings.database_url)
    listener.subscribe(CHANNEL, cache.subscriber())
    await listener.start()
    assert listener.connected
    try:
        yield cache, listener
    finally:
        await listener.stop()


async def eventually(check: Callable[[], object], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met in time")


async def state(cache: UserAuthCache, user_id: uuid.UUID) -> UserAuthState:
    found = await cache.get(user_id)
    assert found is not None
    return found


async def test_a_change_made_anywhere_reaches_the_cache(
    other_process: tuple[UserAuthCache, ChangeListener], learner: TestUser, db: asyncpg.Pool
) -> None:
    cache, _ = other_process
    assert (await state(cache, learner.id)).role == "LEARNER"
    # Cached: a read right after costs no query, so it still says LEARNER until notified.
    await db.execute("UPDATE users SET role = 'CREATOR' WHERE id = $1", learner.id)
    await eventually(lambda: _role_is(cache, learner.id, "CREATOR"))
    await db.execute("UPDATE users SET is_active = false WHERE id = $1", learner.id)
    await eventually(lambda: _active_is(cache, learner.id, False))
    await db.execute("DELETE FROM users WHERE id = $1", learner.id)
    await eventually(lambda: _gone(cache, learner.id))


async def _role_is(cache: UserAuthCache, user_id: uuid.UUID, role: str) -> bool:
    return (await state(cache, user_id)).role == role


async def _active_is(cache: UserAuthCache, user_id: uuid.UUID, active: bool) -> bool:
    return (await state(cache, user_id)).is_active is active


async def _gone(cache: UserAuthCache, user_id: uuid.UUID) -> bool:
    return await cache.get(user_id) is None


async def test_while_not_listening_every_read_goes_to_the_database(
    other_process: tuple[UserAuthCache, ChangeListener], learner: TestUser, db: asyncpg.Pool
) -> None:
    cache, listener = other_process
    await state(cache, learner.id)
    assert listener._conn is not None
    pid = listener._conn.get_server_pid()
    await db.execute("SELECT pg_terminate_backend($1)", pid)
    await eventually(lambda: not listener.connected, within=2.0)
    # Notifications sent now are lost, yet the change shows at once: the cache is bypassed.
    await db.execute("UPDATE users SET role = 'ADMIN' WHERE id = $1", learner.id)
    assert (await state(cache, learner.id)).role == "ADMIN"
    # The listener comes back by itself and the cache is trusted (and correct) again.
    await eventually(lambda: listener.connected, within=10.0)
    await db.execute("UPDATE users SET role = 'LEARNER' WHERE id = $1", learner.id)
    await eventually(lambda: _role_is(cache, learner.id, "LEARNER"))


async def test_the_api_applies_a_role_change_on_the_next_request(
    api: httpx.AsyncClient, learner: TestUser, db: asyncpg.Pool
) -> None:
    assert (await api.get("/admin/users", headers=learner.headers)).status_code == 403
    # Changed behind the API's back (another process, psql): NOTIFY reaches this process too.
    await db.execute("UPDATE users SET role = 'ADMIN' WHERE id = $1", learner.id)

    async def admitted() -> bool:
        return (await api.get("/admin/users", headers=learner.headers)).status_code == 200

    await eventually(admitted)
    await db.execute("UPDATE users SET is_active = false WHERE id = $1", learner.id)

    async def refused() -> bool:
        return (await api.get("/auth/me", headers=learner.headers)).status_code == 401

    await eventually(refused)
