"""The event log as xAPI 1.0.3 statements: pure functions from one event to one statement.

| event              | verb (registry)                               | object                      |
|--------------------|-----------------------------------------------|-----------------------------|
| enrollment.created | registered (ADL)                              | the course                  |
| lesson.progressed  | progressed (ADL), Video Profile progress      | the lesson (course parent)  |
| lesson.completed   | completed (ADL)                               | the lesson (course parent)  |
| course.completed   | completed (ADL)                               | the course                  |
| certificate.issued | earned (TinCan registry)                      | the certificate (verify URL)|

Every other event type has no statement (`statement_for` answers None).

The actor is an `account` {homePage: LMS_PUBLIC_BASE_URL, name: the user id}, never an email. The
statement id is uuid5(STATEMENT_NAMESPACE, event id), and everything in a statement comes from the
event alone (its timestamp is the event's, not the sending time), so a statement sent again after a
lost answer is the same statement: an LRS keeps one (xAPI 1.0.3 §2.2: a repeated id with an
equivalent statement is ignored, a different one is refused), however often it is retried.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from asyncpg.pgproto import pgproto

XAPI_VERSION = "1.0.3"

# asyncpg's UUID type parses in C (uuid.UUID's parse in Python, four or five per statement, was
# a third of a statement's making); it takes the forms the log holds (canonical, with or without
# hyphens, any case) and refuses the rest with ValueError.
_parse_uuid = pgproto.UUID

# Fixed forever: changing it gives every event a new statement id, and an LRS would then hold
# a second statement for each event sent before the change.
STATEMENT_NAMESPACE = uuid.UUID("6f1b7c8e-3a52-5d0e-9c41-2b8f4e7a9d13")

VERB_REGISTERED = "http://adlnet.gov/expapi/verbs/registered"
VERB_PROGRESSED = "http://adlnet.gov/expapi/verbs/progressed"
VERB_COMPLETED = "http://adlnet.gov/expapi/verbs/completed"
VERB_EARNED = "http://id.tincanapi.com/verb/earned"

ACTIVITY_COURSE = "http://adlnet.gov/expapi/activities/course"
ACTIVITY_LESSON = "http://adlnet.gov/expapi/activities/lesson"
ACTIVITY_CERTIFICATE = "http://id.tincanapi.com/activitytype/certificate"

# The xAPI Video Profile (https://w3id.org/xapi/video): how far into the video (0..1) and how
# long it is (seconds). Lessons are videos; their milestones are measured on the video.
VIDEO_PROGRESS = "https://w3id.org/xapi/video/extensions/progress"
VIDEO_LENGTH = "https://w3id.org/xapi/video/extensions/length"
VIDEO_TIME = "https://w3id.org/xapi/video/extensions/time"

MILESTONES = (25, 50, 75)

# The event types that have a statement.
MAPPED_TYPES = frozenset(
    {
        "enrollment.created",
        "lesson.progressed",
        "lesson.completed",
        "course.completed",
        "certificate.issued",
    }
)


class UnmappableEvent(ValueError):
    """An event of a mapped type whose data lacks what its statement needs."""


def statement_id(event_id: uuid.UUID | str) -> str:
    """The statement id of an event: the same for every send of the event."""
    return str(uuid.uuid5(STATEMENT_NAMESPACE, str(_parse_uuid(str(event_id)))))


def xapi_timestamp(moment: datetime) -> str:
    """ISO 8601 in UTC to the millisecond (what an LRS is required to keep, so a stored
    statement compares equal to the one sent again)."""
    if moment.tzinfo is None:
        raise UnmappableEvent("an event's time must carry its time zone")
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _verb(iri: str, word: str) -> dict[str, Any]:
    return {"id": iri, "display": {"en-US": word}}


def _uuid_field(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str | uuid.UUID):
        raise UnmappableEvent(f"the event's data has no {key} (a UUID)")
    try:
        return str(_parse_uuid(str(value)))
    except (TypeError, ValueError, AttributeError):
        raise UnmappableEvent(f"the event's data has no {key} (a UUID)") from None


def _name(data: Mapping[str, Any], key: str) -> dict[str, str] | None:
    value = data.get(key)
    # "und": titles are in whatever language their author wrote them.
    return {"und": value} if isinstance(value, str) and value.strip() else None


def actor(base_url: str, user_id: str) -> dict[str, Any]:
    """The learner as an xAPI account on this platform: no email, no name."""
    return {"objectType": "Agent", "account": {"homePage": base_url, "name": user_id}}


def course_activity(base_url: str, data: Mapping[str, Any]) -> dict[str, Any]:
    course_id = _uuid_field(data, "courseId")
    definition: dict[str, Any] = {"type": ACTIVITY_COURSE}
    if name := _name(data, "courseTitle"):
        definition["name"] = name
    return {
        "objectType": "Activity",
        "id": f"{base_url}/courses/{course_id}",
        "definition": definition,
    }


def lesson_activity(base_url: str, data: Mapping[str, Any]) -> dict[str, Any]:
    course_id = _uuid_field(data, "courseId")
    lesson_id = _uuid_field(data, "lessonId")
    definition: dict[str, Any] = {"type": ACTIVITY_LESSON}
    if name := _name(data, "lessonTitle"):
        definition["name"] = name
    return {
        "objectType": "Activity",
        "id": f"{base_url}/courses/{course_id}/lessons/{lesson_id}",
        "definition": definition,
    }


def _course_parent(base_url: str, data: Mapping[str, Any]) -> dict[str, Any]:
    parent = course_activity(base_url, data)
    return {"contextActivities": {"parent": [parent]}}


def _context(base_url: str, data: Mapping[str, Any], *, in_course: bool) -> dict[str, Any]:
    context: dict[str, Any] = {"platform": "lms"}
    if data.get("enrollmentId") is not None:
        # One enrollment is one attempt at the course: the xAPI registration ties its
        # statements together.
        context["registration"] = _uuid_field(data, "enrollmentId")
    if in_course:
        context |= _course_parent(base_url, data)
    return context


def _seconds(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _progressed(base_url: str, data: Mapping[str, Any]) -> dict[str, Any]:
    milestone = data.get("milestone")
    if isinstance(milestone, bool) or milestone not in MILESTONES:
        raise UnmappableEvent(f"lesson.progressed needs a milestone of {MILESTONES}")
    result_extensions: dict[str, Any] = {VIDEO_PROGRESS: milestone / 100}
    context = _context(base_url, data, in_course=True)
    length = _seconds(data.get("durationSeconds"))
    if length is not None and length > 0:
        context["extensions"] = {VIDEO_LENGTH: round(length, 3)}
        result_extensions[VIDEO_TIME] = round(length * milestone / 100, 3)
    return {
        "verb": _verb(VERB_PROGRESSED, "progressed"),
        "object": lesson_activity(base_url, data),
        "result": {"completion": False, "extensions": result_extensions},
        "context": context,
    }


def _earned(base_url: str, data: Mapping[str, Any]) -> dict[str, Any]:
    verify_url = data.get("verifyUrl")
    if not isinstance(verify_url, str) or not verify_url.startswith(("https://", "http://")):
        raise UnmappableEvent("certificate.issued needs the credential's verifyUrl")
    definition: dict[str, Any] = {"type": ACTIVITY_CERTIFICATE, "moreInfo": verify_url}
    if name := _name(data, "courseTitle"):
        definition["name"] = name
    return {
        "verb": _verb(VERB_EARNED, "earned"),
        # The credential itself, named by the public address that verifies it.
        "object": {"objectType": "Activity", "id": verify_url, "definition": definition},
        "result": {"completion": True, "success": True},
        "context": _context(base_url, data, in_course=True),
    }


def statement_for(
    event_id: uuid.UUID | str,
    event_type: str,
    occurred_at: datetime,
    data: Mapping[str, Any],
    *,
    base_url: str,
) -> dict[str, Any] | None:
    """The xAPI statement of one event, or None for a type that has none. `base_url` is
    LMS_PUBLIC_BASE_URL (the actor's homePage and the activities' IRIs). Raises UnmappableEvent
    when a mapped event lacks a field its statement needs."""
    if event_type not in MAPPED_TYPES:
        return None
    base_url = base_url.rstrip("/")
    body: dict[str, Any]
    if event_type == "enrollment.created":
        body = {
            "verb": _verb(VERB_REGISTERED, "registered"),
            "object": course_activity(base_url, data),
            "context": _context(base_url, data, in_course=False),
        }
    elif event_type == "lesson.progressed":
        body = _progressed(base_url, data)
    elif event_type == "lesson.completed":
        body = {
            "verb": _verb(VERB_COMPLETED, "completed"),
            "object": lesson_activity(base_url, data),
            # Not the Video Profile's progress: a lesson may complete without its video watched
            # to the end (the completion threshold, or a lesson without video).
            "result": {"completion": True},
            "context": _context(base_url, data, in_course=True),
        }
    elif event_type == "course.completed":
        body = {
            "verb": _verb(VERB_COMPLETED, "completed"),
            "object": course_activity(base_url, data),
            "result": {"completion": True},
            "context": _context(base_url, data, in_course=False),
        }
    else:
        body = _earned(base_url, data)
    return {
        "id": statement_id(event_id),
        "actor": actor(base_url, _uuid_field(data, "userId")),
        **body,
        "timestamp": xapi_timestamp(occurred_at),
    }
