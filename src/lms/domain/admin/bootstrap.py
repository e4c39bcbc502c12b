"""`lms create-admin`: make (or promote) a verified, profile-complete ADMIN without a prompt."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

from lms.db.engine import pool
from lms.domain.auth.passwords import MIN_PASSWORD_LENGTH, hash_password

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_USERNAME = re.compile(r"^[a-z0-9_.-]{3,50}$")


class InvalidAdminInput(ValueError):
    """Bad --email/--password/--username: reported as one line."""


@dataclass(frozen=True, slots=True)
class AdminAccount:
    user_id: uuid.UUID
    email: str
    username: str
    created: bool


def _validate(email: str, password: str, username: str | None) -> tuple[str, str | None]:
    email = email.strip().lower()
    if not _EMAIL.match(email) or len(email) > 320:
        raise InvalidAdminInput(f"not a valid email address: {email!r}")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidAdminInput(f"password must be at least {MIN_PASSWORD_LENGTH} characters")
    if username is not None:
        username = username.strip().lower()
        if not _USERNAME.match(username):
            raise InvalidAdminInput("username must be 3-50 of a-z, 0-9, '_', '.', '-'")
    return email, username


def _username_base(email: str) -> str:
    base = re.sub(r"[^a-z0-9_.-]", "", email.split("@", 1)[0])[:40]
    return base if len(base) >= 3 else f"admin{base}"


async def create_admin(
    email: str, password: str, *, full_name: str = "Administrator", username: str | None = None
) -> AdminAccount:
    """Insert the admin, or promote and reset the existing account with that email (idempotent)."""
    email, username = _validate(email, password, username)
    password_hash = await hash_password(password)
    async with pool().acquire() as conn, conn.transaction():
        existing = await conn.fetchrow(
            "SELECT id, username FROM users WHERE email = $1 FOR UPDATE", email
        )
        chosen = (
            username
            or (existing and existing["username"])
            or await _free_username(conn, _username_base(email))
        )
        if existing:
            # A role change bumps token_version so tokens issued for the old role stop working.
            await conn.execute(
                """
                UPDATE users SET role = 'ADMIN', password_hash = $2, username = $3,
                       full_name = coalesce(full_name, $4), email_verified = true,
                       is_profile_complete = true, is_active = true,
                       token_version = token_version + 1, updated_at = now()
                WHERE id = $1
                """,
                existing["id"], password_hash, chosen, full_name,
            )  # fmt: skip
            return AdminAccount(existing["id"], email, chosen, created=False)
        user_id = await conn.fetchval(
            """
            INSERT INTO users (email, username, password_hash, full_name, name, role,
                               email_verified, is_profile_complete, is_active)
            VALUES ($1, $2, $3, $4, $4, 'ADMIN', true, true, true)
            RETURNING id
            """,
            email, chosen, password_hash, full_name,
        )  # fmt: skip
        return AdminAccount(user_id, email, chosen, created=True)


async def _free_username(conn: object, base: str) -> str:
    fetchval = conn.fetchval  # type: ignore[attr-defined]
    candidate, n = base, 1
    while await fetchval("SELECT 1 FROM users WHERE username = $1", candidate):
        n += 1
        candidate = f"{base}{n}"
    return candidate
