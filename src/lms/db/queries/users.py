"""SQL for users: lookups, sign-up, profile, login bookkeeping, admin listing."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg

from lms.db.queries import Conn

# What the API shows of a user (`User` on the wire); never the password hash.
PUBLIC_COLUMNS = """id, email, phone_number, name, username, full_name, country, state, zip,
    email_verified, phone_verified, is_profile_complete, is_active, role,
    created_at, updated_at, last_login_at"""


async def auth_state(conn: Conn, user_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT role, is_active, token_version FROM users WHERE id = $1", user_id
    )


async def public_by_id(conn: Conn, user_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {PUBLIC_COLUMNS}, token_version FROM users WHERE id = $1", user_id
    )


async def by_email(conn: Conn, email: str, *, lock: bool = False) -> asyncpg.Record | None:
    suffix = " FOR UPDATE" if lock else ""
    return await conn.fetchrow(
        f"SELECT {PUBLIC_COLUMNS}, password_hash, token_version FROM users WHERE email = $1{suffix}",
        email,
    )


async def by_login(conn: Conn, *, email: str | None, username: str | None) -> asyncpg.Record | None:
    if email is not None:
        return await by_email(conn, email)
    return await conn.fetchrow(
        f"SELECT {PUBLIC_COLUMNS}, password_hash, token_version FROM users WHERE username = $1",
        username,
    )


async def register(conn: Conn, email: str, password_hash: str | None) -> asyncpg.Record:
    """Insert a new unverified user, or return the existing row (keeping a new password for
    one not yet verified). `inserted` says which; `email_verified` whether it may be re-used."""
    row = await conn.fetchrow(
        """
        INSERT INTO users (email, password_hash) VALUES ($1, $2)
        ON CONFLICT (email) DO UPDATE
            SET password_hash = CASE WHEN users.email_verified OR $2::text IS NULL
                                     THEN users.password_hash ELSE $2 END,
                updated_at = CASE WHEN users.email_verified THEN users.updated_at ELSE now() END
        RETURNING id, email, email_verified, is_profile_complete, (xmax = 0) AS inserted
        """,
        email, password_hash,
    )  # fmt: skip
    assert row is not None
    return row


async def mark_email_verified(conn: Conn, user_id: uuid.UUID) -> None:
    await conn.execute(
        "UPDATE users SET email_verified = true, updated_at = now() WHERE id = $1 AND NOT email_verified",
        user_id,
    )


async def phone_owner(conn: Conn, phone: str) -> uuid.UUID | None:
    owner: uuid.UUID | None = await conn.fetchval(
        "SELECT id FROM users WHERE phone_number = $1 AND phone_verified", phone
    )
    return owner


async def set_verified_phone(conn: Conn, user_id: uuid.UUID, phone: str) -> None:
    await conn.execute(
        "UPDATE users SET phone_number = $2, phone_verified = true, updated_at = now() WHERE id = $1",
        user_id, phone,
    )  # fmt: skip


async def complete_profile(
    conn: Conn,
    user_id: uuid.UUID,
    *,
    username: str,
    password_hash: str,
    full_name: str,
    name: str | None,
    country: str,
    state: str,
    zip_code: str,
) -> asyncpg.Record | None:
    """Fill in the profile once: None when it was already complete (a concurrent request won)."""
    return await conn.fetchrow(
        f"""
        UPDATE users SET username = $2, password_hash = $3, full_name = $4, name = $5,
               country = $6, state = $7, zip = $8, is_profile_complete = true,
               last_login_at = now(), updated_at = now()
        WHERE id = $1 AND NOT is_profile_complete AND email_verified AND is_active
        RETURNING {PUBLIC_COLUMNS}, token_version
        """,
        user_id, username, password_hash, full_name, name, country, state, zip_code,
    )  # fmt: skip


async def record_login(
    conn: Conn, user_id: uuid.UUID, new_password_hash: str | None
) -> asyncpg.Record:
    row = await conn.fetchrow(
        f"""
        UPDATE users SET last_login_at = now(),
               password_hash = coalesce($2, password_hash)
        WHERE id = $1
        RETURNING {PUBLIC_COLUMNS}, token_version
        """,
        user_id, new_password_hash,
    )  # fmt: skip
    assert row is not None
    return row


async def reset_password(conn: Conn, user_id: uuid.UUID, password_hash: str) -> None:
    """New password; the token version moves so every access token issued before dies now."""
    await conn.execute(
        """
        UPDATE users SET password_hash = $2, token_version = token_version + 1, updated_at = now()
        WHERE id = $1
        """,
        user_id, password_hash,
    )  # fmt: skip


async def lock_for_admin(conn: Conn, user_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {PUBLIC_COLUMNS} FROM users WHERE id = $1 FOR UPDATE", user_id
    )


async def set_role_and_activity(
    conn: Conn, user_id: uuid.UUID, *, role: str, is_active: bool, bump_version: bool
) -> asyncpg.Record:
    row = await conn.fetchrow(
        f"""
        UPDATE users SET role = $2, is_active = $3,
               token_version = token_version + CASE WHEN $4 THEN 1 ELSE 0 END,
               updated_at = now()
        WHERE id = $1
        RETURNING {PUBLIC_COLUMNS}
        """,
        user_id, role, is_active, bump_version,
    )  # fmt: skip
    assert row is not None
    return row


async def promote_learner_to_creator(conn: Conn, user_id: uuid.UUID) -> bool:
    """An approved applicant becomes CREATOR; an ADMIN stays ADMIN."""
    status = await conn.execute(
        "UPDATE users SET role = 'CREATOR', updated_at = now() WHERE id = $1 AND role = 'LEARNER'",
        user_id,
    )
    return bool(status == "UPDATE 1")


async def list_page(
    conn: Conn,
    *,
    role: str | None,
    tsquery: str | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[asyncpg.Record]:
    """Newest first, keyset on (created_at, id); `tsquery` is a to_tsquery('simple') string."""
    after_at, after_id = after if after else (None, None)
    rows: list[asyncpg.Record] = await conn.fetch(
        f"""
        SELECT {PUBLIC_COLUMNS} FROM users
        WHERE ($1::text IS NULL OR role = $1)
          AND ($2::text IS NULL OR search_vector @@ to_tsquery('simple', $2))
          AND ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4::uuid))
        ORDER BY created_at DESC, id DESC
        LIMIT $5
        """,
        role, tsquery, after_at, after_id, limit,
    )  # fmt: skip
    return rows
