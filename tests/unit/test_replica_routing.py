"""Read replicas without servers: which handlers may read one, the round-robin, the skipped
replica, the retry on the primary of a read whose replica failed (and no retry of one that failed
on its own account), freshness measured against samples of the primary's WAL position, the
verdicts (streaming or not, whatever the apparent lag), each pooled connection judged by its own
server (one address balancing over several replicas), verification's tighter bound, and the
settings. The real streaming replica is in tests/integration/replicas/."""

from __future__ import annotations

import ast
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from prometheus_client import REGISTRY

from lms.db import replicas
from lms.db.replica_freshness import HEALTH_SQL, HIDDEN_STATUS, Verdict, WalClock, verdict_of
from lms.db.replicas import ReadReplicas, failed_on_replica
from lms.domain.certificates.controllers import VERIFY_MAX_AGE
from lms.errors import StartupError
from lms.observability.tally import TALLY
from lms.settings import Settings, load_settings

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "lms"

# Every place that reads a replica, reviewed: anonymous catalog pages and searches, the course
# page for anonymous visitors, certificate verification (through verification_reads, with its
# tighter bound). Adding one means adding it here.
REPLICA_READERS = {
    # The answer functions the handlers and the hot lane both call (lms.api.answers).
    ("domain/courses/controllers.py", "catalog_page"),
    ("domain/courses/controllers.py", "course_page"),
    ("domain/certificates/controllers.py", "verification_reads"),
}
# Verification reads only through verification_reads, in the one function that answers it.
VERIFICATION_READERS = {
    ("domain/certificates/controllers.py", "verification"),
}


def _callers(name: str) -> set[tuple[str, str]]:
    found = set()
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for function in ast.walk(tree):
            if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(function):
                if isinstance(node, ast.Call) and name in (
                    getattr(node.func, "attr", None),
                    getattr(node.func, "id", None),
                ):
                    found.add((str(path.relative_to(PACKAGE)), function.name))
    return found


def test_only_the_reviewed_handlers_ask_for_the_replicas() -> None:
    assert _callers("replica_reads") == REPLICA_READERS
    assert _callers("verification_reads") == VERIFICATION_READERS


# -- which failures the primary retries


@pytest.mark.parametrize(
    "exc",
    [
        asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        asyncpg.AdminShutdownError("terminating connection due to administrator command"),
        asyncpg.CannotConnectNowError("the database system is starting up"),
        asyncpg.SerializationError("canceling statement due to conflict with recovery"),
        asyncpg.InterfaceError("connection is closed"),
        ConnectionRefusedError(111, "Connection refused"),
        ConnectionResetError(104, "Connection reset by peer"),
    ],
)
def test_a_failed_replica_is_the_primarys_to_answer(exc: BaseException) -> None:
    assert failed_on_replica(exc)


@pytest.mark.parametrize(
    "exc",
    [
        TimeoutError(),  # the statement's own time limit: as slow on the primary
        asyncpg.UndefinedTableError('relation "x" does not exist'),
        asyncpg.InvalidTextRepresentationError("invalid input syntax for type uuid"),
        asyncpg.exceptions._base.DataError("invalid input for query argument $1"),
        ValueError("a bug"),
    ],
)
def test_a_failed_statement_is_not_retried(exc: BaseException) -> None:
    assert not failed_on_replica(exc)


# -- routing, with pools whose connections answer with their server's name


def streaming(replayed: int = 100, *, status: str | None = "streaming") -> dict[str, Any]:
    """A standby's answer to HEALTH_SQL."""
    pid = None if status is None else 4242
    return {
        "in_recovery": True,
        "replayed": replayed,
        "receiver_pid": pid,
        "receiver_status": status,
    }


