"""A real streaming replica for the replica tests: a PostgreSQL primary of the test's own from the
embedded binaries, a standby made of it with pg_basebackup (standby.signal and primary_conninfo
written by -R, a replication slot so it can fall behind and catch up), `lms serve` with
DATABASE_URL on the primary and LMS_DATABASE_REPLICA_URLS on the standby, and a TCP link between
the standby's WAL receiver and the primary that a test can stall or cut.

Which server ran a statement is read from the servers themselves: both log every statement with
its parameters (log_statement=all), so a course id, a serial or a search word that a request sends
shows up in the log of the server that answered it, and only there."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
from prometheus_client.parser import text_string_to_metric_families

from lms.domain.auth.logins import open_login
from lms.embedded import POSTGRES_SYSTEM_USER, EmbeddedPostgres, _identity
from lms.netutil import free_port
from lms.settings import Settings
from tests.helpers import eventually, wait_ready
from tests.integration.faults.processes import log_tail, service_env, spawn, stop

SLOT = "lms_test_replica"
SEARCH_WORD = "zanzibarian"


class StatementLog:
    """A server's log, where log_statement=all writes each statement and its parameters."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def count(self, needle: str) -> int:
        try:
            return self.path.read_text(errors="replace").count(needle)
        except FileNotFoundError:
            return 0


