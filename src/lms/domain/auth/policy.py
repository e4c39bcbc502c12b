"""What a password, email address, username and phone number must look like."""

from __future__ import annotations

import re

import phonenumbers
from zxcvbn import zxcvbn
from zxcvbn.frequency_lists import FREQUENCY_LISTS

from lms.domain.auth.passwords import MIN_PASSWORD_LENGTH

MAX_PASSWORD_LENGTH = 256  # argon2 takes any length; this bounds the work a request can ask for
# The 30,000 commonest passwords (from the zxcvbn project's leaked-password corpus).
COMMON_PASSWORDS = frozenset(FREQUENCY_LISTS["passwords"])
_TRAILING_DECORATION = "0123456789!@#$%^&*.?_-"
# zxcvbn's 0-4 guessability score; 3 is "safely unguessable" against an offline attack on a slow
# hash. Its cost grows with length, and past this many characters length alone is protection.
MIN_STRENGTH_SCORE = 3
STRENGTH_CHECKED_CHARS = 64

EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s.]{2,}$")
USERNAME = re.compile(r"^[a-z0-9_.-]{3,50}$")


def password_problem(
    password: str, *, email: str | None = None, username: str | None = None
) -> str | None:
    """Why `password` is refused, or None when it is acceptable (milliseconds of CPU: call it
    off the event loop)."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"password must be at least {MIN_PASSWORD_LENGTH} characters"
    if len(password) > MAX_PASSWORD_LENGTH:
        return f"password must be at most {MAX_PASSWORD_LENGTH} characters"
    lowered = password.lower()
    core = lowered.rstrip(_TRAILING_DECORATION)
    if lowered in COMMON_PASSWORDS or (len(core) >= 4 and core in COMMON_PASSWORDS):
        return "password is too common; choose one that is not on lists of leaked passwords"
    if len(set(lowered)) < 4:
        return "password is too simple"
    local = email.split("@", 1)[0].lower() if email else ""
    if (len(local) >= 4 and local in lowered) or (
        username and len(username) >= 4 and username.lower() in lowered
    ):
        return "password must not contain your email address or username"
    inputs = [i for i in (email, local, username) if i]
    estimate = zxcvbn(password[:STRENGTH_CHECKED_CHARS], user_inputs=inputs)
    if estimate["score"] < MIN_STRENGTH_SCORE:
        warning = estimate["feedback"].get("warning") or "it would be easy to guess"
        reason = warning.rstrip(".").lower()
        return f"password is too weak: {reason}; a few unrelated words make a strong one"
    return None


def normalize_email(email: str) -> str | None:
    email = email.strip().lower()
    return email if len(email) <= 320 and EMAIL.match(email) else None


def normalize_username(username: str) -> str | None:
    username = username.strip().lower()
    return username if USERNAME.match(username) else None


def normalize_phone(number: str) -> str | None:
    """The number in E.164 (+14155550123), or None when it is not a valid international number."""
    try:
        parsed = phonenumbers.parse(number.strip(), None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
