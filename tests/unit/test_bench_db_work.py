"""The bench's statement counter (bench.peers.db_work) reads PostgreSQL's statement log as the
server writes it: each request's statements are the servers' between its two markers, with their
logged parameters; transaction control, a new connection's setup and background work apart."""

from __future__ import annotations

from bench.peers.db_work import Statement, StatementLog, Work, parse, scanned
from bench.peers.same_bytes import Report, compare_work

OURS = 100  # same_bytes's own connection
LOG = """\
2026-12-04 18:40:01.001 UTC [100] postgres@bench LOG:  statement: SELECT 'same_bytes:1:begin'
2026-12-04 18:40:01.002 UTC [200] postgres@bench LOG:  statement: BEGIN
2026-12-04 18:40:01.003 UTC [200] postgres@bench LOG:  execute __asyncpg_stmt_3__: SELECT id
\tFROM courses
\tWHERE status = $1 AND price < $2
2026-12-04 18:40:01.003 UTC [200] postgres@bench DETAIL:  parameters: $1 = 'PUBLISHED', $2 = '10'
2026-12-04 18:40:01.003 UTC [300] postgres@other LOG:  statement: SELECT 'another database'
2026-12-04 18:40:01.004 UTC [201] postgres@bench LOG:  execute <unnamed>: SELECT 1
2026-12-04 18:40:01.004 UTC [202] postgres@bench LOG:  statement: show standard_conforming_strings
2026-12-04 18:40:01.005 UTC [200] postgres@bench LOG:  statement: COMMIT
2026-12-04 18:40:01.006 UTC [100] postgres@bench LOG:  statement: SELECT 'same_bytes:1:end'
2026-12-04 18:40:01.007 UTC [200] postgres@bench LOG:  statement: SELECT 'between requests'
2026-12-04 18:40:01.008 UTC [100] postgres@bench LOG:  statement: SELECT 'same_bytes:2:begin'
2026-12-04 18:40:01.009 UTC [203] postgres@bench LOG:  execute s1: UPDATE outbound_messages
2026-12-04 18:40:01.010 UTC [100] postgres@bench LOG:  statement: SELECT 'same_bytes:2:end'
"""


def counter() -> StatementLog:
    log = StatementLog("postgresql://unused")
    log.pid, log.database = OURS, "bench"
    log.windows = {1: ("lms", "catalog first page"), 2: ("raw", "catalog first page")}
    return log


def test_statements_of_the_database_with_their_parameters() -> None:
    entries = parse(LOG, "bench")
    assert all(pid != 300 for pid, _ in entries)  # another database
    select = next(s for pid, s in entries if pid == 200 and "courses" in s.sql)
    assert select.sql == "SELECT id\nFROM courses\nWHERE status = $1 AND price < $2"
    assert select.params == {1: "'PUBLISHED'", 2: "'10'"}
    where = "WHERE status = 'PUBLISHED' AND price < '10'"
    assert select.literal() == f"SELECT id\nFROM courses\n{where}"


def test_each_request_gets_the_statements_between_its_markers() -> None:
    works = counter().attribute(parse(LOG, "bench"))
    [lms] = works[("lms", "catalog first page")]
    assert [s.split("\n")[0] for s in lms.statements] == ["SELECT id"]
    assert lms.transaction == ["BEGIN", "COMMIT"]
    assert lms.setup == ["show standard_conforming_strings"]
    assert lms.round_trips == 3
    # lms's outbox dispatcher ran during the other request: background, not the request's
    [raw] = works[("raw", "catalog first page")]
    assert raw.statements == []
    assert raw.transaction == []


def test_a_statement_with_a_dollar_sign_in_a_parameter_is_written_in_once() -> None:
    statement = Statement("SELECT $1, $10", {1: "'costs $2'", 10: "NULL"})
    assert statement.literal() == "SELECT 'costs $2', NULL"


def test_rows_read_are_what_the_scans_returned_and_filtered_out() -> None:
    plan = {
        "Node Type": "Limit",
        "Plans": [
            {
                "Node Type": "Nested Loop",
                "Plans": [
                    {"Node Type": "Index Scan", "Actual Rows": 21, "Actual Loops": 1},
                    {
                        "Node Type": "Seq Scan",
                        "Actual Rows": 1,
                        "Rows Removed by Filter": 9,
                        "Actual Loops": 21,
                    },
                ],
            }
        ],
    }
    assert scanned(plan) == 21 + 10 * 21