class Standby:
    """A hot standby made with pg_basebackup from `primary`, started and stopped by the test."""

    def __init__(self, folder: Path, primary_port: int) -> None:
        # Extra server settings (-c name=value) for start().
        self.settings: dict[str, str] = {}
        self.folder = folder
        self.pgdata = folder / "postgres"
        self.log = StatementLog(folder / "postgres.log")
        self.port = free_port()
        self.primary_port = primary_port
        self.user = POSTGRES_SYSTEM_USER if os.geteuid() == 0 else None
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/lms"

    @property
    def label(self) -> str:
        return f"127.0.0.1:{self.port}/lms"

    def make(self) -> None:
        self.folder.mkdir(parents=True)
        if self.user is not None:
            uid, gid, _ = _identity(self.user)
            os.chown(self.folder, uid or 0, gid or 0)
        bin_dir = EmbeddedPostgres.bin_dir()
        uid, gid, groups = _identity(self.user)
        made = subprocess.run(
            [
                str(bin_dir / "pg_basebackup"),
                *("-h", "127.0.0.1", "-p", str(self.primary_port), "-U", "postgres"),
                *("-D", str(self.pgdata), "-X", "stream", "-R", "-C", "-S", SLOT),
                "--checkpoint=fast",
            ],
            check=False,
            capture_output=True,
            timeout=120,
            user=uid,
            group=gid,
            extra_groups=groups,
        )
        assert made.returncode == 0, made.stderr.decode(errors="replace")
        assert (self.pgdata / "standby.signal").exists()

    def start(self) -> None:
        command = [
            str(EmbeddedPostgres.bin_dir() / "postgres"),
            *("-D", str(self.pgdata), "-h", "127.0.0.1", "-p", str(self.port)),
            *("-c", "unix_socket_directories="),
            # A hot standby needs at least the primary's (EmbeddedPostgres starts it with 200).
            *("-c", "max_connections=200"),
            *(arg for name, value in self.settings.items() for arg in ("-c", f"{name}={value}")),
        ]
        uid, gid, groups = _identity(self.user)
        with self.log.path.open("ab") as out:
            self.proc = subprocess.Popen(
                command,
                stdout=out,
                stderr=out,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                user=uid,
                group=gid,
                extra_groups=groups,
            )

    def replicate_through(self, port: int) -> None:
        """Have the WAL receiver reach the primary at `port` on loopback (a Link), not directly:
        a later line of postgresql.auto.conf overrides the one pg_basebackup -R wrote."""
        auto = self.pgdata / "postgresql.auto.conf"
        with auto.open("a") as conf:
            conf.write(f"primary_conninfo = 'host=127.0.0.1 port={port} user=postgres'\n")

    async def wait_standing_by(self) -> None:
        async def answers_in_recovery() -> bool:
            assert self.proc is not None and self.proc.poll() is None, log_tail(self.log.path)
            try:
                conn = await asyncpg.connect(self.url, timeout=2)
            except (OSError, asyncpg.PostgresError):
                return False
            try:
                return bool(await conn.fetchval("SELECT pg_is_in_recovery()"))
            finally:
                await conn.close()

        await eventually(answers_in_recovery, within=60, what="the standby accepting reads")

    def stop_immediately(self) -> None:
        """PostgreSQL's immediate shutdown (SIGQUIT): every backend ends at once."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGQUIT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@dataclass
class Seeded:
    creator_id: uuid.UUID
    creator_token: str
    admin_token: str
    published_id: uuid.UUID
    draft_id: uuid.UUID
    serial: str
    certificate_id: uuid.UUID


async def seed(database_url: str, settings: Settings) -> Seeded:
    conn = await asyncpg.connect(database_url)
    try:

        async def user(role: str) -> tuple[uuid.UUID, str]:
            tag = uuid.uuid4().hex[:8]
            row = await conn.fetchrow(
                """
                INSERT INTO users (email, username, full_name, name, role, email_verified,
                                   is_profile_complete, is_active, password_hash)
                VALUES ($1, $2, $3, $3, $4, true, true, true, 'x')
                RETURNING id, token_version
                """,
                f"{role.lower()}-{tag}@example.test",
                f"{role.lower()}_{tag}",
                f"{role.title()} {tag}",
                role,
            )
            return row["id"], (await open_login(conn, settings, row["id"])).access_token

        creator_id, creator_token = await user("CREATOR")
        _, admin_token = await user("ADMIN")
        learner_id, _ = await user("LEARNER")
        published_id = await conn.fetchval(
            """
            INSERT INTO courses (creator_id, title, description, price, status, submitted_at,
                                 published_at)
            VALUES ($1, 'Published course', $2, 0, 'PUBLISHED', now(), now())
            RETURNING id
            """,
            creator_id,
            f"All about {SEARCH_WORD} things",
        )
        draft_id = await conn.fetchval(
            """
            INSERT INTO courses (creator_id, title, price, status, lesson_count)
            VALUES ($1, 'Draft course', 0, 'DRAFT', 1)
            RETURNING id
            """,
            creator_id,
        )
        await conn.execute(
            """
            INSERT INTO lessons (course_id, title, position, video_url, duration_seconds)
            VALUES ($1, 'Lesson', 1, 'https://videos.example.test/v.mp4', 60)
            """,
            draft_id,
        )
        enrollment_id = await conn.fetchval(
            """
            INSERT INTO enrollments (user_id, course_id, progress, completed, completed_at)
            VALUES ($1, $2, 100, true, now()) RETURNING id
            """,
            learner_id,
            published_id,
        )
        serial = secrets.token_hex(24)
        certificate_id = await conn.fetchval(
            """
            INSERT INTO certificates (user_id, course_id, enrollment_id, serial_hash,
                                      learner_name, course_title, creator_name, jws)
            VALUES ($1, $2, $3, $4, 'Ada Learner', 'Published course', 'The Creator', 'x.y.z')
            RETURNING id
            """,
            learner_id,
            published_id,
            enrollment_id,
            serial,
        )
    finally:
        await conn.close()
    return Seeded(
        creator_id, creator_token, admin_token, published_id, draft_id, serial, certificate_id
    )


@dataclass
class Cluster:
    primary: EmbeddedPostgres
    primary_url: str
    primary_log: StatementLog
    standby: Standby


@contextlib.contextmanager
def serving(
    cluster: Cluster, nats_url: str, jwt_secret: str, folder: Path, **settings: str
) -> Iterator[str]:
    """`lms serve` (one worker) on the primary, with the standby as its read replica."""
    port = free_port()
    env = service_env(
        database_url=cluster.primary_url,
        nats_url=nats_url,
        data_dir=folder / "data",
        jwt_secret=jwt_secret,
        LMS_PORT=str(port),
        LMS_DATABASE_REPLICA_URLS=cluster.standby.url,
        LMS_SEARCH_RATE_LIMIT="100000",
        **settings,
    )
    log = folder / "api.log"
    api = spawn(env, "serve", "--workers", "1", log=log)
    try:
        assert wait_ready(port, 60), log_tail(log)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(api)


class Metrics:
    def __init__(self, http: httpx.AsyncClient, replica: str) -> None:
        self.http = http
        self.replica = replica

    async def read(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        response = await self.http.get("/metrics")
        assert response.status_code == 200, response.text
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.text)
            for sample in family.samples
        }

    async def healthy(self) -> float | None:
        return (await self.read()).get(("lms_db_replica_healthy", (("replica", self.replica),)))

    async def lag(self) -> float | None:
        key = ("lms_db_replica_lag_seconds", (("replica", self.replica),))
        return (await self.read()).get(key)

    async def reads(self) -> dict[str, float]:
        values = await self.read()
        return {
            target: values.get(("lms_db_routed_reads_total", (("target", target),)), 0.0)
            for target in ("replica", "primary")
        }

    async def wait_healthy(self, healthy: bool) -> None:
        async def reported() -> bool:
            return await self.healthy() == (1.0 if healthy else 0.0)

        what = f"/metrics reporting the replica {'healthy' if healthy else 'unhealthy'}"
        await eventually(reported, within=30, what=what, every=0.2)


async def grew(log: StatementLog, marker: str, before: int) -> bool:
    return log.count(marker) > before


async def at_least(answers: list[int], n: int) -> bool:
    return len(answers) >= n


class Link:
    """A TCP relay on loopback between the standby's WAL receiver and the primary, to model an
    outage that leaves the replica up: `stall()` stops the bytes but keeps the connections (a
    silent partition: the receiver still says "streaming" until wal_receiver_timeout), `cut()`
    closes them and refuses new ones (the receiver goes away), `restore()` undoes either."""

    def __init__(self, primary_port: int) -> None:
        self.primary_port = primary_port
        self.port = free_port()
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._pumps: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)

    def stall(self) -> None:
        self._flowing.clear()

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def restore(self) -> None:
        self._flowing.set()
        if self._server is None:
            await self.start()

    async def close(self) -> None:
        await self.cut()
        for pump in list(self._pumps):
            pump.cancel()
        self._flowing.set()

    async def _relay(
        self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter
    ) -> None:
        try:
            server_in, server_out = await asyncio.open_connection("127.0.0.1", self.primary_port)
        except OSError:
            client_out.transport.abort()
            return
        self._writers |= {client_out, server_out}
        pumps = [
            asyncio.create_task(self._pump(client_in, server_out)),
            asyncio.create_task(self._pump(server_in, client_out)),
        ]
        self._pumps.update(pumps)
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
                self._pumps.discard(pump)
            for writer in (client_out, server_out):
                self._writers.discard(writer)
                writer.transport.abort()

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while True:
                await self._flowing.wait()
                data = await source.read(65536)
                if not data:
                    return
                # Read before a stall began: held back until the link flows again.
                await self._flowing.wait()
                sink.write(data)
                await sink.drain()