class FakeConn:
    """A pooled connection to one server: its answers, and the verdict the pool keeps on it."""

    def __init__(self, name: str, fail: BaseException | None, health: dict[str, Any]) -> None:
        self.name, self.fail, self.health = name, fail, health
        self.verdict: Verdict | None = None
        self.terminated = False
        self.health_checks = 0

    def remember(self, verdict: Verdict) -> None:
        self.verdict = verdict

    def terminate(self) -> None:
        self.terminated = True

    def is_closed(self) -> bool:
        return self.terminated

    async def fetchrow(
        self,
        query: str,
        *args: object,
        timeout: float | None = None,  # noqa: ASYNC109 - asyncpg's interface
    ) -> Any:
        if query == HEALTH_SQL:
            self.health_checks += 1
            if isinstance(self.health, BaseException):
                raise self.health
            return self.health
        if self.fail is not None:
            raise self.fail
        return {"served_by": self.name, "args": args, "timeout": timeout}

    async def fetch(
        self,
        query: str,
        *args: object,
        timeout: float | None = None,  # noqa: ASYNC109 - asyncpg's interface
    ) -> Any:
        return [await self.fetchrow(query, *args, timeout=timeout)]

    async def fetchval(
        self,
        query: str,
        *args: object,
        timeout: float | None = None,  # noqa: ASYNC109 - asyncpg's interface
    ) -> Any:
        return (await self.fetchrow(query, *args, timeout=timeout))["served_by"]


class FakePool:
    """Connections to the servers named in `servers` (one, or several behind one address),
    handed out in turn; a terminated one is replaced by a new connection to the next server."""

    def __init__(
        self,
        name: str,
        *,
        fail: BaseException | None = None,
        refuse: BaseException | None = None,
        servers: list[tuple[str, dict[str, Any]]] | None = None,
    ) -> None:
        self.name, self.fail, self.refuse = name, fail, refuse
        self.servers = servers or [(name, streaming())]
        self.conns = [FakeConn(n, fail, health) for n, health in self.servers]
        self.turn = 0
        self.out = 0

    async def _get(self) -> FakeConn:
        if self.refuse is not None:
            raise self.refuse
        self.out += 1
        index = self.turn % len(self.conns)
        self.turn += 1
        if self.conns[index].terminated:
            name, health = self.servers[index]
            self.conns[index] = FakeConn(name, self.fail, health)
        return self.conns[index]

    def acquire(self) -> Acquiring:
        return Acquiring(self)

    async def release(self, conn: FakeConn) -> None:
        self.out -= 1


class Acquiring:
    """What asyncpg's pool.acquire() returns: awaitable, and an async context manager."""

    def __init__(self, pool: FakePool) -> None:
        self.pool = pool
        self.conn: FakeConn | None = None

    def __await__(self) -> Generator[Any, None, FakeConn]:
        return self.pool._get().__await__()

    async def __aenter__(self) -> FakeConn:
        self.conn = await self.pool._get()
        return self.conn

    async def __aexit__(self, *exc: object) -> None:
        if self.conn is not None:
            await self.pool.release(self.conn)


def routed(target: str) -> float:
    TALLY.flush()  # the counts wait there for up to Tally.FLUSH_DELAY
    return REGISTRY.get_sample_value("lms_db_routed_reads_total", {"target": target}) or 0.0


def refused(label: str) -> float:
    TALLY.flush()
    return (
        REGISTRY.get_sample_value("lms_db_replica_refused_reads_total", {"replica": label}) or 0.0
    )


def make(primary: FakePool, *pools: FakePool, **env: str) -> ReadReplicas:
    """Replicas on `pools`, found healthy by their last check; the primary was sampled at
    position 100 just now (every fake server has replayed it unless told otherwise)."""
    urls = ",".join(f"postgresql://u:secret@{p.name}:5432/lms" for p in pools)
    settings = load_settings({"LMS_DATABASE_REPLICA_URLS": urls, **env})
    reads = ReadReplicas(settings, primary)  # type: ignore[arg-type]
    reads.clock.add(time.monotonic(), 100)
    for replica, pool in zip(reads.replicas, pools, strict=True):
        replica.pool = pool  # type: ignore[assignment]
        replica.set_health(True, 0.0, "healthy")
    return reads


