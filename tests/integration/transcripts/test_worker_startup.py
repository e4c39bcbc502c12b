"""`lms worker` warms the model up before it is ready: its metrics port (the readiness probe of
compose and Kubernetes) opens only after the warm-up, so no job meets a cold model."""

from __future__ import annotations

import asyncio
import socket
import time
from datetime import UTC, datetime
from pathlib import Path

from lms.netutil import free_port
from lms.settings import Settings
from tests.integration.faults.processes import json_lines, log_tail, service_env, spawn, stop


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), 0.2).close()
    except OSError:
        return False
    return True


def _when(entry: dict[str, object]) -> float:
    stamp = str(entry["ts"]).removesuffix("Z")
    return datetime.fromisoformat(stamp).replace(tzinfo=UTC).timestamp()


async def test_the_metrics_port_opens_only_once_the_model_is_warm(
    settings: Settings, tmp_path: Path
) -> None:
    assert settings.database_url and settings.nats_url and settings.jwt_secret
    port = free_port()
    env = service_env(
        database_url=settings.database_url,
        nats_url=settings.nats_url,
        data_dir=settings.data_dir,
        jwt_secret=settings.jwt_secret,
        LMS_WORKER_METRICS_PORT=str(port),
    )
    log = tmp_path / "worker.log"
    worker = spawn(env, "worker", log=log)
    try:
        deadline = time.monotonic() + 120
        while not _accepts(port):
            assert worker.poll() is None, log_tail(log)
            assert time.monotonic() < deadline, log_tail(log)
            await asyncio.sleep(0.02)
        opened = time.time()
    finally:
        stop(worker)
    entries = json_lines(log)
    (warm,) = [e for e in entries if "warm_up_seconds" in e]
    assert warm["warm_up_seconds"] > 0
    assert warm["concurrency"] == 1  # the decoding table's for the bundled model on a CPU
    assert "decoding auto: sequential (table row cpu/default)" in str(warm["msg"])
    # Logged (after the warm-up) before the port answered: the log's clock is the same machine's.
    assert _when(warm) <= opened + 0.001
