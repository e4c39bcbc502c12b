"""What our Piccolo queries need beside the builder: transactions that raw statements can join,
the database's clock, keyset bounds, and a built statement run on a connection a caller holds."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import asyncpg
from piccolo.columns import Column
from piccolo.query.base import Query
from piccolo.querystring import QueryString

from lms.db.engine import engine


@contextlib.asynccontextmanager
async def transaction() -> AsyncIterator[asyncpg.Connection]:
    """A Piccolo transaction on the shared pool. Piccolo queries awaited inside run in it (Piccolo
    finds it through a context variable); the connection it yields is for the raw statements that
    must join it too (audit rows, the outbox). Start no task inside: a task copies the context
    variable and would run its queries on this connection, maybe after it went back to the pool."""
    async with engine().transaction() as piccolo_transaction:
        yield piccolo_transaction.connection


def db_now() -> QueryString:
    """`now()` as a value, where Piccolo would put the app's clock: every timestamp comes from the
    database's one clock (the transaction's start), whatever process or host wrote it."""
    return QueryString("now()")


def keyset_before(at: Column, row_id: Column, position: tuple[datetime, uuid.UUID]) -> QueryString:
    """`(at, id) < position`, for pages newest first. A row comparison, so PostgreSQL starts its
    walk of the (at DESC, id DESC) index at the position; the builder's `at < x OR (at = x AND
    id < y)` would be a filter over every newer row, and a deep page would cost its depth."""
    return QueryString("({}, {}) < ({}, {})", at, row_id, *position)


async def execute_on(conn: asyncpg.Connection, query: Query[Any, Any]) -> None:
    """Run a statement the builder made on `conn`, inside whatever transaction the caller holds
    there, raw or Piccolo's (Piccolo's own run takes a pooled connection unless a Piccolo
    transaction is open)."""
    for statement in query.querystrings:
        sql, args = statement.compile_string()
        await conn.execute(sql, *args)
