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
    print("connected", flush=True)
    sys.stdin.readline()  # the sampler is watching
    started, queries = time.process_time(), 0
    while time.process_time() - started < 0.4 or queries < 25:
        await conn.fetchval("SELECT count(*) FROM generate_series(1, 200000)")
        queries += 1
        sum(range(300000))
    print("done", flush=True)
    await asyncio.sleep(60)  # alive (and connected) until the sampler has looked

asyncio.run(main())
"""
# Busy for a set amount of CPU, not of time, and only once the sampler watches: with the
# suite's other tests on the machine, 1.5 s of wall time was once 0.09 s of the client's CPU.


def burn(
    cpu_seconds: float,
    tid: list[int],
    go: threading.Event,
    burnt: threading.Event,
    release: threading.Event,
) -> None:
    tid.append(threading.get_native_id())
    go.wait(60)
    started = time.thread_time()
    while time.thread_time() - started < cpu_seconds:
        sum(range(1000))
    burnt.set()
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
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    tid: list[int] = []
    go, burnt, release = threading.Event(), threading.Event(), threading.Event()
    receiver = threading.Thread(target=burn, args=(0.8, tid, go, burnt, release))
    receiver.start()
    try:
        assert worker.stdin is not None and worker.stdout is not None
        assert worker.stdout.readline() == b"connected\n"  # its backend's port is the worker's
        while not tid:
            time.sleep(0.01)
        sampler = learning.CpuSampler(database, None)
        sampler.watch_delivery(worker.pid, tid)
        sampler.start()
        worker.stdin.write(b"go\n")
        worker.stdin.flush()
        go.set()
        assert worker.stdout.readline() == b"done\n"
        assert burnt.wait(60)
        cpu = sampler.stop()
    finally:
        worker.kill()
        worker.wait()
        go.set()
        release.set()
        receiver.join()
    assert cpu is not None
    seconds = cpu["cpu_seconds"]
    assert seconds.get("delivery_worker", 0) > 0.1, seconds
    assert seconds.get("postgres_delivery", 0) > 0.1, seconds
    assert seconds.get("delivery_receivers", 0) > 0.3, seconds
    assert seconds.get("bench", 0) < seconds["delivery_receivers"], seconds
