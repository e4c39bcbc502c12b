"""Sign-up: register, verify the email (and phone) with one-time codes, complete the profile."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
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
from lms.domain.errors import Conflict, DomainError, Forbidden, Invalid
from lms.domain.rate_limits import OTP_SENDS_BURST, OTP_SENDS_HOURLY, account_key, give_back, take
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


def _sends_key(destination: str, purpose: OtpPurpose) -> str:
    return account_key(f"otp-send:{purpose.value}", destination)


async def throttle_sends(db: asyncpg.Pool, destination: str, purpose: OtpPurpose) -> None:
    """Codes of one purpose to one address or number: one per 30 s and five an hour, whoever
    asks."""
    key = _sends_key(destination, purpose)
    await take(db, key, OTP_SENDS_BURST, "codes requested for this address", label="otp-send")
    await take(db, key, OTP_SENDS_HOURLY, "codes requested for this address", label="otp-send")


@contextlib.asynccontextmanager
async def sends_counted(db: asyncpg.Pool, *sends: tuple[str, OtpPurpose]) -> AsyncIterator[None]:
    """Count the codes a request is about to send against their addresses' limits before it does
    anything costly (a password hash), and give the counts back when it is refused after all
    (hashing is busy, a race made the address verified): a refused request does not use up the
    one code per 30 s its retry needs."""
    counted: list[tuple[str, OtpPurpose]] = []
    try:
        for destination, purpose in sends:
            await throttle_sends(db, destination, purpose)
            counted.append((destination, purpose))
        yield
    except DomainError:
        for destination, purpose in counted:
            key = _sends_key(destination, purpose)
            await give_back(db, key, OTP_SENDS_BURST)
            await give_back(db, key, OTP_SENDS_HOURLY)
        raise


def _expiry(runtime: RuntimeSettings) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=runtime.otp_ttl_seconds)


async def send_email_code(
    conn: asyncpg.Connection,
    ctx: AppContext,
    runtime: RuntimeSettings,
    user_id: uuid.UUID | None,
    email: str,
    purpose: OtpPurpose,
) -> None:
    """A code to `email` for the account `user_id`. With no account (or one that may not get
    this code) the same statements run and no code or mail is written, so the request does the
    work it would do for an account; either way the address's wrong tries start over."""
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
    await otp.restart_tries(conn, purpose.value, email)
    message = otp_email(email, code, purpose.value, runtime.otp_ttl_seconds)
    if user_id is None:
        return  # an address without an account is sent nothing
    await queue_email(
        conn, message, purpose=f"otp.{purpose.value.lower()}", expires_at=_expiry(runtime)
    )


async def send_phone_code(
    conn: asyncpg.Connection,
    ctx: AppContext,
    runtime: RuntimeSettings,
    user_id: uuid.UUID | None,
    phone: str,
) -> None:
    """A code by SMS to `phone` for the account `user_id`; with none, the same statements run and
    nothing is written or sent (as send_email_code)."""
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
    if user_id is None:
        return
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
    # Every refusal before the hash, cheapest first: a request that cannot succeed (a verified
    # address, a weak password, a rate-limited address) costs no argon2.
    existing = await users.by_email(db, email)
    if existing is not None and existing["email_verified"]:
        raise _already_registered()
    if body.password is not None:
        await check_password(body.password, email=email)
    sends = [(email, OtpPurpose.VERIFY_EMAIL)]
    if phone is not None:
        sends.append((phone, OtpPurpose.VERIFY_PHONE))
    async with sends_counted(db, *sends):
        password_hash = await hash_password(body.password) if body.password is not None else None
        async with db.acquire() as conn, conn.transaction():
            row = await users.register(conn, email, password_hash)
            if row["email_verified"]:  # verified since we looked
                raise _already_registered()
            await send_email_code(conn, ctx, runtime, row["id"], email, OtpPurpose.VERIFY_EMAIL)
            if phone is not None:
                await send_phone_code(conn, ctx, runtime, row["id"], phone)
    wake_outbox(ctx)
    return RegisterResponse(user_id=row["id"], email=email)


