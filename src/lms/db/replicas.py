"""PostgreSQL read replicas (LMS_DATABASE_REPLICA_URLS) for reads that may be a moment stale.

`ReadReplicas` is what a handler asks for, explicitly (`ctx.replica_reads()`), when what it reads
may lag the primary by up to LMS_REPLICA_MAX_LAG seconds: anonymous catalog pages and searches,
an anonymous course page; `within(seconds)` narrows that for a read that must be fresher
(certificate verification: LMS_VERIFY_MAX_LAG). It offers read statements only (fetch, fetchrow,
fetchval), and the query functions that accept it say so in their signature
(`lms.db.queries.ReadConn`): a write, or a read that must see the caller's own write, takes the
primary's pool (`Conn`). A replica is a read-only server, so a write sent to one by mistake
fails loudly rather than quietly.

Freshness is measured against the primary (lms.db.replica_freshness): each second this process
samples the primary's WAL position, then checks every replica on a connection of its own: it
must answer, be in recovery, be streaming (its WAL receiver connected), and have replayed a
sample taken at most LMS_REPLICA_MAX_LAG seconds ago. One that fails is skipped, and the primary
serves, until a later check passes. A replica that lost its primary is thus skipped at once (no
receiver), and one whose link silently stalls within LMS_REPLICA_MAX_LAG seconds (it stops
catching up with the samples), however current it believes itself.

Each pooled connection is judged too, by its own server's answer, before it serves a read (again
once a second, and whenever its last verdict is too old for the read's bound): a read runs only
where everything the primary acknowledged more than the read's bound ago is replayed (so
verification's promise, LMS_VERIFY_MAX_LAG plus its answers' max-age, holds per read). This is
what makes one URL that balances over several replicas safe (CloudNativePG's `-ro` Service):
the process's check sees one pod, each connection sees its own. We chose this over sending
verification to the primary because it keeps the replicas' load-shedding for every public read
and bounds staleness per connection, whatever is behind the address; its cost is one extra
statement per pooled connection per second. A connection whose server must not serve at all is
closed, so the pool's next one may reach a healthy pod. (A connection must stay on one server: a
pooler in transaction mode between us and the replicas would defeat this.)

A statement that fails on a replica because its connection could not be had or dropped (the
server stopped under it, a recovery conflict cancelled it) is run once more on the primary, so
the client sees no error, and the replica is skipped until the next check. Without the primary
to sample, no replica can be shown fresh: all are skipped after LMS_REPLICA_MAX_LAG seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import asyncpg

from lms.background import BackgroundTask
from lms.db.engine import CONNECT_TIMEOUT, describe, open_pool
from lms.db.replica_freshness import ReplicaConnection, Verdict, WalClock, judge
from lms.observability.metrics import (
    REPLICA_HEALTHY,
    REPLICA_LAG,
    REPLICA_REFUSED_READS,
    ROUTED_READS,
)
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
# A replica seen lagging is looked at again this much later before it is skipped: a sample
# taken just as the primary wrote is ahead of the replica for the milliseconds replay takes.
LAG_RECHECK_SECONDS = 0.2

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


class _CheckFailed(Exception):
    """A pooled connection's server did not answer its health check (too slow, gone, broken)."""


class _Refused(Exception):
    """The connection's own server must not serve this read (behind its bound, not streaming)."""


def failed_on_replica(exc: BaseException) -> bool:
    """True when `exc` says the replica, not the statement, failed: the primary may answer.
    A statement's own time limit (TimeoutError) and the database refusing it are the caller's."""
    if isinstance(exc, _NoConnection | _CheckFailed):
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
    lag: float | None = None  # at the last check; None: unknown
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


