"""One key per purpose, derived from LMS_JWT_SECRET with HKDF, so nothing signed for one purpose is
accepted for another.

A signature made for one thing (a media URL, a keyset cursor, an OTP hash, an access token) must
never verify as another, whatever its bytes: each purpose gets its own key, HKDF-SHA256 (RFC 5869)
of the secret with `info = b"lms/<purpose>"`. The secret itself signs nothing. Keys are derived
once per process (cached): deriving costs some microseconds, a lookup nanoseconds.

The bench's peers (bench/peers) derive the same keys from the same secret, so a token or cursor
one server issues verifies on another.
"""

from __future__ import annotations

from enum import StrEnum
from functools import cache

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

# 64 bytes: as long as the largest HMAC block (HS512), so no algorithm LMS_JWT_ALGORITHM offers
# gets a key shorter than its hash (PyJWT warns below that).
KEY_BYTES = 64


class Purpose(StrEnum):
    ACCESS_TOKEN = "access-token"  # noqa: S105 - a purpose, not a secret
    PROFILE_TOKEN = "profile-token"  # noqa: S105
    OTP = "otp"
    CURSOR = "cursor"
    MEDIA_URL = "media-url"


def info(purpose: Purpose) -> bytes:
    """HKDF's `info` for `purpose`: what binds a key to its one use."""
    return f"lms/{purpose.value}".encode()


@cache
def derived_key(secret: str, purpose: Purpose) -> bytes:
    """The key for `purpose` from the service secret (LMS_JWT_SECRET)."""
    if not secret:
        raise RuntimeError("the JWT secret must be resolved before keys are derived")
    hkdf = HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=info(purpose))
    return hkdf.derive(secret.encode())