def _already_registered() -> Conflict:
    return Conflict("an account with this email address already exists")


async def resend_code(db: asyncpg.Pool, ctx: AppContext, raw_email: str, channel: str) -> None:
    """Send a fresh code when there is something to verify. Accepted, and the same work done,
    whether or not there is: the answer and its timing do not say which addresses have accounts
    (only the code and its message are written for an account alone)."""
    email = valid_email(raw_email)
    purpose = OtpPurpose.VERIFY_EMAIL if channel == "email" else OtpPurpose.VERIFY_PHONE
    await throttle_sends(db, email, purpose)
    runtime = await ctx.system.get()
    async with db.acquire() as conn, conn.transaction():
        user = await users.by_email(conn, email, lock=True)
        account = user if user is not None and user["is_active"] else None
        if channel == "email":
            to = None
            if account is not None and not (
                account["email_verified"] and account["is_profile_complete"]
            ):
                to = account["id"]
            await send_email_code(conn, ctx, runtime, to, email, OtpPurpose.VERIFY_EMAIL)
        else:
            phone = await otp_codes.pending_destination(
                conn, account["id"] if account is not None else otp.NO_ONE, purpose.value
            )
            to = None
            if account is not None and phone is not None:
                verified = account["phone_verified"] and account["phone_number"] == phone
                to = None if verified else account["id"]
            # With nothing to send, the number's throttle counts against a key of this address's
            # own, which the address's throttle above always refuses first.
            number = phone if to is not None and phone is not None else f"none for {email}"
            await throttle_sends(db, number, OtpPurpose.VERIFY_PHONE)
            await send_phone_code(conn, ctx, runtime, to, number)
    wake_outbox(ctx)


async def verify_email(
    db: asyncpg.Pool, ctx: AppContext, body: VerifyEmailRequest
) -> VerifyEmailResponse:
    email = valid_email(body.email)
    runtime = await ctx.system.get()
    async with db.acquire() as conn, conn.transaction():
        user = await users.by_email(conn, email, lock=True)
        result = await otp.check_address(
            conn,
            ctx.secret,
            user,
            purpose=OtpPurpose.VERIFY_EMAIL.value,
            address=email,
            code=body.otp,
            max_attempts=runtime.otp_max_attempts,
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
    # Every refusal before the hash (the transaction below checks again, for races).
    if current["is_profile_complete"]:
        raise _profile_complete()
    if not (current["email_verified"] and current["is_active"]):
        raise _verify_first()
    await check_password(body.password, email=current["email"], username=username)
    phone = valid_phone(body.phone_number) if body.phone_number else None
    if await users.username_taken(username):
        raise _username_taken()
    runtime = await ctx.system.get()
    new_phone = phone is not None and not (
        current["phone_verified"] and current["phone_number"] == phone
    )
    sends = [(phone, OtpPurpose.VERIFY_PHONE)] if phone is not None and new_phone else []
    async with sends_counted(db, *sends):
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
                if row is None:  # a concurrent request completed it, or the account changed
                    state = await users.public_by_id(conn, principal.user_id)
                    if state is not None and state["is_profile_complete"]:
                        raise _profile_complete()
                    raise _verify_first()
                for number, _ in sends:
                    await send_phone_code(conn, ctx, runtime, principal.user_id, number)
                tokens = await open_session(conn, ctx, row, client)
        except asyncpg.UniqueViolationError:
            raise _username_taken() from None
    wake_outbox(ctx)
    return tokens


def _profile_complete() -> Conflict:
    return Conflict("profile is already complete; log in instead")


def _verify_first() -> Forbidden:
    return Forbidden("verify your email address first")


def _username_taken() -> Conflict:
    return Conflict("username is already taken")