class ReplicaReads:
    """Read statements on a replica at most `max_lag` seconds behind the primary, else on the
    primary; see the module's docstring."""

    def __init__(self, replicas: ReadReplicas, max_lag: float) -> None:
        self._replicas = replicas
        self.max_lag = max_lag

    # `timeout` is asyncpg's own: on expiry it cancels the statement in PostgreSQL too.
    async def fetch(
        self,
        query: str,
        *args: object,
        timeout: float | None = None,  # noqa: ASYNC109 - asyncpg's interface, as above
    ) -> list[asyncpg.Record]:
        replicas = self._replicas
        if not replicas.replicas:  # as fetchrow
            TALLY.inc(_READ_ON_PRIMARY)
            async with replicas.primary.acquire() as conn:
                rows: list[asyncpg.Record] = await conn.fetch(query, *args, timeout=timeout)
            return rows
        rows = await replicas.read(
            lambda conn: conn.fetch(query, *args, timeout=timeout), self.max_lag
        )
        return rows

    def fetchrow(
        self,
        query: str,
        *args: object,
        timeout: float | None = None,
    ) -> Awaitable[asyncpg.Record | None]:
        replicas = self._replicas
        if not replicas.replicas:  # the primary serves every read: no routing to pay for
            TALLY.inc(_READ_ON_PRIMARY)
            # The pool's own call, awaited by the caller: no coroutine of ours in between.
            return replicas.primary.fetchrow(query, *args, timeout=timeout)  # type: ignore[no-any-return]
        return replicas.read(
            lambda conn: conn.fetchrow(query, *args, timeout=timeout), self.max_lag
        )

    async def fetchval(
        self,
        query: str,
        *args: object,
        timeout: float | None = None,  # noqa: ASYNC109 - asyncpg's interface, as above
    ) -> Any:
        replicas = self._replicas
        if not replicas.replicas:  # as fetchrow
            TALLY.inc(_READ_ON_PRIMARY)
            async with replicas.primary.acquire() as conn:
                return await conn.fetchval(query, *args, timeout=timeout)
        return await replicas.read(
            lambda conn: conn.fetchval(query, *args, timeout=timeout), self.max_lag
        )


