"""EXPLAIN (ANALYZE, BUFFERS) for plan tests: what PostgreSQL actually did (rows read, pages
touched), not what the planner expected, under the custom plan of a statement's first executions
and under the generic plan a prepared statement switches to (asyncpg prepares every statement)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import asyncpg

PLANS = ("custom", "generic")


def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


def literal(value: object) -> str:
    """`value` as an SQL literal for EXECUTE's arguments (the prepared statement's parameter
    types, inferred by PREPARE, coerce them)."""
    if isinstance(value, int):
        return str(value)
    if isinstance(value, datetime):
        return f"'{value.isoformat()}'"
    if isinstance(value, uuid.UUID | str):
        return "'" + str(value).replace("'", "''") + "'"
    raise TypeError(f"no SQL literal for {value!r}")


async def analyze(conn: asyncpg.Connection, plan: str, sql: str, *args: object) -> dict[str, Any]:
    """The EXPLAIN (ANALYZE, BUFFERS) report of `sql` run with `args`, under a "custom" plan
    (planned for these values) or the "generic" plan of a prepared statement (planned for any
    values: PREPARE, then EXPLAIN EXECUTE under plan_cache_mode = force_generic_plan)."""
    if plan == "custom":
        await conn.execute("SET plan_cache_mode = force_custom_plan")
        try:
            raw = await conn.fetchval(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}", *args)
        finally:
            await conn.execute("RESET plan_cache_mode")
        return dict(json.loads(raw)[0])
    if plan != "generic":
        raise ValueError(f"plan is custom or generic, not {plan!r}")
    await conn.execute(f"PREPARE explained AS {sql}")
    try:
        await conn.execute("SET plan_cache_mode = force_generic_plan")
        arguments = ", ".join(literal(a) for a in args)
        raw = await conn.fetchval(
            f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE explained({arguments})"
        )
    finally:
        await conn.execute("RESET plan_cache_mode")
        await conn.execute("DEALLOCATE explained")
    return dict(json.loads(raw)[0])


def rows_read(node: dict[str, Any]) -> int:
    """Rows a scan returned plus those it read and threw away, over all its loops."""
    per_loop = (
        node["Actual Rows"]
        + node.get("Rows Removed by Filter", 0)
        + node.get("Rows Removed by Index Recheck", 0)
    )
    return int(per_loop * node["Actual Loops"])


def buffers(plan: dict[str, Any]) -> int:
    """Pages the statement touched, from PostgreSQL's cache or from disk (a node's counts
    include its children's, so the root's are the whole statement's)."""
    return int(plan["Shared Hit Blocks"] + plan["Shared Read Blocks"])
