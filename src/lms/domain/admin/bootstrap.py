"""`lms create-admin`: make (or promote) a verified, profile-complete ADMIN without a prompt."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

from lms.db.builder import transaction
from lms.db.queries import users
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
    """Insert the admin, or promote and reset the existing account with that email (idempotent).
    Runs on Piccolo's engine: `lms create-admin` starts its pool."""
    email, username = _validate(email, password, username)
    password_hash = await hash_password(password)
    async with transaction():
        existing = await users.lock_by_email(email)
        chosen = (
            username
            or (existing and existing["username"])
            or await _free_username(_username_base(email))
        )
        if existing:
            await users.make_admin(
                existing["id"], password_hash=password_hash, username=chosen, full_name=full_name
            )
            return AdminAccount(existing["id"], email, chosen, created=False)
        user_id = await users.insert_admin(
            email=email, username=chosen, password_hash=password_hash, full_name=full_name
        )
        return AdminAccount(user_id, email, chosen, created=True)


async def _free_username(base: str) -> str:
    candidate, n = base, 1
    while await users.username_taken(candidate):
        n += 1
        candidate = f"{base}{n}"
    return candidate
