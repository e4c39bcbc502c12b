"""One-time codes: 6 digits from `secrets`, stored as an HMAC keyed by the codes' own key derived
from the server secret (a bare hash of a 6-digit code is reversed by trying a million codes),
single use, expiring, and invalidated after too many wrong tries. Only the newest code of a
purpose is live.

Codes checked by address (verify-email, reset-password) must not say whether the address has an
account. Their wrong tries are counted per address and purpose in the rate-limit counters, for
every address alike, started over whenever a code is requested for it (whether or not one is
sent); the answer to a wrong code comes from that count, and a missing account runs the same
statements against a user id no row has. Only a caller who holds the right code can learn more
(that it expired, or was used)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass

import asyncpg

from lms.db.queries import otp_codes as sql
from lms.derived_keys import Purpose, derived_key
from lms.domain import rate_limits
from lms.domain.errors import DomainError, Invalid
from lms.domain.rate_limits import OTP_SENDS_BURST, too_many

CODE_DIGITS = 6
# Stands for "no account" in the statements a missing account runs: no user has this id.
NO_ONE = uuid.UUID(int=0)
# Wrong tries of an address are counted for a day at most (the longest a code lives).
TRIES_WINDOW_SECONDS = rate_limits.WINDOW_LONGEST_SECONDS


# Hashes are keyed by the OTP key (lms.derived_keys) and marked with this prefix. Unmarked ones
# were stored by an earlier release, keyed by an HMAC of the secret: still checked that way, so
# codes in flight when it was replaced keep working. No code lives longer than a day
# (otpTtlSeconds), so a day after the upgrade no live code has such a hash.
_KEYED = "k2:"
# A stand-in no digest equals, compared when an address has no code (the same work as one).
_NO_CODE_HASH = _KEYED + "-" * 64


def _code_hash(secret: str, otp_id: uuid.UUID, code: str) -> str:
    mac = hmac.new(derived_key(secret, Purpose.OTP), f"{otp_id}:{code}".encode(), hashlib.sha256)
    return _KEYED + mac.hexdigest()


def _earlier_code_hash(secret: str, otp_id: uuid.UUID, code: str) -> str:
    key = hmac.new(secret.encode(), b"lms otp", hashlib.sha256).digest()
    return hmac.new(key, f"{otp_id}:{code}".encode(), hashlib.sha256).hexdigest()


def _matches(stored: str, secret: str, otp_id: uuid.UUID, code: str) -> bool:
    """Whether `code` is the one `stored` was made from (either way, one hash is computed)."""
    made = _code_hash if stored.startswith(_KEYED) else _earlier_code_hash
    return hmac.compare_digest(stored, made(secret, otp_id, code))


def new_code() -> str:
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


def _tries_key(purpose: str, address: str) -> str:
    return rate_limits.account_key(f"otp-tries:{purpose}", address)


async def issue(
    conn: asyncpg.Connection,
    secret: str,
    *,
    user_id: uuid.UUID | None,
    channel: str,
    purpose: str,
    destination: str,
    ttl_seconds: int,
    max_attempts: int,
) -> str:
    """A fresh code for `purpose` (older live ones stop working); returns the plain code to send.
    With no `user_id` (no account, or none that may get this code) the same work is done and
    nothing is stored."""
    code, otp_id = new_code(), uuid.uuid4()
    await sql.supersede(conn, user_id or NO_ONE, purpose)
    await sql.insert(
        conn,
        otp_id=otp_id,
        user_id=user_id or NO_ONE,
        channel=channel,
        purpose=purpose,
        destination=destination,
        code_hash=_code_hash(secret, otp_id, code),
        max_attempts=max_attempts,
        ttl_seconds=ttl_seconds,
    )
    return code


async def restart_tries(conn: asyncpg.Connection, purpose: str, address: str) -> None:
    """A code was requested for `address`: its wrong tries count from zero again, whether or not
    the address has an account."""
    await rate_limits.restart(conn, _tries_key(purpose, address), TRIES_WINDOW_SECONDS)


def invalid_code(detail: str = "invalid or expired code") -> Invalid:
    return Invalid(detail)


def _locked() -> DomainError:
    return too_many(OTP_SENDS_BURST.window_seconds, "wrong codes; request a new code")


def _wrong(left: int) -> DomainError:
    if left <= 0:
        return _locked()
    return invalid_code(f"wrong code; {left} {'try' if left == 1 else 'tries'} left")


@dataclass(frozen=True, slots=True)
class OtpCheck:
    """The outcome. A refusal is raised by the caller after its transaction commits, so a
    wrong try is counted even though the request fails. `otp_id` is the code that checked out."""

    error: DomainError | None = None
    otp_id: uuid.UUID | None = None

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
    """Spend one try of the newest `purpose` code of a known user (row-locked, so concurrent
    tries count): the phone check, made with the user's own token."""
    row = await sql.lock_newest(conn, user_id, purpose)
    if row is None or row["consumed_at"] is not None:
        return OtpCheck(invalid_code())
    if row["invalidated_at"] is not None:
        if row["attempts"] >= row["max_attempts"]:
            return OtpCheck(_locked())
        return OtpCheck(invalid_code())
    if row["expired"]:
        return OtpCheck(invalid_code("code has expired; request a new one"))
    if destination is not None and row["destination"] != destination:
        return OtpCheck(invalid_code("no code was sent to this phone number"))
    if not _matches(row["code_hash"], secret, row["id"], code):
        spent = await sql.record_wrong_try(conn, row["id"])
        return OtpCheck(_wrong(spent["max_attempts"] - spent["attempts"] if spent else 0))
    await sql.consume(conn, row["id"])
    return OtpCheck(otp_id=row["id"])


