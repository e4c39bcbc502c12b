"""Load-test the cold admin and account endpoints with wrk, one at a time: user listing and search,
the audit log, runtime settings, creator applications and refresh-token rotation."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import re
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import asyncpg
import httpx

from bench import harness
from bench.catalog import (
    REPO_ROOT,
    RESULTS_DIR,
    _serving,
    free_port,
    git_commit,
    granian_workers,
    percentiles,
    resolved_environ,
    wrk_failures,
)
from bench.harness import WRK_REPORT_LUA, BenchError, add_load_arguments, run_main
from bench.learning import CpuSampler, api_pid_on, cpu_line, database_name, ensure_admin
from bench.seed import BENCH_EMAIL_DOMAIN

SCENARIOS = (
    "users",
    "users-search",
    "audit",
    "settings-get",
    "settings-patch",
    "creator-status",
    "applications",
    "refresh",
)
# Prefix searches over names and addresses of the seeded learners: common first names, a full
# name, surnames, a short prefix, and an address prefix that matches ten learners.
USER_QUERIES = ("ada", "sofia", "wei zhang", "nguyen", "mar", "learner0012", "zoe park", "tanaka")
AUDIT_ACTIONS = (
    "user.role_change",
    "user.deactivate",
    "settings.update",
    "application.approve",
    "application.reject",
    "course.publish",
    "course.reject",
    "certificate.revoke",
)
REFRESH_TOKENS_PER_SECOND = 2500  # tokens prepared per second of load: above what 2 cores rotate
DRAIN_SECONDS = 5.0


@dataclass
class Scenario:
    name: str
    method: str
    route: str  # what the report calls it
    paths: list[str]
    ok_status: int = 200
    body: str | None = None
    bearer: list[str] = field(default_factory=list)  # a token drawn at random per request
    refresh_file: Path | None = None  # one unused refresh token per request, from this file


# ---------------------------------------------------------------------------------------------
# the data the run needs


@dataclass
class Prepared:
    admin_token: str
    learner_tokens: list[str]
    refresh_file: Path
    refresh_probe: str
    refresh_tokens: int
    added: dict[str, int]


async def _bench_learners(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        """
        SELECT id, token_version FROM users
        WHERE role = 'LEARNER' AND is_active AND email LIKE 'learner%' AND email LIKE $1
        ORDER BY id
        """,
        f"%@{BENCH_EMAIL_DOMAIN}",
    )
    return rows


async def top_up_applications(
    conn: asyncpg.Connection, wanted: int, admin_id: uuid.UUID, rng: random.Random
) -> int:
    """Creator applications from seeded learners until there are `wanted`: most rejected (with
    the reviewer's notes), a third still pending, a few learners rejected once who applied again."""
    have = int(await conn.fetchval("SELECT count(*) FROM creator_applications"))
    if have >= wanted:
        return 0
    candidates = await conn.fetch(
        """
        SELECT u.id FROM users u
        WHERE u.role = 'LEARNER' AND u.email LIKE $1
          AND NOT EXISTS (SELECT 1 FROM creator_applications a WHERE a.user_id = u.id)
        ORDER BY u.id
        """,
        f"learner%@{BENCH_EMAIL_DOMAIN}",
    )
    now = datetime.now(UTC)
    rows: list[tuple[Any, ...]] = []
    for record in rng.sample(list(candidates), min(len(candidates), wanted - have)):
        created = now - timedelta(seconds=rng.uniform(3600, 365 * 86400))
        bio = (
            "I have taught "
            + rng.choice(("chemistry", "guitar", "python", "design"))
            + " for years."
        )
        if rng.random() < 0.33:
            rows.append(
                (
                    uuid.uuid4(),
                    record["id"],
                    bio,
                    None,
                    rng.randrange(0, 30),
                    "PENDING",
                    None,
                    None,
                    created,
                    None,
                )
            )
            continue
        reviewed = created + timedelta(hours=rng.uniform(1, 72))
        rows.append(
            (
                uuid.uuid4(),
                record["id"],
                bio,
                None,
                rng.randrange(0, 30),
                "REJECTED",
                "Not yet: show us a sample lesson.",
                admin_id,
                created,
                reviewed,
            )
        )
        if rng.random() < 0.1 and len(rows) < wanted - have:
            again = min(now, reviewed + timedelta(days=rng.uniform(1, 30)))
            rows.append(
                (
                    uuid.uuid4(),
                    record["id"],
                    bio + " Now with samples.",
                    "https://example.com/me",
                    rng.randrange(0, 30),
                    "PENDING",
                    None,
                    None,
                    again,
                    None,
                )
            )
    await conn.copy_records_to_table(
        "creator_applications",
        records=rows,
        columns=[
            "id",
            "user_id",
            "bio",
            "portfolio_url",
            "experience_years",
            "status",
            "reviewer_notes",
            "reviewer_id",
            "created_at",
            "reviewed_at",
        ],
    )
    return len(rows)


async def top_up_audit(
    conn: asyncpg.Connection, wanted: int, admin_id: uuid.UUID, rng: random.Random
) -> int:
    """Audit rows by the bench admin over the past year until there are `wanted`."""
    have = int(await conn.fetchval("SELECT count(*) FROM audit_log"))
    if have >= wanted:
        return 0
    now = datetime.now(UTC)
    rows = []
    for _ in range(wanted - have):
        action = rng.choice(AUDIT_ACTIONS)
        target = action.split(".", 1)[0]
        rows.append(
            (
                uuid.uuid4(),
                admin_id,
                action,
                target,
                str(uuid.uuid4()),
                json.dumps({"status": "BEFORE"}),
                json.dumps({"status": "AFTER", "n": rng.randrange(100)}),
                now - timedelta(seconds=rng.uniform(60, 365 * 86400)),
            )
        )
    await conn.copy_records_to_table(
        "audit_log",
        records=rows,
        columns=[
            "id",
            "actor_id",
            "action",
            "target_type",
            "target_id",
            "before",
            "after",
            "created_at",
        ],
    )
    return len(rows)


async def make_refresh_tokens(
    conn: asyncpg.Connection, learners: Sequence[asyncpg.Record], count: int, rng: random.Random
) -> list[str]:
    """`count` live refresh tokens, each the first of a login family of its own, stored the way
    the API stores them (only the SHA-256): as if that many learners had just logged in."""
    from lms.domain.auth.tokens import new_refresh_token

    now = datetime.now(UTC)
    tokens, rows = [], []
    for _ in range(count):
        token, token_hash = new_refresh_token()
        tokens.append(token)
        user = rng.choice(learners)["id"]
        rows.append(
            (
                uuid.uuid4(),
                user,
                uuid.uuid4(),
                token_hash,
                now,
                now + timedelta(days=1),
                "bench.cold",
                "127.0.0.1",
            )
        )
    await conn.copy_records_to_table(
        "refresh_tokens",
        records=rows,
        columns=[
            "id",
            "user_id",
            "family_id",
            "token_hash",
            "created_at",
            "expires_at",
            "user_agent",
            "ip_address",
        ],
    )
    return tokens


async def dataset_size(conn: asyncpg.Connection) -> dict[str, int]:
    tables = ("users", "creator_applications", "audit_log", "refresh_tokens")
    return {t: int(await conn.fetchval(f"SELECT count(*) FROM {t}")) for t in tables}  # noqa: S608


def prepare(args: argparse.Namespace, database_url: str, settings: Any, workdir: Path) -> Prepared:
    from lms.domain.auth.logins import open_logins

    rng = random.Random(args.seed)  # noqa: S311 - picks benchmark inputs, nothing secret

    async def load() -> tuple[list[str], list[str], dict[str, int]]:
        conn = await asyncpg.connect(dsn=database_url)
        try:
            async with conn.transaction():
                admin_id, _ = await ensure_admin(conn)
                learners = await _bench_learners(conn)
                if len(learners) < 10:
                    raise BenchError(
                        "too few seeded learners: seed first (python -m bench.seed --learners ...)"
                    )
                added = {
                    "applications": await top_up_applications(
                        conn, args.applications, admin_id, rng
                    ),
                    "audit_rows": await top_up_audit(conn, args.audit_rows, admin_id, rng),
                }
                count = args.refresh_tokens or args.duration * REFRESH_TOKENS_PER_SECOND
                tokens = await make_refresh_tokens(conn, learners, count + 1, rng)
                # The admin and the learners the run acts as sign in (a login each, in one
                # statement): lms checks the login of every access token on every request.
                chosen = rng.sample(learners, min(args.learners, len(learners)))
                logins = await open_logins(
                    conn, settings, [admin_id] + [r["id"] for r in chosen], user_agent="bench.cold"
                )
            await conn.execute("ANALYZE users, creator_applications, audit_log, refresh_tokens")
            return tokens, [login.access_token for login in logins], added
        finally:
            await conn.close()

    tokens, (admin_token, *learner_tokens), added = asyncio.run(load())
    refresh_file = workdir / "refresh-tokens.txt"
    refresh_file.write_text("\n".join(tokens[1:]) + "\n")
    return Prepared(
        admin_token=admin_token,
        learner_tokens=learner_tokens,
        refresh_file=refresh_file,
        refresh_probe=tokens[0],
        refresh_tokens=len(tokens) - 1,
        added=added,
    )


def scenarios(prepared: Prepared) -> dict[str, Scenario]:
    admin = [prepared.admin_token]

    def users_path(**params: object) -> str:
        return "/admin/users?" + urlencode(params, quote_via=quote)

    return {
        s.name: s
        for s in (
            Scenario(
                "users",
                "GET",
                "GET /admin/users (first page)",
                ["/admin/users", "/admin/users?limit=20"],
                bearer=admin,
            ),
            Scenario(
                "users-search",
                "GET",
                "GET /admin/users?q= (prefix search)",
                [users_path(q=q) for q in USER_QUERIES],
                bearer=admin,
            ),
            Scenario(
                "audit",
                "GET",
                "GET /admin/audit (first page)",
                ["/admin/audit", "/admin/audit?action=settings.update"],
                bearer=admin,
            ),
            Scenario(
                "settings-get", "GET", "GET /admin/settings", ["/admin/settings"], bearer=admin
            ),
            Scenario(
                "settings-patch",
                "PATCH",
                "PATCH /admin/settings {otpTtlSeconds: 600}",
                ["/admin/settings"],
                body='{"otpTtlSeconds":600}',
                bearer=admin,
            ),
            Scenario(
                "creator-status",
                "GET",
                "GET /creator/status (learners)",
                ["/creator/status"],
                bearer=prepared.learner_tokens,
            ),
            Scenario(
                "applications",
                "GET",
                "GET /admin/applications (first page)",
                ["/admin/applications", "/admin/applications?status=PENDING"],
                bearer=admin,
            ),
            Scenario(
                "refresh",
                "POST",
                "POST /auth/refresh (rotation)",
                ["/auth/refresh"],
                refresh_file=prepared.refresh_file,
            ),
        )
    }


def probe(url: str, scenario: Scenario, prepared: Prepared) -> dict[str, float]:
    """Each path once, unloaded: it must answer as under load (else stop before measuring
    errors), and the times say what an idle server takes."""
    times: list[float] = []
    with httpx.Client(base_url=url, timeout=30.0) as client:
        for path in scenario.paths:
            headers = {"Accept": "application/json"}
            if scenario.bearer:
                headers["Authorization"] = f"Bearer {scenario.bearer[0]}"
            body = scenario.body
            if scenario.refresh_file is not None:
                body = json.dumps({"refreshToken": prepared.refresh_probe})
                headers["X-Forwarded-For"] = "10.255.255.254"
            if body is not None:
                headers["Content-Type"] = "application/json"
            started = time.perf_counter()
            response = client.request(scenario.method, path, headers=headers, content=body)
            times.append((time.perf_counter() - started) * 1000)
            if response.status_code != scenario.ok_status:
                raise BenchError(
                    f"{scenario.method} {path} answered {response.status_code}: "
                    f"{response.text[:300]}"
                )
    return percentiles(times)


# ---------------------------------------------------------------------------------------------
# wrk


LUA_TEMPLATE = """\
-- Generated by bench/cold.py: one endpoint, paths and bearer tokens drawn at random; for token
-- rotation each request presents a refresh token never used before (this thread's share).
local scenario = %(scenario)s
local method = %(method)s
local paths = %(paths)s
local bearer = %(bearer)s
local fixed_body = %(body)s
local refresh_file = %(refresh_file)s
local seed = %(seed)d
local threads = %(threads)d
local next_id = 0

function setup(thread)
  next_id = next_id + 1
  thread:set("thread_id", next_id)
end

function init(args)
  math.randomseed(seed + 7919 * thread_id)
  sent = 0
  refresh = nil
  if refresh_file ~= "" then
    refresh = {}
    local i = 0
    for line in io.lines(refresh_file) do
      if i %% threads == thread_id - 1 then refresh[#refresh + 1] = line end
      i = i + 1
    end
  end
end

function request()
  sent = sent + 1
  local headers = { ["Accept"] = "application/json",
                    ["X-Request-ID"] = "bench-" .. scenario .. "-" .. thread_id .. "-" .. sent }
  if #bearer > 0 then
    headers["Authorization"] = "Bearer " .. bearer[math.random(#bearer)]
  end
  local body = fixed_body
  if refresh then
    -- Out of tokens: a token that does not exist, so the 401 fails the run loudly.
    body = '{"refreshToken":"' .. (refresh[sent] or "exhausted") .. '"}'
    -- Many client addresses (the bench trusts 127.0.0.1 as a proxy), as many clients would be,
    -- rather than every request counting against one rate-limit row.
    headers["X-Forwarded-For"] = "10." .. thread_id .. "." .. (math.floor(sent / 256) %% 256)
                                 .. "." .. (sent %% 256)
  end
  if body ~= "" then headers["Content-Type"] = "application/json" end
  return wrk.format(method, paths[math.random(#paths)], headers, body ~= "" and body or nil)
end

function done(summary, latency, requests)
%(report)s
end
"""


def lua(value: object) -> str:
    """A Lua literal: strings as JSON strings (Lua reads the same escapes), lists as tables."""
    if isinstance(value, list):
        if not value:
            return "{}"
        return "{\n  " + ",\n  ".join(json.dumps(v) for v in value) + ",\n}"
    return json.dumps(value)


def write_script(directory: Path, scenario: Scenario, args: argparse.Namespace) -> Path:
    script = directory / f"cold-{scenario.name}.lua"
    script.write_text(
        LUA_TEMPLATE
        % {
            "scenario": lua(scenario.name),
            "method": lua(scenario.method),
            "paths": lua(scenario.paths),
            "bearer": lua(scenario.bearer),
            "body": lua(scenario.body or ""),
            "refresh_file": lua(str(scenario.refresh_file or "")),
            "seed": args.seed,
            "threads": args.threads,
            "report": WRK_REPORT_LUA,
        }
    )
    return script


def run_wrk(
    script: Path, url: str, args: argparse.Namespace, sampler: CpuSampler
) -> tuple[dict[str, Any], str, dict[str, Any] | None]:
    """wrk's result line, its output, and the CPU each kind of process used meanwhile."""
    outcome = harness.run_wrk(
        script,
        url,
        threads=args.threads,
        connections=args.connections,
        duration=args.duration,
        timeout=args.timeout,
        sampler=sampler,
    )
    return outcome.result, outcome.output, outcome.measured


def cpu_per_request(cpu: dict[str, Any] | None, requests: int) -> dict[str, float] | None:
    """CPU milliseconds per request of the API and of PostgreSQL: what a request costs, which
    other load on the machine moves far less than it moves throughput and latency."""
    if not cpu or not requests:
        return None
    used = cpu["cpu_seconds"]
    return {
        "api_ms": round(used.get("api", 0.0) * 1000 / requests, 3),
        "postgres_ms": round(used.get("postgres_bench", 0.0) * 1000 / requests, 3),
    }


def server_log(log_path: Path | None, offset: int, scenario: str, sent: int) -> dict[str, Any]:
    """The API's own view of the run (its request log): statuses and time inside the app for this
    scenario's requests, and any warning or error lines. Waits a little for requests wrk left in
    flight to be logged."""
    if log_path is None:
        return {}
    prefix = f"bench-{scenario}-"
    deadline = time.monotonic() + DRAIN_SECONDS
    while True:
        statuses: Counter[str] = Counter()
        durations: list[float] = []
        problems: list[str] = []
        with log_path.open("rb") as handle:
            handle.seek(offset)
            for raw in handle:
                try:
                    entry = json.loads(raw)
                except ValueError:
                    problems.append(raw.decode(errors="replace").strip()[:300])
                    continue
                if entry.get("logger") == "lms.request":
                    if str(entry.get("request_id", "")).startswith(prefix):
                        statuses[str(entry.get("status"))] += 1
                        durations.append(float(entry.get("duration_ms", 0.0)))
                elif entry.get("level") in ("warning", "error", "critical"):
                    problems.append(f"{entry.get('level')}: {entry.get('msg')}"[:300])
        if len(durations) >= sent or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    return {
        "requests_logged": len(durations),
        "statuses": dict(statuses),
        "in_app_ms": percentiles(durations) if durations else None,
        "warnings_and_errors": problems[:20],
        "warnings_and_errors_total": len(problems),
    }


def measure(
    scenario: Scenario,
    url: str,
    prepared: Prepared,
    args: argparse.Namespace,
    workdir: Path,
    log_path: Path | None,
    sampler: CpuSampler,
) -> dict[str, Any]:
    unloaded = probe(url, scenario, prepared)
    script = write_script(workdir, scenario, args)
    offset = log_path.stat().st_size if log_path else 0
    result, output, cpu = run_wrk(script, url, args, sampler)
    failures = wrk_failures(result, output)
    if scenario.refresh_file is not None and result["requests"] > prepared.refresh_tokens:
        failures.append(
            f"ran out of refresh tokens: raise --refresh-tokens above {result['requests']}"
        )
    server = server_log(log_path, offset, scenario.name, result["requests"])
    seconds = result["duration_us"] / 1e6
    lat = result["latency_us"]
    return {
        "scenario": scenario.name,
        "route": scenario.route,
        "paths": scenario.paths,
        "ok": not failures,
        "failures": failures,
        "figures": {
            "requests": result["requests"],
            "requests_per_s": round(result["requests"] / seconds, 1),
            "p50_ms": lat["p50"] / 1000,
            "p90_ms": lat["p90"] / 1000,
            "p99_ms": lat["p99"] / 1000,
        },
        "cpu_ms_per_request": cpu_per_request(cpu, result["requests"]),
        "cpu": cpu,
        "unloaded_probe_ms": unloaded,
        "wrk": result,
        "wrk_output": output,
        "server_log": server,
    }


# ---------------------------------------------------------------------------------------------
# main


def print_report(records: Sequence[dict[str, Any]], args: argparse.Namespace) -> None:
    print(
        f"\ncold endpoints: {args.connections} connections, {args.threads} threads, "
        f"{args.duration} s each"
    )
    header = (
        f"{'endpoint':<42} {'requests/s':>10} {'p50':>10} {'p99':>10} "
        f"{'in-app p50':>11} {'in-app p99':>11} {'API CPU/req':>12} {'PG CPU/req':>11}"
    )
    print(header)
    print("-" * len(header))
    for record in records:
        f = record["figures"]
        in_app = record["server_log"].get("in_app_ms") or {}
        cpu = record["cpu_ms_per_request"] or {}
        flag = "" if record["ok"] else "  FAILED: " + "; ".join(record["failures"])
        print(
            f"{record['route']:<42} {f['requests_per_s']:>10,.1f} {f['p50_ms']:>7.2f} ms "
            f"{f['p99_ms']:>7.2f} ms {in_app.get('p50', float('nan')):>8.2f} ms "
            f"{in_app.get('p99', float('nan')):>8.2f} ms "
            f"{cpu.get('api_ms', float('nan')):>9.3f} ms "
            f"{cpu.get('postgres_ms', float('nan')):>8.3f} ms{flag}"
        )
    for record in records:
        line = cpu_line(record["cpu"])
        if line:
            print(f"{record['scenario']}: {line}")


def write_results(record: dict[str, Any], label: str | None) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS_DIR / (f"cold-{label}-{stamp}.json" if label else f"cold-{stamp}.json")
    path.write_text(json.dumps(record, indent=2, default=str) + "\n")
    return path


def run(args: argparse.Namespace) -> int:
    import lms
    from lms.settings import load_settings

    started_at = datetime.now(UTC)
    chosen = list(SCENARIOS) if args.scenario == "all" else args.scenario.split(",")
    unknown = [s for s in chosen if s not in SCENARIOS]
    if unknown:
        raise BenchError(f"unknown scenario(s) {unknown}: choose from {', '.join(SCENARIOS)}")
    records: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="lms-bench-")))
        environ = stack.enter_context(resolved_environ())
        settings = load_settings(environ)
        if not settings.jwt_secret:
            raise BenchError("no JWT secret resolved (LMS_JWT_SECRET or LMS_DATA_DIR/jwt-secret)")
        database_url = environ["DATABASE_URL"]
        prepared = prepare(args, database_url, settings, workdir)
        url, log_path, api_pid = args.url.rstrip("/"), None, None
        if args.serve:
            log_path = workdir / "serve.log"
            port = free_port()
            env = {
                **environ,
                "LMS_HOST": "127.0.0.1",
                "LMS_PORT": str(port),
                # Token rotation is measured, not the per-IP limit: raise it, and let the bench
                # present many client addresses through X-Forwarded-For.
                "LMS_AUTH_RATE_LIMIT": "100000",
                "LMS_TRUSTED_PROXIES": "127.0.0.1",
            }
            url = stack.enter_context(_serving(env, port, log_path))
            api_pid = api_pid_on(port)
        sampler = CpuSampler(database_name(database_url), api_pid)
        table = scenarios(prepared)
        for name in chosen:
            record = measure(table[name], url, prepared, args, workdir, log_path, sampler)
            records.append(record)
            if not record["ok"]:
                print(record["wrk_output"], file=sys.stderr)

        async def count() -> dict[str, int]:
            conn = await asyncpg.connect(dsn=database_url)
            try:
                return await dataset_size(conn)
            finally:
                await conn.close()

        dataset = asyncio.run(count())
    failures = [f"{r['scenario']}: {f}" for r in records for f in r["failures"]]
    saved = write_results(
        {
            "benchmark": "cold",
            "label": args.label,
            "started_at": started_at.isoformat(),
            "ok": not failures,
            "failures": failures,
            "url": "(served by --serve)" if args.serve else url,
            "served": args.serve,
            "granian_workers": granian_workers() if args.serve else None,
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
            "git_commit": git_commit(),
            # Where the server's code came from (PYTHONPATH can point at another checkout).
            "lms_package": str(Path(lms.__file__).parent),
            "note": args.note,
            "params": {
                "scenarios": chosen,
                "duration_s": args.duration,
                "connections": args.connections,
                "threads": args.threads,
                "timeout_s": args.timeout,
                "learners": len(prepared.learner_tokens),
                "refresh_tokens": prepared.refresh_tokens,
                "applications": args.applications,
                "audit_rows": args.audit_rows,
                "seed": args.seed,
            },
            "added_before_the_run": prepared.added,
            "dataset_after": dataset,
            "scenarios": records,
        },
        args.label,
    )
    print_report(records, args)
    if failures:
        raise BenchError(f"the run failed ({'; '.join(failures)}); details in {saved}")
    print(f"results: {saved.relative_to(REPO_ROOT)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.cold",
        description="Load the cold admin and account endpoints (user listing and search, audit "
        "log, settings, creator applications, refresh-token rotation) with wrk, one at a time. "
        "Seed first: python -m bench.seed --learners ...",
    )
    parser.add_argument(
        "--scenario",
        default="all",
        help=f"comma-separated, from: {', '.join(SCENARIOS)} (default: all, in that order)",
    )
    add_load_arguments(
        parser, duration=15, duration_help="seconds per endpoint", connections=32, timeout=None
    )
    parser.add_argument(
        "--learners", type=int, default=1000, help="learners asking /creator/status (1000)"
    )
    parser.add_argument(
        "--applications", type=int, default=5000, help="creator applications to have (5000)"
    )
    parser.add_argument("--audit-rows", type=int, default=50_000, help="audit rows to have (50000)")
    parser.add_argument(
        "--refresh-tokens",
        type=int,
        default=0,
        help=f"refresh tokens to prepare (default: {REFRESH_TOKENS_PER_SECOND} per second of load)",
    )
    parser.add_argument("--seed", type=int, default=1, help="seed for the choice of inputs")
    parser.add_argument("--label", default=None, help="in the results file name: cold-LABEL-*.json")
    parser.add_argument("--note", default=None, help="free text kept in the results file")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    bad_label = args.label is not None and not re.fullmatch(r"[A-Za-z0-9_.-]+", args.label)
    problem = "--label takes letters, digits, '_', '.', '-'" if bad_label else None
    return run_main("cold", args, run, problem=problem)


if __name__ == "__main__":
    sys.exit(main())
