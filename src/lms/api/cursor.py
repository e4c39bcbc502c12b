"""Opaque, tamper-evident keyset cursors: the last row's sort key, signed with a server key.

A client can hold a cursor but not forge or edit one; anything that does not verify is a 400,
never a 500 or a silently wrong page.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import uuid
from datetime import datetime

import msgspec
from litestar.exceptions import ValidationException

_SIGNATURE_BYTES = 12


def _key(secret: str) -> bytes:
    return hmac.new(secret.encode(), b"lms keyset cursor", hashlib.sha256).digest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encode_cursor(secret: str, scope: str, *values: object) -> str:
    """Sign `values` (datetimes, UUIDs, numbers, strings) for the list named `scope`."""
    payload = msgspec.json.encode([scope, *values])
    signature = hmac.new(_key(secret), payload, hashlib.sha256).digest()[:_SIGNATURE_BYTES]
    return f"{_b64(payload)}.{_b64(signature)}"


def decode_cursor(secret: str, scope: str, cursor: str) -> list[object]:
    """The values signed into `cursor`, or a 400 when it is malformed, forged or for another list."""
    try:
        body, signature = cursor.split(".", 1)
        payload, given = _unb64(body), _unb64(signature)
    except (ValueError, binascii.Error):
        raise ValidationException("malformed cursor") from None
    expected = hmac.new(_key(secret), payload, hashlib.sha256).digest()[:_SIGNATURE_BYTES]
    if not hmac.compare_digest(given, expected):
        raise ValidationException("malformed cursor")
    values = msgspec.json.decode(payload)
    if not isinstance(values, list) or not values or values[0] != scope:
        raise ValidationException("malformed cursor")
    return values[1:]


def decode_time_id_cursor(secret: str, scope: str, cursor: str) -> tuple[datetime, uuid.UUID]:
    """The (timestamp, id) keyset position most lists sort by."""
    values = decode_cursor(secret, scope, cursor)
    try:
        at, row_id = values
        return datetime.fromisoformat(str(at)), uuid.UUID(str(row_id))
    except ValueError:
        raise ValidationException("malformed cursor") from None
