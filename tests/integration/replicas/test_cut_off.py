"""A replica cut off from its primary never verifies a revoked certificate past the stated bound
(the README's: min(LMS_REPLICA_MAX_LAG, LMS_VERIFY_MAX_LAG) seconds of replica lag, plus the
answer's max-age in any cache), against a real streaming replica whose link to the primary the
test controls (tests/integration/replicas/support.py).

- A silent partition (the link stalls; the replica stays up and its WAL receiver still says
  "streaming", having replayed all it received): the certificate is revoked on the primary, and
  every verification asked for more than LMS_VERIFY_MAX_LAG seconds later answers REVOKED, from
  the primary, while the replica itself still holds it VALID. /metrics then calls the replica
  unhealthy, its lag measured against the primary. The link restored, the replica catches up and
  serves verification again (REVOKED).
- The receiver gone (the link cut; everything received replayed, so the replica's own view says
  it lags 0): it is skipped for not streaming, at once; the link restored, it serves again.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from lms.domain.certificates.controllers import VERIFY_CACHE
from lms.settings import load_settings
from tests.conftest import ServerUrls
from tests.helpers import eventually
from tests.integration.replicas.support import (
    Cluster,
    Link,
    Metrics,
    StatementLog,
    seed,
    serving,
)

pytestmark = pytest.mark.slow

MAX_LAG = 10  # LMS_REPLICA_MAX_LAG: the catalog's bound
VERIFY_MAX_LAG = 2  # LMS_VERIFY_MAX_LAG: verification's, the tighter one


# What the replica's own view says of itself: the old test of health, "lag 0 once everything
# received is replayed", which a replica cut off from its primary passes forever.
@contextlib.asynccontextmanager
async def connected(url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(url)
    try:
        yield conn
    finally:
        await conn.close()


async def receiver_status(standby_url: str) -> str | None:
    async with connected(standby_url) as conn:
        status: str | None = await conn.fetchval("SELECT status FROM pg_stat_wal_receiver")
        return status


async def test_a_replica_cut_off_from_its_primary_never_verifies_a_revoked_certificate(
    cluster: Cluster, server_urls: ServerUrls, folder: Path
) -> None:
    jwt_secret = secrets.token_urlsafe(48)
    seeded = await seed(cluster.primary_url, load_settings({"LMS_JWT_SECRET": jwt_secret}))
    standby, primary_log = cluster.standby, cluster.primary_log
    primary_port = int(cluster.primary_url.rsplit(":", 1)[1].split("/", 1)[0])
    link = Link(primary_port)
    await link.start()
    await asyncio.to_thread(standby.make)
    standby.replicate_through(link.port)
    # Back soon after the link is: the receiver retries every half second, not every 5 s.
    standby.settings["wal_retrieve_retry_interval"] = "500ms"
    standby.start()
    try:
        await standby.wait_standing_by()
        await eventually(
            lambda: _receiver_is(standby.url, "streaming"),
            within=30,
            what="the standby streaming through the link",
        )
        with serving(
            cluster,
            server_urls.nats,
            jwt_secret,
            folder,
            LMS_REPLICA_MAX_LAG=str(MAX_LAG),
            LMS_VERIFY_MAX_LAG=str(VERIFY_MAX_LAG),
        ) as base:
            async with httpx.AsyncClient(base_url=base, timeout=30) as http:
                await _silent_partition(http, cluster, link, seeded.serial, seeded.admin_token)
                await _receiver_gone(http, cluster, link, seeded.serial, folder / "api.log")
                assert primary_log.count(seeded.serial) > 0
    finally:
        await link.close()


async def _silent_partition(
    http: httpx.AsyncClient, cluster: Cluster, link: Link, serial: str, admin_token: str
) -> None:
    standby, primary_log = cluster.standby, cluster.primary_log
    metrics = Metrics(http, standby.label)
    await metrics.wait_healthy(True)
    verify = f"/certificates/verify/{serial}"

    # While it streams, the replica answers verification.
    await eventually(
        lambda: _answered_by(http, verify, standby.log, valid=True),
        within=10,
        what="a verification answered VALID by the replica",
    )

    link.stall()
    certificate_id = await _certificate_id(cluster.primary_url, serial)
    revoked = await http.post(
        f"/admin/certificates/{certificate_id}/revoke",
        json={"reason": "issued in error"},
        headers={"Authorization": f"Bearer {admin_token}"},
    )
    assert revoked.status_code == 200, revoked.text
    revoked_at = time.monotonic()  # the revocation is committed on the primary by now

    # The replica believes itself connected and still holds the certificate VALID. (Whether it
    # also looks current by its own positions depends on what was in flight when the link
    # stalled: with a record cut in two it waits for the rest, receive ahead of replay. The
    # service must not rely on either: it measures against the primary.)
    async with connected(standby.url) as conn:
        assert await conn.fetchval("SELECT status FROM pg_stat_wal_receiver") == "streaming"
        held = await conn.fetchval("SELECT status FROM certificates WHERE serial_hash = $1", serial)
        assert held == "VALID"

    # Ask, JSON and page alike, until well past the bound: every answer asked for after
    # VERIFY_MAX_LAG seconds says REVOKED, and none of those was read on the replica.
    answers: list[tuple[float, bool, str]] = []
    at_replica: int | None = None  # its statements when the bound had passed
    at_primary = primary_log.count(serial)
    while time.monotonic() - revoked_at < VERIFY_MAX_LAG + 3:
        asked = time.monotonic() - revoked_at
        if asked > VERIFY_MAX_LAG and at_replica is None:
            # The standby writes its log as it runs a statement (before it answers).
            at_replica = standby.log.count(serial)
        for accept in ("application/json", "text/html"):
            response = await http.get(verify, headers={"Accept": accept})
            assert response.status_code == 200, response.text
            assert response.headers["cache-control"] == VERIFY_CACHE
            if accept == "application/json":
                body = response.json()
                valid = body["valid"]
                assert valid == (body["certificate"]["status"] == "VALID")
            else:
                valid = '<body class="valid">' in response.text
            answers.append((asked, valid, accept))
        await asyncio.sleep(0.1)
    late = [answer for answer in answers if answer[0] > VERIFY_MAX_LAG]
    assert late and not [answer for answer in late if answer[1]], answers
    # The late ones came from the primary: the replica ran none of them.
    await eventually(
        lambda: _true(primary_log.count(serial) >= at_primary + len(late)),
        within=10,
        what="the late verifications in the primary's log",
    )
    assert standby.log.count(serial) == at_replica

    # The process's own check agrees: unhealthy, its lag measured against the primary, though
    # its receiver still says it streams.
    await metrics.wait_healthy(False)
    lag = await metrics.lag()
    assert lag is None or lag != lag or lag > MAX_LAG  # NaN: behind every sample kept
    assert await receiver_status(standby.url) == "streaming"

    # The link back: the replica catches up and serves verification again, REVOKED.
    await link.restore()
    await metrics.wait_healthy(True)
    await eventually(
        lambda: _answered_by(http, verify, standby.log, valid=False),
        within=10,
        what="a verification answered REVOKED by the replica",
    )


async def _receiver_gone(
    http: httpx.AsyncClient, cluster: Cluster, link: Link, serial: str, api_log: Path
) -> None:
    standby, primary_log = cluster.standby, cluster.primary_log
    metrics = Metrics(http, standby.label)
    verify = f"/certificates/verify/{serial}"

    # Why the process skips it, as its log says when it stops using it.
    skipped_for = StatementLog(api_log)
    not_streaming = skipped_for.count("not streaming")
    await link.cut()
    await eventually(
        lambda: _receiver_is(standby.url, None),
        within=30,
        what="the standby's WAL receiver gone",
    )
    await metrics.wait_healthy(False)
    assert skipped_for.count("not streaming") > not_streaming
    at_replica, at_primary = standby.log.count(serial), primary_log.count(serial)
    response = await http.get(verify)
    assert response.status_code == 200 and response.json()["valid"] is False
    await eventually(
        lambda: _true(primary_log.count(serial) > at_primary),
        within=10,
        what="the verification in the primary's log",
    )
    assert standby.log.count(serial) == at_replica

    await link.restore()
    await eventually(
        lambda: _receiver_is(standby.url, "streaming"),
        within=30,
        what="the standby streaming again",
    )
    await metrics.wait_healthy(True)
    await eventually(
        lambda: _answered_by(http, verify, standby.log, valid=False),
        within=10,
        what="verification on the replica again",
    )


async def _certificate_id(primary_url: str, serial: str) -> str:
    async with connected(primary_url) as conn:
        return str(
            await conn.fetchval("SELECT id FROM certificates WHERE serial_hash = $1", serial)
        )


async def _answered_by(
    http: httpx.AsyncClient, path: str, log: StatementLog, *, valid: bool
) -> bool:
    """One verification answered `valid`, its statement in `log` (the server that ran it)."""
    before = log.count(path.rsplit("/", 1)[1])
    response = await http.get(path)
    if response.status_code != 200 or response.json()["valid"] is not valid:
        return False
    try:
        await eventually(
            lambda: _true(log.count(path.rsplit("/", 1)[1]) > before), within=2, what="logged"
        )
    except AssertionError:
        return False
    return True


async def _receiver_is(standby_url: str, expected: str | None) -> bool:
    return await receiver_status(standby_url) == expected


async def _true(value: bool) -> bool:
    return value
