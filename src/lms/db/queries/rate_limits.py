"""Fixed-window rate-limit counters in PostgreSQL, so every API process shares one count.

Raw because a count is taken on every sign-in, sign-up and OTP request: one INSERT ... ON
CONFLICT DO UPDATE ... RETURNING, a single round trip that is atomic across processes."""

from __future__ import annotations

from dataclasses import dataclass

from lms.db.queries import Conn
from lms.invariants import present

# One statement: start a new window when the old one is over, else count the hit. RETURNING gives
# the count after this hit and the seconds until the window resets.
HIT = """
INSERT INTO rate_limit_counters AS c (key, window_start, hits)
VALUES ($1, now(), 1)
ON CONFLICT (key) DO UPDATE SET
    window_start = CASE WHEN c.window_start <= now() - make_interval(secs => $2)
                        THEN now() ELSE c.window_start END,
    hits = CASE WHEN c.window_start <= now() - make_interval(secs => $2)
                THEN 1 ELSE c.hits + 1 END
RETURNING hits,
          extract(epoch FROM window_start + make_interval(secs => $2) - now())::float8 AS reset_in
"""

# Many keys' hits from one process at once (lms.domain.rate_limits.BatchedLimit): keys in a fixed
# order, so two processes flushing the same keys lock their rows in the same order.
HIT_MANY = """
INSERT INTO rate_limit_counters AS c (key, window_start, hits)
SELECT k, now(), n FROM unnest($1::text[], $2::int[]) AS t (k, n) ORDER BY k
ON CONFLICT (key) DO UPDATE SET
    window_start = CASE WHEN c.window_start <= now() - make_interval(secs => $3)
                        THEN now() ELSE c.window_start END,
    hits = CASE WHEN c.window_start <= now() - make_interval(secs => $3)
                THEN excluded.hits ELSE c.hits + excluded.hits END
RETURNING key, hits,
          extract(epoch FROM window_start + make_interval(secs => $3) - now())::float8 AS reset_in
"""

UNDO = "UPDATE rate_limit_counters SET hits = greatest(hits - 1, 0) WHERE key = $1"

RESTART = """
INSERT INTO rate_limit_counters AS c (key, window_start, hits)
VALUES ($1, now(), 0)
ON CONFLICT (key) DO UPDATE SET window_start = now(), hits = 0
"""

PURGE = "DELETE FROM rate_limit_counters WHERE window_start < now() - make_interval(secs => $1)"


@dataclass(frozen=True, slots=True)
class Hit:
    count: int
    reset_in: float  # seconds until this window ends


async def hit(conn: Conn, key: str, window_seconds: int) -> Hit:
    row = present(
        await conn.fetchrow(HIT, key, float(window_seconds)),
        "INSERT ... ON CONFLICT DO UPDATE ... RETURNING returns the row",
    )
    return Hit(row["hits"], max(row["reset_in"], 0.0))


async def hit_many(conn: Conn, hits: dict[str, int], window_seconds: int) -> dict[str, Hit]:
    """Count `hits[key]` hits against each key in one statement; each key's count after them."""
    keys = sorted(hits)
    rows = await conn.fetch(HIT_MANY, keys, [hits[k] for k in keys], float(window_seconds))
    return {row["key"]: Hit(row["hits"], max(row["reset_in"], 0.0)) for row in rows}


async def undo(conn: Conn, key: str) -> None:
    await conn.execute(UNDO, key)


async def restart(conn: Conn, key: str) -> None:
    await conn.execute(RESTART, key)


async def purge(conn: Conn, older_than_seconds: int) -> str:
    return str(await conn.execute(PURGE, float(older_than_seconds)))