class ReadReplicas(ReplicaReads):
    """The replicas of one process: reads within LMS_REPLICA_MAX_LAG, `within()` for fewer
    seconds, and the checks that keep the verdicts current."""

    def __init__(self, settings: Settings, primary: asyncpg.Pool) -> None:
        super().__init__(self, settings.replica_max_lag_seconds)
        self.settings = settings
        self.primary = primary
        self.replicas = [Replica(url, describe(url)) for url in settings.database_replica_urls]
        # Samples older than the largest bound (and a check's worth of slack) prove nothing.
        self.clock = WalClock(self.max_lag + 2 * CHECK_INTERVAL_SECONDS)
        self._primary_checker: asyncpg.Connection | None = None
        self._sampling_failed = False
        self._turn = itertools.count()
        self._task = BackgroundTask("lms-replica-health")
        self._within: dict[float, ReplicaReads] = {}

    def within(self, max_lag: float) -> ReplicaReads:
        """Reads on a replica at most `max_lag` seconds behind (never more than
        LMS_REPLICA_MAX_LAG)."""
        bound = min(max_lag, self.max_lag)
        reads = self._within.get(bound)
        if reads is None:
            reads = self._within[bound] = ReplicaReads(self, bound)
        return reads

    def pick(self, max_lag: float | None = None) -> Replica | None:
        """The next healthy replica in turn whose last check found it within `max_lag`, or None
        (the primary serves)."""
        bound = self.max_lag if max_lag is None else max_lag
        healthy = [
            r
            for r in self.replicas
            if r.healthy and r.pool is not None and r.lag is not None and r.lag <= bound
        ]
        if not healthy:
            return None
        return healthy[next(self._turn) % len(healthy)]

    async def read(self, run: Callable[[Any], Awaitable[T]], max_lag: float) -> T:
        replica = self.pick(max_lag)
        if replica is not None and replica.pool is not None:
            try:
                result = await self._on_replica(replica, replica.pool, run, max_lag)
            except _Refused as refused:
                # That connection's server only (one pod behind a balancing address): the
                # replica stays in turn; this read goes to the primary.
                TALLY.inc(REPLICA_REFUSED_READS.labels(replica.label))
                log.debug("read replica %s connection refused a read: %s", replica.label, refused)
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

    async def _on_replica(
        self,
        replica: Replica,
        pool: asyncpg.Pool,
        run: Callable[[Any], Awaitable[T]],
        max_lag: float,
    ) -> T:
        try:
            conn = await pool.acquire()
        except Exception as exc:
            raise _NoConnection(f"{type(exc).__name__}: {exc}") from exc
        try:
            verdict: Verdict | None = conn.verdict
            now = time.monotonic()
            if (
                verdict is None
                or now - verdict.checked_at >= CHECK_INTERVAL_SECONDS
                or verdict.refusal(max_lag, now) is not None
            ):
                try:
                    verdict = await judge(conn, self.clock, CHECK_TIMEOUT_SECONDS)
                except Exception as exc:  # the replica's failure, whatever it was: not the read's
                    raise _CheckFailed(f"its check failed: {type(exc).__name__}: {exc}") from exc
                conn.remember(verdict)
            now = time.monotonic()
            why = verdict.refusal(max_lag, now)
            if why is not None:
                if verdict.refusal(self.max_lag, now) is not None:
                    # Unfit for any read: closed, so the pool's next connection may reach
                    # another server behind the same address.
                    conn.terminate()
                raise _Refused(why)
            return await run(conn)
        finally:
            await pool.release(conn)

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
        await _terminate(self._primary_checker)
        self._primary_checker = None
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
        # A steady cadence: the samples' spacing is what a healthy replica's lag can reach.
        started = time.monotonic()
        for beat in itertools.count(1):
            delay = started + beat * CHECK_INTERVAL_SECONDS - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await self.check_all()

    async def check_all(self) -> None:
        await self.sample_primary()
        await asyncio.gather(*(self._check(replica) for replica in self.replicas))

    async def sample_primary(self) -> None:
        """One sample of the primary's WAL position, on a connection of its own (a busy pool
        must not delay it: the replicas would look stale and send their reads to the primary)."""
        try:
            async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
                if self._primary_checker is None or self._primary_checker.is_closed():
                    url = self.settings.database_url
                    if url is None:
                        raise RuntimeError("database_url must be resolved before the replicas")
                    self._primary_checker = await asyncpg.connect(
                        url,
                        timeout=CHECK_TIMEOUT_SECONDS,
                        server_settings={"application_name": "lms-replica-check"},
                    )
                await self.clock.sample(self._primary_checker, CHECK_TIMEOUT_SECONDS)
        except Exception as exc:  # the replicas age out of their bound; reads go to the primary
            await _terminate(self._primary_checker)
            self._primary_checker = None
            if not self._sampling_failed:
                log.warning(
                    "cannot sample the primary's WAL position (%s: %s): read replicas are "
                    "skipped once their last proof of freshness is older than their bound",
                    type(exc).__name__,
                    exc,
                )
            self._sampling_failed = True
        else:
            self._sampling_failed = False

    async def _check(self, replica: Replica) -> None:
        try:
            async with asyncio.timeout(CHECK_TIMEOUT_SECONDS + LAG_RECHECK_SECONDS):
                verdict = await _measure(replica, self.clock)
                if verdict.unfit is None and verdict.refusal(self.max_lag, verdict.checked_at):
                    await asyncio.sleep(LAG_RECHECK_SECONDS)
                    verdict = await _measure(replica, self.clock)
        except Exception as exc:  # unreachable, refusing, too slow: all mean "skip it"
            await _close_checker(replica)
            replica.set_health(False, None, f"unreachable: {type(exc).__name__}: {exc}")
            return
        lag = verdict.lag(verdict.checked_at)
        why = verdict.refusal(self.max_lag, verdict.checked_at)
        if why is not None:
            replica.set_health(False, lag, why)
        elif await self._open_pool(replica):
            replica.set_health(True, lag, "healthy")

    async def _open_pool(self, replica: Replica) -> bool:
        if replica.pool is not None:
            return True
        try:
            replica.pool = await asyncio.wait_for(
                open_pool(
                    replica.url,
                    self.settings,
                    timeout=CONNECT_TIMEOUT,
                    connection_class=ReplicaConnection,
                ),
                CONNECT_TIMEOUT,
            )
        except Exception as exc:
            replica.set_health(False, None, f"no pool: {type(exc).__name__}: {exc}")
            return False
        return True


async def _measure(replica: Replica, clock: WalClock) -> Verdict:
    """The verdict on the replica, on its own checking connection."""
    if replica._checker is None or replica._checker.is_closed():
        replica._checker = await asyncpg.connect(
            replica.url,
            timeout=CHECK_TIMEOUT_SECONDS,
            server_settings={"application_name": "lms-replica-check"},
        )
    return await judge(replica._checker, clock, CHECK_TIMEOUT_SECONDS)


async def _close_checker(replica: Replica) -> None:
    checker, replica._checker = replica._checker, None
    await _terminate(checker)


async def _terminate(conn: asyncpg.Connection | None) -> None:
    if conn is not None:
        with contextlib.suppress(Exception):
            conn.terminate()
