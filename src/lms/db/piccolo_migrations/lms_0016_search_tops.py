"""Ranked search that does not grow with its matches: the top of a common query, kept in tables.

A ranked search ranks every match (ts_rank_cd over the GIN index's hits), so a common word at
1,000,000 courses costs half a second a page. search_tops names a query (its tsquery, as
websearch_to_tsquery('english', q) writes it) whose best matches are kept; search_top_rows
holds, for each, every published match whose (rank, id) is at or above the kept boundary
(last_rank, last_id), or every match when `complete`. A page inside that range is read from the
(top_id, rank, course_id) index in the order the plain search gives, whatever the match count.

Triggers on courses keep the rows exact in the writer's transaction: a course published,
unpublished or edited loses its old rows and gains a row for every kept query it now matches
above the boundary. A shared advisory lock taken by those triggers, against the exclusive one
a fill holds while it ranks, means no write falls between a fill's snapshot and its commit.
TRUNCATE of courses forgets every kept query. They are plain tables, so read replicas have them.

Frozen history: never import application code here.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.apps.migrations.tables import Migration

ID = "2026-12-04T21:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "Kept tops of common searches, maintained by triggers on courses"

# pg_advisory_xact_lock key shared by the triggers (shared) and a fill (exclusive): 'lmsTOPS'.
LOCK_KEY = 7_812_345_678_901

CHANGED = "o.status IS DISTINCT FROM n.status OR o.search_vector IS DISTINCT FROM n.search_vector"


def _add_rows(source: str) -> str:
    """Rows for every kept query each published course of `source` (alias n) matches, at or
    above the query's boundary. Fixed text: `source` is one of this file's constants."""
    return f"""
        INSERT INTO search_top_rows (top_id, rank, course_id)
        SELECT t.id, r.rank, n.id
        FROM {source}
        CROSS JOIN search_tops t
        CROSS JOIN LATERAL (SELECT ts_rank_cd(n.search_vector, t.query) AS rank) r
        WHERE n.status = 'PUBLISHED' AND n.search_vector @@ t.query
          AND (t.complete OR (r.rank, n.id) >= (t.last_rank, t.last_id))"""  # noqa: S608


INSERTED = f"""
CREATE FUNCTION lms_search_tops_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM new_courses WHERE status = 'PUBLISHED') THEN
        RETURN NULL;
    END IF;
    PERFORM pg_advisory_xact_lock_shared({LOCK_KEY});
    {_add_rows("new_courses n")};
    RETURN NULL;
END $$
"""  # noqa: S608 - fixed text

UPDATED = f"""
CREATE FUNCTION lms_search_tops_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM old_courses o JOIN new_courses n ON n.id = o.id WHERE {CHANGED}
    ) THEN
        RETURN NULL;
    END IF;
    PERFORM pg_advisory_xact_lock_shared({LOCK_KEY});
    DELETE FROM search_top_rows s
    USING old_courses o JOIN new_courses n ON n.id = o.id
    WHERE s.course_id = o.id AND ({CHANGED});
    {_add_rows(f"old_courses o JOIN new_courses n ON n.id = o.id AND ({CHANGED})")};
    RETURN NULL;
END $$
"""  # noqa: S608 - fixed text

TRUNCATED = """
CREATE FUNCTION lms_search_tops_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM search_tops;
    RETURN NULL;
END $$
"""

STEPS: list[tuple[str, str]] = [
    (
        """CREATE TABLE search_tops (
            id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            key text NOT NULL UNIQUE,
            query tsquery NOT NULL,
            complete boolean NOT NULL,
            last_rank real,
            last_id uuid,
            filled_at timestamptz NOT NULL DEFAULT now(),
            CHECK (complete OR (last_rank IS NOT NULL AND last_id IS NOT NULL))
        )""",
        "DROP TABLE IF EXISTS search_tops CASCADE",
    ),
    (
        """CREATE TABLE search_top_rows (
            top_id integer NOT NULL REFERENCES search_tops (id) ON DELETE CASCADE,
            rank real NOT NULL,
            course_id uuid NOT NULL REFERENCES courses (id) ON DELETE CASCADE,
            PRIMARY KEY (top_id, rank, course_id)
        )""",
        "DROP TABLE IF EXISTS search_top_rows",
    ),
    (
        "CREATE INDEX search_top_rows_course_idx ON search_top_rows (course_id)",
        "DROP INDEX IF EXISTS search_top_rows_course_idx",
    ),
    (INSERTED, "DROP FUNCTION IF EXISTS lms_search_tops_inserted() CASCADE"),
    (UPDATED, "DROP FUNCTION IF EXISTS lms_search_tops_updated() CASCADE"),
    (TRUNCATED, "DROP FUNCTION IF EXISTS lms_search_tops_truncated() CASCADE"),
    (
        "CREATE TRIGGER courses_search_tops_insert AFTER INSERT ON courses"
        " REFERENCING NEW TABLE AS new_courses"
        " FOR EACH STATEMENT EXECUTE FUNCTION lms_search_tops_inserted()",
        "DROP TRIGGER IF EXISTS courses_search_tops_insert ON courses",
    ),
    (
        "CREATE TRIGGER courses_search_tops_update AFTER UPDATE ON courses"
        " REFERENCING OLD TABLE AS old_courses NEW TABLE AS new_courses"
        " FOR EACH STATEMENT EXECUTE FUNCTION lms_search_tops_updated()",
        "DROP TRIGGER IF EXISTS courses_search_tops_update ON courses",
    ),
    (
        "CREATE TRIGGER courses_search_tops_truncate AFTER TRUNCATE ON courses"
        " FOR EACH STATEMENT EXECUTE FUNCTION lms_search_tops_truncated()",
        "DROP TRIGGER IF EXISTS courses_search_tops_truncate ON courses",
    ),
]


async def _run(statements: list[str]) -> None:
    for sql in statements:
        await Migration.raw(sql).run()


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="lms", description=DESCRIPTION)

    async def run_forwards() -> None:
        await _run([forward for forward, _ in STEPS])

    async def run_backwards() -> None:
        await _run([backward for _, backward in reversed(STEPS)])

    manager.add_raw(run_forwards)
    manager.add_raw_backwards(run_backwards)
    return manager
