"""How fresh a read replica's data is, measured against the primary's WAL position.

A replica's own view of itself cannot bound its staleness: one whose WAL receiver is gone (or
whose link to the primary silently stalls) has replayed all it received and so looks current for
as long as the outage lasts. So each API process samples the primary's WAL insert position once
a second, noting when it asked (`WalClock`). A replica whose replayed position has reached a
sample's has every transaction the primary acknowledged before that moment; the newest such
moment is the replica's `fresh_as_of`, and `now - fresh_as_of` bounds how stale anything read
from it is. Only this process's monotonic clock is involved: no clock of two hosts is compared.

A replica must also be streaming (pg_stat_wal_receiver.status 'streaming') to serve: its data
may still be fresh a moment after it lost the primary, but nothing will make it fresher.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import asyncpg

# The primary's position, as a byte offset. The insert position (not the write or flush one):
# a transaction acknowledged before the sample, even with synchronous_commit off, lies below it.
PRIMARY_POSITION_SQL = "SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint"

# What the replica says of itself: in recovery (a standby, not a promoted or misnamed primary),
# the end of the last WAL record it replayed, and its WAL receiver. pg_stat_wal_receiver has a
# row only while a receiver runs; its status is hidden (NULL) from a role without
# pg_read_all_stats, which then sees only the pid.
HEALTH_SQL = """
SELECT pg_is_in_recovery() AS in_recovery,
       (pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::bigint AS replayed,
       receiver.pid AS receiver_pid,
       receiver.status AS receiver_status
FROM (SELECT 1) AS one LEFT JOIN pg_stat_wal_receiver AS receiver ON true
"""

HIDDEN_STATUS = (
    "its WAL receiver's status is hidden from this database user: grant it pg_read_all_stats "
    "(GRANT pg_read_all_stats TO <user>, on the primary)"
)


class WalClock:
    """Samples of the primary's WAL position, each with the (monotonic) time it was asked for,
    kept for `keep_seconds`: a replica behind the oldest is at least that stale."""

    def __init__(self, keep_seconds: float) -> None:
        self.keep_seconds = keep_seconds
        self._samples: deque[tuple[float, int]] = deque()

    def add(self, asked_at: float, position: int) -> None:
        self._samples.append((asked_at, position))
        while len(self._samples) > 1 and self._samples[0][0] < asked_at - self.keep_seconds:
            self._samples.popleft()

    async def sample(self, conn: Any, timeout: float) -> None:  # noqa: ASYNC109 - asyncpg's
        """One sample on `conn`, a connection to the primary. The time is taken before the
        statement is sent: whatever the primary acknowledged before then lies below the answer."""
        asked_at = time.monotonic()
        position = await conn.fetchval(PRIMARY_POSITION_SQL, timeout=timeout)
        self.add(asked_at, int(position))

    @property
    def newest(self) -> float | None:
        return self._samples[-1][0] if self._samples else None

    def fresh_as_of(self, replayed: int | None) -> float | None:
        """When the newest sample the replica has replayed was taken, or None (none is)."""
        if replayed is None:
            return None
        # Newest first: a healthy replica matches the first one or two.
        for asked_at, position in reversed(self._samples):
            if position <= replayed:
                return asked_at
        return None


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a replica (or one pooled connection's server) was found to be at `checked_at`."""

    checked_at: float
    # Every transaction the primary acknowledged before this (monotonic) time is replayed there;
    # None when that holds for no sample kept.
    fresh_as_of: float | None
    # Why it must not serve whatever its lag (not a standby, not streaming), or None.
    unfit: str | None

    def lag(self, now: float) -> float | None:
        """How stale its data may be at `now`, in seconds; None: more than the samples kept."""
        return None if self.fresh_as_of is None else max(0.0, now - self.fresh_as_of)

    def refusal(self, max_lag: float, now: float) -> str | None:
        """Why a read that tolerates `max_lag` seconds must not run there at `now`, or None."""
        if self.unfit is not None:
            return self.unfit
        lag = self.lag(now)
        if lag is None:
            return "has not replayed what the primary wrote in the last seconds sampled"
        if lag > max_lag:
            return f"lags {lag:.1f} s (at most {max_lag:g} s allowed)"
        return None


def verdict_of(row: Any, clock: WalClock, checked_at: float) -> Verdict:
    """The verdict on a HEALTH_SQL row."""
    if not row["in_recovery"]:
        return Verdict(checked_at, None, "not in recovery: a primary, not a replica")
    fresh_as_of = clock.fresh_as_of(row["replayed"])
    status = row["receiver_status"]
    if status == "streaming":
        unfit = None
    elif row["receiver_pid"] is not None and status is None:
        unfit = HIDDEN_STATUS
    elif status is None:
        unfit = "not streaming: no WAL receiver (cut off from the primary)"
    else:
        unfit = f"not streaming: its WAL receiver is {status}"
    return Verdict(checked_at, fresh_as_of, unfit)


async def judge(conn: Any, clock: WalClock, timeout: float) -> Verdict:  # noqa: ASYNC109
    """Ask a replica's server (through `conn`) how it stands, and judge it against `clock`."""
    row = await conn.fetchrow(HEALTH_SQL, timeout=timeout)
    return verdict_of(row, clock, time.monotonic())


class ReplicaConnection(asyncpg.Connection):  # type: ignore[misc]  # asyncpg is untyped
    """A pooled replica connection that keeps the verdict on its own server. Behind one address
    that balances over several servers (CloudNativePG's `-ro` Service), each connection reaches
    one of them, so each is judged on its own."""

    verdict: Verdict | None = None

    def remember(self, verdict: Verdict) -> None:
        # A method, not an attribute set: the pool hands out a proxy that forwards calls.
        self.verdict = verdict
