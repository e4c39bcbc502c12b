"""What every wrk-driven bench script shares: its load options and its entry point (the checks
before a run, and one line and an exit status for each way a run can fail)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import asyncpg
import httpx

WRK_MISSING = "wrk is not installed: apt-get install wrk (Debian/Ubuntu) or brew install wrk"
# Debian and Ubuntu ship pgbench with the server (postgresql-15 on Debian 12), not the client
# package. The bench does not install it: that package also creates and starts a cluster.
PGBENCH_MISSING = (
    "pgbench is not installed: on Debian/Ubuntu it comes with the PostgreSQL server package "
    "(apt-get install postgresql-15, or the major version you run); on macOS brew install libpq"
)
APT_INSTALL_TIMEOUT = 600.0


class BenchError(Exception):
    """A run that cannot give a meaningful figure (a failed probe, a server that will not start)."""


def add_load_arguments(
    parser: argparse.ArgumentParser,
    *,
    duration: int,
    duration_help: str,
    connections: int,
    timeout: int | None,
) -> None:
    """--url, --duration, --connections, --threads, --timeout and --serve."""
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="API base URL")
    parser.add_argument(
        "--duration", type=int, default=duration, help=f"{duration_help} ({duration})"
    )
    parser.add_argument(
        "--connections", type=int, default=connections, help=f"open connections ({connections})"
    )
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (2)")
    default = "wrk's default: 2" if timeout is None else f"default {timeout}"
    parser.add_argument(
        "--timeout",
        type=int,
        default=timeout,
        metavar="SECONDS",
        help=f"wrk's per-request timeout ({default}); a timed-out request fails the run",
    )
    parser.add_argument(
        "--serve",
        action="store_true",
        help="start `lms serve` on a free port with this environment, and stop it afterwards",
    )


def apt_install(package: str) -> bool:
    """Install a Debian package when this process may (root, apt-get present); True once it is.
    A fresh machine may have no package lists: one `apt-get update`, then one more try."""
    if os.name != "posix" or os.geteuid() != 0 or shutil.which("apt-get") is None:
        return False
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", package]
    for attempt in ([install], [["apt-get", "update"], install]):
        print(f"installing {package}: {' && '.join(' '.join(c) for c in attempt)}", file=sys.stderr)
        for command in attempt:
            try:
                done = subprocess.run(
                    command, env=env, capture_output=True, text=True, timeout=APT_INSTALL_TIMEOUT
                )
            except (OSError, subprocess.TimeoutExpired):
                return False
            if done.returncode != 0:
                break
        else:
            return True
    return False


def ensure_wrk() -> None:
    """wrk on PATH, installed with apt-get when we are root on Debian/Ubuntu; else a BenchError
    naming the package. Called before anything is seeded or started."""
    if shutil.which("wrk") is None and not (apt_install("wrk") and shutil.which("wrk")):
        raise BenchError(WRK_MISSING)


def ensure_pgbench() -> None:
    if shutil.which("pgbench") is None:
        raise BenchError(PGBENCH_MISSING)


def run_main(
    name: str,
    args: argparse.Namespace,
    run: Callable[[argparse.Namespace], int],
    *,
    needs_wrk: bool = True,
    problem: str | None = None,
) -> int:
    """Check the load options (and `problem`, a script's own complaint about its arguments), then
    run; failures print `<name>: error: ...` and give status 1 (2 for bad arguments)."""
    if needs_wrk:
        try:
            ensure_wrk()
        except BenchError as exc:
            print(f"{name}: error: {exc}", file=sys.stderr)
            return 2
    if args.duration < 1 or args.threads < 1 or args.connections < args.threads:
        problem = "need --duration >= 1 and --connections >= --threads >= 1"
    if problem is not None:
        print(f"{name}: error: {problem}", file=sys.stderr)
        return 2
    try:
        return run(args)
    except BenchError as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
    except httpx.HTTPError as exc:
        hint = "" if args.serve else f" (is the API running at {args.url}? or pass --serve)"
        print(f"{name}: error: {type(exc).__name__}: {exc}{hint}", file=sys.stderr)
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"{name}: error: {type(exc).__name__}: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        return 130
    return 1


# The end of every script's done(): one line with wrk's totals and latency percentiles, as JSON,
# which run_wrk() reads. Inserted into the scripts' templates as a value (not re-formatted).
WRK_REPORT_LUA = """\
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"duration_us":%d,"requests":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"min":%d,"mean":%.1f,"stdev":%.1f,"max":%d,' ..
    '"p50":%d,"p75":%d,"p90":%d,"p99":%d,"p999":%d}}\\n',
    summary.duration, summary.requests, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency.stdev, latency.max,
    latency:percentile(50), latency:percentile(75), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9)))"""


class Sampler(Protocol):
    """Measures something (CPU use) while wrk runs; `watch` is given wrk's pid."""

    def start(self) -> None: ...
    def watch(self, pid: int) -> None: ...
    def stop(self) -> dict[str, Any] | None: ...


