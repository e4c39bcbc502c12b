"""`lms dev` with nothing configured: embedded PostgreSQL and NATS start, the API gets ready,
other `lms` commands share the running services, and every stop leaves nothing behind."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from lms.netutil import free_port, wait_until
from tests.helpers import child_env, processes_using, run_lms, wait_ready

pytestmark = pytest.mark.slow

READY_TIMEOUT = 120


def _start_dev(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    # Its own process group, like `make run` in a terminal: signals go to the whole group.
    return subprocess.Popen(
        [sys.executable, "-m", "lms", "dev"],
        env=child_env(LMS_DATA_DIR=str(data_dir), LMS_PORT=str(port)),
        stdout=subprocess.DEVNULL,
        stderr=(data_dir.parent / f"dev-{port}.log").open("ab"),
        start_new_session=True,
    )


def _kill_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "lms-data"
    yield path
    # Whatever happened in the test, leave no server running.
    for pid in _pids_using(path):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def test_dev_starts_shares_and_stops_cleanly(data_dir: Path) -> None:
    port = free_port()
    dev = _start_dev(data_dir, port)
    try:
        assert wait_ready(port, READY_TIMEOUT), (data_dir.parent / f"dev-{port}.log").read_text()[
            -3000:
        ]
        assert any("postgres" in p for p in processes_using(data_dir))
        assert any("nats-server" in p for p in processes_using(data_dir))

        # Another command with the same data dir reuses the running services...
        admin = run_lms(
            "create-admin",
            "--email",
            "a@b.test",
            "--password",
            "long-enough-pw",
            LMS_DATA_DIR=str(data_dir),
        )
        assert admin.returncode == 0, admin.stderr
        # ...and leaves them running for `lms dev`.
        assert wait_ready(port, 5)
        # LMS_STRIPE_SECRET_KEY unset: a local Stripe server, with the API's webhook on it.
        stripe_url = _local_stripe_url(data_dir.parent / f"dev-{port}.log")
        assert httpx.get(f"{stripe_url}/v1/balance", auth=("sk_test_x", "")).status_code == 200
    finally:
        _kill_group(dev, signal.SIGTERM)
        dev.wait(timeout=90)
    assert dev.returncode == 0
    assert wait_until(lambda: not processes_using(data_dir), 10), processes_using(data_dir)
    with pytest.raises(httpx.ConnectError):  # stopped with the rest
        httpx.get(f"{stripe_url}/v1/balance")


def _local_stripe_url(log: Path) -> str:
    found = re.search(
        r"local Stripe \(localstripe[^)]*\) on (http://127\.0\.0\.1:\d+)", log.read_text()
    )
    assert found, log.read_text()[-3000:]
    return found.group(1)


def test_dev_recovers_after_kill_9_of_everything(data_dir: Path) -> None:
    port = free_port()
    dev = _start_dev(data_dir, port)
    assert wait_ready(port, READY_TIMEOUT)
    # kill -9 the group and the servers it started (they run in sessions of their own).
    _kill_group(dev, signal.SIGKILL)
    dev.wait(timeout=10)
    for pid in _pids_using(data_dir):
        os.kill(pid, signal.SIGKILL)
    assert wait_until(lambda: not processes_using(data_dir), 10)

    dev = _start_dev(data_dir, port)
    try:
        assert wait_ready(port, READY_TIMEOUT), (data_dir.parent / f"dev-{port}.log").read_text()[
            -3000:
        ]
    finally:
        _kill_group(dev, signal.SIGINT)  # Ctrl-C
        dev.wait(timeout=90)
    assert dev.returncode == 0
    assert wait_until(lambda: not processes_using(data_dir), 10), processes_using(data_dir)


def _pids_using(path: Path) -> list[int]:
    needle = str(path).encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if needle in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids
