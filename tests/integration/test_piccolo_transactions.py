"""Piccolo's queries and our raw statements in one transaction, whichever of the two opened it."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import pytest

from lms.db.builder import transaction
from lms.db.queries import refresh_tokens
from lms.domain import audit
from lms.domain.auth.tokens import new_refresh_token

# The tokens issue() stores; make_user's own login (lms.domain.auth.logins) is not one of them.
ISSUED = "user_agent = 'test'"


async def tokens_of(db: asyncpg.Pool, user_id: uuid.UUID) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await db.fetch(
        "SELECT family_id, revoked_at, expires_at - created_at AS ttl FROM refresh_tokens"
        f" WHERE user_id = $1 AND {ISSUED}",
        user_id,
    )
    return rows


async def issue(conn: asyncpg.Connection, user_id: uuid.UUID) -> uuid.UUID:
    family = uuid.uuid4()
    await refresh_tokens.insert(
        conn,
        user_id=user_id,
        family_id=family,
        token_hash=new_refresh_token()[1],
        ttl_seconds=3600,
        user_agent="test",
        ip_address="127.0.0.1",
    )
    return family


async def test_a_token_issued_in_a_raw_transaction_goes_with_it(
    db: asyncpg.Pool, make_user: Any
) -> None:
    """Sign-up opens sessions inside its own asyncpg transactions: the Piccolo-built insert must
    run on that connection, not on another one from the pool."""
    user = await make_user("LEARNER")
    async with db.acquire() as conn:
        rolled_back = conn.transaction()
        await rolled_back.start()
        await issue(conn, user.id)
        assert await conn.fetchval(f"SELECT count(*) FROM refresh_tokens WHERE {ISSUED}") == 1
        assert await tokens_of(db, user.id) == []  # not committed, so not seen elsewhere
        await rolled_back.rollback()
        assert await tokens_of(db, user.id) == []

        async with conn.transaction():
            family = await issue(conn, user.id)
    [token] = await tokens_of(db, user.id)
    assert token["family_id"] == family and token["revoked_at"] is None
    assert token["ttl"].total_seconds() == 3600  # both stamped by the database's clock


async def test_raw_statements_join_a_piccolo_transaction(db: asyncpg.Pool, make_user: Any) -> None:
    user, admin = await make_user("LEARNER"), await make_user("ADMIN")
    async with db.acquire() as conn, conn.transaction():
        await issue(conn, user.id)

    async def revoke_then_fail() -> None:
        async with transaction() as conn:
            await refresh_tokens.revoke_all_for_user(user.id)  # Piccolo
            await audit.record(
                conn,
                actor_id=admin.id,
                action="test.revoke",
                target_type="user",
                target_id=user.id,
            )
            raise RuntimeError("after the writes")

    with pytest.raises(RuntimeError, match="after the writes"):
        await revoke_then_fail()
    [token] = await tokens_of(db, user.id)
    assert token["revoked_at"] is None
    assert await db.fetchval("SELECT count(*) FROM audit_log") == 0

    async with transaction() as conn:
        await refresh_tokens.revoke_all_for_user(user.id)
        await audit.record(
            conn, actor_id=admin.id, action="test.revoke", target_type="user", target_id=user.id
        )
        # Both on one connection: the raw read sees the Piccolo write before the commit.
        revoked = f"SELECT count(*) FROM refresh_tokens WHERE revoked_at IS NOT NULL AND {ISSUED}"
        assert await conn.fetchval(revoked) == 1
    [token] = await tokens_of(db, user.id)
    assert token["revoked_at"] is not None
    entry = await db.fetchrow("SELECT actor_id, target_id FROM audit_log")
    assert entry is not None and entry["actor_id"] == admin.id
    assert entry["target_id"] == str(user.id)


async def test_a_token_locked_in_one_transaction_waits_for_it(
    db: asyncpg.Pool, make_user: Any
) -> None:
    """lock_by_hash is FOR UPDATE inside the Piccolo transaction: a second transaction reading
    the same token with NOWAIT is refused until the first one ends."""
    user = await make_user("LEARNER")
    token_hash = new_refresh_token()[1]
    async with db.acquire() as conn, conn.transaction():
        await refresh_tokens.insert(
            conn,
            user_id=user.id,
            family_id=uuid.uuid4(),
            token_hash=token_hash,
            ttl_seconds=60,
            user_agent=None,
            ip_address=None,
        )
    async with transaction():
        row = await refresh_tokens.lock_by_hash(token_hash)
        assert row is not None and row["user_id"] == user.id and row["expired"] is False
        async with db.acquire() as other:
            with pytest.raises(asyncpg.LockNotAvailableError):
                await other.fetchval(
                    "SELECT 1 FROM refresh_tokens WHERE token_hash = $1 FOR UPDATE NOWAIT",
                    token_hash,
                )
    async with db.acquire() as other:
        assert (
            await other.fetchval(
                "SELECT 1 FROM refresh_tokens WHERE token_hash = $1 FOR UPDATE NOWAIT", token_hash
            )
            == 1
        )
