"""Thin handlers for enrollment, progress, completion, the creator dashboard and admin bulk
enrollment."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIType, Operation, RequestBody, Schema
from litestar.params import FromPath, JSONBody
from litestar.status_codes import (
    HTTP_200_OK,
    HTTP_201_CREATED,
    HTTP_204_NO_CONTENT,
    HTTP_402_PAYMENT_REQUIRED,
)

from lms.api import json_body
from lms.api.answers import ANSWER, Answer, Incoming, respond
from lms.api.dependencies import Ctx, Db
from lms.api.openapi import (
    BAD,
    BEARER,
    CONFLICT,
    FORBIDDEN,
    NOT_FOUND,
    TOO_LARGE,
    TOO_MANY,
    UNAUTHORIZED,
    UNSUPPORTED,
    errors,
)
from lms.api.security import requires
from lms.api.text import ADDRESS_PATTERN
from lms.context import AppContext
from lms.db.queries import dashboard as dashboard_sql
from lms.domain.auth.authentication import Principal
from lms.domain.auth.permissions import Permission
from lms.domain.errors import Invalid, UnsupportedMedia
from lms.domain.learning import enrollments, progress
from lms.domain.learning.bulk_csv import addresses_from_csv
from lms.domain.learning.completion import complete_lesson
from lms.domain.learning.schemas import (
    MAX_BULK_BODY_BYTES,
    MAX_BULK_ROWS,
    BulkEnrollmentRequest,
    BulkEnrollmentResponse,
    CourseProgress,
    CreatorDashboard,
    Enrollment,
    Heartbeat,
    LessonCompletion,
    ProgressEntry,
)
from lms.domain.payments.schemas import PaymentRequiredBody

PrincipalRequest = Request[Principal, Any, Any]
LEARNER_ERRORS = (UNAUTHORIZED, FORBIDDEN, NOT_FOUND)


def json_text(body: str) -> Response[Any]:
    return Response(content=body.encode(), media_type="application/json")


_ENCODER = msgspec.json.Encoder()


async def heartbeat_answer(
    ctx: AppContext,
    incoming: Incoming,
    principal: Principal,
    *,
    lesson_id: uuid.UUID,
    data: Heartbeat,
) -> Answer:
    """POST /lessons/{lesson_id}/progress, whole (the handler and the hot lane both answer
    with it)."""
    await progress.heartbeat(ctx.pool, ctx, principal.user_id, lesson_id, data.position_seconds)
    return Answer(HTTP_204_NO_CONTENT)


async def completion_answer(
    ctx: AppContext, incoming: Incoming, principal: Principal, *, lesson_id: uuid.UUID
) -> Answer:
    """POST /lessons/{lesson_id}/complete, whole (the handler and the hot lane both answer
    with it)."""
    completion = await complete_lesson(ctx.pool, ctx, principal.user_id, lesson_id)
    return Answer(HTTP_200_OK, _ENCODER.encode(completion))


class EnrollmentController(Controller):
    path = "/courses"
    tags = ("learning",)
    security = BEARER

    @post(
        "/{course_id:uuid}/enroll",
        status_code=HTTP_201_CREATED,
        guards=[requires(Permission.ENROLL)],
        responses={
            **errors(*LEARNER_ERRORS),
            HTTP_200_OK: ResponseSpec(
                Enrollment, description="Enrolled already: the same enrollment"
            ),
            HTTP_402_PAYMENT_REQUIRED: ResponseSpec(
                PaymentRequiredBody,
                description="A priced course without a PAID order: buy it at checkoutPath",
                generate_examples=False,
            ),
        },
        summary="Enroll in a published course (201; 200 with the same enrollment when enrolled)",
    )
    async def enroll(
        self, db: Db, request: PrincipalRequest, course_id: FromPath[uuid.UUID]
    ) -> Response[Enrollment]:
        enrollment, created = await enrollments.enroll(db, request.user, course_id)
        return Response(enrollment, status_code=HTTP_201_CREATED if created else HTTP_200_OK)

    @get(
        "/{course_id:uuid}/progress",
        guards=[requires(Permission.TRACK_PROGRESS)],
        responses=errors(*LEARNER_ERRORS),
        summary="The caller's progress in a course, lesson by lesson (404 when not enrolled)",
    )
    async def course_progress(
        self, db: Db, request: PrincipalRequest, course_id: FromPath[uuid.UUID]
    ) -> CourseProgress:
        return await enrollments.course_progress(db, request.user, course_id)


class ProgressController(Controller):
    path = "/progress"
    tags = ("learning",)
    security = BEARER

    @get(
        "/",
        guards=[requires(Permission.TRACK_PROGRESS)],
        responses=errors(UNAUTHORIZED, FORBIDDEN),
        summary="The caller's enrollments, newest first, with course and certificate",
    )
    async def list_progress(
        self, db: Db, request: PrincipalRequest
    ) -> Response[list[ProgressEntry]]:
        return json_text(await enrollments.progress_list(db, request.user))


class LessonProgressController(Controller):
    path = "/lessons"
    tags = ("learning",)
    security = BEARER

    @post(
        "/{lesson_id:uuid}/progress",
        status_code=HTTP_204_NO_CONTENT,
        guards=[requires(Permission.TRACK_PROGRESS)],
        opt={ANSWER: heartbeat_answer},
        responses=errors(BAD, *LEARNER_ERRORS, TOO_MANY),
        summary="The player's heartbeat: save the resume position, count the seconds watched",
        description="Send one when playback starts and then every second or few. Watched "
        "seconds are paid with real time: one watch clock per enrollment, shared by its "
        "lessons, so a heartbeat credits at most the time that passed since the enrollment's "
        "previous one (parallel tabs or lessons earn no more together). A jump forward larger "
        "than that time plus 2 s is a seek: the position is saved for resume, the skipped span "
        "is not counted. One heartbeat less than 0.5 s after the enrollment's previous accepted "
        "one (any lesson) is 429 with Retry-After and changes nothing. Reaching "
        "completionThresholdPercent of the video watched completes the lesson as /complete "
        "does. 400 past the video's end; 404 when not enrolled.",
    )
    async def heartbeat(
        self,
        request: PrincipalRequest,
        ctx: Ctx,
        lesson_id: FromPath[uuid.UUID],
        data: JSONBody[Heartbeat],
    ) -> Response[None]:
        return await respond(request, ctx, lesson_id=lesson_id, data=data)

    @post(
        "/{lesson_id:uuid}/complete",
        status_code=HTTP_200_OK,
        guards=[requires(Permission.TRACK_PROGRESS)],
        opt={ANSWER: completion_answer},
        responses=errors(*LEARNER_ERRORS, CONFLICT),
        summary="Complete a lesson (idempotent); the last one completes the course and issues "
        "its certificate",
        description="With the setting requireWatchToComplete, a video lesson watched below "
        "completionThresholdPercent is 409, saying how much is left, and so is one whose "
        "video is still processing (its length not known yet).",
    )
    async def complete(
        self, request: PrincipalRequest, ctx: Ctx, lesson_id: FromPath[uuid.UUID]
    ) -> Response[LessonCompletion]:
        return await respond(request, ctx, lesson_id=lesson_id)


class CreatorDashboardController(Controller):
    path = "/creator/dashboard"
    tags = ("creators",)
    security = BEARER

    @get(
        "/",
        guards=[requires(Permission.VIEW_ANALYTICS)],
        responses=errors(UNAUTHORIZED, FORBIDDEN),
        summary="Enrollments, completions, drop-off and revenue per course and lesson of the "
        "caller's courses",
    )
    async def dashboard(
        self, request: PrincipalRequest, ctx: Ctx, db: Db
    ) -> Response[CreatorDashboard]:
        return json_text(
            await dashboard_sql.creator_dashboard_json(
                db, request.user.user_id, ctx.settings.currency
            )
        )


@dataclass
class BulkEnrollmentOperation(Operation):
    """The operation's body, which the handler reads itself: JSON {emails} or a CSV file."""

    def __post_init__(self) -> None:
        emails = Schema(
            type=OpenAPIType.ARRAY,
            items=Schema(type=OpenAPIType.STRING, max_length=320, pattern=ADDRESS_PATTERN),
            min_items=1,
            max_items=MAX_BULK_ROWS,
        )
        self.request_body = RequestBody(
            required=True,
            content={
                "application/json": OpenAPIMediaType(
                    schema=Schema(
                        type=OpenAPIType.OBJECT, properties={"emails": emails}, required=["emails"]
                    )
                ),
                "text/csv": OpenAPIMediaType(
                    schema=Schema(
                        type=OpenAPIType.STRING,
                        description="one address per row: the column headed `email`, else the "
                        "first column",
                    )
                ),
            },
        )


