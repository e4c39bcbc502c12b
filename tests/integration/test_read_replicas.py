"""Read replicas against a real streaming replica: the test starts a PostgreSQL primary of its own
from the embedded binaries, makes a standby of it with pg_basebackup (standby.signal and
primary_conninfo written by -R, a replication slot so it can fall behind and catch up), and runs
`lms serve` with DATABASE_URL on the primary and LMS_DATABASE_REPLICA_URLS on the standby.

Which server ran a statement is read from the servers themselves: both log every statement with
its parameters (log_statement=all), so a course id, a serial or a search word that a request sends
shows up in the log of the server that answered it, and only there. /metrics must tell the same.

- Anonymous catalog pages and searches, an anonymous course page and certificate verification
  (JSON and the HTML page) read from the replica; a search's rate-limit count is written on the
  primary.
- An owner reading their draft, and their writes, go to the primary; what they publish shows on
  the replica once it has replayed it.
- The replica stopped (immediate shutdown) under a stream of anonymous reads: every one answers
  200 (the primary serves, a read caught mid-way is retried there), /metrics says the replica is
  unhealthy; started again, reads return to it.
- Replay paused on the replica while the primary writes: once it lags more than
  LMS_REPLICA_MAX_LAG (1 s here) it is skipped, and the primary's fresher answer is served;
  replay resumed, reads return to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from lms.db.migrate import migrate_forward
from lms.domain.auth.tokens import issue_access_token
from lms.embedded import POSTGRES_SYSTEM_USER, EmbeddedPostgres, _identity
from lms.netutil import free_port
from lms.settings import Settings, load_settings
from tests.conftest import ServerUrls
from tests.helpers import eventually, wait_ready
from tests.integration.faults.processes import log_tail, service_env, spawn, stop

pytestmark = pytest.mark.slow

MAX_LAG = 1
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
            token = issue_access_token(
                settings, user_id=row["id"], role=role, token_version=row["token_version"]
            )
            return row["id"], token

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
        await conn.execute(
            """
            INSERT INTO certificates (user_id, course_id, enrollment_id, serial_hash,
                                      learner_name, course_title, creator_name, jws)
            VALUES ($1, $2, $3, $4, 'Ada Learner', 'Published course', 'The Creator', 'x.y.z')
            """,
            learner_id,
            published_id,
            enrollment_id,
            serial,
        )
    finally:
        await conn.close()
    return Seeded(creator_id, creator_token, admin_token, published_id, draft_id, serial)


@dataclass
class Cluster:
    primary: EmbeddedPostgres
    primary_url: str
    primary_log: StatementLog
    standby: Standby


@pytest.fixture
def folder() -> Iterator[Path]:
    """The servers' and the API's files. Not under pytest's basetemp: a pytest session started
    meanwhile deletes all but the newest three basetemps, with the data of servers still
    running for this test."""
    path = Path(tempfile.mkdtemp(prefix="lms-test-replicas-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def cluster(folder: Path) -> AsyncIterator[Cluster]:
    (folder / "primary").mkdir()
    primary = EmbeddedPostgres(folder / "primary")
    standby: Standby | None = None
    try:
        primary_url = await asyncio.to_thread(primary.start)
        await migrate_forward(primary_url, quiet=True)
        conn = await asyncpg.connect(primary_url)
        try:
            # Logged with their parameters on both servers: the standby copies this file.
            await conn.execute("ALTER SYSTEM SET log_statement = 'all'")
            await conn.execute("ALTER SYSTEM SET log_line_prefix = '@@ '")
            await conn.execute("SELECT pg_reload_conf()")
            port = int(await conn.fetchval("SHOW port"))
        finally:
            await conn.close()
        standby = Standby(folder / "standby", port)
        yield Cluster(primary, primary_url, StatementLog(primary.log_file), standby)
    finally:
        if standby is not None:
            standby.stop_immediately()
        await asyncio.to_thread(primary.stop)


@contextlib.contextmanager
def serving(cluster: Cluster, nats_url: str, jwt_secret: str, folder: Path) -> Iterator[str]:
    port = free_port()
    env = service_env(
        database_url=cluster.primary_url,
        nats_url=nats_url,
        data_dir=folder / "data",
        jwt_secret=jwt_secret,
        LMS_PORT=str(port),
        LMS_DATABASE_REPLICA_URLS=cluster.standby.url,
        LMS_REPLICA_MAX_LAG=str(MAX_LAG),
        LMS_SEARCH_RATE_LIMIT="100000",
        # Every anonymous search must reach a database here, not a page kept in the process.
        LMS_SEARCH_CACHE_SECONDS="0",
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


async def test_anonymous_reads_use_the_replica_and_the_primary_takes_over(
    cluster: Cluster, server_urls: ServerUrls, folder: Path
) -> None:
    jwt_secret = secrets.token_urlsafe(48)
    settings = load_settings({"LMS_JWT_SECRET": jwt_secret})
    seeded = await seed(cluster.primary_url, settings)
    standby, primary_log = cluster.standby, cluster.primary_log
    await asyncio.to_thread(standby.make)
    standby.start()
    await standby.wait_standing_by()

    creator = {"Authorization": f"Bearer {seeded.creator_token}"}
    admin = {"Authorization": f"Bearer {seeded.admin_token}"}
    published, draft = str(seeded.published_id), str(seeded.draft_id)
    # Each anonymous read, and the value that only its statement carries to the server.
    anonymous = [
        (f"/courses?creatorId={seeded.creator_id}", str(seeded.creator_id), {}),
        (f"/courses?q={SEARCH_WORD}", SEARCH_WORD, {}),
        (f"/courses/{published}", published, {}),
        (f"/certificates/verify/{seeded.serial}", seeded.serial, {}),
        (f"/certificates/verify/{seeded.serial}", seeded.serial, {"Accept": "text/html"}),
    ]

    with serving(cluster, server_urls.nats, jwt_secret, folder) as base:
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            metrics = Metrics(http, standby.label)
            await metrics.wait_healthy(True)
            lag = await metrics.lag()
            assert lag is not None and 0.0 <= lag <= MAX_LAG

            async def read_anonymously(*, on_replica: bool) -> None:
                """Every anonymous read answers 200 from the replica (or, when `on_replica` is
                false, from the primary), as both servers' logs and /metrics say."""
                before = await metrics.reads()
                for path, marker, headers in anonymous:
                    at_replica, at_primary = standby.log.count(marker), primary_log.count(marker)
                    response = await http.get(path, headers=headers)
                    assert response.status_code == 200, (path, response.text)
                    served, skipped = (
                        (standby.log, primary_log) if on_replica else (primary_log, standby.log)
                    )
                    was_served = at_replica if on_replica else at_primary
                    was_skipped = at_primary if on_replica else at_replica
                    await eventually(
                        functools.partial(_grew, served, marker, was_served),
                        within=10,
                        what=f"{path} in the log of the server that answered it",
                    )
                    assert skipped.count(marker) == was_skipped, path
                after = await metrics.reads()
                target, other = ("replica", "primary") if on_replica else ("primary", "replica")
                assert after[target] - before[target] == len(anonymous)
                assert after[other] == before[other]

            await read_anonymously(on_replica=True)
            # The search counted against the caller's limit on the primary all the same.
            conn = await asyncpg.connect(cluster.primary_url)
            try:
                counted = await conn.fetchval(
                    "SELECT count(*) FROM rate_limit_counters WHERE key LIKE 'ip:search:%'"
                )
            finally:
                await conn.close()
            assert counted >= 1

            # An owner reading their draft, and their writes: the primary.
            before = await metrics.reads()
            at_replica, at_primary = standby.log.count(draft), primary_log.count(draft)
            response = await http.get(f"/courses/{draft}", headers=creator)
            assert response.status_code == 200 and response.json()["status"] == "DRAFT"
            await eventually(
                functools.partial(_grew, primary_log, draft, at_primary),
                within=10,
                what="the owner's draft read on the primary",
            )
            renamed = await http.patch(
                f"/courses/{draft}", json={"title": "Renamed on the primary"}, headers=creator
            )
            assert renamed.status_code == 200, renamed.text
            again = await http.get(f"/courses/{draft}", headers=creator)
            assert again.json()["title"] == "Renamed on the primary"
            submitted = await http.post(f"/courses/{draft}/submit", headers=creator)
            assert submitted.status_code == 200, submitted.text
            assert standby.log.count(draft) == at_replica
            assert await metrics.reads() == before
            publish = await http.post(f"/admin/courses/{draft}/publish", headers=admin)
            assert publish.status_code == 200, publish.text

            # Once the replica has replayed it, anonymous visitors see it there.
            async def published_on_replica() -> bool:
                seen = standby.log.count(draft)
                response = await http.get(f"/courses/{draft}")
                return (
                    response.status_code == 200
                    and response.json()["title"] == "Renamed on the primary"
                    and standby.log.count(draft) > seen
                )

            await eventually(published_on_replica, within=10, what="the publication replayed")

            # The replica goes away under a stream of anonymous reads: none fails.
            answers: list[int] = []

            async def stream_of_reads() -> None:
                while True:
                    for path, _, headers in anonymous:
                        answers.append((await http.get(path, headers=headers)).status_code)
                    await asyncio.sleep(0.005)

            reads = asyncio.create_task(stream_of_reads())
            try:
                await eventually(functools.partial(_at_least, answers, 20), within=10, what="reads")
                await asyncio.to_thread(standby.stop_immediately)
                more = functools.partial(_at_least, answers, len(answers) + 50)
                await eventually(more, within=20, what="reads after the replica stopped")
            finally:
                reads.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reads
            assert set(answers) == {200}, sorted(set(answers))
            await metrics.wait_healthy(False)
            lag = await metrics.lag()
            assert lag is not None and math.isnan(lag)
            await read_anonymously(on_replica=False)
            ready = await http.get("/readyz")
            assert ready.status_code == 200  # a replica down does not make the API unready

            # Started again, it catches up and serves again.
            standby.start()
            await standby.wait_standing_by()
            await metrics.wait_healthy(True)
            await read_anonymously(on_replica=True)

            # Replay paused while the primary writes: past LMS_REPLICA_MAX_LAG it is skipped,
            # and anonymous visitors get the primary's fresher answer.
            paused = await asyncpg.connect(standby.url)
            try:
                await paused.execute("SELECT pg_wal_replay_pause()")
                conn = await asyncpg.connect(cluster.primary_url)
                try:
                    await conn.execute(
                        "UPDATE courses SET title = 'Retitled while replay is paused' "
                        "WHERE id = $1",
                        seeded.published_id,
                    )
                finally:
                    await conn.close()
                await metrics.wait_healthy(False)
                lag = await metrics.lag()
                assert lag is not None and lag > MAX_LAG
                at_replica = standby.log.count(published)
                response = await http.get(f"/courses/{published}")
                assert response.json()["title"] == "Retitled while replay is paused"
                assert standby.log.count(published) == at_replica
                await read_anonymously(on_replica=False)

                await paused.execute("SELECT pg_wal_replay_resume()")
                await metrics.wait_healthy(True)
                at_replica = standby.log.count(published)
                response = await http.get(f"/courses/{published}")
                assert response.json()["title"] == "Retitled while replay is paused"
                await eventually(
                    functools.partial(_grew, standby.log, published, at_replica),
                    within=10,
                    what="the course page read on the replica again",
                )
            finally:
                await paused.close()


async def _grew(log: StatementLog, marker: str, before: int) -> bool:
    return log.count(marker) > before


async def _at_least(answers: list[int], n: int) -> bool:
    return len(answers) >= n
