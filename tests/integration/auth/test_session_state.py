"""The per-process cache of revoked logins: a revocation made anywhere reaches every process by
PostgreSQL NOTIFY (a trigger on refresh_tokens), a hit costs no query, and while the LISTEN
connection is down every check reads the table. The caches here play two other API processes,
each with a LISTEN connection of its own."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from lms.domain.auth.session_state import CHANNEL, SessionStateCache
from lms.notifications.listener import ChangeListener
from lms.settings import Settings
from tests.conftest import TestUser
from tests.helpers import eventually

Process = tuple[SessionStateCache, ChangeListener]


@pytest.fixture
async def processes(settings: Settings, db: asyncpg.Pool) -> AsyncIterator[list[Process]]:
    assert settings.database_url
    started: list[Process] = []
    try:
        for _ in range(2):
            cache = SessionStateCache()
            cache.bind(db)
            listener = ChangeListener(settings.database_url)
            listener.subscribe(CHANNEL, cache.subscriber())
            await listener.start()
            assert listener.connected
            started.append((cache, listener))
        yield started
    finally:
        for _, listener in started:
            await listener.stop()


async def login_family(api: httpx.AsyncClient, db: asyncpg.Pool, user: TestUser) -> uuid.UUID:
    """A fresh login of `user`, as its refresh token family."""
    response = await api.post("/auth/login", json={"email": user.email, "password": user.password})
    assert response.status_code == 200, response.text
    family: uuid.UUID = await db.fetchval(
        "SELECT family_id FROM refresh_tokens ORDER BY created_at DESC LIMIT 1"
    )
    return family


async def revoke_unheard(db: asyncpg.Pool, family: uuid.UUID) -> None:
    """Revoke with triggers off: no notification, as if it were lost."""
    async with db.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")
        await conn.execute(
            "UPDATE refresh_tokens SET revoked_at = now() WHERE family_id = $1", family
        )


async def test_a_revocation_made_anywhere_reaches_every_process(
    processes: list[Process], api: httpx.AsyncClient, db: asyncpg.Pool, learner: TestUser
) -> None:
    quiet, heard = await login_family(api, db, learner), await login_family(api, db, learner)
    for cache, _ in processes:
        assert not await cache.revoked(quiet) and not await cache.revoked(heard)
    # Cached: a revocation nobody announces is not seen, so a check costs no query.
    await revoke_unheard(db, quiet)
    for cache, _ in processes:
        assert not await cache.revoked(quiet)
    # Revoked as the API or an operator's psql does it: the trigger tells every process.
    await db.execute("UPDATE refresh_tokens SET revoked_at = now() WHERE family_id = $1", heard)
    for cache, _ in processes:

        async def heard_in(cache: SessionStateCache = cache) -> bool:
            return await cache.revoked(heard)

        await eventually(heard_in, within=5.0, what="the revocation heard")
    # A login that no longer exists at all (purged) is no live login.
    assert await processes[0][0].revoked(uuid.uuid4())


async def test_while_not_listening_every_check_reads_the_table(
    processes: list[Process], api: httpx.AsyncClient, db: asyncpg.Pool, learner: TestUser
) -> None:
    cache, listener = processes[0]
    family = await login_family(api, db, learner)
    assert not await cache.revoked(family)
    assert listener._conn is not None
    await db.execute("SELECT pg_terminate_backend($1)", listener._conn.get_server_pid())

    async def down() -> bool:
        return not listener.connected

    await eventually(down, within=2.0, what="listener down")
    # Unheard (the notification could be lost while the connection is down), yet seen at once.
    await revoke_unheard(db, family)
    assert await cache.revoked(family)
