"""Tokens: short-lived JWTs (access; profile, for finishing sign-up) and opaque refresh tokens.

Access and profile tokens carry the user id and the user's token version; a version bump
(deactivation, password reset) makes every earlier token fail on its next use. Refresh tokens
are random strings stored only as SHA-256: a database leak does not leak usable tokens.
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass

import jwt

from lms.settings import Settings

ACCESS = "access"
PROFILE = "profile"
PROFILE_TOKEN_TTL_SECONDS = 30 * 60
REFRESH_TOKEN_BYTES = 32


class InvalidToken(Exception):
    """Not a token we issued, expired, or of the wrong kind: the reason is safe to show."""


@dataclass(frozen=True, slots=True)
class TokenClaims:
    user_id: uuid.UUID
    token_version: int
    kind: str


def _issue(settings: Settings, claims: dict[str, object], ttl: int) -> str:
    if not settings.jwt_secret:
        raise RuntimeError("the JWT secret must be resolved before tokens are issued")
    now = int(time.time())
    claims |= {"iat": now, "exp": now + ttl, "jti": uuid.uuid4().hex}
    return jwt.encode(claims, settings.jwt_secret, algorithm=settings.jwt_algorithm)


def issue_access_token(
    settings: Settings, *, user_id: uuid.UUID, role: str, token_version: int
) -> str:
    # `role` is informational for clients; the server trusts the user's current role instead.
    claims: dict[str, object] = {
        "sub": str(user_id),
        "role": role,
        "ver": token_version,
        "typ": ACCESS,
    }
    return _issue(settings, claims, settings.access_token_ttl_seconds)


def issue_profile_token(settings: Settings, *, user_id: uuid.UUID, token_version: int) -> str:
    claims: dict[str, object] = {"sub": str(user_id), "ver": token_version, "typ": PROFILE}
    return _issue(settings, claims, PROFILE_TOKEN_TTL_SECONDS)


def decode_token(settings: Settings, token: str, kinds: tuple[str, ...]) -> TokenClaims:
    if not settings.jwt_secret:
        raise RuntimeError("the JWT secret must be resolved before tokens are decoded")
    try:
        claims = jwt.decode(
            token,
            settings.jwt_secret,
            algorithms=[settings.jwt_algorithm],
            options={"require": ["exp", "iat", "sub", "typ", "ver"]},
        )
    except jwt.ExpiredSignatureError:
        raise InvalidToken("token has expired") from None
    except jwt.InvalidTokenError:
        raise InvalidToken("invalid token") from None
    if claims["typ"] not in kinds:
        raise InvalidToken(f"a {' or '.join(kinds)} token is required")
    try:
        return TokenClaims(uuid.UUID(str(claims["sub"])), int(claims["ver"]), str(claims["typ"]))
    except (ValueError, TypeError):
        raise InvalidToken("invalid token") from None


def new_refresh_token() -> tuple[str, str]:
    """(the token to hand out, the hash to store)."""
    token = secrets.token_urlsafe(REFRESH_TOKEN_BYTES)
    return token, hash_refresh_token(token)


def hash_refresh_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
