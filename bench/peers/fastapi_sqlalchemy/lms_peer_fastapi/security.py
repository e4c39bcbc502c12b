"""Bearer tokens (lms's access JWTs, checked against the user's current row), the signed keyset
cursors lms hands out, and the certificates' VC-JWT."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
import uuid
from datetime import UTC, datetime
from functools import cache, lru_cache
from typing import Annotated, Any

import jwt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from fastapi import Depends, HTTPException, Request
from jwt.algorithms import get_default_algorithms
from sqlalchemy import func, select

from .caches import CACHES, UserState
from .config import SessionDep, Settings, SettingsDep
from .models import RefreshToken, User

# ---------------------------------------------------------------------------------------------
# authentication


def unauthenticated(detail: str) -> HTTPException:
    return HTTPException(401, detail, headers={"WWW-Authenticate": "Bearer"})


def bearer_token(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


async def user_from_token(token: str, session: Any, settings: Settings) -> UserState:
    try:
        claims = jwt.decode(
            token,
            derived_key(settings.jwt_secret, "access-token"),
            algorithms=[settings.jwt_algorithm],
            options={"require": ["exp", "iat", "sub", "typ", "ver", "sid"]},
        )
    except jwt.InvalidSignatureError:
        raise unauthenticated(_refusal(token, settings)) from None
    except jwt.ExpiredSignatureError:
        raise unauthenticated("token has expired") from None
    except jwt.InvalidTokenError:
        raise unauthenticated("invalid token") from None
    if claims["typ"] != "access":
        raise unauthenticated("invalid token")
    try:
        user_id, version = uuid.UUID(str(claims["sub"])), int(claims["ver"])
        login = uuid.UUID(str(claims["sid"]))
    except (ValueError, TypeError):
        raise unauthenticated("invalid token") from None
    user = await user_state(session, user_id)
    if user is None:
        raise unauthenticated("invalid token")
    if not user.is_active:
        raise unauthenticated("account is deactivated")
    if user.token_version != version:
        raise unauthenticated("token has been revoked; log in again")
    if await login_ended(session, login):
        raise unauthenticated("this login is revoked; log in again")
    return user


async def user_state(session: Any, user_id: uuid.UUID) -> UserState | None:
    """The user's role, activity and token version: from the cache, else its row."""
    hit = CACHES.users.get(user_id)
    if hit is not None and CACHES.fresh(hit.loaded_at):
        return hit
    row = (
        await session.execute(
            select(User.role, User.is_active, User.token_version).where(User.id == user_id)
        )
    ).one_or_none()
    if row is None:
        return None
    state = UserState(user_id, row.role, row.is_active, row.token_version, time.monotonic())
    CACHES.remember(CACHES.users, user_id, state)
    return state


async def login_ended(session: Any, family_id: uuid.UUID) -> bool:
    """As lms decides it: a login is ended once any of its refresh tokens is revoked, or when
    none is left. From the cache, else the table."""
    hit = CACHES.logins.get(family_id)
    if hit is not None and CACHES.fresh(hit[1]):
        return hit[0]
    revoked = await session.scalar(
        select(func.bool_or(RefreshToken.revoked_at.is_not(None))).where(
            RefreshToken.family_id == family_id
        )
    )
    ended = revoked is not False  # NULL: no token of that login
    CACHES.remember(CACHES.logins, family_id, (ended, time.monotonic()))
    return ended


def _refusal(token: str, settings: Settings) -> str:
    """As lms words it: a profile token (signed with the profile key) is told to send an access
    token; anything else is an invalid token."""
    try:
        claims = jwt.decode(
            token,
            derived_key(settings.jwt_secret, "profile-token"),
            algorithms=[settings.jwt_algorithm],
            options={"verify_exp": False},
        )
    except jwt.InvalidTokenError:
        return "invalid token"
    return "a access token is required" if claims.get("typ") == "profile" else "invalid token"


async def optional_user(request: Request, session: Any, settings: Settings) -> UserState | None:
    token = bearer_token(request)
    return None if token is None else await user_from_token(token, session, settings)


async def current_user(request: Request, session: SessionDep, settings: SettingsDep) -> UserState:
    token = bearer_token(request)
    if token is None:
        raise unauthenticated("missing bearer token")
    return await user_from_token(token, session, settings)


CurrentUser = Annotated[UserState, Depends(current_user)]

# ---------------------------------------------------------------------------------------------
# cursors: base64url(JSON [scope, *values]) "." base64url(HMAC-SHA256 truncated to 12 bytes)


class BadCursor(Exception):
    pass


