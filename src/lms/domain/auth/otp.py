"""One-time codes: 6 digits from `secrets`, stored as an HMAC keyed by the server secret (a bare
hash of a 6-digit code is reversed by trying a million codes), single use, expiring, and
invalidated after too many wrong tries. Only the newest code of a purpose is live."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass

import asyncpg

from lms.db.queries import otp_codes as sql
from lms.domain.errors import DomainError, Invalid
from lms.domain.rate_limits import OTP_SENDS_BURST, too_many

CODE_DIGITS = 6


def _code_hash(secret: str, otp_id: uuid.UUID, code: str) -> str:
    key = hmac.new(secret.encode(), b"lms otp", hashlib.sha256).digest()
    return hmac.new(key, f"{otp_id}:{code}".encode(), hashlib.sha256).hexdigest()


def new_code() -> str:
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


async def issue(
    conn: asyncpg.Connection,
    secret: str,
    *,
    user_id: uuid.UUID,
    channel: str,
    purpose: str,
    destination: str,
    ttl_seconds: int,
    max_attempts: int,
) -> str:
    """A fresh code for `purpose` (older live ones stop working); returns the plain code to send."""
    code, otp_id = new_code(), uuid.uuid4()
    await sql.supersede(conn, user_id, purpose)
    await sql.insert(
        conn,
        otp_id=otp_id,
        user_id=user_id,
        channel=channel,
        purpose=purpose,
        destination=destination,
        code_hash=_code_hash(secret, otp_id, code),
        max_attempts=max_attempts,
        ttl_seconds=ttl_seconds,
    )
    return code


def invalid_code(detail: str = "invalid or expired code") -> Invalid:
    return Invalid(detail)


@dataclass(frozen=True, slots=True)
class OtpCheck:
    """The outcome. A refusal is raised by the caller after its transaction commits, so a
    wrong try is counted even though the request fails."""

    error: DomainError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def raise_if_refused(self) -> None:
        if self.error is not None:
            raise self.error


async def check(
    conn: asyncpg.Connection,
    secret: str,
    *,
    user_id: uuid.UUID,
    purpose: str,
    code: str,
    destination: str | None = None,
) -> OtpCheck:
    """Spend one try of the newest `purpose` code (row-locked, so concurrent tries count)."""
    row = await sql.lock_newest(conn, user_id, purpose)
    if row is None or row["consumed_at"] is not None:
        return OtpCheck(invalid_code())
    if row["invalidated_at"] is not None:
        if row["attempts"] >= row["max_attempts"]:
            return OtpCheck(
                too_many(OTP_SENDS_BURST.window_seconds, "wrong codes; request a new code")
            )
        return OtpCheck(invalid_code())
    if row["expired"]:
        return OtpCheck(invalid_code("code has expired; request a new one"))
    if destination is not None and row["destination"] != destination:
        return OtpCheck(invalid_code("no code was sent to this phone number"))
    if not hmac.compare_digest(row["code_hash"], _code_hash(secret, row["id"], code)):
        spent = await sql.record_wrong_try(conn, row["id"])
        left = spent["max_attempts"] - spent["attempts"]
        if left <= 0:
            return OtpCheck(
                too_many(OTP_SENDS_BURST.window_seconds, "wrong codes; request a new code")
            )
        return OtpCheck(invalid_code(f"wrong code; {left} {'try' if left == 1 else 'tries'} left"))
    await sql.consume(conn, row["id"])
    return OtpCheck()


async def check_for_user(
    conn: asyncpg.Connection,
    secret: str,
    user: asyncpg.Record | None,
    *,
    purpose: str,
    code: str,
) -> OtpCheck:
    """check() for a user looked up by address: no such user is the same plain refusal as a
    wrong code, so the answer does not say which addresses have accounts."""
    if user is None:
        return OtpCheck(invalid_code())
    return await check(conn, secret, user_id=user["id"], purpose=purpose, code=code)