async def check_address(
    conn: asyncpg.Connection,
    secret: str,
    user: asyncpg.Record | None,
    *,
    purpose: str,
    address: str,
    code: str,
    max_attempts: int,
    consume: bool = True,
) -> OtpCheck:
    """Check `code` for the account at `address` (`user`, None when there is none), answering a
    wrong code the same way with or without an account. With `consume=False` a code that checks
    out stays live, for the caller to spend with sql.consume_if_live() once the rest of the
    request has passed (a reset's new password)."""
    row = await sql.lock_newest(conn, user["id"] if user is not None else NO_ONE, purpose)
    # Counted before the code is compared and given back when it is right, so concurrent wrong
    # tries are all counted (the count is one atomic statement).
    tries_key = _tries_key(purpose, address)
    tries = await rate_limits.count(conn, tries_key, TRIES_WINDOW_SECONDS)
    otp_id = row["id"] if row is not None else NO_ONE
    # Without a code, compared all the same with a stand-in no digest equals.
    stored = row["code_hash"] if row is not None else _NO_CODE_HASH
    right = _matches(stored, secret, otp_id, code)
    if tries > max_attempts:
        return OtpCheck(_locked())
    if not right or row is None:
        # Also spends a try of the code itself (nothing when there is no live code), so the code
        # dies after its max_attempts even if the counters are cleared.
        await sql.record_wrong_try(conn, otp_id)
        return OtpCheck(_wrong(max_attempts - tries))
    await rate_limits.uncount(conn, tries_key, TRIES_WINDOW_SECONDS)
    # From here on the caller holds the code the address was sent: the answers may be precise.
    if row["consumed_at"] is not None:
        return OtpCheck(invalid_code())
    if row["invalidated_at"] is not None:
        locked = row["attempts"] >= row["max_attempts"]
        return OtpCheck(_locked() if locked else invalid_code())
    if row["expired"]:
        return OtpCheck(invalid_code("code has expired; request a new one"))
    if consume:
        await sql.consume(conn, row["id"])
    return OtpCheck(otp_id=row["id"])