@cache
def derived_key(secret: str, purpose: str) -> bytes:
    """lms's key for `purpose` (lms.derived_keys): HKDF-SHA256, info b"lms/<purpose>"."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=64, salt=None, info=f"lms/{purpose}".encode())
    return hkdf.derive(secret.encode())


def _key(secret: str) -> bytes:
    return derived_key(secret, "cursor")


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def encode_cursor(secret: str, scope: str, *values: object) -> str:
    payload = json.dumps([scope, *values], separators=(",", ":"), ensure_ascii=False).encode()
    signature = hmac.new(_key(secret), payload, hashlib.sha256).digest()[:12]
    return f"{_b64(payload)}.{_b64(signature)}"


def decode_cursor(secret: str, scope: str, cursor: str) -> list[Any]:
    try:
        body, signature = cursor.split(".", 1)
        payload = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        given = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
    except (ValueError, binascii.Error):
        raise BadCursor from None
    expected = hmac.new(_key(secret), payload, hashlib.sha256).digest()[:12]
    if not hmac.compare_digest(given, expected):
        raise BadCursor
    values = json.loads(payload)
    if not isinstance(values, list) or not values or values[0] != scope:
        raise BadCursor
    return values[1:]


# ---------------------------------------------------------------------------------------------
# certificates: an Open Badges 3.0 credential as a VC-JWT signed with the key's algorithm
# (RS256 for lms's default RSA key), with a Bitstring Status List entry

# The members RFC 7638 hashes for the key's thumbprint: all that lms stores of a public key.
THUMBPRINT_MEMBERS = {
    "RSA": ("e", "kty", "n"),
    "EC": ("crv", "kty", "x", "y"),
    "OKP": ("crv", "kty", "x"),
}
STATUS_LIST_SIZE = 131_072  # bits per status list, as lms.domain.certificates.status_list


@lru_cache(maxsize=1)
def public_jwk(settings: Settings) -> dict[str, str]:
    algorithm = get_default_algorithms()[settings.signing_algorithm]
    jwk = algorithm.to_jwk(settings.signing_key.public_key(), as_dict=True)
    return {name: jwk[name] for name in THUMBPRINT_MEMBERS[jwk["kty"]]}


@lru_cache(maxsize=1)
def key_id(settings: Settings) -> str:
    canonical = json.dumps(public_jwk(settings), sort_keys=True, separators=(",", ":")).encode()
    return f"{settings.base_url}/.well-known/jwks.json#{_b64(hashlib.sha256(canonical).digest())}"


def status_position(number: int) -> tuple[int, int]:
    """(list, index) of a number from certificate_status_seq: list n // size + 1, bit n % size."""
    return number // STATUS_LIST_SIZE + 1, number % STATUS_LIST_SIZE


def sign_certificate(
    settings: Settings,
    *,
    certificate_id: uuid.UUID,
    serial_hash: str,
    enrollment_id: uuid.UUID,
    issued_at: datetime,
    learner_name: str,
    course_id: uuid.UUID,
    course_title: str,
    status_list: int,
    status_index: int,
) -> str:
    issuer, name = settings.base_url, settings.issuer_name
    valid_from = issued_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    status_url = f"{issuer}/certificates/status/{status_list}"
    credential: dict[str, Any] = {
        "@context": [
            "https://www.w3.org/ns/credentials/v2",
            "https://purl.imsglobal.org/spec/ob/v3p0/context-3.0.3.json",
        ],
        "id": f"urn:uuid:{certificate_id}",
        "type": ["VerifiableCredential", "OpenBadgeCredential"],
        "name": f"Certificate of completion: {course_title}",
        "issuer": {"id": issuer, "type": ["Profile"], "name": name, "url": issuer},
        "validFrom": valid_from,
        "credentialStatus": {
            "id": f"{status_url}#{status_index}",
            "type": "BitstringStatusListEntry",
            "statusPurpose": "revocation",
            "statusListIndex": str(status_index),
            "statusListCredential": status_url,
        },
        "credentialSubject": {
            "id": f"urn:uuid:{enrollment_id}",
            "type": ["AchievementSubject"],
            "identifier": [
                {
                    "type": "IdentityObject",
                    "identityType": "name",
                    "hashed": False,
                    "identityHash": learner_name,
                }
            ],
            "achievement": {
                "id": f"{issuer}/courses/{course_id}",
                "type": ["Achievement"],
                "achievementType": "Course",
                "name": course_title,
                "description": f"Completion of the course {course_title}",
                "criteria": {
                    "narrative": f"Completed every lesson of the course {course_title}, "
                    f"as recorded by {name}."
                },
            },
        },
    }
    payload = {
        **credential,
        "iss": issuer,
        "jti": credential["id"],
        "sub": credential["credentialSubject"]["id"],
        "nbf": int(issued_at.timestamp()),
        "serialHash": serial_hash,
    }
    return jwt.encode(
        payload,
        settings.signing_key,
        algorithm=settings.signing_algorithm,
        headers={"kid": key_id(settings), "typ": "JWT"},
    )