class AdminEnrollmentController(Controller):
    path = "/admin/courses"
    tags = ("admin",)
    security = BEARER
    guards = (requires(Permission.MANAGE_USERS),)

    @post(
        "/{course_id:uuid}/enrollments",
        status_code=HTTP_200_OK,
        # Past it, 413: announced (Content-Length) before a byte is read, else once received.
        request_max_body_size=MAX_BULK_BODY_BYTES,
        responses=errors(BAD, UNAUTHORIZED, FORBIDDEN, NOT_FOUND, CONFLICT, TOO_LARGE, UNSUPPORTED),
        operation_class=BulkEnrollmentOperation,
        summary="Enroll many users in a published course by email (JSON {emails} or text/csv)",
        description='The body is either JSON `{"emails": [...]}` or `text/csv` with one '
        "address per row (the column headed `email`, else the first), at most "
        f"{MAX_BULK_ROWS} addresses and {MAX_BULK_BODY_BYTES} bytes (413 past that). Each "
        "address is one line without control or bidirectional formatting characters, in CSV "
        "as in JSON. One result per row, in order: ENROLLED, ALREADY_ENROLLED or NO_SUCH_USER. "
        "Audited.",
    )
    async def enroll_many(
        self, db: Db, request: PrincipalRequest, course_id: FromPath[uuid.UUID]
    ) -> BulkEnrollmentResponse:
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type == "text/csv":
            # Parsed as it arrives, and no further than the first refusal (the row cap + 1).
            emails = await addresses_from_csv(request.stream())
        elif media_type in ("application/json", ""):
            emails = decode_bulk_request(await request.body())
        else:
            raise UnsupportedMedia("send application/json {emails} or text/csv")
        return await enrollments.enroll_many(db, request.user, course_id, emails)


def decode_bulk_request(body: bytes) -> list[str]:
    # The handler reads the body itself (it may be CSV), so it asks for the rules every JSON
    # body gets (lms.api.json_body) by name.
    try:
        request: BulkEnrollmentRequest = json_body.decode(body, BulkEnrollmentRequest)
    except json_body.FieldError as exc:
        raise Invalid(f"invalid body: {exc.message} at {exc.key}") from None
    return request.emails
