"""PostgreSQL read replicas (LMS_DATABASE_REPLICA_URLS) for reads that may be a moment stale.

`ReadReplicas` is what a handler asks for, explicitly (`ctx.replica_reads()`), when what it reads
may lag the primary by up to LMS_REPLICA_MAX_LAG seconds: anonymous catalog pages and searches,
an anonymous course page, certificate verification. It offers read statements only (fetch,
fetchrow, fetchval), and the query functions that accept it say so in their signature
(`lms.db.queries.ReadConn`): a write, or a read that must see the caller's own write, takes the
primary's pool (`Conn`). A replica is a read-only server, so a write sent to one by mistake
fails loudly rather than quietly.

Each statement runs on the next healthy replica in turn. A background task checks every replica
each second: it must answer, be in recovery (a standby, not a promoted or misnamed primary) and
have replayed what it received, or else be at most LMS_REPLICA_MAX_LAG seconds behind; one that
fails any of these is skipped, and the primary serves, until a later check finds it healthy
again. A statement that fails on a replica because its connection could not be had or dropped
(the server stopped under it, a recovery conflict cancelled it) is run once more on the primary,
so the client sees no error, and the replica is skipped until the next check.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import asyncpg

from lms.background import BackgroundTask
from lms.db.engine import CONNECT_TIMEOUT, describe, open_pool
from lms.observability.metrics import REPLICA_HEALTHY, REPLICA_LAG, ROUTED_READS
from lms.observability.tally import TALLY
from lms.settings import Settings

log = logging.getLogger("lms.db.replicas")

# The two series, looked up once (labels() costs more than the increment; reads are hot) and
# counted through the tally (lms.observability.tally).
_READ_ON_REPLICA = ROUTED_READS.labels("replica")
_READ_ON_PRIMARY = ROUTED_READS.labels("primary")

T = TypeVar("T")

CHECK_INTERVAL_SECONDS = 1.0
CHECK_TIMEOUT_SECONDS = 2.0
# A replica seen lagging is looked at again this much later before it is skipped: after a quiet
# spell the first write makes it look as far behind as the quiet was long, for the few
# milliseconds it takes to replay it.
LAG_RECHECK_SECONDS = 0.2

# Lag: none while the replica has replayed every WAL record it received (an idle primary sends
# nothing, and pg_last_xact_replay_timestamp() then stops moving while the data is current);
# otherwise the age of the newest transaction it has replayed, as the primary committed it, an
# upper bound of how stale its data is. NULL when it has replayed none and is behind.
HEALTH_SQL = """
SELECT pg_is_in_recovery() AS in_recovery,
       CASE WHEN pg_last_wal_receive_lsn() IS NOT NULL
                 AND pg_last_wal_receive_lsn() <= pg_last_wal_replay_lsn() THEN 0.0::float8
            ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8
       END AS lag
"""

# SQLSTATE classes 08 (connection), 57P01-57P03 (shutdown, crash, starting up), 53300 (no free
# slot), 40001 (on a standby: a statement cancelled by a conflict with recovery).
_FAILED_ON_REPLICA = (
    asyncpg.PostgresConnectionError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.SerializationError,
)


class _NoConnection(Exception):
    """The replica's pool could not hand out a connection (refused, timed out connecting)."""


def failed_on_replica(exc: BaseException) -> bool:
    """True when `exc` says the replica, not the statement, failed: the primary may answer.
    A statement's own time limit (TimeoutError) and the database refusing it are the caller's."""
    if isinstance(exc, _NoConnection):
        return True
    if isinstance(exc, TimeoutError):
        return False
    if isinstance(exc, asyncpg.PostgresError):
        return isinstance(exc, _FAILED_ON_REPLICA)
    if isinstance(exc, asyncpg.exceptions._base.DataError):  # an argument asyncpg cannot encode
        return False
    # A closed or closing connection, a protocol interrupted by the server's goodbye, a socket
    # refused or reset.
    return isinstance(exc, asyncpg.InterfaceError | asyncpg.InternalClientError | OSError)


@dataclass(eq=False)
class Replica:
    url: str
    label: str  # host:port/database: for logs and metrics, never the password
    pool: asyncpg.Pool | None = None
    healthy: bool = False
    lag: float | None = None
    why: str = "not checked yet"
    _checker: asyncpg.Connection | None = field(default=None, repr=False)

    def set_health(self, healthy: bool, lag: float | None, why: str) -> None:
        if healthy != self.healthy:
            if healthy:
                log.info("read replica %s is healthy (lag %.1f s)", self.label, lag or 0.0)
            else:
                log.warning("read replica %s skipped (the primary serves): %s", self.label, why)
        self.healthy, self.lag, self.why = healthy, lag, why
        REPLICA_HEALTHY.labels(self.label).set(1 if healthy else 0)
        REPLICA_LAG.labels(self.label).set(math.nan if lag is None else lag)


