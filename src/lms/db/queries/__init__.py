"""The SQL, one module per area, as named functions the services call. Ordinary queries use
Piccolo's query builder with its typed columns; hot paths, and what the builder cannot say, are raw
SQL on the same asyncpg pool, each saying why it is raw."""

from typing import TypeAlias

import asyncpg

from lms.db.replicas import ReplicaReads

# A raw query function takes a pool for a one-off statement, a connection inside a transaction.
Conn: TypeAlias = asyncpg.Connection | asyncpg.Pool
# A read that may be a moment stale may also take the read replicas (lms.db.replicas): only the
# functions whose signature says ReadConn. (asyncpg has no type hints, so this documents the rule
# rather than enforcing it; tests/unit/test_replica_routing.py lists the call sites that ask
# for the replicas.)
ReadConn: TypeAlias = Conn | ReplicaReads
