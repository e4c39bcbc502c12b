"""Load-test GET /courses with wrk: first pages, deep cursor pages and searches, in a fixed mix."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import httpx

from bench import harness
from bench.harness import WRK_REPORT_LUA, BenchError, add_load_arguments, run_main
from bench.seed import VOCABULARY

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"
# Share of requests per kind: most visitors land on the first page, some page on, a few search.
MIX = {"first": 0.5, "deep": 0.3, "search": 0.2}
PAGE = 20  # the page size every measured request asks for (the API's default)
WALK_PAGE = 100  # the largest page the API serves: walks reach deep positions 5x faster
SHALLOW_PAGES = 20  # cursor pages 2..21 followed one by one at limit 20
DEEP_WALK_PAGES = 400  # limit-100 pages walked to find deep positions (40,000 courses down)
DEEP_SAMPLES = 160  # of those positions, how many become request paths
CREATORS = 8  # creators whose filtered listing is requested (first page plus cursor pages)
CREATOR_PAGES = 3  # cursor pages followed per creator
SINGLE_WORDS = 30
WORD_PAIRS = 14
TITLE_PHRASES = 6
SEARCH_PAGES = 3  # pages requested per query: its first page and up to two cursor pages
READY_TIMEOUT = 90.0
BUSY_RETRIES = 60  # a 503 with Retry-After while collecting paths: asked again this many times
STOP_TIMEOUT = 45.0


@dataclass
class Probe:
    """One sequential (unloaded) request made while collecting paths: what an idle server takes."""

    kind: str
    path: str
    ms: float


@dataclass
class Paths:
    first: list[str] = field(default_factory=list)
    deep: list[str] = field(default_factory=list)
    search: list[str] = field(default_factory=list)
    # Depth of each deep path in pages of PAGE items (page 1 is the first page).
    deep_depths: list[int] = field(default_factory=list)
    queries: list[str] = field(default_factory=list)
    probes: list[Probe] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# walking the API for request paths


def courses_path(**params: object) -> str:
    """/courses with the given query; %20 rather than '+' for spaces, as browsers send them."""
    present = {k: v for k, v in params.items() if v is not None}
    return "/courses" + ("?" + urlencode(present, quote_via=quote) if present else "")


class Walker:
    def __init__(self, client: httpx.Client, paths: Paths) -> None:
        self.client = client
        self.paths = paths

    def get(self, kind: str, path: str) -> dict[str, Any]:
        started = time.perf_counter()
        response = self.client.get(path)
        # A search refused with 503 and Retry-After (one that took too long has its top kept
        # meanwhile, lms_0016) is asked again after the pause, as a client would, a while.
        for _ in range(BUSY_RETRIES):
            if response.status_code != 503 or "Retry-After" not in response.headers:
                break
            time.sleep(float(response.headers["Retry-After"]))
            response = self.client.get(path)
        elapsed = (time.perf_counter() - started) * 1000
        # Any non-200 here would also be one under load: stop before measuring errors.
        if response.status_code != 200:
            raise BenchError(f"GET {path} answered {response.status_code}: {response.text[:300]}")
        self.paths.probes.append(Probe(kind, path, round(elapsed, 2)))
        body = response.json()
        if not isinstance(body, dict) or "items" not in body or "nextCursor" not in body:
            raise BenchError(f"GET {path} did not answer a page: {response.text[:300]}")
        return body

    def follow(
        self, kind: str, pages: int, *, limit: int, **params: object
    ) -> Iterator[tuple[int, str, dict[str, Any]]]:
        """(items before this page, its path, its body) for up to `pages` pages from the top."""
        cursor: str | None = None
        offset = 0
        for _ in range(pages):
            path = courses_path(**params, limit=limit, cursor=cursor)
            body = self.get(kind, path)
            yield offset, path, body
            offset += len(body["items"])
            cursor = body["nextCursor"]
            if cursor is None:
                return


def collect_paths(base_url: str, seed: int) -> Paths:
    rng = random.Random(seed)  # noqa: S311 - picks benchmark inputs, nothing secret
    paths = Paths()
    with httpx.Client(base_url=base_url, timeout=60.0) as client:
        walker = Walker(client, paths)
        top = walker.get("first", courses_path(limit=PAGE))
        if not top["items"]:
            raise BenchError("the catalog is empty: seed it first (python -m bench.seed ...)")
        paths.first += [courses_path(limit=PAGE), courses_path()]  # /courses defaults to 20

        # Shallow cursor pages, followed one by one as a visitor clicking "next" would.
        titles: list[str] = []
        creators: list[str] = []
        for offset, path, body in walker.follow("deep", SHALLOW_PAGES + 1, limit=PAGE):
            titles += [item["title"] for item in body["items"]]
            creators += [item["creator"]["id"] for item in body["items"]]
            if offset:
                paths.deep.append(path)
                paths.deep_depths.append(offset // PAGE + 1)

        # Deep positions: walk in pages of 100, then ask for PAGE items after each sampled
        # position. A cursor is bound to q/creatorId, not to limit, so it serves any page size.
        positions: list[tuple[int, str]] = []
        for offset, _, body in walker.follow("walk", DEEP_WALK_PAGES, limit=WALK_PAGE):
            if body["nextCursor"]:
                positions.append((offset + len(body["items"]), body["nextCursor"]))
            titles += [item["title"] for item in body["items"][:5]]
            creators += [item["creator"]["id"] for item in body["items"][:5]]
        step = max(len(positions) / DEEP_SAMPLES, 1.0)
        for i in range(min(DEEP_SAMPLES, len(positions))):
            after, cursor = positions[int(i * step)]
            path = courses_path(limit=PAGE, cursor=cursor)
            walker.get("deep", path)
            paths.deep.append(path)
            paths.deep_depths.append(after // PAGE + 1)

        # Creator listings: their first pages count as first pages, their cursor pages as deep.
        for creator in rng.sample(sorted(set(creators)), min(CREATORS, len(set(creators)))):
            pages = walker.follow("creator", CREATOR_PAGES + 1, limit=PAGE, creatorId=creator)
            for offset, path, _ in pages:
                if offset:
                    paths.deep.append(path)
                    paths.deep_depths.append(offset // PAGE + 1)
                else:
                    paths.first.append(path)

        # Searches: single words across the popularity ranks (common to rare), pairs of words
        # (websearch ANDs them) and quoted two-word phrases lifted from real titles.
        paths.queries = search_queries(rng, titles)
        for query in paths.queries:
            for _, path, _ in walker.follow("search", SEARCH_PAGES, limit=PAGE, q=query):
                paths.search.append(path)
    return paths


def search_queries(rng: random.Random, titles: Sequence[str]) -> list[str]:
    n = len(VOCABULARY)
    # Ranks spaced evenly on a log scale, as query logs lean: about a quarter of the words are
    # among the ten commonest (each in 3-20% of a seeded catalog), the rest reach down to the
    # rarest (0.2%). Ranked search costs grow with the matches, so the head is what hurts.
    ranks = sorted(
        {min(n - 1, int(n ** (i / (SINGLE_WORDS - 1))) - 1) for i in range(SINGLE_WORDS)}
    )
    while len(ranks) < SINGLE_WORDS:
        ranks = sorted({*ranks, rng.randrange(n)})
    queries = [VOCABULARY[r] for r in ranks]
    for _ in range(WORD_PAIRS):
        a, b = rng.sample(VOCABULARY[: n // 3], 2)  # two reasonably common words
        queries.append(f"{a} {b}")
    phrases = sorted({" ".join(t.replace(":", "").split()[:2]).lower() for t in titles})
    queries += [f'"{p}"' for p in rng.sample(phrases, min(TITLE_PHRASES, len(phrases)))]
    return queries


# ---------------------------------------------------------------------------------------------
# wrk


LUA_TEMPLATE = """\
-- Generated by bench/catalog.py: GET /courses in a fixed mix of first pages, deep cursor pages
-- and searches, each thread drawing from its own seeded generator.
local groups = {
%(groups)s
}
local seed = %(seed)d
-- The browser variant (bench/browser.py): each request as Chromium sends it (these header lines,
-- in its order), with no X-Request-ID (a browser would preflight a GET that carried one).
local method = "%(method)s"
local raw_headers = %(raw_headers)s
local next_id = 0

