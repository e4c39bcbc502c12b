"""Raw SQL for the hot paths, one module per area, run on the engine's asyncpg pool."""

from typing import TypeAlias

import asyncpg

# Every query function takes either: a pool for a one-off statement, a connection inside a transaction.
Conn: TypeAlias = asyncpg.Connection | asyncpg.Pool