async def test_reads_take_the_healthy_replicas_in_turn() -> None:
    reads = make(FakePool("primary"), FakePool("r1"), FakePool("r2"))
    before = routed("replica")
    served = [(await reads.fetchrow("SELECT 1"))["served_by"] for _ in range(4)]
    assert sorted(served) == ["r1", "r1", "r2", "r2"] and served[0] != served[1]
    assert routed("replica") - before == 4

    reads.replicas[0].set_health(False, 7.0, "lags 7.0 s")
    assert [await reads.fetchval("SELECT 1") for _ in range(3)] == ["r2"] * 3
    assert [r.label for r in reads.replicas] == ["r1:5432/lms", "r2:5432/lms"]


async def test_with_no_healthy_replica_the_primary_serves() -> None:
    for reads in (make(FakePool("primary")), make(FakePool("primary"), FakePool("r1"))):
        for replica in reads.replicas:
            replica.set_health(False, None, "unreachable")
        before = routed("primary")
        assert (await reads.fetch("SELECT 1", timeout=2.0))[0]["served_by"] == "primary"
        assert routed("primary") - before == 1


@pytest.mark.parametrize(
    "replica",
    [
        FakePool("r1", refuse=ConnectionRefusedError(111, "Connection refused")),
        FakePool("r1", refuse=TimeoutError()),  # connecting timed out: the replica's fault
        FakePool("r1", fail=asyncpg.ConnectionDoesNotExistError("closed mid-operation")),
        FakePool("r1", fail=asyncpg.SerializationError("conflict with recovery")),
        # The connection's own health check times out: the replica's fault, not the read's.
        FakePool("r1", servers=[("r1", TimeoutError())]),  # type: ignore[list-item]
        # The connection's own health check fails: the server went away under it.
        FakePool("r1", servers=[("r1", asyncpg.AdminShutdownError("terminating"))]),  # type: ignore[list-item]
    ],
)
async def test_a_read_the_replica_fails_is_answered_by_the_primary(replica: FakePool) -> None:
    reads = make(FakePool("primary"), replica)
    before = routed("primary"), routed("replica")
    row = await reads.fetchrow("SELECT $1", 5, timeout=3.0)
    assert row == {"served_by": "primary", "args": (5,), "timeout": 3.0}
    assert (routed("primary"), routed("replica")) == (before[0] + 1, before[1])
    # Skipped from now on, until a health check finds it healthy again; no connection kept.
    assert not reads.replicas[0].healthy and replica.out == 0
    assert await reads.fetchval("SELECT 1") == "primary"


@pytest.mark.parametrize(
    "fail", [TimeoutError(), asyncpg.UndefinedTableError('relation "x" does not exist')]
)
async def test_a_statement_that_fails_on_its_own_is_not_run_twice(fail: BaseException) -> None:
    replica = FakePool("r1", fail=fail)
    reads = make(FakePool("primary"), replica)
    with pytest.raises(type(fail)):
        await reads.fetchrow("SELECT 1", timeout=1.0)
    assert reads.replicas[0].healthy and replica.out == 0


# -- each pooled connection judged by its own server


async def test_behind_one_address_each_connection_answers_for_its_own_server() -> None:
    """CloudNativePG's -ro Service: the process's check saw a healthy pod, but the pool's
    connections spread over every pod; one pod lost its primary (no WAL receiver) while its
    replayed position still equals the primary's (an idle primary: zero apparent lag)."""
    ro = FakePool(
        "lms-db-ro",
        servers=[("pod-a", streaming()), ("pod-b", streaming(status=None))],
    )
    reads = make(FakePool("primary"), ro)
    before = routed("primary"), routed("replica"), refused("lms-db-ro:5432/lms")
    served = [await reads.fetchval("SELECT 1") for _ in range(4)]
    assert served == ["pod-a", "primary", "pod-a", "primary"]
    assert routed("primary") - before[0] == 2 and routed("replica") - before[1] == 2
    assert refused("lms-db-ro:5432/lms") - before[2] == 2
    # The cut-off pod's connections were closed each time, so the pool may open one elsewhere;
    # the replica as a whole stays in use.
    assert ro.conns[1].terminated and reads.replicas[0].healthy and ro.out == 0
    pod_a = ro.conns[0]
    assert pod_a.verdict is not None and pod_a.verdict.unfit is None


