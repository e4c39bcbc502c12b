"""What our Piccolo queries need beside the builder: transactions that raw statements can join,
the database's clock, and a built statement run on a connection a caller holds. (Keyset bounds:
lms.db.keyset.)"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
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


async def execute_on(conn: asyncpg.Connection, query: Query[Any, Any]) -> None:
    """Run a statement the builder made on `conn`, inside whatever transaction the caller holds
    there, raw or Piccolo's (Piccolo's own run takes a pooled connection unless a Piccolo
    transaction is open)."""
    for statement in query.querystrings:
        sql, args = statement.compile_string()
        await conn.execute(sql, *args)
