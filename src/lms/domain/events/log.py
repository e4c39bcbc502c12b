"""The event log: what happened, written in the transaction that made it happen.

`record_event(conn, type, data)` appends one event on the caller's connection, inside its
transaction: the event commits with the change or not at all. Sinks (webhooks, xAPI) never read
the caller's tables; everything an integrator needs is in `data`: ids and the fields of the
change, never password hashes, one-time codes or tokens, and an email only in an event about the
account itself (none of the types below carries one).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec

from lms.db.queries import Conn
from lms.db.queries import events as sql

# Every type the platform emits (the contract's list, plus the lesson milestones xAPI needs).
# order.paid / order.refunded are recorded by the payments domain through record_event.
EVENT_TYPES: frozenset[str] = frozenset(
    {
        "enrollment.created",
        "lesson.progressed",
        "lesson.completed",
        "course.completed",
        "certificate.issued",
        "certificate.revoked",
        "course.submitted",
        "course.published",
        "course.rejected",
        "transcript.ready",
        "transcript.failed",
        "order.paid",
        "order.refunded",
    }
)


@dataclass(frozen=True, slots=True)
class Event:
    """One event as sinks see it."""

    id: uuid.UUID
    seq: int
    type: str
    occurred_at: datetime
    data: dict[str, Any]
    # The data as the JSON text PostgreSQL keeps, for a reader that sends it on as it is (a
    # webhook's body); None when the data was decoded instead.
    data_json: str | None = None


async def record_event(conn: Conn, type_: str, data: dict[str, Any]) -> uuid.UUID:
    """Append an event in the caller's transaction; its id (the webhook-id, the xAPI statement
    id's seed). `data` may hold UUIDs, datetimes and Decimals: they are stored as strings."""
    if type_ not in EVENT_TYPES:
        raise ValueError(f"unknown event type {type_!r}: add it to EVENT_TYPES")
    return await sql.insert(conn, type_, msgspec.to_builtins(data))


async def record_events(conn: Conn, events: list[tuple[str, dict[str, Any]]]) -> None:
    """record_event for several events, in one statement, in the order given."""
    if not events:
        return
    await sql.insert_many(conn, *event_texts(events))


def event_texts(events: list[tuple[str, dict[str, Any]]]) -> tuple[list[str], list[str]]:
    """(types, data as JSON texts) of events to record in one statement, in the order given."""
    for type_, _ in events:
        if type_ not in EVENT_TYPES:
            raise ValueError(f"unknown event type {type_!r}: add it to EVENT_TYPES")
    return [type_ for type_, _ in events], [_JSON.encode(data).decode() for _, data in events]


# What msgspec.to_builtins and the pool's jsonb codec make of `data`, as JSON text: UUIDs,
# datetimes and Decimals as strings.
_JSON = msgspec.json.Encoder(decimal_format="string")


def event_of(row: Any) -> Event:
    return Event(row["id"], row["seq"], row["type"], row["occurred_at"], row["data"])