async def test_a_connection_is_judged_again_once_its_verdict_is_a_second_old() -> None:
    pool = FakePool("r1")
    reads = make(FakePool("primary"), pool)
    assert [await reads.fetchval("SELECT 1") for _ in range(3)] == ["r1"] * 3
    conn = pool.conns[0]
    assert conn.health_checks == 1  # judged once, trusted for the second that follows
    assert conn.verdict is not None
    conn.verdict = Verdict(conn.verdict.checked_at - 1.5, conn.verdict.fresh_as_of, None)
    conn.health = streaming(status="waiting")  # its receiver lost the primary meanwhile
    assert await reads.fetchval("SELECT 1") == "primary"
    assert conn.health_checks == 2 and conn.terminated


async def test_a_server_behind_the_samples_serves_no_read() -> None:
    """Its receiver says streaming, but it has not replayed the primary's position (a link
    that silently stalls): the samples show it, not the replica."""
    pool = FakePool("r1", servers=[("r1", streaming(replayed=99))])
    reads = make(FakePool("primary"), pool)
    assert await reads.fetchval("SELECT 1") == "primary"
    assert pool.conns[0].terminated


async def test_verification_reads_only_where_fresh_enough_for_its_bound() -> None:
    """A replica 3 s behind serves reads that allow 5 s, not those that allow 2 s, and its
    connection stays open for the former."""
    pool = FakePool("r1", servers=[("r1", streaming(replayed=100))])
    reads = make(FakePool("primary"), pool, LMS_REPLICA_MAX_LAG="5")
    now = time.monotonic()
    reads.clock = WalClock(10)
    reads.clock.add(now - 3.0, 100)
    reads.clock.add(now - 0.5, 200)
    reads.replicas[0].set_health(True, 3.0, "healthy")
    assert await reads.fetchval("SELECT 1") == "r1"
    verification = reads.within(2)
    assert verification.max_lag == 2 and reads.within(60).max_lag == 5
    assert await verification.fetchval("SELECT 1") == "primary"
    assert not pool.conns[0].terminated
    assert await reads.fetchval("SELECT 1") == "r1"


# -- freshness and verdicts


def test_freshness_is_the_newest_sample_the_replica_has_replayed() -> None:
    clock = WalClock(keep_seconds=10)
    clock.add(100.0, 1_000)
    clock.add(101.0, 1_000)  # an idle primary: the same position
    clock.add(102.0, 2_000)
    clock.add(103.0, 3_000)
    assert clock.fresh_as_of(3_500) == 103.0
    assert clock.fresh_as_of(2_999) == 102.0
    assert clock.fresh_as_of(1_000) == 101.0
    assert clock.fresh_as_of(999) is None and clock.fresh_as_of(None) is None
    clock.add(112.5, 3_000)  # samples older than keep_seconds are dropped, never the newest
    assert clock.fresh_as_of(2_000) is None and clock.newest == 112.5
    lone = WalClock(keep_seconds=1)
    lone.add(5.0, 7)
    assert lone.fresh_as_of(7) == 5.0


def _row(**row: Any) -> dict[str, Any]:
    return {
        "in_recovery": True,
        "replayed": 100,
        "receiver_pid": 1,
        "receiver_status": "streaming",
    } | row