@dataclass
class WrkOutcome:
    result: dict[str, Any]  # the BENCH_RESULT line of WRK_REPORT_LUA
    output: str  # everything wrk printed
    measured: dict[str, Any] | None  # what the sampler saw, if one was given


# wrk 4.2 (Debian's) now and then dies of SIGSEGV with a Lua script that paces its requests
# (seen once in some twenty runs of the pacing test): such a run measured nothing, so it is run
# again, once, after a pause longer than any player's heartbeat interval.
WRK_CRASH_PAUSE_SECONDS = 1.5


def run_wrk(script: Path, url: str, **options: Any) -> WrkOutcome:
    try:
        return _run_wrk_once(script, url, **options)
    except WrkCrashed as crash:
        print(f"{crash}; running wrk again", file=sys.stderr)
        time.sleep(WRK_CRASH_PAUSE_SECONDS)
        return _run_wrk_once(script, url, **options)


class WrkCrashed(BenchError):
    """wrk was killed by a signal of its own (not by us): nothing was measured."""


def _run_wrk_once(
    script: Path,
    url: str,
    *,
    threads: int,
    connections: int,
    duration: int,
    timeout: int | None,
    sampler: Sampler | None = None,
) -> WrkOutcome:
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration}s",
        "--latency",
        *([f"--timeout={timeout}s"] if timeout else []),
        "-s",
        str(script),
        url,
    ]
    print(f"running: {' '.join(command)}", file=sys.stderr)
    if sampler is not None:
        sampler.start()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if sampler is not None:
        sampler.watch(proc.pid)
    try:
        stdout, stderr = proc.communicate(timeout=duration + 120)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise BenchError("wrk did not finish within its duration plus 120 s") from None
    measured = sampler.stop() if sampler is not None else None
    output = stdout + stderr
    if proc.returncode == -signal.SIGSEGV:
        raise WrkCrashed(f"wrk died of SIGSEGV: {output.strip()}")
    if proc.returncode != 0:
        raise BenchError(f"wrk exited with status {proc.returncode}: {output.strip()}")
    match = re.search(r"^BENCH_RESULT (\{.*\})$", stdout, re.MULTILINE)
    if not match:
        raise BenchError(f"wrk printed no result line:\n{output}")
    return WrkOutcome(json.loads(match.group(1)), output, measured)


async def search_fills_done(conn: asyncpg.Connection, within: float = 120.0) -> None:
    """Wait until no server is keeping a common query's top (lms_0016: filled in the
    background by whichever server first ranked the query): no statement of a fill has run on
    any connection for three looks in a row, 0.1 s apart, or `within` seconds have passed."""
    quiet = 0
    deadline = time.monotonic() + within
    while quiet < 3 and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        filling = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE pid <> pg_backend_pid() "
            "AND state <> 'idle' AND (query ILIKE '%search_top%' OR query ILIKE '%advisory%')"
        )
        quiet = 0 if filling else quiet + 1
