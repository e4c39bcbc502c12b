"""The one keyset bound every newest-first list uses: `(sort key, id) < (cursor's sort key, id)`.

A row comparison, so PostgreSQL starts its walk of the (sort key DESC, id DESC) index at the
cursor's position and a deep page costs what the first one does. The spelled-out form
`at < x OR (at = x AND id < y)` (what Piccolo's builder would write) is a filter over every newer
row, and a generic `$n IS NULL OR ...` keeps the planner from using the bound at all: a list with
and without a cursor are two statements.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from piccolo.columns import Column
from piccolo.query.methods.select import Select
from piccolo.querystring import QueryString


def before_sql(sort_key: str, row_id: str, first_param: int, sort_type: str) -> str:
    """For raw SQL: the bound on parameters `$first_param` (the sort key, cast to `sort_type`)
    and the next one (the id)."""
    return f"({sort_key}, {row_id}) < (${first_param}::{sort_type}, ${first_param + 1}::uuid)"


def before(at: Column, row_id: Column, position: tuple[datetime, uuid.UUID]) -> QueryString:
    """For Piccolo's builder: `.where(keyset.before(T.created_at, T.id, position))`."""
    return QueryString("({}, {}) < ({}, {})", at, row_id, *position)


def newest_first(
    query: Select[Any],
    at: Column,
    row_id: Column,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> Select[Any]:
    """A page of a Piccolo select, newest first: the `limit` rows after the position `after`
    (None: the first page)."""
    query = query.order_by(at, row_id, ascending=False).limit(limit)
    return query if after is None else query.where(before(at, row_id, after))
