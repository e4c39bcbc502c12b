"""The replica tests' servers: a primary of their own (the standby is made by each test, once
the data it needs is written)."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from lms.db.migrate import migrate_forward
from lms.embedded import EmbeddedPostgres
from tests.integration.replicas.support import Cluster, Standby, StatementLog


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
