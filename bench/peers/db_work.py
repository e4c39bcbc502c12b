"""The database work of each request, from PostgreSQL's statement log: which statements a server
ran to answer it, and how many rows the database read for it.

Statements: for the run, `log_statement = 'all'` (ALTER SYSTEM, then pg_reload_conf(): servers
already connected start logging at their next command), put back as it was however the run ends
(finally, atexit, SIGTERM/SIGHUP turned into SystemExit; only a SIGKILL leaves it: then run
`ALTER SYSTEM RESET log_statement; SELECT pg_reload_conf()`). The log is read through SQL
(pg_read_binary_file: the file the logging collector writes, else the postmaster's stderr as
every backend inherits it, /proc/self/fd/2), so it needs a superuser, as the write script's
ALTER SYSTEM does. Each request is bracketed by two marker statements from our own connection
(`SELECT 'same_bytes:<n>:begin'`, `...:end'`): a server's statements for the request are logged
after the first (the request was sent after it ran) and before the second (they ran before the
response). Only lines of the servers' database count, and none of our own connection's; a
server's background statements (a LISTEN connection's health check, lms's outbox dispatcher) are
set aside as noise. Each statement is one round trip here (every stack keeps its statements
prepared), so the counts are round trips too.

Rows read: pg_stat_database's tup_returned + tup_fetched of the database over a burst of the same
request to one server (backends publish their counters within a second of going idle, so each
burst is bracketed by a pause), per request.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import re
import signal
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg

SETTINGS = {"log_statement": "all"}
# A statement's first line in the log: "<time> [<pid>] <user>@<database> LOG:  statement: ..."
# (simple protocol) or "... LOG:  execute <name>: ..." (extended protocol); continuation lines
# start with a tab. The prefix must show the pid and the database (%p, %d: Debian's default).
LINE = re.compile(
    r"^.*?\[(?P<pid>\d+)\][^@\n]*?(?:\S*@(?P<db>\S*))? ?LOG:  "
    r"(?:statement|execute [^:]*): (?P<sql>.*)$"
)
OTHER_LINE = re.compile(r"^\d{4}-\d\d-\d\d ")
MARK = re.compile(r"^SELECT 'same_bytes:(\d+):(begin|end)'$")
TRANSACTION = re.compile(
    r"^\s*(BEGIN|START TRANSACTION|COMMIT|END|ROLLBACK|SAVEPOINT|RELEASE)\b", re.IGNORECASE
)
# What a driver runs once on a new connection (SQLAlchemy's asyncpg dialect; asyncpg's type
# introspection), not per request.
SETUP = re.compile(
    r"^\s*(select pg_catalog\.version\(\)|show |select current_schema\(\)|SET |RESET |"
    r"SELECT\s+t\.oid|WITH RECURSIVE typeinfo_tree|SELECT\s+(current_setting|set_config)\()",
    re.IGNORECASE,
)
# A server's background work, whenever it falls: a LISTEN connection's health check, lms's
# outbox and event dispatchers (outbound_messages, events), the search counts every server
# flushes in aggregate (lms's unnest; the peers' many-row upserts, adding `excluded.hits`,
# where a per-search upsert adds 1), lms's event fan-out to its sinks (webhook_deliveries,
# xapi_statements, the readers' ticks and places: it runs with no endpoint too), and the
# background fill of a common query's kept search top (lms_0016: the advisory lock,
# search_tops, search_top_rows), which lms and raw-limit (lms's own code) start after
# answering a search.
NOISE = re.compile(
    r"^\s*(SELECT 1;?\s*$|LISTEN |UNLISTEN |SELECT pg_try_advisory_xact_lock)"
    r"|\boutbound_messages\b|\bFROM events\b|\bUPDATE events\b"
    r"|INSERT INTO rate_limit_counters[^;]*\b(unnest\(|excluded\.hits\b)"
    r"|\bINSERT INTO (webhook_deliveries|xapi_statements)\b|\bevent_(cursors|ticks)\b"
    r"|SELECT pg_advisory_xact_lock\(|\bINSERT INTO search_top(s|_rows)\b"
    r"|SELECT t\.id, t\.complete,",
    re.IGNORECASE,
)
DETAIL = re.compile(r"^.*?\[(?P<pid>\d+)\].*? DETAIL:  parameters: (?P<params>.*)$")
PARAM = re.compile(r"\$(\d+) = ('(?:[^']|'')*'|NULL)")


@dataclass
class Statement:
    sql: str
    params: dict[int, str] = field(default_factory=dict)  # $n -> its SQL literal, as logged

    def literal(self) -> str:
        """The statement with its parameters written in (to EXPLAIN it)."""
        return re.sub(
            r"\$(\d+)\b", lambda m: self.params.get(int(m.group(1)), m.group(0)), self.sql
        )


@dataclass
class Work:
    """The statements one server ran for one request."""

    statements: list[str] = field(default_factory=list)  # the request's own
    logged: list[Statement] = field(default_factory=list)  # the same, with their parameters
    rows_read: float | None = None  # by its read-only statements, EXPLAIN ANALYZE'd afterwards
    transaction: list[str] = field(default_factory=list)  # BEGIN / COMMIT / ROLLBACK
    setup: list[str] = field(default_factory=list)  # a new connection's, once

    @property
    def round_trips(self) -> int:
        return len(self.statements) + len(self.transaction)


def kind_of(sql: str) -> str:
    if TRANSACTION.match(sql):
        return "transaction"
    if SETUP.match(sql):
        return "setup"
    if NOISE.search(sql):
        return "noise"
    return "statement"


def short(sql: str, width: int = 90) -> str:
    text = " ".join(sql.split())
    return text if len(text) <= width else text[: width - 3] + "..."


class StatementLog:
    """log_statement = 'all' while open; marks and reads back each request's statements."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self.conn: asyncpg.Connection | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.previous: dict[str, str | None] = {}
        self.changed = False
        self.path = ""
        self.offset = 0
        self.pid = 0
        self.database = ""
        self.count = 0
        self.windows: dict[int, tuple[str, str]] = {}  # mark -> (server, check)

    async def open(self) -> None:
        conn = self.conn = await asyncpg.connect(self.database_url)
        self.loop = asyncio.get_running_loop()
        if not await conn.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user"):
            raise SystemExit("same_bytes: --statements needs a superuser (ALTER SYSTEM)")
        prefix = await conn.fetchval("SHOW log_line_prefix")
        if "%p" not in prefix or "%d" not in prefix:
            raise SystemExit(f"same_bytes: log_line_prefix {prefix!r} names no pid (%p) or db (%d)")
        self.pid = await conn.fetchval("SELECT pg_backend_pid()")
        self.database = await conn.fetchval("SELECT current_database()")
        current = await conn.fetchval("SELECT pg_current_logfile()")
        self.path = current or "/proc/self/fd/2"
        for name in SETTINGS:
            # A value of ALTER SYSTEM's own is put back; none: RESET (postgresql.conf's again).
            self.previous[name] = await conn.fetchval(
                "SELECT setting FROM pg_file_settings WHERE name = $1 "
                "AND sourcefile LIKE '%postgresql.auto.conf' ORDER BY seqno DESC LIMIT 1",
                name,
            )
        atexit.register(self._restore_at_exit)
        for signum in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, _exit_on_signal)
        self.changed = True
        for name, value in SETTINGS.items():
            await conn.execute(f"ALTER SYSTEM SET {name} = '{value}'")
        await conn.execute("SELECT pg_reload_conf()")
        await asyncio.sleep(0.5)  # every backend reloads at its next command
        self.offset = await self._size()

    async def _size(self) -> int:
        return int(await self._conn.fetchval("SELECT size FROM pg_stat_file($1)", self.path))

    @property
    def _conn(self) -> asyncpg.Connection:
        if self.conn is None:
            raise RuntimeError("open the statement log first")
        return self.conn

    async def restore(self) -> None:
        if not self.changed:
            return
        conn = self.conn
        if conn is None or conn.is_closed():
            conn = await asyncpg.connect(self.database_url)
        for name, value in self.previous.items():
            if value is None:
                await conn.execute(f"ALTER SYSTEM RESET {name}")
            else:
                await conn.execute(f"ALTER SYSTEM SET {name} = '{value}'")
        await conn.execute("SELECT pg_reload_conf()")
        self.changed = False
        if conn is not self.conn:
            await conn.close()

    def _restore_at_exit(self) -> None:
        if self.changed:
            with contextlib.suppress(Exception):
                asyncio.run(self.restore())

    async def close(self) -> None:
        try:
            await self.restore()
        finally:
            if self.conn is not None:
                await self.conn.close()

    # marking, from the thread that sends the requests (the event loop runs the markers)

    def _mark(self, n: int, edge: str) -> None:
        if self.loop is None:
            raise RuntimeError("open the statement log first")
        future = asyncio.run_coroutine_threadsafe(
            self._conn.execute(f"SELECT 'same_bytes:{n}:{edge}'"), self.loop
        )
        future.result(timeout=30)

    @contextlib.contextmanager
    def window(self, server: str, check: str) -> Iterator[None]:
        self.count += 1
        n = self.count
        self.windows[n] = (server, check)
        self._mark(n, "begin")
        try:
            yield
        finally:
            self._mark(n, "end")

    async def read(self) -> dict[tuple[str, str], list[Work]]:
        """(server, check) -> the work of each request so named, in order."""
        end = await self._size()
        chunks = []
        at = self.offset
        while at < end:
            size = min(end - at, 16 << 20)
            chunks.append(
                await self._conn.fetchval(
                    "SELECT pg_read_binary_file($1, $2, $3)", self.path, at, size
                )
            )
            at += size
        text = b"".join(chunks).decode("utf-8", errors="replace")
        return self.attribute(parse(text, self.database))

    def attribute(self, entries: list[tuple[int, Statement]]) -> dict[tuple[str, str], list[Work]]:
        """BEGIN/COMMIT/ROLLBACK count for a request only from a connection that ran one of its
        statements in the window (a background task's transaction is not the request's)."""
        out: dict[tuple[str, str], list[Work]] = {}
        window: list[tuple[int, Statement]] | None = None
        current = 0
        for pid, statement in entries:
            if pid == self.pid:
                mark = MARK.match(statement.sql.strip())
                if mark is None:
                    continue
                if window is not None:
                    out.setdefault(self.windows[current], []).append(_work(window))
                n, edge = int(mark.group(1)), mark.group(2)
                window = [] if edge == "begin" and n in self.windows else None
                current = n
                continue
            if window is not None:
                window.append((pid, statement))
        if window is not None:
            out.setdefault(self.windows[current], []).append(_work(window))
        return out


