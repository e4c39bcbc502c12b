"""Access tokens: short-lived JWTs carrying the user id, role and token version."""

from __future__ import annotations

import time
import uuid

import jwt

from lms.settings import Settings


def issue_access_token(
    settings: Settings, *, user_id: uuid.UUID, role: str, token_version: int
) -> str:
    assert settings.jwt_secret, "the JWT secret must be resolved before tokens are issued"
    now = int(time.time())
    claims = {
        "sub": str(user_id),
        "role": role,
        "ver": token_version,
        "typ": "access",
        "iat": now,
        "exp": now + settings.access_token_ttl_seconds,
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, settings.jwt_secret, algorithm=settings.jwt_algorithm)
