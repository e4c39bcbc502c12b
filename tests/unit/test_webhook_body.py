"""A webhook's body is the Standard Webhooks payload, `{type, timestamp, data}`, with the event's
data spliced in as PostgreSQL's JSON text (never decoded and encoded again)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from lms.domain.events.delivery import body_of


def test_the_body_is_json_with_the_type_the_utc_time_and_the_data_as_stored() -> None:
    stored = '{"userId": "u-1", "title": "Quotes \\" and \\\\ and \\u00e9", "n": [1, 2.5]}'
    occurred = datetime(2026, 12, 5, 13, 0, 1, 123456, tzinfo=timezone(timedelta(hours=2)))
    body = body_of("course.published", occurred, stored)
    assert json.loads(body) == {
        "type": "course.published",
        "timestamp": "2026-12-05T11:00:01.123456Z",
        "data": json.loads(stored),
    }
    assert stored.encode() in body  # the stored text itself: what was signed is what was stored