class ReadReplicas:
    """Read statements on a healthy replica, else on the primary; see the module's docstring."""

    def __init__(self, settings: Settings, primary: asyncpg.Pool) -> None:
        self.settings = settings
        self.primary = primary
        self.replicas = [Replica(url, describe(url)) for url in settings.database_replica_urls]
        self._turn = itertools.count()
        self._task = BackgroundTask("lms-replica-health")

    # -- the reads

    # `timeout` is asyncpg's own: on expiry it cancels the statement in PostgreSQL too.
    async def fetch(
        self,
        query: str,
        *args: object,
        timeout: float | None = None,  # noqa: ASYNC109 - asyncpg's interface, as above
    ) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await self._read(
            lambda conn: conn.fetch(query, *args, timeout=timeout)
        )
        return rows

    async def fetchrow(
        self,
        query: str,
        *args: object,
        timeout: float | None = None,  # noqa: ASYNC109 - asyncpg's interface, as above
    ) -> asyncpg.Record | None:
        row: asyncpg.Record | None = await self._read(
            lambda conn: conn.fetchrow(query, *args, timeout=timeout)
        )
        return row

    async def fetchval(
        self,
        query: str,
        *args: object,
        timeout: float | None = None,  # noqa: ASYNC109 - asyncpg's interface, as above
    ) -> Any:
        return await self._read(lambda conn: conn.fetchval(query, *args, timeout=timeout))

    def pick(self) -> Replica | None:
        """The next healthy replica in turn, or None (the primary serves)."""
        healthy = [r for r in self.replicas if r.healthy and r.pool is not None]
        if not healthy:
            return None
        return healthy[next(self._turn) % len(healthy)]

    async def _read(self, run: Callable[[Any], Awaitable[T]]) -> T:
        replica = self.pick()
        if replica is not None and replica.pool is not None:
            try:
                result = await _on_replica(replica.pool, run)
            except Exception as exc:
                if not failed_on_replica(exc):
                    raise
                # Skipped until the next check finds it healthy; this read goes to the primary.
                replica.set_health(False, None, f"a read failed: {type(exc).__name__}: {exc}")
            else:
                TALLY.inc(_READ_ON_REPLICA)
                return result
        TALLY.inc(_READ_ON_PRIMARY)
        async with self.primary.acquire() as conn:
            return await run(conn)

    # -- the lifecycle and the health checks

    async def start(self) -> None:
        """Check every replica once (the first reads may use the healthy ones), then every
        second in the background. A replica down at startup does not stop the API."""
        if not self.replicas:
            return
        for replica in self.replicas:
            replica.set_health(False, None, "not checked yet")
        await self.check_all()
        for replica in self.replicas:
            if not replica.healthy:
                log.warning("read replica %s not used for now: %s", replica.label, replica.why)
        self._task.start(self._run_forever)

    async def stop(self) -> None:
        await self._task.stop()
        for replica in self.replicas:
            await _close_checker(replica)
            if replica.pool is not None:
                pool, replica.pool = replica.pool, None
                try:
                    await asyncio.wait_for(pool.close(), CONNECT_TIMEOUT)
                except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                    pool.terminate()
            replica.healthy = False

    async def _run_forever(self) -> None:
        while True:
            await asyncio.sleep(CHECK_INTERVAL_SECONDS)
            await self.check_all()

    async def check_all(self) -> None:
        await asyncio.gather(*(self._check(replica) for replica in self.replicas))

    async def _check(self, replica: Replica) -> None:
        max_lag = self.settings.replica_max_lag_seconds
        try:
            async with asyncio.timeout(CHECK_TIMEOUT_SECONDS + LAG_RECHECK_SECONDS):
                in_recovery, lag = await _measure(replica)
                if in_recovery and (lag is None or lag > max_lag):
                    await asyncio.sleep(LAG_RECHECK_SECONDS)
                    in_recovery, lag = await _measure(replica)
        except Exception as exc:  # unreachable, refusing, too slow: all mean "skip it"
            await _close_checker(replica)
            replica.set_health(False, None, f"unreachable: {type(exc).__name__}: {exc}")
            return
        if not in_recovery:
            replica.set_health(False, None, "not in recovery: a primary, not a replica")
        elif lag is None:
            replica.set_health(False, None, "has replayed nothing yet")
        elif lag > max_lag:
            replica.set_health(False, lag, f"lags {lag:.1f} s (LMS_REPLICA_MAX_LAG={max_lag})")
        elif await self._open_pool(replica):
            replica.set_health(True, lag, "healthy")

    async def _open_pool(self, replica: Replica) -> bool:
        if replica.pool is not None:
            return True
        try:
            replica.pool = await asyncio.wait_for(
                open_pool(replica.url, self.settings, timeout=CONNECT_TIMEOUT), CONNECT_TIMEOUT
            )
        except Exception as exc:
            replica.set_health(False, None, f"no pool: {type(exc).__name__}: {exc}")
            return False
        return True


async def _on_replica(pool: asyncpg.Pool, run: Callable[[Any], Awaitable[T]]) -> T:
    try:
        conn = await pool.acquire()
    except Exception as exc:
        raise _NoConnection(f"{type(exc).__name__}: {exc}") from exc
    try:
        return await run(conn)
    finally:
        await pool.release(conn)


async def _measure(replica: Replica) -> tuple[bool, float | None]:
    """(in recovery, lag in seconds or None) on the replica's own checking connection."""
    if replica._checker is None or replica._checker.is_closed():
        replica._checker = await asyncpg.connect(
            replica.url,
            timeout=CHECK_TIMEOUT_SECONDS,
            server_settings={"application_name": "lms-replica-check"},
        )
    row = await replica._checker.fetchrow(HEALTH_SQL, timeout=CHECK_TIMEOUT_SECONDS)
    lag = row["lag"]
    return bool(row["in_recovery"]), None if lag is None else max(0.0, float(lag))


async def _close_checker(replica: Replica) -> None:
    checker, replica._checker = replica._checker, None
    if checker is not None:
        with contextlib.suppress(Exception):
            checker.terminate()
