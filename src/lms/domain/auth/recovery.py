"""Forgotten passwords: a code by email, then a new password that ends every existing session."""

from __future__ import annotations

import asyncpg

from lms.context import AppContext
from lms.db.builder import transaction
from lms.db.queries import refresh_tokens, users
from lms.db.tables import OtpPurpose
from lms.domain.auth import otp
from lms.domain.auth.passwords import hash_password
from lms.domain.auth.schemas import ResetPasswordRequest
from lms.domain.auth.signup import (
    check_password,
    send_email_code,
    throttle_sends,
    valid_email,
    wake_outbox,
)
from lms.invariants import present


async def forgot_password(db: asyncpg.Pool, ctx: AppContext, raw_email: str) -> None:
    """Always accepted; a code goes out only when the account exists and can log in."""
    email = valid_email(raw_email)
    await throttle_sends(db, email, OtpPurpose.RESET_PASSWORD)
    runtime = await ctx.system.get()
    async with db.acquire() as conn, conn.transaction():
        user = await users.by_email(conn, email, lock=True)
        if user is None or not user["is_active"] or not user["is_profile_complete"]:
            return
        await send_email_code(conn, ctx, runtime, user["id"], email, OtpPurpose.RESET_PASSWORD)
    wake_outbox(ctx)


async def reset_password(db: asyncpg.Pool, ctx: AppContext, body: ResetPasswordRequest) -> None:
    email = valid_email(body.email)
    user = await users.by_email(db, email)
    await check_password(
        body.new_password, email=email, username=user["username"] if user else None
    )
    # Hashed before the transaction so the row lock is not held through argon2.
    new_hash = await hash_password(body.new_password)
    # Piccolo's transaction, so the refresh-token revocation joins it; the code check and the new
    # password are raw statements on its connection.
    async with transaction() as conn:
        result = await otp.check_for_user(
            conn, ctx.secret, user, purpose=OtpPurpose.RESET_PASSWORD.value, code=body.otp
        )
        if result.ok:
            user = present(user, "a code checks out only for an existing user")
            # The version bump kills every access token; revoking ends every refresh family.
            await users.reset_password(conn, user["id"], new_hash)
            await refresh_tokens.revoke_all_for_user(user["id"])
    result.raise_if_refused()
    user = present(user, "a code checks out only for an existing user")
    ctx.users.invalidate(user["id"])
