"""The bench counts the event delivery's CPU apart (bench.learning.CpuSampler.watch_delivery):
the worker's process group, the PostgreSQL backends it is the client of, and the receiver
threads of the bench's own process."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from urllib.parse import urlsplit

import pytest
from bench import learning

BUSY_CLIENT = """
import asyncio, sys, time
import asyncpg

async def main():
    conn = await asyncpg.connect(sys.argv[1])
    until = time.monotonic() + 1.5
    while time.monotonic() < until:
        await conn.fetchval("SELECT count(*) FROM generate_series(1, 200000)")
        sum(range(300000))
    print("done", flush=True)
    await asyncio.sleep(60)  # alive (and connected) until the sampler has looked

asyncio.run(main())
"""


def burn(seconds: float, tid: list[int], release: threading.Event) -> None:
    tid.append(threading.get_native_id())
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        sum(range(1000))
    release.wait(60)  # alive until the sampler has looked, as the bench's receivers are


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_the_workers_process_its_backends_and_the_receivers_are_counted_apart(
    scratch_database: str,
) -> None:
    database_url = scratch_database
    database = urlsplit(database_url).path.lstrip("/")
    worker = subprocess.Popen(
        [sys.executable, "-c", BUSY_CLIENT, database_url],
        start_new_session=True,
        stdout=subprocess.PIPE,
    )
    tid: list[int] = []
    release = threading.Event()
    receiver = threading.Thread(target=burn, args=(1.5, tid, release))
    receiver.start()
    while not tid:
        time.sleep(0.01)
    sampler = learning.CpuSampler(database, None)
    sampler.watch_delivery(worker.pid, tid)
    time.sleep(0.5)  # connected: its backend's port is the worker's
    sampler.start()
    try:
        assert worker.stdout is not None
        assert worker.stdout.readline() == b"done\n"
        time.sleep(1.6)  # the receiver's burn is over too
        cpu = sampler.stop()
    finally:
        worker.kill()
        worker.wait()
        release.set()
        receiver.join()
    assert cpu is not None
    seconds = cpu["cpu_seconds"]
    assert seconds.get("delivery_worker", 0) > 0.1, seconds
    assert seconds.get("postgres_delivery", 0) > 0.1, seconds
    assert seconds.get("delivery_receivers", 0) > 0.3, seconds
    assert seconds.get("bench", 0) < seconds["delivery_receivers"], seconds
