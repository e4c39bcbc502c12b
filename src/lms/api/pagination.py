"""Keyset pagination: the `limit`/`cursor` query parameters and turning rows into a page."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Annotated, TypeVar

import asyncpg
from litestar.params import QueryParameter

from lms.api.cursor import decode_time_id_cursor, encode_cursor
from lms.api.schemas import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, Page

T = TypeVar("T")

PageLimit = Annotated[
    int,
    QueryParameter(ge=1, le=MAX_PAGE_SIZE, description=f"page size, at most {MAX_PAGE_SIZE}"),
]
PageCursor = Annotated[
    str | None,
    QueryParameter(max_length=512, description="nextCursor of the previous page"),
]
DEFAULT_LIMIT = DEFAULT_PAGE_SIZE


def after_position(
    secret: str, scope: str, cursor: str | None
) -> tuple[datetime, uuid.UUID] | None:
    return decode_time_id_cursor(secret, scope, cursor) if cursor else None


def time_id_page(
    rows: Sequence[asyncpg.Record],
    limit: int,
    *,
    secret: str,
    scope: str,
    convert: Callable[[asyncpg.Record], T],
    time_column: str = "created_at",
) -> Page[T]:
    """`rows` were fetched with LIMIT limit + 1: the extra row only says another page exists."""
    items = rows[:limit]
    next_cursor = None
    if len(rows) > limit and items:
        last = items[-1]
        next_cursor = encode_cursor(secret, scope, last[time_column].isoformat(), str(last["id"]))
    return Page(items=[convert(r) for r in items], next_cursor=next_cursor)


def json_page(items_array: str, next_cursor: str | None) -> str:
    """A page from an items JSON array already built (by PostgreSQL): no decoding, no re-encoding.
    Cursors are base64url plus '.', which need no escaping in a JSON string."""
    cursor = "null" if next_cursor is None else f'"{next_cursor}"'
    return f'{{"items":{items_array},"nextCursor":{cursor}}}'