@pytest.mark.parametrize(
    ("row", "unfit"),
    [
        (_row(), None),
        # Cut off from the primary with everything it received replayed: it looks current,
        # and is not fit to serve.
        (_row(receiver_pid=None, receiver_status=None), "not streaming: no WAL receiver"),
        (_row(receiver_status="waiting"), "not streaming: its WAL receiver is waiting"),
        (_row(receiver_status="starting"), "not streaming: its WAL receiver is starting"),
        (_row(receiver_status=None), HIDDEN_STATUS),  # a role without pg_read_all_stats
        (_row(in_recovery=False, replayed=None), "not in recovery"),
    ],
)
def test_verdicts(row: dict[str, Any], unfit: str | None) -> None:
    clock = WalClock(keep_seconds=10)
    clock.add(50.0, 100)
    verdict = verdict_of(row, clock, checked_at=50.5)
    if unfit is None:
        assert verdict.unfit is None and verdict.refusal(1, 50.5) is None
    else:
        assert verdict.unfit is not None and verdict.unfit.startswith(unfit)
        assert verdict.refusal(3600, 50.5) == verdict.unfit
    if row["in_recovery"]:
        assert verdict.lag(50.5) == 0.5  # however fit, the lag is the samples'


def test_lag_grows_with_time_until_a_newer_sample_is_replayed() -> None:
    clock = WalClock(keep_seconds=10)
    clock.add(10.0, 100)
    clock.add(11.0, 200)
    verdict = verdict_of(_row(replayed=150), clock, checked_at=11.1)
    assert verdict.lag(11.1) == pytest.approx(1.1) and verdict.lag(13.0) == pytest.approx(3.0)
    assert verdict.refusal(5, 13.0) is None
    assert verdict.refusal(2, 13.0) == "lags 3.0 s (at most 2 s allowed)"
    behind = verdict_of(_row(replayed=50), clock, checked_at=11.1)
    assert behind.lag(11.1) is None and behind.refusal(3600, 11.1) is not None


class Checker(FakeConn):
    """The check's own connection to a replica: its answers, in order."""

    def __init__(self, answers: list[object]) -> None:
        super().__init__("checker", None, streaming())
        self.answers = answers

    async def fetchrow(self, query: str, *args: object, timeout: float | None = None) -> Any:  # noqa: ASYNC109
        assert query == HEALTH_SQL
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer


class Primary:
    """The primary's sampling connection: its WAL position."""

    def __init__(self, position: int | BaseException) -> None:
        self.position = position

    def is_closed(self) -> bool:
        return False

    def terminate(self) -> None:
        pass

    async def fetchval(self, query: str, *args: object, timeout: float | None = None) -> Any:  # noqa: ASYNC109
        if isinstance(self.position, BaseException):
            raise self.position
        return self.position


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> None:
    """A healthy replica's pool, opened by the check, answers with its name."""

    async def open_pool(*args: object, **kwargs: object) -> FakePool:
        return FakePool("opened")

    monkeypatch.setattr(replicas, "open_pool", open_pool)
    monkeypatch.setattr(replicas, "LAG_RECHECK_SECONDS", 0.0)


def healthy_gauge(label: str) -> float | None:
    return REGISTRY.get_sample_value("lms_db_replica_healthy", {"replica": label})


def lag_gauge(label: str) -> float | None:
    return REGISTRY.get_sample_value("lms_db_replica_lag_seconds", {"replica": label})