function setup(thread)
  next_id = next_id + 1
  thread:set("thread_id", next_id)
end

function init(args)
  math.randomseed(seed + 7919 * thread_id)
  -- Requests are formatted once here, not on every call: the load generator stays cheap.
  -- X-Request-ID names the path (the API logs it), so the server log says which paths were slow.
  local host = wrk.headers["Host"]
  for _, group in ipairs(groups) do
    group.requests = {}
    for i, path in ipairs(group.paths) do
      if raw_headers ~= "" then
        group.requests[i] = method .. " " .. path .. " HTTP/1.1\\r\\nHost: " .. host .. "\\r\\n" ..
                            raw_headers .. "\\r\\n"
      else
        local headers = { ["Accept"] = "application/json",
                          ["X-Request-ID"] = "bench-" .. group.kind .. "-" .. i }
        group.requests[i] = wrk.format(method, path, headers)
      end
    end
  end
end

function request()
  local r = math.random()
  local group = groups[#groups]
  local upto = 0
  for _, g in ipairs(groups) do
    upto = upto + g.share
    if r < upto then group = g break end
  end
  return group.requests[math.random(#group.requests)]
end

function done(summary, latency, requests)
%(report)s
end
"""


def lua_strings(values: Sequence[str]) -> str:
    # json.dumps gives a double-quoted string with the escapes Lua also understands.
    return "{\n    " + ",\n    ".join(json.dumps(v) for v in values) + ",\n  }"


def write_script(
    directory: Path,
    paths: Paths,
    mix: dict[str, float],
    seed: int,
    *,
    method: str = "GET",
    raw_headers: str = "",
) -> Path:
    """The wrk script; `raw_headers` (header lines, each ending in CRLF, as bench.browser gives
    them) replaces the default Accept and X-Request-ID."""
    if not re.fullmatch(r"[A-Z]+", method) or not raw_headers.isascii():
        raise ValueError("an odd method or header lines")
    # Kinds with no share are left out: the last group listed also catches rounding leftovers.
    groups = ",\n".join(
        f'  {{ kind = "{kind}", share = {share!r}, paths = {lua_strings(getattr(paths, kind))} }}'
        for kind, share in mix.items()
        if share > 0
    )
    script = directory / "catalog.lua"
    script.write_text(
        LUA_TEMPLATE
        % {
            "groups": groups,
            "seed": seed,
            "method": method,
            "raw_headers": json.dumps(raw_headers),
            "report": WRK_REPORT_LUA,
        }
    )
    return script


def run_wrk(
    script: Path, url: str, *, threads: int, connections: int, duration: int, timeout: int | None
) -> tuple[dict[str, Any], str]:
    outcome = harness.run_wrk(
        script,
        f"{url.rstrip('/')}/courses",
        threads=threads,
        connections=connections,
        duration=duration,
        timeout=timeout,
    )
    return outcome.result, outcome.output


def wrk_failures(result: dict[str, Any], output: str) -> list[str]:
    """Why this run must not be reported: any socket error or any non-2xx response."""
    failures = [
        f"{n} socket {kind} errors"
        for kind, n in result["errors"].items()
        if n and kind != "status"
    ]
    if result["errors"]["status"]:
        failures.append(f"{result['errors']['status']} responses with status >= 400")
    # wrk's own line also counts 3xx, which the status counter above does not.
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non_2xx and int(non_2xx.group(1)):
        failures.append(f"{non_2xx.group(1)} non-2xx responses (wrk)")
    if not result["requests"]:
        failures.append("no requests completed")
    return failures


# ---------------------------------------------------------------------------------------------
# the served API (--serve)


def granian_workers() -> int | None:
    path = Path(os.environ.get("LMS_GRANIAN_CONFIG") or REPO_ROOT / "granian.toml")
    try:
        with path.open("rb") as handle:
            workers = tomllib.load(handle).get("server", {}).get("workers")
    except (OSError, tomllib.TOMLDecodeError):
        return None
    return workers if isinstance(workers, int) else None


def free_port() -> int:
    from lms.netutil import free_port as lms_free_port

    return lms_free_port()


def wait_ready(url: str, proc: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-5:]
            raise BenchError(f"lms serve exited ({proc.returncode}): {' | '.join(tail)}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/readyz", timeout=2.0).status_code == 200:
                return
        time.sleep(0.25)
    raise BenchError(f"lms serve was not ready within {READY_TIMEOUT:.0f}s (log: {log_path})")


@contextlib.contextmanager
def resolved_environ() -> Iterator[dict[str, str]]:
    """This environment plus concrete DATABASE_URL, NATS_URL, LMS_JWT_SECRET and
    LMS_CERT_SIGNING_KEY, resolved the way `lms dev` does before it starts `lms serve` (embedded
    servers held while we run).
    `lms serve` on its own does not get them to its workers: Granian forks them with settings
    cached before the resolved values were exported, and they exit asking for LMS_JWT_SECRET."""
    from lms.cli import resolved_services, with_secrets
    from lms.errors import StartupError
    from lms.settings import load_settings

    try:
        with resolved_services(load_settings()) as settings:
            yield {**os.environ, **with_secrets(settings).to_environ()}
    except StartupError as exc:
        raise BenchError(str(exc)) from None


@contextlib.contextmanager
def served_api(log_path: Path) -> Iterator[tuple[str, str]]:
    """(base URL, database URL) of `lms serve` started on a free port with this environment;
    stopped (SIGTERM, then SIGKILL to the process group it was started in) on the way out."""
    with resolved_environ() as environ:
        port = free_port()
        env = {
            # One load generator is one client: the per-client search limit would answer it 429
            # within a second. The per-process cap on concurrent searches stays as configured.
            "LMS_SEARCH_RATE_LIMIT": "1000000",
            **environ,
            "LMS_HOST": "127.0.0.1",
            "LMS_PORT": str(port),
        }
        with _serving(env, port, log_path) as url:
            yield url, env["DATABASE_URL"]


def published_courses(database_url: str) -> int | None:
    """The catalog's size, for the record (only known when we started the server ourselves)."""
    import asyncio

    import asyncpg

    async def count() -> int:
        conn = await asyncpg.connect(dsn=database_url)
        try:
            return int(
                await conn.fetchval("SELECT count(*) FROM courses WHERE status = 'PUBLISHED'")
            )
        finally:
            await conn.close()

    try:
        return asyncio.run(count())
    except (OSError, asyncpg.PostgresError):
        return None


@contextlib.contextmanager
def _serving(env: dict[str, str], port: int, log_path: Path) -> Iterator[str]:
    with log_path.open("wb") as log:
        # Its own session: a Ctrl-C here reaches us, and we stop the server in order.
        proc = subprocess.Popen(
            [sys.executable, "-m", "lms", "serve", "--port", str(port)],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    print(f"started lms serve (pid {proc.pid}) on {url}; log {log_path}", file=sys.stderr)
    try:
        wait_ready(url, proc, log_path)
        yield url
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def path_of_request_id(paths: Paths, request_id: str) -> tuple[str, str] | None:
    """(kind, path) for an id the Lua script sent ("bench-<kind>-<1-based index>")."""
    match = re.fullmatch(r"bench-(first|deep|search)-(\d+)", request_id)
    if not match:
        return None
    group: list[str] = getattr(paths, match.group(1))
    index = int(match.group(2)) - 1
    return (match.group(1), group[index]) if 0 <= index < len(group) else None


def server_log_summary(log_path: Path, start_offset: int, paths: Paths) -> dict[str, Any]:
    """What the API itself logged during the load: statuses, its own latency per kind of
    request, the slowest paths and any warning or error lines."""
    statuses: dict[str, int] = {}
    durations: dict[str, list[float]] = {"first": [], "deep": [], "search": []}
    by_path: dict[str, list[float]] = {}
    problems: list[str] = []
    with log_path.open("rb") as handle:
        handle.seek(start_offset)
        for raw in handle:
            try:
                entry = json.loads(raw)
            except ValueError:
                problems.append(raw.decode(errors="replace").strip()[:300])
                continue
            if entry.get("logger") == "lms.request":
                status = str(entry.get("status"))
                statuses[status] = statuses.get(status, 0) + 1
                known = path_of_request_id(paths, str(entry.get("request_id", "")))
                if known:
                    ms = float(entry.get("duration_ms", 0.0))
                    durations[known[0]].append(ms)
                    by_path.setdefault(known[1], []).append(ms)
            elif entry.get("level") in ("warning", "error", "critical"):
                problems.append(f"{entry.get('level')}: {entry.get('msg')}"[:300])
    # Paths by their median in-app time: one slow outlier is noise, a slow median is a query.
    slow_paths = sorted(by_path.items(), key=lambda kv: statistics.median(kv[1]), reverse=True)
    return {
        "requests_logged": sum(statuses.values()),
        "statuses": statuses,
        "in_app_ms": {k: percentiles(v) for k, v in durations.items() if v},
        "slowest_paths": [
            {"path": path, "median_ms": round(statistics.median(ms), 2), "n": len(ms)}
            for path, ms in slow_paths[:8]
        ],
        "warnings_and_errors": problems[:20],
        "warnings_and_errors_total": len(problems),
    }


# ---------------------------------------------------------------------------------------------
# reporting


def percentiles(values: Sequence[float]) -> dict[str, float]:
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)], 2)

    return {"n": len(ordered), "p50": at(0.50), "p90": at(0.90), "p99": at(0.99), "max": at(1.0)}


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def print_table(result: dict[str, Any], args: argparse.Namespace, paths: Paths) -> dict[str, float]:
    seconds = result["duration_us"] / 1e6
    lat = result["latency_us"]
    figures = {
        "requests_per_s": round(result["requests"] / seconds, 1),
        "p50_ms": lat["p50"] / 1000,
        "p90_ms": lat["p90"] / 1000,
        "p99_ms": lat["p99"] / 1000,
        "transfer_bytes_per_s": round(result["bytes"] / seconds),
    }
    mix = " / ".join(f"{share:.0%} {kind}" for kind, share in args.mix.items())
    print(
        f"\nGET /courses: {args.connections} connections, {args.threads} threads, "
        f"{seconds:.0f} s; mix {mix}; {len(paths.first)} first, {len(paths.deep)} deep "
        f"(pages {min(paths.deep_depths)}-{max(paths.deep_depths)}), "
        f"{len(paths.search)} search paths"
    )
    header = f"{'requests/s':>12} {'p50':>10} {'p90':>10} {'p99':>10} {'transfer/s':>14}"
    print(header)
    print("-" * len(header))
    latencies = " ".join(f"{figures[k]:>7.2f} ms" for k in ("p50_ms", "p90_ms", "p99_ms"))
    transfer = human_bytes(figures["transfer_bytes_per_s"]) + "/s"
    print(f"{figures['requests_per_s']:>12,.1f} {latencies} {transfer:>14}")
    print(f"{result['requests']:,} requests, {human_bytes(result['bytes'])} read, no errors")
    return figures


def git_commit() -> str | None:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("-dirty" if dirty else "")


def write_results(record: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS_DIR / f"catalog-{stamp}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path


def kind_of(path: str) -> str:
    if "q=" in path:
        return "search"
    return "deep" if "cursor=" in path else "first"


def probe_summary(paths: Paths) -> dict[str, Any]:
    """Unloaded latency of the collection requests by kind (limit-100 walk pages apart)."""
    by_kind: dict[str, list[float]] = {}
    for probe in paths.probes:
        kind = probe.kind if probe.kind == "walk" else kind_of(probe.path)
        by_kind.setdefault(kind, []).append(probe.ms)
    slowest = sorted(paths.probes, key=lambda p: p.ms, reverse=True)[:5]
    return {
        "ms_by_kind": {k: percentiles(v) for k, v in by_kind.items()},
        "slowest": [asdict(p) for p in slowest],
    }


# ---------------------------------------------------------------------------------------------
# main


def run(args: argparse.Namespace) -> int:
    started_at = datetime.now(UTC)
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="lms-bench-")))
        log_path = workdir / "serve.log"
        url, courses = args.url.rstrip("/"), None
        if args.serve:
            url, database_url = stack.enter_context(served_api(log_path))
            courses = published_courses(database_url)
        print(f"collecting request paths from {url} ...", file=sys.stderr)
        paths = collect_paths(url, args.seed)
        script = write_script(workdir, paths, args.mix, args.seed)
        log_offset = log_path.stat().st_size if args.serve else 0
        result, output = run_wrk(
            script,
            url,
            threads=args.threads,
            connections=args.connections,
            duration=args.duration,
            timeout=args.timeout,
        )
        server = server_log_summary(log_path, log_offset, paths) if args.serve else None
    failures = wrk_failures(result, output)
    record: dict[str, Any] = {
        "benchmark": "catalog",
        "started_at": started_at.isoformat(),
        "ok": not failures,
        "failures": failures,
        "url": "(served by --serve)" if args.serve else url,
        "served": args.serve,
        "granian_workers": granian_workers() if args.serve else None,
        "published_courses": courses,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "git_commit": git_commit(),
        "params": {
            "duration_s": args.duration,
            "connections": args.connections,
            "threads": args.threads,
            "timeout_s": args.timeout,  # None: wrk's default, 2 s
            "seed": args.seed,
            "page_size": PAGE,
        },
        "mix": args.mix,
        "paths": {
            "first": len(paths.first),
            "deep": len(paths.deep),
            "search": len(paths.search),
            "deep_depth_pages": percentiles([float(d) for d in paths.deep_depths]),
            "queries": paths.queries,
        },
        "unloaded_probe_ms": probe_summary(paths),
        "wrk": result,
        "wrk_output": output,
        "server_log": server,
    }
    if failures:
        saved = write_results(record)
        print(output, file=sys.stderr)
        raise BenchError(f"the run had errors ({'; '.join(failures)}); details in {saved}")
    record["figures"] = print_table(result, args, paths)
    if server:
        print(
            f"server: {server['requests_logged']:,} requests logged, "
            f"statuses {server['statuses']}, "
            f"{server['warnings_and_errors_total']} warning/error lines"
        )
        for kind, stats in server["in_app_ms"].items():
            print(
                f"  in-app {kind:<6} {stats['n']:>8,} requests  p50 {stats['p50']:7.2f} ms"
                f"  p90 {stats['p90']:7.2f} ms  p99 {stats['p99']:7.2f} ms"
            )
        for slow in server["slowest_paths"][:3]:
            print(f"  slow: median {slow['median_ms']:.1f} ms  {slow['path'][:110]}")
    print(f"results: {write_results(record).relative_to(REPO_ROOT)}")
    return 0


def parse_mix(text: str) -> dict[str, float]:
    try:
        weights = [float(part) for part in text.split("/")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not three numbers like 50/30/20: {text!r}") from None
    if len(weights) != 3 or min(weights) < 0 or sum(weights) <= 0:
        raise argparse.ArgumentTypeError(f"need three shares >= 0 like 50/30/20: {text!r}")
    return {kind: w / sum(weights) for kind, w in zip(MIX, weights, strict=True)}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.catalog",
        description="Collect GET /courses request paths from a running API (or one started with "
        "--serve), then load it with wrk and report requests/s and latency percentiles.",
    )
    add_load_arguments(
        parser, duration=30, duration_help="seconds of load", connections=64, timeout=None
    )
    parser.add_argument("--seed", type=int, default=1, help="seed for the paths and the mix")
    parser.add_argument(
        "--mix",
        type=parse_mix,
        default=MIX,
        metavar="FIRST/DEEP/SEARCH",
        help="relative shares of first pages, deep cursor pages and searches (default 50/30/20)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run_main("catalog", build_parser().parse_args(argv), run)


if __name__ == "__main__":
    sys.exit(main())
