"""Tokens: short-lived JWTs (access; profile, for finishing sign-up) and opaque refresh tokens.

Access and profile tokens carry the user id and the user's token version; a version bump
(deactivation, password reset) makes every earlier token fail on its next use. Every access token
also names its login (`sid`, the refresh token family), so ending that login (a replayed refresh
token, logout) ends the access tokens issued for it; one that names none is refused, whoever
signed it: there is one kind of access token. Each kind is signed with a key of its own
(lms.derived_keys), never with the secret itself. Refresh tokens are random strings stored only
as SHA-256: a database leak does not leak usable tokens.
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
from jwt.types import Options

from lms.derived_keys import Purpose, derived_key
from lms.settings import Settings

ACCESS = "access"
PROFILE = "profile"
PROFILE_TOKEN_TTL_SECONDS = 30 * 60
REFRESH_TOKEN_BYTES = 32
_PURPOSES = {ACCESS: Purpose.ACCESS_TOKEN, PROFILE: Purpose.PROFILE_TOKEN}
_CLAIMS = ["exp", "iat", "sub", "typ", "ver"]
# An access token without `sid` would skip the login check (lms.domain.auth.authentication):
# required, so it is refused as any token lacking our claims is. A profile token (sign-up, before
# any login exists) names none.
_REQUIRED: dict[str, Options] = {
    ACCESS: {"require": [*_CLAIMS, "sid"]},
    PROFILE: {"require": _CLAIMS},
}


class InvalidToken(Exception):
    """Not a token we issued, expired, or of the wrong kind: the reason is safe to show."""


@dataclass(frozen=True, slots=True)
class TokenClaims:
    user_id: uuid.UUID
    token_version: int
    kind: str
    # The login (refresh token family) an access token was issued for; None on profile tokens.
    session_id: uuid.UUID | None = None
    expires_at: int = 0  # `exp`, seconds since the epoch


def _key(settings: Settings, kind: str) -> bytes:
    if not settings.jwt_secret:
        raise RuntimeError("the JWT secret must be resolved before tokens are used")
    return derived_key(settings.jwt_secret, _PURPOSES[kind])


def _issue(settings: Settings, kind: str, claims: dict[str, object], ttl: int) -> str:
    now = int(time.time())
    claims |= {"typ": kind, "iat": now, "exp": now + ttl, "jti": uuid.uuid4().hex}
    return jwt.encode(claims, _key(settings, kind), algorithm=settings.jwt_algorithm)


def issue_access_token(
    settings: Settings,
    *,
    user_id: uuid.UUID,
    role: str,
    token_version: int,
    session_id: uuid.UUID,
) -> str:
    """`session_id`: the login it belongs to (a refresh token family: lms.domain.auth.sessions
    opens one for a sign-in, lms.domain.auth.logins for tests and the bench)."""
    # `role` is informational for clients; the server trusts the user's current role instead.
    claims: dict[str, object] = {
        "sub": str(user_id),
        "role": role,
        "ver": token_version,
        "sid": str(session_id),
    }
    return _issue(settings, ACCESS, claims, settings.access_token_ttl_seconds)


def issue_profile_token(settings: Settings, *, user_id: uuid.UUID, token_version: int) -> str:
    claims: dict[str, object] = {"sub": str(user_id), "ver": token_version}
    return _issue(settings, PROFILE, claims, PROFILE_TOKEN_TTL_SECONDS)


def _verified(settings: Settings, token: str, kind: str) -> dict[str, Any] | None:
    """The claims when `token` is signed with `kind`'s key (None when it is not); raises for a
    token so signed that is expired or lacks our claims."""
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            _key(settings, kind),
            algorithms=[settings.jwt_algorithm],
            options=_REQUIRED[kind],
        )
    except jwt.InvalidSignatureError:
        return None
    # PyJWT checks the signature before the claims: what follows is about a token of ours.
    except jwt.ExpiredSignatureError:
        raise InvalidToken("token has expired") from None
    except jwt.InvalidTokenError:
        raise InvalidToken("invalid token") from None
    if claims["typ"] != kind:
        raise InvalidToken("invalid token")
    return claims


def decode_token(settings: Settings, token: str, kinds: tuple[str, ...]) -> TokenClaims:
    for kind in kinds:
        claims = _verified(settings, token, kind)
        if claims is not None:
            return _token_claims(claims, kind)
    raise _refusal(settings, token, kinds)


def _token_claims(claims: dict[str, Any], kind: str) -> TokenClaims:
    try:
        return TokenClaims(
            uuid.UUID(str(claims["sub"])),
            int(claims["ver"]),
            kind,
            uuid.UUID(str(claims["sid"])) if kind == ACCESS else None,
            int(claims["exp"]),
        )
    except (ValueError, TypeError):
        raise InvalidToken("invalid token") from None


def _refusal(settings: Settings, token: str, kinds: tuple[str, ...]) -> InvalidToken:
    """Why `token` is refused. Only on this path (a refusal) is it tried with the other kinds'
    keys: a token of ours of another kind is told which kind to send."""
    for other in sorted(_PURPOSES.keys() - set(kinds)):
        try:
            claims = jwt.decode(
                token,
                _key(settings, other),
                algorithms=[settings.jwt_algorithm],
                options={"verify_exp": False},
            )
        except jwt.InvalidTokenError:
            continue
        if claims.get("typ") == other:
            return InvalidToken(f"a {' or '.join(kinds)} token is required")
    return InvalidToken("invalid token")


def new_refresh_token() -> tuple[str, str]:
    """(the token to hand out, the hash to store)."""
    token = secrets.token_urlsafe(REFRESH_TOKEN_BYTES)
    return token, hash_refresh_token(token)


def hash_refresh_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
