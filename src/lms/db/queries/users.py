"""Queries on users. Sign-up, login and authentication run raw on the caller's asyncpg
connection (their transactions are raw); the admin's listing and changes and `lms create-admin`
use Piccolo's builder."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg
from piccolo.columns import Column
from piccolo.query.functions.conditional import Coalesce
from piccolo.querystring import QueryString

from lms.db import keyset
from lms.db.builder import db_now
from lms.db.queries import Conn
from lms.db.tables import Role, User
from lms.invariants import present

# What the API shows of a user (`User` on the wire); never the password hash. Piccolo's columns,
# and the same list as SQL text for the raw statements.
PUBLIC = (
    User.id,
    User.email,
    User.phone_number,
    User.name,
    User.username,
    User.full_name,
    User.country,
    User.state,
    User.zip,
    User.email_verified,
    User.phone_verified,
    User.is_profile_complete,
    User.is_active,
    User.role,
    User.created_at,
    User.updated_at,
    User.last_login_at,
)
PUBLIC_COLUMNS = ", ".join(column._meta.db_column_name for column in PUBLIC)


# Raw: read on every miss of the per-process authentication cache (a hot path).
async def auth_state(conn: Conn, user_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT role, is_active, token_version FROM users WHERE id = $1", user_id
    )


# Raw: sign-up reads it on its own asyncpg connection; /auth/me and token refresh on every call.
async def public_by_id(conn: Conn, user_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {PUBLIC_COLUMNS}, token_version FROM users WHERE id = $1", user_id
    )


# Raw: sign-up and recovery lock the row (FOR UPDATE) in their own asyncpg transactions.
async def by_email(conn: Conn, email: str, *, lock: bool = False) -> asyncpg.Record | None:
    suffix = " FOR UPDATE" if lock else ""
    return await conn.fetchrow(
        f"SELECT {PUBLIC_COLUMNS}, password_hash, token_version"
        f" FROM users WHERE email = $1{suffix}",
        email,
    )


# Raw: the login lookup, before argon2 (sign-in stays raw with sign-up).
async def by_login(conn: Conn, *, email: str | None, username: str | None) -> asyncpg.Record | None:
    if email is not None:
        return await by_email(conn, email)
    return await conn.fetchrow(
        f"SELECT {PUBLIC_COLUMNS}, password_hash, token_version FROM users WHERE username = $1",
        username,
    )


# Raw: sign-in's, on the pool it is handed; only under a flood of failed sign-ins to the account.
async def login_addresses(conn: Conn, user_id: uuid.UUID) -> list[str]:
    """The addresses the account's live logins (refresh tokens) were issued or last rotated to:
    clients that have signed in to it. Bounded: a handful of devices is the common case."""
    rows = await conn.fetch(
        """
        SELECT DISTINCT ip_address FROM refresh_tokens
        WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > now()
          AND ip_address IS NOT NULL
        LIMIT 100
        """,
        user_id,
    )
    return [row["ip_address"] for row in rows]


# Raw: ON CONFLICT DO UPDATE with CASEs, and xmax to tell an insert from an update.
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
        email,
        password_hash,
    )
    return present(row, "INSERT ... ON CONFLICT DO UPDATE ... RETURNING returns the row")


# Raw: part of sign-up's asyncpg transaction (verify-email).
async def mark_email_verified(conn: Conn, user_id: uuid.UUID) -> None:
    await conn.execute(
        "UPDATE users SET email_verified = true, updated_at = now()"
        " WHERE id = $1 AND NOT email_verified",
        user_id,
    )


# Raw: sign-up's lookup (verify-phone), on the pool it is handed.
async def phone_owner(conn: Conn, phone: str) -> uuid.UUID | None:
    owner: uuid.UUID | None = await conn.fetchval(
        "SELECT id FROM users WHERE phone_number = $1 AND phone_verified", phone
    )
    return owner


# Raw: part of sign-up's asyncpg transaction (verify-phone).
async def set_verified_phone(conn: Conn, user_id: uuid.UUID, phone: str) -> None:
    await conn.execute(
        "UPDATE users SET phone_number = $2, phone_verified = true, updated_at = now()"
        " WHERE id = $1",
        user_id,
        phone,
    )


# Raw: part of sign-up's asyncpg transaction, a conditional UPDATE ... RETURNING.
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
        user_id,
        username,
        password_hash,
        full_name,
        name,
        country,
        state,
        zip_code,
    )


# Raw: part of login's asyncpg transaction (coalesce keeps the hash unless it is upgraded).
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
        user_id,
        new_password_hash,
    )
    return present(row, "login has just read this user, and users are never deleted")


# Raw: part of recovery's transaction, on the connection the OTP check runs on.
async def reset_password(conn: Conn, user_id: uuid.UUID, password_hash: str) -> None:
    """New password; the token version moves so every access token issued before dies now."""
    await conn.execute(
        """
        UPDATE users SET password_hash = $2, token_version = token_version + 1, updated_at = now()
        WHERE id = $1
        """,
        user_id,
        password_hash,
    )


# Piccolo from here on: the admin's cold paths. Run the locking ones inside
# lms.db.builder.transaction(), which they join through Piccolo's context variable.


async def list_page(
    *,
    role: str | None,
    tsquery: str | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[dict[str, Any]]:
    """Newest first, keyset on (created_at, id); `tsquery` is a to_tsquery('simple') string."""
    query = User.select(*PUBLIC)
    if role is not None:
        query = query.where(User.role == role)
    if tsquery is not None:
        # search_vector is generated by the migrations (Piccolo has no tsvector column), with
        # its GIN index; the query text goes as a parameter.
        query = query.where(QueryString("search_vector @@ to_tsquery('simple', {})", tsquery))
    return await keyset.newest_first(query, User.created_at, User.id, after, limit)


async def lock_for_admin(user_id: uuid.UUID) -> dict[str, Any] | None:
    """The user as the API shows them, locked (FOR UPDATE) until the transaction ends."""
    return await User.select(*PUBLIC).where(User.id == user_id).lock_rows().first()


async def set_role_and_activity(
    user_id: uuid.UUID, *, role: str, is_active: bool, bump_version: bool
) -> dict[str, Any]:
    values: dict[Column | str, Any] = {
        User.role: role,
        User.is_active: is_active,
        User.updated_at: db_now(),
    }
    if bump_version:
        values[User.token_version] = User.token_version + 1
    rows = await User.update(values).where(User.id == user_id).returning(*PUBLIC)
    return dict(rows[0])


async def promote_learner_to_creator(user_id: uuid.UUID) -> bool:
    """An approved applicant becomes CREATOR; an ADMIN stays ADMIN."""
    promoted = (
        await User.update({User.role: Role.CREATOR.value, User.updated_at: db_now()})
        .where((User.id == user_id) & (User.role == Role.LEARNER.value))
        .returning(User.id)
    )
    return bool(promoted)


async def addressee(user_id: uuid.UUID) -> dict[str, Any] | None:
    """What a mail to the user needs: their address and the name to greet them by."""
    return (
        await User.select(User.email, User.full_name, User.username)
        .where(User.id == user_id)
        .first()
    )


# `lms create-admin`


async def lock_by_email(email: str) -> dict[str, Any] | None:
    return await User.select(User.id, User.username).where(User.email == email).lock_rows().first()


async def username_taken(username: str) -> bool:
    return bool(await User.exists().where(User.username == username))


async def make_admin(
    user_id: uuid.UUID, *, password_hash: str, username: str, full_name: str
) -> None:
    """Promote and reset an existing account; the token version moves, so tokens issued for its
    old role stop working."""
    await User.update(
        {
            User.role: Role.ADMIN.value,
            User.password_hash: password_hash,
            User.username: username,
            User.full_name: Coalesce(User.full_name, full_name),
            User.email_verified: True,
            User.is_profile_complete: True,
            User.is_active: True,
            User.token_version: User.token_version + 1,
            User.updated_at: db_now(),
        }
    ).where(User.id == user_id)


async def insert_admin(
    *, email: str, username: str, password_hash: str, full_name: str
) -> uuid.UUID:
    """A new verified, profile-complete ADMIN."""
    admin = User(
        {
            User.email: email,
            User.username: username,
            User.password_hash: password_hash,
            User.full_name: full_name,
            User.name: full_name,
            User.role: Role.ADMIN.value,
            User.email_verified: True,
            User.is_profile_complete: True,
            User.is_active: True,
            User.created_at: db_now(),
            User.updated_at: db_now(),
        }
    )
    rows = await User.insert(admin).returning(User.id)
    user_id: uuid.UUID = rows[0]["id"]
    return user_id