def work(statements: int, transaction: int = 0) -> Work:
    return Work(
        statements=[f"SELECT {i}" for i in range(statements)],
        logged=[Statement(f"SELECT {i}") for i in range(statements)],
        transaction=["BEGIN", "COMMIT"][:transaction],
    )


def verdicts(works: dict[tuple[str, str], list[Work]]) -> dict[str, str]:
    report = Report(["fastapi"])
    compare_work(["lms", "fastapi"], works, report, show=False)
    return {o.name: o.verdict for o in report.outcomes["fastapi"]}


def test_a_peer_running_more_statements_or_round_trips_than_lms_fails() -> None:
    works = {
        ("lms", "catalog first page"): [work(1)],
        ("fastapi", "catalog first page"): [work(2)],
        ("lms", "heartbeat: first"): [work(1)],
        ("fastapi", "heartbeat: first"): [work(1, transaction=2)],
        ("lms", "course bc9d0cae"): [work(1)],
        ("fastapi", "course bc9d0cae"): [work(1)],
    }
    assert verdicts(works) == {
        "database work: catalog listing": "DIFFERENT",
        "database work: heartbeat": "DIFFERENT",
        "database work: course page": "IDENTICAL",
    }


def test_completion_in_a_transaction_is_known_only_against_a_stored_function() -> None:
    stored_function = {
        ("lms", "complete: lesson 1"): [
            Work(statements=["SELECT * FROM lms_complete_or_prepare($1)"])
        ],
        ("fastapi", "complete: lesson 1"): [work(2, transaction=2)],
    }
    assert verdicts(stored_function) == {"database work: completion": "KNOWN-EXTRA"}
    with_certificate = {
        ("lms", "complete: lesson 2"): [
            Work(
                statements=[
                    "SELECT * FROM lms_complete_or_prepare($1)",
                    "SELECT * FROM lms_complete_with_certificate($1)",
                ]
            )
        ],
        ("fastapi", "complete: lesson 2"): [work(6, transaction=2)],
    }
    assert verdicts(with_certificate) == {"database work: completion": "KNOWN-EXTRA"}
    in_a_transaction = {
        ("lms", "complete: lesson 1"): [work(2, transaction=2)],
        ("fastapi", "complete: lesson 1"): [work(3, transaction=2)],
    }
    assert verdicts(in_a_transaction) == {"database work: completion": "DIFFERENT"}


def test_background_work_every_server_does_is_not_a_requests() -> None:
    """The search counts flushed in aggregate (lms's unnest, the peers' many-row upserts adding
    excluded.hits), lms's event fan-out (it runs with no endpoint too), the kept search top's
    fill, and asyncpg's multi-line jit setup; a per-search counter upsert still counts."""
    from bench.peers.db_work import kind_of

    background = [
        "INSERT INTO rate_limit_counters AS c (key, window_start, hits)\n"
        "SELECT k, now(), n FROM unnest($1::text[], $2::int[]) AS t (k, n) ORDER BY k",
        "INSERT INTO rate_limit_counters (key, window_start, hits) VALUES ($1, now(), $2), "
        "($3, now(), $4) ON CONFLICT (key) DO UPDATE SET hits = CASE WHEN x "
        "THEN excluded.hits ELSE rate_limit_counters.hits + excluded.hits END",
        "INSERT INTO webhook_deliveries (endpoint_id, event_id, event_seq, type)\nSELECT w.id",
        "INSERT INTO xapi_statements (event_id) SELECT 1",
        "UPDATE event_cursors SET tick = $2, after_xid = $3, after_seq = $4 WHERE name = $1",
        "INSERT INTO event_ticks (id, snapshot) SELECT t.id + 1, pg_current_snapshot()",
        "SELECT pg_advisory_xact_lock($1)",
        "WITH q AS (SELECT 1), top AS (\n    INSERT INTO search_tops (key) SELECT 1) SELECT 1",
        "SELECT t.id, t.complete, (SELECT count(*) FROM search_top_rows s) AS n",
    ]
    assert [kind_of(sql) for sql in background] == ["noise"] * len(background)
    jit = "\n    SELECT\n        current_setting('jit') AS cur,\n        set_config('jit', 'off')"
    assert kind_of(jit) == "setup"
    per_search = (
        "INSERT INTO rate_limit_counters AS c (key, window_start, hits) VALUES ($1, now(), 1) "
        "ON CONFLICT (key) DO UPDATE SET hits = CASE WHEN x THEN 1 ELSE c.hits + 1 END"
    )
    kept_page = "WITH q AS (SELECT 1), page AS (SELECT r.id FROM search_top_rows r) SELECT 1"
    assert kind_of(per_search) == kind_of(kept_page) == "statement"
