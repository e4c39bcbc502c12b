"""Login, token refresh with rotation and reuse detection, logout."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from dataclasses import dataclass

import asyncpg

from lms.context import AppContext
from lms.db.builder import transaction
from lms.db.queries import refresh_tokens, users
from lms.domain.auth.authentication import Principal
from lms.domain.auth.passwords import hash_password, needs_rehash, verify_password
from lms.domain.auth.schemas import LoginRequest, Tokens, User
from lms.domain.auth.tokens import hash_refresh_token, issue_access_token, new_refresh_token
from lms.domain.errors import Forbidden, Invalid, Unauthenticated
from lms.domain.rate_limits import FAILED_LOGINS, account_key, give_back, take
from lms.invariants import present

BAD_CREDENTIALS = "invalid email, username or password"


@dataclass(frozen=True, slots=True)
class ClientInfo:
    ip: str | None
    user_agent: str | None


_dummy_hash: str | None = None
_dummy_lock = asyncio.Lock()


async def _dummy_password_hash() -> str:
    """A hash to verify against when there is no user, so an unknown account costs the same time
    as a wrong password and timing does not reveal which emails are registered."""
    global _dummy_hash
    async with _dummy_lock:
        if _dummy_hash is None:
            _dummy_hash = await hash_password(secrets.token_urlsafe(16))
    return _dummy_hash


async def open_session(
    conn: asyncpg.Connection,
    ctx: AppContext,
    user: asyncpg.Record,
    client: ClientInfo,
    family_id: uuid.UUID | None = None,
) -> Tokens:
    """Tokens for `user` (a row with token_version): a new login family unless one is given.
    The token is stored on `conn`, in the caller's transaction (sign-up's raw one, or Piccolo's)."""
    token, token_hash = new_refresh_token()
    await refresh_tokens.insert(
        conn,
        user_id=user["id"],
        family_id=family_id or uuid.uuid4(),
        token_hash=token_hash,
        ttl_seconds=ctx.settings.refresh_token_ttl_seconds,
        user_agent=client.user_agent,
        ip_address=client.ip,
    )
    access = issue_access_token(
        ctx.settings, user_id=user["id"], role=user["role"], token_version=user["token_version"]
    )
    return Tokens(
        access_token=access,
        refresh_token=token,
        token_type="Bearer",  # noqa: S106 - the OAuth token type, not a secret
        expires_in=ctx.settings.access_token_ttl_seconds,
        user=User.from_row(user),
    )


async def login(
    db: asyncpg.Pool, ctx: AppContext, body: LoginRequest, client: ClientInfo
) -> Tokens:
    if (body.email is None) == (body.username is None):
        raise Invalid("give either email or username, with password")
    identifier = (body.email or body.username or "").strip().lower()
    row = await users.by_login(
        db,
        email=identifier if body.email is not None else None,
        username=identifier if body.username is not None else None,
    )
    # Failures count per account, whether it is named by email or by username; a name that is
    # no account gets a counter of its own, so probing one costs the same.
    failures = account_key("login-failures", str(row["id"]) if row is not None else identifier)
    # Counted before checking and given back on success, so concurrent guesses cannot slip past.
    await take(
        db, failures, FAILED_LOGINS, "failed logins for this account", label="login-failures"
    )
    stored = row["password_hash"] if row is not None else None
    password_ok = await verify_password(stored or await _dummy_password_hash(), body.password)
    if row is None or stored is None or not password_ok:
        raise Unauthenticated(BAD_CREDENTIALS)
    await give_back(db, failures, FAILED_LOGINS)
    if not row["is_active"]:
        raise Forbidden("account is deactivated")
    if not row["email_verified"]:
        raise Forbidden("email address is not verified yet")
    if not row["is_profile_complete"]:
        raise Forbidden("profile is not complete yet")
    # Hash parameters were raised since this hash was made: upgrade it while we know the password.
    new_hash = await hash_password(body.password) if needs_rehash(stored) else None
    async with db.acquire() as conn, conn.transaction():
        user = await users.record_login(conn, row["id"], new_hash)
        return await open_session(conn, ctx, user, client)


async def refresh(ctx: AppContext, refresh_token: str, client: ClientInfo) -> Tokens:
    refusal: Exception | None = None
    async with transaction() as conn:
        row = await refresh_tokens.lock_by_hash(hash_refresh_token(refresh_token))
        if row is None:
            refusal = Unauthenticated("invalid refresh token")
        elif row["revoked_at"] is not None:
            refusal = Unauthenticated("refresh token has been revoked")
        elif row["rotated_at"] is not None:
            # Someone replays a token that was already exchanged: it may be stolen. End the login.
            await refresh_tokens.revoke_family(row["family_id"])
            refusal = Unauthenticated("refresh token was already used; this login is revoked")
        elif row["expired"]:
            refusal = Unauthenticated("refresh token has expired")
        else:
            user = await users.public_by_id(conn, row["user_id"])
            if user is None or not user["is_active"]:
                await refresh_tokens.revoke_family(row["family_id"])
                refusal = Unauthenticated("account is deactivated")
            else:
                await refresh_tokens.mark_rotated(row["id"])
                return await open_session(conn, ctx, user, client, family_id=row["family_id"])
    # Raised after commit: the revocation above must stick although the request fails.
    raise present(refusal, "every branch that does not return sets a refusal")


async def logout(principal: Principal, refresh_token: str) -> None:
    """End the login that `refresh_token` belongs to (every token of its family)."""
    async with transaction():
        family = await refresh_tokens.family_of(
            hash_refresh_token(refresh_token), principal.user_id
        )
        if family is not None:
            await refresh_tokens.revoke_family(family)


async def me(db: asyncpg.Pool, principal: Principal) -> User:
    row = await users.public_by_id(db, principal.user_id)
    if row is None:
        raise Unauthenticated("invalid token")
    return User.from_row(row)
