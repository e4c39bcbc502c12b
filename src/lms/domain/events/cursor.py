"""Reading the event log from a place, tick by tick (lms.db.queries.event_cursors).

A reader (the dispatcher's webhook fan-out, the xAPI sender) keeps one `Place`; reading returns
the events after it, each with the place just past it (a sender that passes on part of a batch
moves there), and the place past the whole batch. Reading writes nothing: a reader moves its
place when what it read is safely elsewhere, so a crash in between reads the same events again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from lms.db.queries import Conn
from lms.db.queries import event_cursors as sql
from lms.domain.events.log import Event, event_of


@dataclass(frozen=True, slots=True)
class Place:
    """Every event of the ticks before `tick` is read, and of `tick` those up to (xid, seq)."""

    tick: int
    xid: int = 0
    seq: int = 0

    @classmethod
    def of(cls, row: asyncpg.Record) -> Place:
        return cls(row["tick"], row["after_xid"], row["after_seq"])


@dataclass(frozen=True, slots=True)
class Batch:
    events: list[Event]
    places: list[Place]  # places[i]: just past events[i]
    end: Place  # past the whole batch (and any tick found empty after it)


async def read(
    conn: Conn,
    place: Place,
    latest_tick: int,
    limit: int,
    types: Sequence[str] | None = None,
    *,
    with_data: bool = True,
    data_as_text: bool = False,
    oldest_tick: int | None = None,
) -> Batch:
    """Up to `limit` events after `place` (of `types` when given), through `latest_tick`;
    `with_data=False`: their data is left in the database (each event's `data` is {});
    `data_as_text`: it comes as PostgreSQL's JSON text, in `data_json` (`data` is {}).
    `oldest_tick`: a place whose previous tick is gone (a webhook endpoint disabled for longer
    than the log keeps: sql.forget_passed_ticks) starts after the oldest tick left."""
    if oldest_tick is not None and place.tick - 1 < oldest_tick:
        place = Place(oldest_tick + 1)
    events: list[Event] = []
    places: list[Place] = []
    while len(events) < limit and place.tick <= latest_tick:
        wanted = limit - len(events)
        rows = await sql.tick_events(
            conn,
            place.tick,
            place.xid,
            place.seq,
            wanted,
            types,
            with_data=with_data,
            data_as_text=data_as_text,
        )
        for row in rows:
            if with_data and not data_as_text:
                events.append(event_of(row))
            else:
                events.append(
                    Event(
                        row["id"],
                        row["seq"],
                        row["type"],
                        row["occurred_at"],
                        {},
                        row["data"] if data_as_text else None,
                    )
                )
            places.append(Place(place.tick, row["xid"], row["seq"]))
        place = places[-1] if len(rows) == wanted else Place(place.tick + 1)
    return Batch(events, places, place)