def _work(entries: list[tuple[int, Statement]]) -> Work:
    work = Work()
    kinds = [(pid, statement, kind_of(statement.sql)) for pid, statement in entries]
    working = {pid for pid, _, kind in kinds if kind == "statement"}
    for pid, statement, kind in kinds:
        if kind == "statement":
            work.statements.append(statement.sql)
            work.logged.append(statement)
        elif kind == "transaction" and pid in working:
            work.transaction.append(statement.sql)
        elif kind == "setup":
            work.setup.append(statement.sql)
    return work


def parse(text: str, database: str) -> list[tuple[int, Statement]]:
    """(pid, statement) of the database's logged statements, in log order, each with the
    parameters logged after it."""
    entries: list[tuple[int, Statement]] = []
    last: dict[int, Statement] = {}  # pid -> its latest statement
    pid, db = 0, ""
    lines: list[str] = []  # the entry being read
    params: list[str] = []  # a DETAIL line being read

    def flush() -> None:
        if lines and db == database:
            statement = Statement("\n".join(lines))
            entries.append((pid, statement))
            last[pid] = statement
        if params and pid in last:
            text = "\n".join(params)
            last[pid].params = {int(n): v for n, v in PARAM.findall(text)}

    for line in text.split("\n"):
        if line.startswith("\t") and (lines or params):
            (lines or params).append(line[1:])
            continue
        match = LINE.match(line)
        detail = DETAIL.match(line) if match is None else None
        if match is not None:
            flush()
            pid, db, lines = int(match.group("pid")), match.group("db") or "", [match["sql"]]
            params = []
        elif detail is not None:
            flush()
            lines = []
            pid, params = int(detail.group("pid")), [detail["params"]]
        elif OTHER_LINE.match(line):
            flush()
            lines, params = [], []
    flush()
    return entries


