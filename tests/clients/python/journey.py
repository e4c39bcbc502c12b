"""Sign-up to certificate with the client openapi-python-client generated from the served document.

Run by tests/integration/test_openapi_clients.py in the generator's own environment, with the
generated package `lms_client` on PYTHONPATH: `python journey.py BASE_URL EMAIL`. It prints one
JSON object a line: `{"step": "registered", ...}`, after which it reads the mailed code from stdin,
then `{"step": "done", ...}` with what it saw. Every answer is read through the generated models
(`.parsed`), so a response the document does not describe fails here; a field the server sends
that the document does not declare lands in a model's `additional_properties` and fails too.
"""

from __future__ import annotations

import json
import sys
from http import HTTPStatus
from typing import Any, TypeVar

import attrs
from lms_client import AuthenticatedClient, Client
from lms_client.api.auth import (
    auth_complete_profile_complete_profile,
    auth_me_me,
    auth_register_register,
    auth_verify_email_verify_email,
)
from lms_client.api.certificates import certificates_verify_serial_hash_verify
from lms_client.api.courses import courses_course_id_lessons_list_lessons, courses_list_courses
from lms_client.api.learning import (
    courses_course_id_enroll_enroll,
    lessons_lesson_id_complete_complete,
    lessons_lesson_id_progress_heartbeat,
)
from lms_client.models import (
    Certificate,
    CompleteProfileRequest,
    CourseSummary,
    CourseSummaryPage,
    Enrollment,
    Heartbeat,
    Lesson,
    LessonCompletion,
    NotVerified,
    RegisterRequest,
    RegisterResponse,
    Tokens,
    User,
    Verification,
    VerifyEmailRequest,
    VerifyEmailResponse,
    VerifyEmailResponseNext,
)
from lms_client.types import UNSET, Response, Unset

T = TypeVar("T")
PASSWORD = "plum-orbit-cascade-91"


def say(**event: Any) -> None:
    print(json.dumps(event), flush=True)


def undeclared(value: object, where: str) -> list[str]:
    """Fields the server sent that the document does not declare, anywhere inside `value`."""
    found: list[str] = []
    if isinstance(value, list):
        for i, item in enumerate(value):
            found += undeclared(item, f"{where}[{i}]")
    elif attrs.has(type(value)):
        extra = getattr(value, "additional_properties", {})
        found += [f"{where}.{name}" for name in extra]
        for field in attrs.fields(type(value)):
            if field.name != "additional_properties":
                found += undeclared(getattr(value, field.name), f"{where}.{field.name}")
    return found


def parsed(response: Response[Any], status: HTTPStatus, model: type[T], what: str) -> T:
    """The typed answer, after checking the status and that the model holds everything sent."""
    assert response.status_code == status, (what, response.status_code, response.content)
    assert isinstance(response.parsed, model), (what, type(response.parsed), response.content)
    extra = undeclared(response.parsed, type(response.parsed).__name__)
    assert not extra, f"{what}: the server sent fields the document does not declare: {extra}"
    return response.parsed


