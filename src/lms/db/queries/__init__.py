"""The SQL, one module per area, as named functions the services call. Ordinary queries use
Piccolo's query builder with its typed columns; hot paths, and what the builder cannot say, are raw
SQL on the same asyncpg pool, each saying why it is raw."""

from typing import TypeAlias

import asyncpg

# A raw query function takes a pool for a one-off statement, a connection inside a transaction.
Conn: TypeAlias = asyncpg.Connection | asyncpg.Pool
