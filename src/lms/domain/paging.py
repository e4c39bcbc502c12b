"""Keyset pages: opaque, tamper-evident cursors (the last row's sort key, signed with a server
key) and turning the rows of a query into a page.

A client can hold a cursor but not forge or edit one; anything that does not verify is Invalid
(a 400), never a 500 or a silently wrong page.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

import msgspec

from lms.api.schemas import Page
from lms.derived_keys import Purpose, derived_key
from lms.domain.errors import Invalid

P = TypeVar("P", bound=Page[Any])
Row = Mapping[str, Any]

_SIGNATURE_BYTES = 12


def _key(secret: str) -> bytes:
    # The cursors' own key (lms.derived_keys): a cursor signature is no signature of anything else.
    return derived_key(secret, Purpose.CURSOR)


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
    """The values signed into `cursor`; Invalid when it is malformed, forged or for another list."""
    try:
        body, signature = cursor.split(".", 1)
        payload, given = _unb64(body), _unb64(signature)
    except (ValueError, binascii.Error):
        raise Invalid("malformed cursor") from None
    expected = hmac.new(_key(secret), payload, hashlib.sha256).digest()[:_SIGNATURE_BYTES]
    if not hmac.compare_digest(given, expected):
        raise Invalid("malformed cursor")
    values = msgspec.json.decode(payload)
    if not isinstance(values, list) or not values or values[0] != scope:
        raise Invalid("malformed cursor")
    return values[1:]


def decode_time_id_cursor(secret: str, scope: str, cursor: str) -> tuple[datetime, uuid.UUID]:
    """The (timestamp, id) keyset position most lists sort by."""
    values = decode_cursor(secret, scope, cursor)
    try:
        at, row_id = values
        return datetime.fromisoformat(str(at)), uuid.UUID(str(row_id))
    except ValueError:
        raise Invalid("malformed cursor") from None


def after_position(
    secret: str, scope: str, cursor: str | None
) -> tuple[datetime, uuid.UUID] | None:
    return decode_time_id_cursor(secret, scope, cursor) if cursor else None


def time_id_page(
    rows: Sequence[Row],
    limit: int,
    *,
    page: type[P],
    convert: Callable[[Row], Any],
    secret: str,
    scope: str,
    time_column: str = "created_at",
) -> P:
    """`rows` were fetched with LIMIT limit + 1: the extra row only says another page exists."""
    items = rows[:limit]
    next_cursor = None
    if len(rows) > limit and items:
        last = items[-1]
        next_cursor = encode_cursor(secret, scope, last[time_column].isoformat(), str(last["id"]))
    return page(items=[convert(r) for r in items], next_cursor=next_cursor)


def json_page(items_array: str, next_cursor: str | None) -> str:
    """A page from an items JSON array already built (by PostgreSQL): no decoding, no re-encoding.
    Cursors are base64url plus '.', which need no escaping in a JSON string."""
    cursor = "null" if next_cursor is None else f'"{next_cursor}"'
    return f'{{"items":{items_array},"nextCursor":{cursor}}}'