def main(base_url: str, email: str) -> None:
    anonymous = Client(base_url=base_url, raise_on_unexpected_status=True, timeout=30.0)

    registered = parsed(
        auth_register_register.sync_detailed(client=anonymous, body=RegisterRequest(email=email)),
        HTTPStatus.CREATED,
        RegisterResponse,
        "POST /auth/register",
    )
    say(step="registered", email=registered.email, userId=str(registered.user_id))
    code = sys.stdin.readline().strip()

    verified = parsed(
        auth_verify_email_verify_email.sync_detailed(
            client=anonymous, body=VerifyEmailRequest(email=email, otp=code)
        ),
        HTTPStatus.OK,
        VerifyEmailResponse,
        "POST /auth/verify-email",
    )
    assert verified.next_ == VerifyEmailResponseNext.COMPLETE_PROFILE, verified.next_

    profile = CompleteProfileRequest(
        username=f"ada_{registered.user_id.hex[:8]}",
        password=PASSWORD,
        full_name="Ada Lovelace",
        country="UK",
        state="London",
        zip_="NW1",
    )
    tokens = parsed(
        auth_complete_profile_complete_profile.sync_detailed(
            client=AuthenticatedClient(base_url=base_url, token=verified.profile_token),
            body=profile,
        ),
        HTTPStatus.OK,
        Tokens,
        "POST /auth/complete-profile",
    )
    learner = AuthenticatedClient(
        base_url=base_url, token=tokens.access_token, raise_on_unexpected_status=True, timeout=30.0
    )
    me = parsed(auth_me_me.sync_detailed(client=learner), HTTPStatus.OK, User, "GET /auth/me")
    assert me.email == email and me.is_profile_complete and me.id == registered.user_id, me

    # The catalog one course a page, following nextCursor to the end.
    pages: list[list[CourseSummary]] = []
    cursor: str | Unset | None = UNSET
    while True:
        page = parsed(
            courses_list_courses.sync_detailed(client=learner, limit=1, cursor=cursor),
            HTTPStatus.OK,
            CourseSummaryPage,
            "GET /courses",
        )
        pages.append(page.items)
        if not isinstance(page.next_cursor, str):
            break
        cursor = page.next_cursor
        assert len(pages) < 20, "pagination does not end"
    catalog = [course for items in pages for course in items]

    report: dict[str, Any] = {
        "step": "done",
        "userId": str(me.id),
        "role": me.role,
        "tokenType": tokens.token_type,
        "pages": [
            [f"{course.title} by {course.creator.name}" for course in items] for items in pages
        ],
    }
    if catalog:
        course = catalog[0]
        enrollment = parsed(
            courses_course_id_enroll_enroll.sync_detailed(course.id, client=learner),
            HTTPStatus.CREATED,
            Enrollment,
            "POST /courses/{course_id}/enroll",
        )
        again = parsed(
            courses_course_id_enroll_enroll.sync_detailed(course.id, client=learner),
            HTTPStatus.OK,
            Enrollment,
            "POST /courses/{course_id}/enroll (again)",
        )
        assert again.id == enrollment.id
        lessons = parsed(
            courses_course_id_lessons_list_lessons.sync_detailed(course.id, client=learner),
            HTTPStatus.OK,
            list,
            "GET /courses/{course_id}/lessons",
        )
        assert lessons and all(isinstance(lesson, Lesson) for lesson in lessons), lessons

        completion: LessonCompletion | None = None
        for lesson in lessons:
            heartbeat = lessons_lesson_id_progress_heartbeat.sync_detailed(
                lesson.id, client=learner, body=Heartbeat(position_seconds=5.0)
            )
            assert heartbeat.status_code == HTTPStatus.NO_CONTENT, heartbeat.content
            completion = parsed(
                lessons_lesson_id_complete_complete.sync_detailed(lesson.id, client=learner),
                HTTPStatus.OK,
                LessonCompletion,
                "POST /lessons/{lesson_id}/complete",
            )
        assert completion is not None and completion.course_completed, completion
        certificate = completion.certificate
        assert isinstance(certificate, Certificate), certificate

        verification = parsed(
            certificates_verify_serial_hash_verify.sync_detailed(
                certificate.serial_hash, client=anonymous
            ),
            HTTPStatus.OK,
            Verification,
            "GET /certificates/verify/{serial_hash}",
        )
        unknown = parsed(
            certificates_verify_serial_hash_verify.sync_detailed("0" * 64, client=anonymous),
            HTTPStatus.NOT_FOUND,
            NotVerified,
            "GET /certificates/verify/{unknown}",
        )
        report |= {
            "enrollmentId": str(enrollment.id),
            "lessons": [lesson.title for lesson in lessons],
            "progress": completion.progress,
            "verifyUrl": certificate.verify_url,
            "valid": verification.valid,
            "status": str(verification.certificate.status),
            "unknownValid": unknown.valid,
        }
    say(**report)


if __name__ == "__main__":
    main(*sys.argv[1:3])
