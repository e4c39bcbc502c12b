"""A replica's pooled connections, on real asyncpg pools: each keeps the verdict on its own server
(the pool hands out proxies, so the verdict lives on the connection behind them), and one whose
server must not serve is closed and replaced, the read answered by the primary. The "replica"
here is a primary under a replica's name (not in recovery: unfit), which is what a balancing
address that reached the wrong server would give."""

from __future__ import annotations

import time

import asyncpg
from prometheus_client import REGISTRY

from lms.db.replica_freshness import ReplicaConnection, Verdict
from lms.db.replicas import ReadReplicas
from lms.observability.tally import TALLY
from lms.settings import load_settings


def on_primary() -> float:
    TALLY.flush()
    return REGISTRY.get_sample_value("lms_db_routed_reads_total", {"target": "primary"}) or 0.0


async def test_a_connection_to_a_server_unfit_to_serve_is_closed_and_replaced(
    database_url: str, db_pool: asyncpg.Pool
) -> None:
    reads = ReadReplicas(
        load_settings(
            {
                "DATABASE_URL": database_url,
                "LMS_DATABASE_REPLICA_URLS": database_url,
                "LMS_DB_POOL_MIN": "1",
                "LMS_DB_POOL_MAX": "1",
            }
        ),
        db_pool,
    )
    try:
        # One check, by hand (no background task to undo what the test sets up).
        await reads.check_all()
        replica = reads.replicas[0]
        # The process's own check sees what it is: a primary.
        assert not replica.healthy and replica.why.startswith("not in recovery")
        # As if that check had reached a healthy pod behind the same address.
        assert await reads._open_pool(replica) and replica.pool is not None
        replica.set_health(True, 0.0, "healthy")
        pool = replica.pool
        async with pool.acquire() as conn:
            first_pid = conn.get_server_pid()
            assert isinstance(conn._con, ReplicaConnection) and conn.verdict is None

        before = on_primary()
        assert await reads.fetchval("SELECT 'answered'") == "answered"
        assert on_primary() == before + 1
        async with pool.acquire() as conn:
            # Closed after its own server answered "not in recovery", and replaced.
            assert conn.get_server_pid() != first_pid
            assert conn.verdict is None
            verdict = Verdict(time.monotonic(), time.monotonic(), None)
            conn.remember(verdict)
            assert conn.verdict is verdict  # kept on the connection behind the proxy
        async with pool.acquire() as conn:
            assert conn.verdict is verdict
        assert replica.healthy  # one connection's server does not speak for the others
    finally:
        await reads.stop()
