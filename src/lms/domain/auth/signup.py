"""Sign-up: register, verify the email (and phone) with one-time codes, complete the profile."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg

from lms.context import AppContext
from lms.db.queries import otp_codes, users
from lms.db.tables import OtpChannel, OtpPurpose
from lms.domain.admin.system_settings import RuntimeSettings
from lms.domain.auth import otp
from lms.domain.auth.authentication import Principal
from lms.domain.auth.messages import otp_email, otp_sms
from lms.domain.auth.passwords import hash_password
from lms.domain.auth.policy import (
    normalize_email,
    normalize_phone,
    normalize_username,
    password_problem,
)
from lms.domain.auth.schemas import (
    CompleteProfileRequest,
    RegisterRequest,
    RegisterResponse,
    Tokens,
    VerifyEmailRequest,
    VerifyEmailResponse,
    VerifyPhoneRequest,
    VerifyPhoneResponse,
)
from lms.domain.auth.sessions import ClientInfo, open_session
from lms.domain.auth.tokens import issue_profile_token
from lms.domain.errors import Conflict, Forbidden, Invalid
from lms.domain.rate_limits import OTP_SENDS_BURST, OTP_SENDS_HOURLY, account_key, take
from lms.invariants import present
from lms.messaging.outbox import queue_email, queue_sms


def valid_email(raw: str) -> str:
    email = normalize_email(raw)
    if email is None:
        raise Invalid("email is not a valid email address")
    return email


def valid_phone(raw: str) -> str:
    phone = normalize_phone(raw)
    if phone is None:
        raise Invalid("phoneNumber must be a valid number in international form, e.g. +14155550123")
    return phone


async def check_password(password: str, *, email: str | None, username: str | None = None) -> None:
    problem = await asyncio.to_thread(password_problem, password, email=email, username=username)
    if problem:
        raise Invalid(problem)


async def throttle_sends(db: asyncpg.Pool, destination: str, purpose: OtpPurpose) -> None:
    """Codes of one purpose to one address or number: one per 30 s and five an hour, whoever
    asks."""
    key = account_key(f"otp-send:{purpose.value}", destination)
    await take(db, key, OTP_SENDS_BURST, "codes requested for this address", label="otp-send")
    await take(db, key, OTP_SENDS_HOURLY, "codes requested for this address", label="otp-send")


def _expiry(runtime: RuntimeSettings) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=runtime.otp_ttl_seconds)


async def send_email_code(
    conn: asyncpg.Connection,
    ctx: AppContext,
    runtime: RuntimeSettings,
    user_id: uuid.UUID,
    email: str,
    purpose: OtpPurpose,
) -> None:
    code = await otp.issue(
        conn,
        ctx.secret,
        user_id=user_id,
        channel=OtpChannel.EMAIL.value,
        purpose=purpose.value,
        destination=email,
        ttl_seconds=runtime.otp_ttl_seconds,
        max_attempts=runtime.otp_max_attempts,
    )
    message = otp_email(email, code, purpose.value, runtime.otp_ttl_seconds)
    await queue_email(
        conn, message, purpose=f"otp.{purpose.value.lower()}", expires_at=_expiry(runtime)
    )


async def send_phone_code(
    conn: asyncpg.Connection,
    ctx: AppContext,
    runtime: RuntimeSettings,
    user_id: uuid.UUID,
    phone: str,
) -> None:
    code = await otp.issue(
        conn,
        ctx.secret,
        user_id=user_id,
        channel=OtpChannel.SMS.value,
        purpose=OtpPurpose.VERIFY_PHONE.value,
        destination=phone,
        ttl_seconds=runtime.otp_ttl_seconds,
        max_attempts=runtime.otp_max_attempts,
    )
    sms = otp_sms(phone, code, runtime.otp_ttl_seconds)
    await queue_sms(conn, sms, purpose="otp.verify_phone", expires_at=_expiry(runtime))


def wake_outbox(ctx: AppContext) -> None:
    """After commit: deliver what the transaction queued now rather than at the next poll."""
    if ctx.outbox is not None:
        ctx.outbox.wake()


async def register(db: asyncpg.Pool, ctx: AppContext, body: RegisterRequest) -> RegisterResponse:
    runtime = await ctx.system.get()
    if not runtime.registration_open:
        raise Forbidden("registration is closed")
    email = valid_email(body.email)
    phone = valid_phone(body.phone_number) if body.phone_number else None
    password_hash = None
    if body.password is not None:
        await check_password(body.password, email=email)
        password_hash = await hash_password(body.password)
    async with db.acquire() as conn, conn.transaction():
        row = await users.register(conn, email, password_hash)
        if row["email_verified"]:
            raise Conflict("an account with this email address already exists")
        await throttle_sends(db, email, OtpPurpose.VERIFY_EMAIL)
        await send_email_code(conn, ctx, runtime, row["id"], email, OtpPurpose.VERIFY_EMAIL)
        if phone is not None:
            await throttle_sends(db, phone, OtpPurpose.VERIFY_PHONE)
            await send_phone_code(conn, ctx, runtime, row["id"], phone)
    wake_outbox(ctx)
    return RegisterResponse(user_id=row["id"], email=email)


async def resend_code(db: asyncpg.Pool, ctx: AppContext, raw_email: str, channel: str) -> None:
    """Send a fresh code when there is something to verify; silent otherwise (no enumeration)."""
    email = valid_email(raw_email)
    purpose = OtpPurpose.VERIFY_EMAIL if channel == "email" else OtpPurpose.VERIFY_PHONE
    await throttle_sends(db, email, purpose)
    runtime = await ctx.system.get()
    async with db.acquire() as conn, conn.transaction():
        user = await users.by_email(conn, email, lock=True)
        if user is None or not user["is_active"]:
            return
        if channel == "email":
            if user["email_verified"] and user["is_profile_complete"]:
                return
            await send_email_code(conn, ctx, runtime, user["id"], email, OtpPurpose.VERIFY_EMAIL)
        else:
            phone = await otp_codes.pending_destination(
                conn, user["id"], OtpPurpose.VERIFY_PHONE.value
            )
            if phone is None or (user["phone_verified"] and user["phone_number"] == phone):
                return
            await throttle_sends(db, phone, OtpPurpose.VERIFY_PHONE)
            await send_phone_code(conn, ctx, runtime, user["id"], phone)
    wake_outbox(ctx)


async def verify_email(
    db: asyncpg.Pool, ctx: AppContext, body: VerifyEmailRequest
) -> VerifyEmailResponse:
    email = normalize_email(body.email)
    async with db.acquire() as conn, conn.transaction():
        user = await users.by_email(conn, email, lock=True) if email else None
        result = await otp.check_for_user(
            conn, ctx.secret, user, purpose=OtpPurpose.VERIFY_EMAIL.value, code=body.otp
        )
        if result.ok:
            user = present(user, "a code checks out only for an existing user")
            await users.mark_email_verified(conn, user["id"])
    result.raise_if_refused()  # after commit, so a wrong try stays counted
    user = present(user, "a code checks out only for an existing user")
    if not user["is_active"]:
        raise Forbidden("account is deactivated")
    token = issue_profile_token(
        ctx.settings, user_id=user["id"], token_version=user["token_version"]
    )
    return VerifyEmailResponse(
        verified=True,
        profile_token=token,
        next="login" if user["is_profile_complete"] else "complete-profile",
    )


async def verify_phone(
    db: asyncpg.Pool, ctx: AppContext, principal: Principal, body: VerifyPhoneRequest
) -> VerifyPhoneResponse:
    phone = valid_phone(body.phone_number)
    owner = await users.phone_owner(db, phone)
    if owner is not None and owner != principal.user_id:
        raise Conflict("this phone number is already verified on another account")
    try:
        async with db.acquire() as conn, conn.transaction():
            result = await otp.check(
                conn,
                ctx.secret,
                user_id=principal.user_id,
                purpose=OtpPurpose.VERIFY_PHONE.value,
                code=body.otp,
                destination=phone,
            )
            if result.ok:
                await users.set_verified_phone(conn, principal.user_id, phone)
    except asyncpg.UniqueViolationError:
        raise Conflict("this phone number is already verified on another account") from None
    result.raise_if_refused()
    return VerifyPhoneResponse(phone_verified=True)


async def complete_profile(
    db: asyncpg.Pool,
    ctx: AppContext,
    principal: Principal,
    body: CompleteProfileRequest,
    client: ClientInfo,
) -> Tokens:
    username = normalize_username(body.username)
    if username is None:
        raise Invalid("username must be 3-50 characters of a-z, 0-9, '_', '.', '-'")
    current = present(
        await users.public_by_id(db, principal.user_id), "authenticate() found this user"
    )
    await check_password(body.password, email=current["email"], username=username)
    phone = valid_phone(body.phone_number) if body.phone_number else None
    runtime = await ctx.system.get()
    password_hash = await hash_password(body.password)
    try:
        async with db.acquire() as conn, conn.transaction():
            row = await users.complete_profile(
                conn,
                principal.user_id,
                username=username,
                password_hash=password_hash,
                full_name=body.full_name.strip(),
                name=(body.name or "").strip() or None,
                country=body.country.strip(),
                state=body.state.strip(),
                zip_code=body.zip.strip(),
            )
            if row is None:
                if current["is_profile_complete"]:
                    raise Conflict("profile is already complete; log in instead")
                raise Forbidden("verify your email address first")
            if phone is not None and not (
                current["phone_verified"] and current["phone_number"] == phone
            ):
                await throttle_sends(db, phone, OtpPurpose.VERIFY_PHONE)
                await send_phone_code(conn, ctx, runtime, principal.user_id, phone)
            tokens = await open_session(conn, ctx, row, client)
    except asyncpg.UniqueViolationError:
        raise Conflict("username is already taken") from None
    wake_outbox(ctx)
    return tokens
