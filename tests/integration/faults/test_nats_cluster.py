"""A NATS JetStream cluster losing a node under load: three nats-server processes of the test's
own, the API and two workers pointed at all three (NATS_URL comma-separated) with the job stream
replicated on all of them (LMS_JOBS_REPLICAS=3). Creators keep uploading lessons while the node
leading the job stream and its consumer is killed with SIGKILL; once the cluster has recovered the
node is restarted, and another is killed, until each of the API and workers has lost the node it
was connected to. Every upload is answered 201 (a publish the stream cannot take while it elects a
new leader is left to the worker's sweeper), /readyz stays green or recovers within seconds, the
API and both workers reconnect to the surviving nodes and keep working (a worker whose pulls find
no consumer leader waits and pulls again), and every job is transcribed exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import asyncpg
import httpx
import nats
import pytest
from nats.aio.client import Client as Nats

from lms.broker import CONSUMER_NAME
from lms.netutil import free_port
from lms.settings import Settings
from tests.conftest import TestUser
from tests.helpers import eventually, wait_ready
from tests.integration.faults.cluster import NatsCluster
from tests.integration.faults.processes import (
    Uploads,
    assert_each_job_ran_once,
    every_job_done,
    log_tail,
    logged,
    service_env,
    spawn,
    stop,
    uploader,
)

pytestmark = pytest.mark.slow

UPLOADERS = 2  # each a creator with a course of their own
WORKERS = 2
# Seconds between one creator's uploads: about as many lessons as two workers transcribe on a
# small machine, so the queue stays short and the test is about the outage, not a backlog.
UPLOAD_PAUSE = 2.0
# The longest /readyz may stay red once the node is gone: the client notices the dead socket and
# moves to the next server in NATS_URL within about a second (reconnect_time_wait).
READY_WITHIN_SECONDS = 10.0


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[NatsCluster]:
    nodes = await NatsCluster.formed(tmp_path / "nats")
    try:
        yield nodes
    finally:
        nodes.stop()


@dataclass
class Readiness:
    """/readyz as seen every 0.2 s: (when asked, on time.monotonic(); status code or None)."""

    samples: list[tuple[float, int | None]] = field(default_factory=list)

    async def watch(self, client: httpx.AsyncClient) -> None:
        while True:
            asked = time.monotonic()
            try:
                status: int | None = (await client.get("/readyz")).status_code
            except httpx.HTTPError:
                status = None
            self.samples.append((asked, status))
            await asyncio.sleep(0.2)

    async def green(self) -> bool:
        return bool(self.samples) and self.samples[-1][1] == 200

    def longest_outage(self, since: float) -> float:
        """The longest run of answers other than 200 from `since`, until the next 200."""
        longest, red_from = 0.0, None
        for asked, status in self.samples:
            if asked < since:
                continue
            if status != 200 and red_from is None:
                red_from = asked
            elif status == 200 and red_from is not None:
                longest, red_from = max(longest, asked - red_from), None
        if red_from is not None:
            longest = max(longest, self.samples[-1][0] - red_from)
        return longest


@contextlib.asynccontextmanager
async def observer(cluster: NatsCluster) -> AsyncIterator[Nats]:
    """The test's own NATS client (not named "lms", so not counted among the service's)."""
    client = await nats.connect(
        servers=cluster.url.split(","), name="observer", max_reconnect_attempts=-1
    )
    try:
        yield client
    finally:
        await client.close()


@dataclass(frozen=True)
class Leaders:
    stream: str
    consumer: str  # the workers' durable consumer's
    replicated: bool  # every replica of the stream is current


async def leaders(client: Nats, stream: str) -> Leaders | None:
    """Who leads the job stream and its consumer, once both have a leader."""
    js = client.jetstream()
    try:
        info = await js.stream_info(stream)
        consumer = await js.consumer_info(stream, CONSUMER_NAME)
    except nats.errors.Error:  # no leader while one is elected: no responders, or a timeout
        return None
    if not (info.cluster and info.cluster.leader and consumer.cluster and consumer.cluster.leader):
        return None
    replicas = info.cluster.replicas or []
    current = len(replicas) == 2 and all(replica.current for replica in replicas)
    return Leaders(info.cluster.leader, consumer.cluster.leader, current)


async def lead_from(client: Nats, stream: str, node: str) -> Leaders:
    """Move the leadership of the job stream and of its consumer to `node` (a stepdown naming
    the preferred server), and wait until both lead from there with every replica current."""
    preferred = json.dumps({"placement": {"preferred": node}}).encode()

    async def there() -> Leaders | None:
        found = await leaders(client, stream)
        if found is None:
            return None
        if found.stream != node:
            subject = f"$JS.API.STREAM.LEADER.STEPDOWN.{stream}"
        elif found.consumer != node:
            subject = f"$JS.API.CONSUMER.LEADER.STEPDOWN.{stream}.{CONSUMER_NAME}"
        else:
            return found if found.replicated else None
        with contextlib.suppress(nats.errors.Error):  # answered by a new election, or not
            await client.request(subject, preferred, timeout=2)
        return None

    return await eventually(there, within=60, what=f"the job stream led from {node}", every=1.0)


async def connected(
    cluster: NatsCluster, processes: list[subprocess.Popen[bytes]]
) -> list[str] | None:
    """The node each of `processes` is connected to, once each has one connection to a live
    node."""
    found = [cluster.serving(process.pid) for process in processes]
    return [nodes[0] for nodes in found] if all(len(nodes) == 1 for nodes in found) else None


@dataclass
class Scene:
    """What a node loss is staged with and watched by."""

    cluster: NatsCluster
    watcher: Nats  # the test's own NATS client
    stream: str
    service: list[subprocess.Popen[bytes]]  # the API, then the workers
    db: asyncpg.Pool
    uploads: Uploads
    readiness: Readiness


@dataclass(frozen=True)
class Loss:
    victim: str
    before: list[str]  # the node each of the service's processes was connected to
    after: list[str]
    killed_at: float  # time.monotonic()
    elected: Leaders
    elected_after: float  # seconds until the test's client saw the new leaders

    def __str__(self) -> str:
        return (
            f"killed {self.victim} (leading the stream and its consumer) with API and workers on"
            f" {self.before}: new leaders {self.elected.stream} (stream), {self.elected.consumer}"
            f" (consumer) seen after {self.elected_after:.1f}s, API and workers then on"
            f" {self.after}"
        )


async def lose_a_node(scene: Scene, untouched: set[int]) -> Loss:
    """Kill (SIGKILL) the node that the most of the `untouched` processes are connected to (the
    API's when tied), with the job stream's and its consumer's leadership moved there first, and
    wait until the cluster and the service have recovered: new leaders, every process connected
    to a surviving node, /readyz green, uploads acknowledged since."""
    before = await eventually(
        partial(connected, scene.cluster, scene.service), within=30, what="the service connected"
    )
    on = Counter(before[i] for i in untouched)
    victim = scene.cluster.node(max(on, key=lambda node: (on[node], before[0] == node)))
    await lead_from(scene.watcher, scene.stream, victim.name)

    killed_at, uploaded_before = time.monotonic(), len(scene.uploads.lessons)
    victim.kill()

    async def new_leaders() -> Leaders | None:
        found = await leaders(scene.watcher, scene.stream)
        moved = found and victim.name not in (found.stream, found.consumer)
        return found if moved else None

    elected = await eventually(new_leaders, within=60, what="new leaders")
    elected_after = time.monotonic() - killed_at
    after = await eventually(
        partial(connected, scene.cluster, scene.service),
        within=30,
        what="the API and workers reconnected to the surviving nodes",
    )
    await eventually(scene.readiness.green, within=30, what="/readyz green after the kill")
    await eventually(
        lambda: scene.uploads.reached(uploaded_before, 2), within=60, what="uploads after the kill"
    )
    return Loss(victim.name, before, after, killed_at, elected, elected_after)


async def test_losing_the_stream_leader_under_load_loses_no_upload_and_runs_every_job_once(
    db: asyncpg.Pool,
    settings: Settings,
    make_user: Callable[..., Awaitable[TestUser]],
    cluster: NatsCluster,
    tmp_path: Path,
) -> None:
    assert settings.database_url and settings.jwt_secret
    port = free_port()
    env = service_env(
        database_url=settings.database_url,
        nats_url=cluster.url,
        data_dir=settings.data_dir,  # the API stores the videos where the workers read them
        jwt_secret=settings.jwt_secret,
        LMS_PORT=str(port),
        LMS_JOBS_REPLICAS="3",
        # Uploads pile up faster than the workers transcribe them: no per-creator cap here.
        LMS_MAX_QUEUED_TRANSCRIPTIONS="1000",
    )
    stream = env["LMS_JOBS_STREAM"]
    api_log = tmp_path / "api.log"
    worker_logs = [tmp_path / f"worker{i + 1}.log" for i in range(WORKERS)]
    creators = [await make_user("CREATOR") for _ in range(UPLOADERS)]
    uploads, readiness = Uploads(), Readiness()
    background: list[asyncio.Task[None]] = []
    losses: list[Loss] = []
    with contextlib.ExitStack() as processes:
        api = spawn(env, "serve", "--workers", "1", log=api_log)
        processes.callback(stop, api)
        workers = [spawn(env, "worker", log=log) for log in worker_logs]
        for worker in workers:
            processes.callback(stop, worker)
        async with (
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client,
            observer(cluster) as watcher,
        ):
            try:
                assert await asyncio.to_thread(wait_ready, port, 60), log_tail(api_log)
                for log in worker_logs:  # models loaded, consumer joined
                    await eventually(
                        partial(logged, log, "worker ready"), within=90, what=f"{log.stem} ready"
                    )
                background = [
                    asyncio.create_task(uploader(client, creator.headers, uploads, UPLOAD_PAUSE))
                    for creator in creators
                ]
                background.append(asyncio.create_task(readiness.watch(client)))

                async def midway() -> bool:
                    """Some jobs transcribed, more waiting: the workers are busy pulling."""
                    row = await db.fetchrow(
                        "SELECT count(*) FILTER (WHERE status = 'DONE') AS done,"
                        " count(*) FILTER (WHERE status <> 'DONE') AS waiting"
                        " FROM transcription_jobs"
                    )
                    return (row["done"] >= 1 and row["waiting"] >= 1) or bool(uploads.refused)

                await eventually(midway, within=90, what="jobs flowing before the kill", every=0.2)
                # Nodes are lost one at a time (each restarted before the next goes) until every
                # process of the service has lost the node it was connected to.
                scene = Scene(cluster, watcher, stream, [api, *workers], db, uploads, readiness)
                untouched = set(range(len(scene.service)))
                while untouched:
                    if losses:
                        cluster.restart(cluster.node(losses[-1].victim))
                        await cluster.meta_leader()
                    losses.append(await lose_a_node(scene, untouched))
                    untouched -= {i for i in untouched if losses[-1].before[i] == losses[-1].victim}
            finally:
                for task in background:
                    task.cancel()
                await asyncio.gather(*background, return_exceptions=True)
            assert not uploads.refused, uploads.refused[:10]
            jobs = await every_job_done(db, within=120)
            assert [p.args for p in (api, *workers) if p.poll() is not None] == [], cluster.logs()

    first = losses[0].killed_at
    outage = readiness.longest_outage(first)
    slowest_job = await db.fetchval(
        "SELECT max(extract(epoch FROM finished_at - created_at))::float8 FROM transcription_jobs"
    )
    print(  # the figures the README quotes (pytest -s)
        "\n" + "\n".join(map(str, losses)),
        f"\n/readyz red for at most {outage:.1f}s; slowest upload {uploads.slowest(first):.2f}s"
        f" after the first kill, {uploads.slowest(0, until=first):.2f}s before; {len(jobs)} jobs,"
        f" each done at most {slowest_job:.1f}s after its upload",
    )
    assert outage <= READY_WITHIN_SECONDS, readiness.samples
    assert set(uploads.lessons) <= {j["lesson_id"] for j in jobs}
    await assert_each_job_ran_once(db, jobs, worker_logs)
