"""Login, token refresh with rotation and reuse detection, logout."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import uuid
from dataclasses import dataclass

import asyncpg

from lms.context import AppContext
from lms.db.builder import transaction
from lms.db.queries import refresh_tokens, users
from lms.domain.auth.authentication import Principal
from lms.domain.auth.otp import NO_ONE
from lms.domain.auth.passwords import hash_password, needs_rehash, verify_password
from lms.domain.auth.schemas import LoginRequest, Tokens, User
from lms.domain.auth.tokens import hash_refresh_token, issue_access_token, new_refresh_token
from lms.domain.errors import Forbidden, Invalid, Unauthenticated, Unavailable
from lms.domain.rate_limits import (
    FAILED_LOGINS_PER_ACCOUNT,
    FAILED_LOGINS_PER_CLIENT,
    account_key,
    client_key,
    give_back,
    take,
)
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
    family_id = family_id or uuid.uuid4()
    await refresh_tokens.insert(
        conn,
        user_id=user["id"],
        family_id=family_id,
        token_hash=token_hash,
        ttl_seconds=ctx.settings.refresh_token_ttl_seconds,
        user_agent=client.user_agent,
        ip_address=client.ip,
    )
    # The access token names its login, so it dies with it (lms.domain.auth.session_state).
    access = issue_access_token(
        ctx.settings,
        user_id=user["id"],
        role=user["role"],
        token_version=user["token_version"],
        session_id=family_id,
    )
    return Tokens(
        access_token=access,
        refresh_token=token,
        token_type="Bearer",  # noqa: S106 - the OAuth token type, not a secret
        expires_in=ctx.settings.access_token_ttl_seconds,
        user=User.from_row(user),
    )


def _failure_keys(
    row: asyncpg.Record | None, identifier: str, client: ClientInfo
) -> tuple[str, str]:
    """(per account and client, per account). An account is the same however it is named (email
    or username); a name that is no account gets counters of its own, so probing one costs the
    same. A client is its IPv4 address or IPv6 /64."""
    account = str(row["id"]) if row is not None else identifier
    mine = account_key("login-failures", f"{account} from {client_key(client.ip)}")
    return mine, account_key("login-failures", account)


async def count_attempt(
    db: asyncpg.Pool, row: asyncpg.Record | None, identifier: str, client: ClientInfo
) -> None:
    """Count a sign-in attempt as a failure before the password is checked (given back when it
    is right), so concurrent guesses cannot slip past. A client gets ten in 15 minutes; the
    account, ten from all clients together, which spares a client that holds a login to the
    account from its address (it has signed in before): a guesser elsewhere does not lock the
    owner's own devices out."""
    mine, everyone = _failure_keys(row, identifier, client)
    await take(
        db,
        mine,
        FAILED_LOGINS_PER_CLIENT,
        "failed logins for this account from this address",
        label="login-failures",
    )

    async def holds_login() -> bool:
        # The same statement with or without an account, so the answer's timing does not say.
        user_id = row["id"] if row is not None else NO_ONE
        key = client_key(client.ip)
        return any(client_key(a) == key for a in await users.login_addresses(db, user_id))

    await take(
        db,
        everyone,
        FAILED_LOGINS_PER_ACCOUNT,
        "failed logins for this account",
        label="login-failures-account",
        unless=holds_login,
    )


async def uncount_attempt(
    db: asyncpg.Pool, row: asyncpg.Record | None, identifier: str, client: ClientInfo
) -> None:
    mine, everyone = _failure_keys(row, identifier, client)
    await give_back(db, mine, FAILED_LOGINS_PER_CLIENT)
    await give_back(db, everyone, FAILED_LOGINS_PER_ACCOUNT)


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
    await count_attempt(db, row, identifier, client)
    stored = row["password_hash"] if row is not None else None
    try:
        password_ok = await verify_password(stored or await _dummy_password_hash(), body.password)
    except Unavailable:
        await uncount_attempt(db, row, identifier, client)  # no guess was checked
        raise
    if row is None or stored is None or not password_ok:
        raise Unauthenticated(BAD_CREDENTIALS)
    await uncount_attempt(db, row, identifier, client)
    if not row["is_active"]:
        raise Forbidden("account is deactivated")
    if not row["email_verified"]:
        raise Forbidden("email address is not verified yet")
    if not row["is_profile_complete"]:
        raise Forbidden("profile is not complete yet")
    # Hash parameters were raised since this hash was made: upgrade it while we know the password.
    new_hash = None
    if needs_rehash(stored):
        with contextlib.suppress(Unavailable):  # busy: the upgrade waits for another sign-in
            new_hash = await hash_password(body.password)
    async with db.acquire() as conn, conn.transaction():
        user = await users.record_login(conn, row["id"], new_hash)
        return await open_session(conn, ctx, user, client)


async def refresh(ctx: AppContext, refresh_token: str, client: ClientInfo) -> Tokens:
    refusal: Exception | None = None
    revoked: uuid.UUID | None = None
    async with transaction() as conn:
        row = await refresh_tokens.lock_by_hash(hash_refresh_token(refresh_token))
        if row is None:
            refusal = Unauthenticated("invalid refresh token")
        elif row["revoked_at"] is not None or row["family_revoked"]:
            refusal = Unauthenticated("refresh token has been revoked")
        elif row["rotated_at"] is not None:
            # Someone replays a token that was already exchanged: it may be stolen. End the login,
            # its access tokens with it.
            revoked = row["family_id"]
            await refresh_tokens.revoke_family(revoked)
            refusal = Unauthenticated("refresh token was already used; this login is revoked")
        elif row["expired"]:
            refusal = Unauthenticated("refresh token has expired")
        else:
            user = await users.public_by_id(conn, row["user_id"])
            if user is None or not user["is_active"]:
                revoked = row["family_id"]
                await refresh_tokens.revoke_family(revoked)
                refusal = Unauthenticated("account is deactivated")
            else:
                await refresh_tokens.mark_rotated(row["id"])
                return await open_session(conn, ctx, user, client, family_id=row["family_id"])
    # After commit: the revocation above must stick although the request fails, and this process
    # refuses the login's access tokens at once rather than when the notification comes back.
    if revoked is not None:
        ctx.sessions.invalidate(revoked)
    raise present(refusal, "every branch that does not return sets a refusal")


async def logout(ctx: AppContext, principal: Principal, refresh_token: str) -> None:
    """End the login that `refresh_token` belongs to: its refresh tokens and the access tokens
    issued for it."""
    async with transaction():
        family = await refresh_tokens.family_of(
            hash_refresh_token(refresh_token), principal.user_id
        )
        if family is not None:
            await refresh_tokens.revoke_family(family)
    if family is not None:
        ctx.sessions.invalidate(family)


async def me(db: asyncpg.Pool, principal: Principal) -> User:
    row = await users.public_by_id(db, principal.user_id)
    if row is None:
        raise Unauthenticated("invalid token")
    return User.from_row(row)