def _exit_on_signal(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


# ---------------------------------------------------------------------------------------------
# rows read

WRITES = re.compile(r"\b(INSERT|UPDATE|DELETE|nextval|FOR (NO KEY )?UPDATE)\b", re.IGNORECASE)
SCANS = ("Seq Scan", "Index Scan", "Index Only Scan", "Bitmap Heap Scan")


def scanned(plan: dict[str, Any]) -> float:
    """Rows the plan's scans read: what each returned plus what its filters removed."""
    rows = 0.0
    if plan.get("Node Type") in SCANS:
        loops = plan.get("Actual Loops", 1)
        rows += (plan.get("Actual Rows", 0) + plan.get("Rows Removed by Filter", 0)) * loops
        rows += plan.get("Rows Removed by Index Recheck", 0)
    for child in plan.get("Plans", ()):
        rows += scanned(child)
    return rows


async def rows_read(conn: asyncpg.Connection, works: dict[tuple[str, str], list[Work]]) -> None:
    """Each request's rows read by its reads: its read-only statements EXPLAIN ANALYZE'd again
    with the parameters they were logged with (in a transaction rolled back). Statements that
    write or lock are not run again (they would not do what they did): a request with none
    that reads stays unmeasured (None)."""
    for items in works.values():
        for work in items:
            reads = [s for s in work.logged if not WRITES.search(s.sql)]
            if not reads:
                continue
            total: float | None = 0.0
            for statement in reads:
                try:
                    total = (total or 0.0) + await explained(conn, statement)
                except asyncpg.PostgresError:
                    total = None
                    break
            work.rows_read = total


async def explained(conn: asyncpg.Connection, statement: Statement) -> float:
    try:
        async with conn.transaction():
            text = await conn.fetchval("EXPLAIN (ANALYZE, FORMAT JSON) " + statement.literal())
            raise _RolledBack(scanned(json.loads(text)[0]["Plan"]))
    except _RolledBack as done:
        return float(done.args[0])


class _RolledBack(Exception):
    pass
