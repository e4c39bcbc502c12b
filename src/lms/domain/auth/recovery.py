"""Forgotten passwords: a code by email, then a new password that ends every existing session.

Neither step says whether the address has an account: forgot-password is accepted and does the
same work for any address (a code and its mail are written for an account alone), and
reset-password answers a wrong code the same with or without one (lms.domain.auth.otp)."""

from __future__ import annotations

import asyncpg

from lms.context import AppContext
from lms.db.builder import transaction
from lms.db.queries import otp_codes, refresh_tokens, users
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
        can_log_in = user is not None and user["is_active"] and user["is_profile_complete"]
        to = user["id"] if user is not None and can_log_in else None
        await send_email_code(conn, ctx, runtime, to, email, OtpPurpose.RESET_PASSWORD)
    wake_outbox(ctx)


async def reset_password(db: asyncpg.Pool, ctx: AppContext, body: ResetPasswordRequest) -> None:
    """The code first; the new password's strength and its hash only once the code checks out
    (a guesser with wrong codes costs one lookup and an HMAC, not zxcvbn and argon2). The code
    is spent in the transaction that sets the password, so a weak password or a busy hashing
    executor leaves it usable, and of two requests with one code only one gets through."""
    email = valid_email(body.email)
    runtime = await ctx.system.get()
    # Piccolo's transactions, so the refresh-token revocation joins the second; the code checks
    # and the new password are raw statements on their connections.
    async with transaction() as conn:
        user = await users.by_email(conn, email)
        checked = await otp.check_address(
            conn,
            ctx.secret,
            user,
            purpose=OtpPurpose.RESET_PASSWORD.value,
            address=email,
            code=body.otp,
            max_attempts=runtime.otp_max_attempts,
            consume=False,
        )
    checked.raise_if_refused()  # after commit, so a wrong try stays counted
    user = present(user, "a code checks out only for an existing user")
    otp_id = present(checked.otp_id, "a code that checks out is named")
    await check_password(body.new_password, email=email, username=user["username"])
    # Hashed between the transactions, so no row lock is held through argon2.
    new_hash = await hash_password(body.new_password)
    async with transaction() as conn:
        if not await otp_codes.consume_if_live(conn, otp_id):
            raise otp.invalid_code()  # spent by a concurrent reset, or replaced, meanwhile
        # The version bump kills every access token; revoking ends every refresh family.
        await users.reset_password(conn, user["id"], new_hash)
        await refresh_tokens.revoke_all_for_user(user["id"])
    ctx.users.invalidate(user["id"])
