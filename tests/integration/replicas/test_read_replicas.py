"""Read replicas against a real streaming replica (tests/integration/replicas/support.py: a
primary of the test's own, a standby made with pg_basebackup, `lms serve` reading from it). Which
server ran a statement is read from both servers' statement logs; /metrics must tell the same.

- Anonymous catalog pages and searches, an anonymous course page and certificate verification
  (JSON and the HTML page) read from the replica; a search's rate-limit count is written on the
  primary.
- An owner reading their draft, and their writes, go to the primary; what they publish shows on
  the replica once it has replayed it.
- The replica stopped (immediate shutdown) under a stream of anonymous reads: every one answers
  200 (the primary serves, a read caught mid-way is retried there), /metrics says the replica is
  unhealthy; started again, reads return to it.
- Replay paused on the replica while the primary writes: once it lags more than
  LMS_REPLICA_MAX_LAG (3 s here) it is skipped, and the primary's fresher answer is served;
  replay resumed, reads return to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import secrets
from pathlib import Path

import asyncpg
import httpx
import pytest

from lms.settings import load_settings
from tests.conftest import ServerUrls
from tests.helpers import eventually
from tests.integration.replicas.support import (
    SEARCH_WORD,
    Cluster,
    Metrics,
    at_least,
    grew,
    seed,
    serving,
)

pytestmark = pytest.mark.slow

# Above the samples' one-second spacing, which is what a current replica's lag can reach.
MAX_LAG = 3


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

    with serving(
        cluster, server_urls.nats, jwt_secret, folder, LMS_REPLICA_MAX_LAG=str(MAX_LAG)
    ) as base:
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
                        functools.partial(grew, served, marker, was_served),
                        within=10,
                        what=f"{path} in the log of the server that answered it",
                    )
                    assert skipped.count(marker) == was_skipped, path
                after = await metrics.reads()
                target, other = ("replica", "primary") if on_replica else ("primary", "replica")
                assert after[target] - before[target] == len(anonymous)
                assert after[other] == before[other]

            await read_anonymously(on_replica=True)
            # The search counted against the caller's limit on the primary all the same (added
            # to the shared counters within a flush interval, lms.domain.rate_limits).
            conn = await asyncpg.connect(cluster.primary_url)
            try:

                async def counted() -> int:
                    n: int = await conn.fetchval(
                        "SELECT count(*) FROM rate_limit_counters WHERE key LIKE 'ip:search:%'"
                    )
                    return n

                await eventually(counted, within=10, what="the search's count on the primary")
            finally:
                await conn.close()

            # An owner reading their draft, and their writes: the primary.
            before = await metrics.reads()
            at_replica, at_primary = standby.log.count(draft), primary_log.count(draft)
            response = await http.get(f"/courses/{draft}", headers=creator)
            assert response.status_code == 200 and response.json()["status"] == "DRAFT"
            await eventually(
                functools.partial(grew, primary_log, draft, at_primary),
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
                await eventually(functools.partial(at_least, answers, 20), within=10, what="reads")
                await asyncio.to_thread(standby.stop_immediately)
                more = functools.partial(at_least, answers, len(answers) + 50)
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
                    functools.partial(grew, standby.log, published, at_replica),
                    within=10,
                    what="the course page read on the replica again",
                )
            finally:
                await paused.close()