@pytest.mark.parametrize(
    ("answers", "healthy", "lag_known"),
    [
        ([streaming(replayed=100)], True, True),
        ([streaming(replayed=150)], True, True),
        # Behind the sample just taken, then caught up a moment later: a write in flight.
        ([streaming(replayed=99), streaming(replayed=100)], True, True),
        ([streaming(replayed=99), streaming(replayed=99)], False, False),
        # Zero apparent lag (replayed all the primary has), but its receiver is gone.
        ([streaming(replayed=100, status=None)], False, True),
        ([_row(in_recovery=False, replayed=None)], False, False),  # a primary, not a replica
        ([ConnectionRefusedError(111, "Connection refused")], False, False),
    ],
)
async def test_health_verdicts(
    opened: None, answers: list[object], healthy: bool, lag_known: bool
) -> None:
    reads = ReadReplicas(
        load_settings(
            {
                "DATABASE_URL": "postgresql://primary/lms",
                "LMS_DATABASE_REPLICA_URLS": "postgresql://r1/lms",
                "LMS_REPLICA_MAX_LAG": "5",
            }
        ),
        FakePool("primary"),  # type: ignore[arg-type]
    )
    reads._primary_checker = Primary(100)  # type: ignore[assignment]
    replica = reads.replicas[0]
    replica._checker = Checker(list(answers))  # type: ignore[assignment]
    await reads.check_all()
    assert replica.healthy == healthy
    assert (replica.lag is not None) == lag_known
    if lag_known:
        assert replica.lag is not None and 0.0 <= replica.lag < 1.0
    assert healthy_gauge("r1:5432/lms") == (1.0 if healthy else 0.0)
    shown = lag_gauge("r1:5432/lms")
    assert shown == replica.lag if lag_known else shown != shown  # NaN: unknown
    assert (replica.pool is not None) == healthy
    assert (await reads.fetchval("SELECT 1")) == ("opened" if healthy else "primary")


async def test_without_the_primary_to_sample_replicas_age_out(opened: None) -> None:
    """No sample can be taken (the primary is unreachable from here): the replica's last proof
    of freshness ages, and past LMS_REPLICA_MAX_LAG it is skipped however current it says it is."""
    reads = ReadReplicas(
        load_settings(
            {
                "DATABASE_URL": "postgresql://primary/lms",
                "LMS_DATABASE_REPLICA_URLS": "postgresql://r1/lms",
                "LMS_REPLICA_MAX_LAG": "2",
            }
        ),
        FakePool("primary"),  # type: ignore[arg-type]
    )
    reads.clock.add(time.monotonic() - 3.0, 100)
    reads._primary_checker = Primary(ConnectionResetError(104, "reset"))  # type: ignore[assignment]
    replica = reads.replicas[0]
    replica._checker = Checker([streaming(replayed=100), streaming(replayed=100)])  # type: ignore[assignment]
    await reads.check_all()
    assert not replica.healthy and replica.lag is not None and replica.lag >= 3.0
    assert replica.why.startswith("lags 3.")


# -- the settings


def test_replica_settings() -> None:
    assert load_settings({}).database_replica_urls == ()
    assert load_settings({}).replica_max_lag_seconds == 5
    assert load_settings({}).verify_max_lag_seconds == 5
    assert load_settings({"LMS_VERIFY_MAX_LAG": "2"}).verify_max_lag_seconds == 2
    # The setting's documentation (the README's table) states the bound with the real max-age.
    doc = Settings.__dataclass_fields__["verify_max_lag_seconds"].metadata["spec"].doc
    assert f"`max-age` ({VERIFY_MAX_AGE} s)" in doc
    settings = load_settings(
        {
            "LMS_DATABASE_REPLICA_URLS": " postgresql://u:p@r1:5432/lms , postgres://r2/lms,",
            "LMS_REPLICA_MAX_LAG": "2",
        }
    )
    assert settings.database_replica_urls == ("postgresql://u:p@r1:5432/lms", "postgres://r2/lms")
    assert settings.replica_max_lag_seconds == 2


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"LMS_DATABASE_REPLICA_URLS": "postgresql://r1/lms,mysql://u:hunter2@r2/lms"},
            "LMS_DATABASE_REPLICA_URLS must be a postgresql://... or postgres://... URL, got "
            "'mysql://u:***@r2/lms'",
        ),
        ({"LMS_REPLICA_MAX_LAG": "0"}, "LMS_REPLICA_MAX_LAG must be between 1 and 3600, got 0"),
        ({"LMS_VERIFY_MAX_LAG": "61"}, "LMS_VERIFY_MAX_LAG must be between 1 and 60, got 61"),
    ],
)
def test_bad_replica_settings_are_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(StartupError) as caught:
        load_settings(env)
    assert str(caught.value) == message
