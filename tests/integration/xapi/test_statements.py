"""Events as xAPI 1.0.3 statements: checked by an independent validator
(@learninglocker/xapi-validation) and accepted by a real LRS (Ralph), once per event however often
they are sent."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from lms.domain.events import xapi
from tests.support.lrs import Ralph, xapi_problems

BASE = "https://learn.lms.dev"


def sample_events() -> list[tuple[uuid.UUID, str, datetime, dict[str, Any]]]:
    """One event of every mapped type, with the data the event log writes."""
    user, course, lesson, enrollment = (uuid.uuid4() for _ in range(4))
    at = datetime(2026, 12, 4, 18, 30, 15, 123456, tzinfo=UTC)
    ids = {"userId": str(user), "courseId": str(course), "enrollmentId": str(enrollment)}
    return [
        (uuid.uuid4(), "enrollment.created", at, ids | {"courseTitle": "Intro à SQL"}),
        (
            uuid.uuid4(),
            "lesson.progressed",
            at + timedelta(minutes=1),
            ids | {"lessonId": str(lesson), "milestone": 25, "durationSeconds": 600},
        ),
        (
            uuid.uuid4(),
            "lesson.progressed",
            at + timedelta(minutes=2),
            ids | {"lessonId": str(lesson), "milestone": 50},
        ),
        (
            uuid.uuid4(),
            "lesson.completed",
            at + timedelta(minutes=3),
            ids | {"lessonId": str(lesson), "progress": 100.0},
        ),
        (uuid.uuid4(), "course.completed", at + timedelta(minutes=4), ids),
        (
            uuid.uuid4(),
            "certificate.issued",
            at + timedelta(minutes=4),
            ids
            | {
                "certificateId": str(uuid.uuid4()),
                "verifyUrl": f"{BASE}/certificates/verify/abcDEF123",
                "status": "ISSUED",
            },
        ),
    ]


EVENTS = sample_events()


def statements(
    events: list[tuple[uuid.UUID, str, datetime, dict[str, Any]]] = EVENTS,
) -> list[dict[str, Any]]:
    found = []
    for event_id, type_, at, data in events:
        statement = xapi.statement_for(event_id, type_, at, data, base_url=BASE)
        assert statement is not None, type_
        found.append(statement)
    return found


def test_every_mapped_event_conforms_to_xapi_1_0_3() -> None:
    made = statements()
    assert {s["verb"]["id"] for s in made} == {
        xapi.VERB_REGISTERED,
        xapi.VERB_PROGRESSED,
        xapi.VERB_COMPLETED,
        xapi.VERB_EARNED,
    }
    assert xapi_problems(made) == [[] for _ in made]


def test_the_validator_is_not_a_rubber_stamp() -> None:
    good = statements()[0]
    bad_actor = {**good, "actor": {"objectType": "Agent", "mbox": "learner@lms.dev"}}
    bad_verb = {**good, "verb": {"id": "registered"}}
    bad_time = {**good, "timestamp": "yesterday"}
    problems = xapi_problems([bad_actor, bad_verb, bad_time])
    assert all(found for found in problems), problems


def test_the_actor_is_an_account_on_the_platform_and_never_an_email() -> None:
    for (_, _, _, data), statement in zip(EVENTS, statements(), strict=True):
        assert statement["actor"] == {
            "objectType": "Agent",
            "account": {"homePage": BASE, "name": data["userId"]},
        }
        assert "@" not in json.dumps(statement)
        assert "mbox" not in json.dumps(statement)


def test_the_statement_id_is_derived_from_the_event_id_and_the_statement_from_the_event() -> None:
    event_id, type_, at, data = EVENTS[0]
    first = xapi.statement_for(event_id, type_, at, data, base_url=BASE)
    again = xapi.statement_for(str(event_id), type_, at, dict(data), base_url=BASE + "/")
    assert first == again
    assert first is not None
    assert first["id"] == str(uuid.uuid5(xapi.STATEMENT_NAMESPACE, str(event_id)))
    other = xapi.statement_for(uuid.uuid4(), type_, at, data, base_url=BASE)
    assert other is not None
    assert other["id"] != first["id"]


def test_the_timestamp_is_the_event_time_in_utc_to_the_millisecond() -> None:
    at = datetime(2026, 12, 4, 20, 0, 0, 987654, tzinfo=timezone(timedelta(hours=2)))
    assert xapi.xapi_timestamp(at) == "2026-12-04T18:00:00.987Z"
    with pytest.raises(xapi.UnmappableEvent):
        xapi.xapi_timestamp(datetime(2026, 12, 4, 18, 0))


def test_the_mapping_per_type() -> None:
    (enrolled, quarter, half, lesson_done, course_done, earned) = statements()
    events = EVENTS
    course_iri = f"{BASE}/courses/{events[0][3]['courseId']}"
    lesson_iri = f"{course_iri}/lessons/{events[1][3]['lessonId']}"

    assert enrolled["object"]["id"] == course_iri
    assert enrolled["object"]["definition"] == {
        "type": xapi.ACTIVITY_COURSE,
        "name": {"und": "Intro à SQL"},
    }
    assert enrolled["context"]["registration"] == events[0][3]["enrollmentId"]

    assert quarter["object"]["id"] == lesson_iri
    assert quarter["result"]["extensions"] == {xapi.VIDEO_PROGRESS: 0.25, xapi.VIDEO_TIME: 150.0}
    assert quarter["context"]["extensions"] == {xapi.VIDEO_LENGTH: 600.0}
    assert quarter["context"]["contextActivities"]["parent"][0]["id"] == course_iri
    assert half["result"]["extensions"] == {xapi.VIDEO_PROGRESS: 0.5}

    assert lesson_done["verb"]["id"] == xapi.VERB_COMPLETED
    assert lesson_done["object"]["id"] == lesson_iri
    assert lesson_done["result"] == {"completion": True}

    assert course_done["object"]["id"] == course_iri
    assert course_done["result"] == {"completion": True}

    verify = events[5][3]["verifyUrl"]
    assert earned["verb"]["id"] == xapi.VERB_EARNED
    assert earned["object"]["id"] == verify
    assert earned["object"]["definition"]["moreInfo"] == verify
    assert earned["object"]["definition"]["type"] == xapi.ACTIVITY_CERTIFICATE


@pytest.mark.parametrize(
    "type_",
    [
        "course.submitted",
        "course.published",
        "transcript.ready",
        "order.paid",
        "certificate.revoked",
    ],
)
def test_events_without_a_statement(type_: str) -> None:
    assert xapi.statement_for(uuid.uuid4(), type_, datetime.now(UTC), {}, base_url=BASE) is None


@pytest.mark.parametrize(
    ("type_", "data"),
    [
        ("enrollment.created", {"courseId": str(uuid.uuid4())}),  # no user
        ("enrollment.created", {"userId": "someone@lms.dev", "courseId": str(uuid.uuid4())}),
        (
            "lesson.progressed",
            {
                "userId": str(uuid.uuid4()),
                "courseId": str(uuid.uuid4()),
                "lessonId": str(uuid.uuid4()),
                "milestone": 30,
            },
        ),
        (
            "lesson.progressed",
            {
                "userId": str(uuid.uuid4()),
                "courseId": str(uuid.uuid4()),
                "lessonId": str(uuid.uuid4()),
                "milestone": True,
            },
        ),
        (
            "certificate.issued",
            {
                "userId": str(uuid.uuid4()),
                "courseId": str(uuid.uuid4()),
                "verifyUrl": "javascript:alert(1)",
            },
        ),
    ],
)
def test_an_event_missing_what_its_statement_needs_is_refused(
    type_: str, data: dict[str, Any]
) -> None:
    with pytest.raises(xapi.UnmappableEvent):
        xapi.statement_for(uuid.uuid4(), type_, datetime.now(UTC), data, base_url=BASE)


def test_ralph_accepts_every_statement_and_keeps_one_per_id_however_often_sent(
    ralph: Ralph,
) -> None:
    made = statements()
    answer = ralph.post(made)
    assert answer.status_code == 200, answer.text
    assert sorted(answer.json()) == sorted(s["id"] for s in made)

    # A retry of the whole batch (the answer was lost), built again from the same events, then
    # of a part of it.
    again = ralph.post(statements())
    assert again.status_code in (200, 204), again.text
    assert ralph.post(made[:2]).status_code in (200, 204)

    held = [s for s in ralph.all_statements() if s["id"] in {m["id"] for m in made}]
    assert sorted(s["id"] for s in held) == sorted(s["id"] for s in made)
    stored = ralph.statement(made[0]["id"])
    assert stored is not None
    assert stored["actor"] == made[0]["actor"]
    assert stored["verb"] == made[0]["verb"]
    assert stored["object"] == made[0]["object"]


def test_ralph_refuses_a_different_statement_under_an_id_it_holds(ralph: Ralph) -> None:
    """Why the mapping must be a function of the event alone: an LRS answers 409 to a changed
    statement under a known id."""
    first = statements(sample_events())[0]
    assert ralph.post([first]).status_code == 200
    changed = {**first, "timestamp": "2030-01-01T00:00:00.000Z"}
    assert ralph.post([changed]).status_code == 409
