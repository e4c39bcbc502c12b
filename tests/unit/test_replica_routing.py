"""Read replicas without servers: which handlers may read one, the round-robin, the skipped
replica, the retry on the primary of a read whose replica failed (and no retry of one that failed
on its own account), the health verdicts, and the two settings. The real streaming replica is in
tests/integration/test_read_replicas.py."""

from __future__ import annotations

import ast
from collections.abc import Generator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from prometheus_client import REGISTRY

from lms.db import replicas
from lms.db.replicas import ReadReplicas, Replica, failed_on_replica
from lms.errors import StartupError
from lms.observability.tally import TALLY
from lms.settings import load_settings

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "lms"

# Every place that reads a replica, reviewed: anonymous catalog pages and searches, the course
# page for anonymous visitors, certificate verification. Adding one means adding it here.
REPLICA_READERS = {
    ("domain/courses/controllers.py", "list_courses"),
    ("domain/courses/controllers.py", "get_course"),
    ("domain/certificates/controllers.py", "verify"),
    # The same three requests in the hot lane, which mirrors those handlers.
    ("api/hot_lane.py", "catalog"),
    ("api/hot_lane.py", "course"),
    ("api/hot_lane.py", "verify"),
}


def test_only_the_reviewed_handlers_ask_for_the_replicas() -> None:
    found = set()
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for function in ast.walk(tree):
            if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(function):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "replica_reads"
                ):
                    found.add((str(path.relative_to(PACKAGE)), function.name))
    assert found == REPLICA_READERS


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


# -- routing, with pools that answer with their name


class FakeConn:
    def __init__(self, name: str, fail: BaseException | None) -> None:
        self.name, self.fail = name, fail

    async def fetchrow(
        self,
        query: str,
        *args: object,
        timeout: float | None = None,  # noqa: ASYNC109 - asyncpg's interface
    ) -> Any:
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
    def __init__(
        self,
        name: str,
        *,
        fail: BaseException | None = None,
        refuse: BaseException | None = None,
    ) -> None:
        self.name, self.fail, self.refuse = name, fail, refuse
        self.out = 0

    async def _get(self) -> FakeConn:
        if self.refuse is not None:
            raise self.refuse
        self.out += 1
        return FakeConn(self.name, self.fail)

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


def make(primary: FakePool, *pools: FakePool) -> ReadReplicas:
    urls = ",".join(f"postgresql://u:secret@{p.name}:5432/lms" for p in pools)
    reads = ReadReplicas(load_settings({"LMS_DATABASE_REPLICA_URLS": urls}), primary)  # type: ignore[arg-type]
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


# -- health verdicts


@pytest.fixture
def measured(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """What each health query finds, in order: (in recovery, lag) or an exception."""
    answers: list[object] = []

    async def measure(replica: Replica) -> tuple[bool, float | None]:
        answer = answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer  # type: ignore[return-value]

    async def open_pool(*args: object, **kwargs: object) -> FakePool:
        return FakePool("opened")

    monkeypatch.setattr(replicas, "_measure", measure)
    monkeypatch.setattr(replicas, "open_pool", open_pool)
    monkeypatch.setattr(replicas, "LAG_RECHECK_SECONDS", 0.0)
    return answers


def healthy_gauge(label: str) -> float | None:
    return REGISTRY.get_sample_value("lms_db_replica_healthy", {"replica": label})


def lag_gauge(label: str) -> float | None:
    return REGISTRY.get_sample_value("lms_db_replica_lag_seconds", {"replica": label})


@pytest.mark.parametrize(
    ("answers", "healthy", "lag"),
    [
        ([(True, 0.0)], True, 0.0),
        ([(True, 4.5)], True, 4.5),
        # The first write after a quiet spell looks as old as the quiet, until replayed.
        ([(True, 600.0), (True, 0.0)], True, 0.0),
        ([(True, 6.0), (True, 7.0)], False, 7.0),
        ([(True, None), (True, None)], False, None),  # behind, and has replayed nothing yet
        ([(False, None)], False, None),  # a primary, not a replica
        ([ConnectionRefusedError(111, "Connection refused")], False, None),
    ],
)
async def test_health_verdicts(
    measured: list[object], answers: list[object], healthy: bool, lag: float | None
) -> None:
    measured.extend(answers)
    reads = ReadReplicas(
        load_settings(
            {"LMS_DATABASE_REPLICA_URLS": "postgresql://r1/lms", "LMS_REPLICA_MAX_LAG": "5"}
        ),
        FakePool("primary"),  # type: ignore[arg-type]
    )
    await reads.check_all()
    replica = reads.replicas[0]
    assert (replica.healthy, replica.lag) == (healthy, lag) and not measured
    assert healthy_gauge("r1:5432/lms") == (1.0 if healthy else 0.0)
    shown = lag_gauge("r1:5432/lms")
    assert shown == lag if lag is not None else shown != shown  # NaN: unknown
    assert (replica.pool is not None) == healthy
    assert (await reads.fetchval("SELECT 1")) == ("opened" if healthy else "primary")


# -- the settings


def test_replica_settings() -> None:
    assert load_settings({}).database_replica_urls == ()
    assert load_settings({}).replica_max_lag_seconds == 5
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
    ],
)
def test_bad_replica_settings_are_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(StartupError) as caught:
        load_settings(env)
    assert str(caught.value) == message
