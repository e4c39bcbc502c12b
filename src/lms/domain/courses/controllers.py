"""/courses, /lessons and /admin/courses: thin handlers over the catalog, authoring and lesson
services. Course bodies are JSON built by PostgreSQL and passed through as bytes; the Structs in
the signatures document them."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from litestar import Controller, Request, Response, delete, get, patch, post, put
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from litestar.status_codes import (
    HTTP_200_OK,
    HTTP_201_CREATED,
    HTTP_202_ACCEPTED,
    HTTP_204_NO_CONTENT,
    HTTP_304_NOT_MODIFIED,
)

from lms.api.answers import ANSWER, Answer, Incoming, respond
from lms.api.dependencies import Ctx, Db
from lms.api.openapi import (
    BAD,
    BEARER,
    CONFLICT,
    FORBIDDEN,
    NOT_FOUND,
    OPTIONAL_BEARER,
    TOO_LARGE,
    UNAUTHORIZED,
    UNSUPPORTED,
    errors,
)
from lms.api.openapi_constraints import MULTIPART_FORM
from lms.api.pagination import DEFAULT_LIMIT, PageCursor, PageLimit
from lms.api.schemas import CamelStruct
from lms.api.security import PUBLIC, optional_principal, requires
from lms.api.uploads import receive_upload
from lms.context import AppContext
from lms.domain.auth.authentication import Principal
from lms.domain.auth.permissions import Permission
from lms.domain.courses import authoring, catalog, lessons, video
from lms.domain.courses.schemas import (
    Course,
    CourseCreate,
    CoursePage,
    CourseRejection,
    CourseSummaryPage,
    CourseUpdate,
    Lesson,
    LessonCreate,
    LessonOrder,
    LessonUpdate,
    LessonUploadForm,
    Title,
    UploadSignature,
)

AnyRequest = Request[Any, Any, Any]
PrincipalRequest = Request[Principal, Any, Any]
PUBLIC_OPT = {PUBLIC: True}


def json_bytes(body: str, status_code: int = HTTP_200_OK) -> Response[Any]:
    return Response(content=body.encode(), status_code=status_code, media_type="application/json")


def catalog_answer(answer: catalog.CatalogBody, incoming: Incoming) -> Answer:
    """A catalog page or a course page, or 304 when the caller's If-None-Match names it."""
    headers = (
        ("ETag", answer.etag),
        ("Cache-Control", answer.cache_control),
        ("Vary", "Authorization"),
    )
    if catalog.not_modified(incoming.header("if-none-match"), answer.etag):
        return Answer(HTTP_304_NOT_MODIFIED, headers=headers)
    return Answer(HTTP_200_OK, answer.body, headers)


async def catalog_page(
    ctx: AppContext,
    incoming: Incoming,
    principal: Principal | None,
    *,
    limit: int,
    cursor: str | None,
    q: str | None,
    creator_id: uuid.UUID | None,
) -> Answer:
    """GET /courses, whole (the handler and the hot lane both answer with it)."""
    answer = await catalog.list_courses(
        ctx.pool,
        # Anonymous visitors' pages may be a moment stale: a read replica serves them. A
        # signed-in caller reads the primary. A search's rate-limit count is a write: the pool.
        ctx.replica_reads() if principal is None else ctx.pool,
        ctx,
        principal,
        limit=limit,
        cursor=cursor,
        q=q,
        creator_id=creator_id,
        client_ip=incoming.client_ip(ctx.settings.trusted_proxies),
    )
    return catalog_answer(answer, incoming)


async def course_page(
    ctx: AppContext, incoming: Incoming, principal: Principal | None, *, course_id: uuid.UUID
) -> Answer:
    """GET /courses/{course_id}, whole (the handler and the hot lane both answer with it)."""
    # Anonymous visitors see published courses only, a moment stale is fine: a read replica.
    # Owners and admins may be looking at the draft they have just changed: the primary.
    reads = ctx.replica_reads() if principal is None else ctx.pool
    return catalog_answer(await catalog.get_course(reads, course_id, principal), incoming)


class JobQueued(CamelStruct):
    job_id: uuid.UUID
    status: str = "QUEUED"


class CourseController(Controller):
    path = "/courses"
    tags = ("courses",)

    @get(
        "/",
        opt={PUBLIC: True, ANSWER: catalog_page},
        security=OPTIONAL_BEARER,
        responses=errors(BAD, UNAUTHORIZED),
        summary="Published courses, newest first; q searches title and description (ranked)",
    )
    async def list_courses(
        self,
        request: AnyRequest,
        ctx: Ctx,
        limit: PageLimit = DEFAULT_LIMIT,
        cursor: PageCursor = None,
        q: Annotated[str | None, QueryParameter(max_length=200)] = None,
        creator_id: Annotated[uuid.UUID | None, QueryParameter(name="creatorId")] = None,
    ) -> Response[CourseSummaryPage]:
        return await respond(request, ctx, limit=limit, cursor=cursor, q=q, creator_id=creator_id)

    @get(
        "/{course_id:uuid}",
        opt={PUBLIC: True, ANSWER: course_page},
        security=OPTIONAL_BEARER,
        responses=errors(UNAUTHORIZED, NOT_FOUND),
        summary="A course with its lessons: anyone if published, else its creator and admins",
    )
    async def get_course(
        self, request: AnyRequest, ctx: Ctx, course_id: FromPath[uuid.UUID]
    ) -> Response[Course]:
        return await respond(request, ctx, course_id=course_id)

    @post(
        "/",
        status_code=HTTP_201_CREATED,
        guards=[requires(Permission.CREATE_COURSES)],
        security=BEARER,
        responses=errors(BAD, UNAUTHORIZED, FORBIDDEN),
        summary="Create a course (DRAFT)",
    )
    async def create_course(
        self, db: Db, request: PrincipalRequest, data: JSONBody[CourseCreate]
    ) -> Response[Course]:
        return json_bytes(await authoring.create_course(db, request.user, data), HTTP_201_CREATED)

    @patch(
        "/{course_id:uuid}",
        guards=[requires(Permission.MANAGE_OWN_COURSES)],
        security=BEARER,
        responses=errors(BAD, UNAUTHORIZED, FORBIDDEN, NOT_FOUND, CONFLICT),
        summary="Edit a DRAFT course",
    )
    async def update_course(
        self,
        db: Db,
        request: PrincipalRequest,
        course_id: FromPath[uuid.UUID],
        data: JSONBody[CourseUpdate],
    ) -> Response[Course]:
        return json_bytes(await authoring.update_course(db, request.user, course_id, data))

    @post(
        "/{course_id:uuid}/submit",
        status_code=HTTP_200_OK,
        guards=[requires(Permission.SUBMIT_FOR_REVIEW)],
        security=BEARER,
        responses=errors(UNAUTHORIZED, FORBIDDEN, NOT_FOUND, CONFLICT),
        summary="Submit a DRAFT with lessons for review (PENDING)",
    )
    async def submit_course(
        self, db: Db, request: PrincipalRequest, course_id: FromPath[uuid.UUID]
    ) -> Response[Course]:
        return json_bytes(await authoring.submit_course(db, request.user, course_id))

    @delete(
        "/{course_id:uuid}",
        status_code=HTTP_204_NO_CONTENT,
        guards=[requires(Permission.MANAGE_OWN_COURSES)],
        security=BEARER,
        responses=errors(UNAUTHORIZED, FORBIDDEN, NOT_FOUND, CONFLICT),
        summary="Delete a course: its creator while DRAFT, an admin any time",
    )
    async def delete_course(
        self, request: PrincipalRequest, ctx: Ctx, db: Db, course_id: FromPath[uuid.UUID]
    ) -> None:
        await authoring.delete_course(db, ctx, request.user, course_id)

    @get(
        "/{course_id:uuid}/lessons",
        opt=PUBLIC_OPT,
        security=OPTIONAL_BEARER,
        responses=errors(UNAUTHORIZED, NOT_FOUND),
        summary="The lessons in order (videoUrl for enrolled learners, the creator and admins)",
    )
    async def list_lessons(
        self, request: AnyRequest, ctx: Ctx, db: Db, course_id: FromPath[uuid.UUID]
    ) -> list[Lesson]:
        return await lessons.list_lessons(db, ctx, await optional_principal(request), course_id)

    @post(
        "/{course_id:uuid}/lessons",
        status_code=HTTP_201_CREATED,
        guards=[requires(Permission.UPLOAD_LESSONS)],
        security=BEARER,
        responses=errors(BAD, UNAUTHORIZED, FORBIDDEN, NOT_FOUND, CONFLICT),
        summary="Add a lesson (optionally with an external video URL) to a DRAFT course",
    )
    async def create_lesson(
        self,
        request: PrincipalRequest,
        ctx: Ctx,
        db: Db,
        course_id: FromPath[uuid.UUID],
        data: JSONBody[LessonCreate],
    ) -> Lesson:
        return await lessons.create_lesson(db, ctx, request.user, course_id, data)

    @put(
        "/{course_id:uuid}/lessons/order",
        guards=[requires(Permission.MANAGE_OWN_COURSES)],
        security=BEARER,
        responses=errors(BAD, UNAUTHORIZED, FORBIDDEN, NOT_FOUND, CONFLICT),
        summary="Reorder every lesson of a DRAFT course at once",
    )
    async def reorder_lessons(
        self,
        request: PrincipalRequest,
        ctx: Ctx,
        db: Db,
        course_id: FromPath[uuid.UUID],
        data: JSONBody[LessonOrder],
    ) -> list[Lesson]:
        return await lessons.reorder_lessons(db, ctx, request.user, course_id, data.lesson_ids)

    @post(
        "/{course_id:uuid}/lessons/upload",
        status_code=HTTP_201_CREATED,
        guards=[requires(Permission.UPLOAD_LESSONS)],
        security=BEARER,
        # The body is streamed to disk and capped by the runtime maxUploadBytes setting instead.
        request_max_body_size=None,
        opt={MULTIPART_FORM: LessonUploadForm},
        responses=errors(BAD, UNAUTHORIZED, FORBIDDEN, NOT_FOUND, CONFLICT, TOO_LARGE, UNSUPPORTED),
        summary="Upload a video as a new lesson; transcription is queued",
    )
    async def upload_lesson(
        self, request: PrincipalRequest, ctx: Ctx, db: Db, course_id: FromPath[uuid.UUID]
    ) -> Lesson:
        """multipart/form-data with `file` (the video), `title` and optionally `description`,
        streamed to disk; the lesson is created with its video and transcription is queued."""
        limit = await video.upload_limit(db, ctx, request.user, course_id)
        # One of the caller's upload slots, held while the body streams in and is stored.
        async with video.upload_slot(db, ctx, request.user):
            upload = await receive_upload(
                request, max_bytes=limit, tmp_dir=video.upload_dir(ctx), form=LessonUploadForm
            )
            return await video.add_uploaded_lesson(db, ctx, request.user, course_id, upload)

    @post(
        "/{course_id:uuid}/lessons/upload-signature",
        status_code=HTTP_200_OK,
        guards=[requires(Permission.UPLOAD_LESSONS)],
        security=BEARER,
        responses=errors(BAD, UNAUTHORIZED, FORBIDDEN, NOT_FOUND, CONFLICT),
        summary="Create a lesson and sign a direct browser upload of its video to Cloudinary",
    )
    async def upload_signature(
        self,
        request: PrincipalRequest,
        ctx: Ctx,
        db: Db,
        course_id: FromPath[uuid.UUID],
        data: JSONBody[UploadTitle],
    ) -> UploadSignature:
        return await video.upload_signature(db, ctx, request.user, course_id, data.title)


class UploadTitle(CamelStruct, forbid_unknown_fields=True):
    title: Title


class WebhookAck(CamelStruct):
    result: str


class WebhookController(Controller):
    path = "/webhooks"
    tags = ("lessons",)

    @post(
        "/cloudinary",
        status_code=HTTP_200_OK,
        opt=PUBLIC_OPT,
        responses=errors(BAD, UNAUTHORIZED, CONFLICT),
        summary="Cloudinary's signed upload notification: attach the video, queue transcription",
    )
    async def cloudinary(self, request: AnyRequest, ctx: Ctx, db: Db) -> WebhookAck:
        """Called by Cloudinary when a direct upload finishes (X-Cld-Signature checked): the video
        is attached to the lesson named in the upload's context and transcription is queued."""
        body = await request.body()
        result = await video.cloudinary_notification(
            db,
            ctx,
            body,
            request.headers.get("x-cld-timestamp"),
            request.headers.get("x-cld-signature"),
        )
        return WebhookAck(result=result)


class LessonController(Controller):
    path = "/lessons"
    tags = ("lessons",)

    @get(
        "/{lesson_id:uuid}",
        opt=PUBLIC_OPT,
        security=OPTIONAL_BEARER,
        responses=errors(UNAUTHORIZED, NOT_FOUND),
        summary="A lesson (videoUrl for enrolled learners, the creator and admins)",
    )
    async def get_lesson(
        self, request: AnyRequest, ctx: Ctx, db: Db, lesson_id: FromPath[uuid.UUID]
    ) -> Lesson:
        return await lessons.get_lesson(db, ctx, await optional_principal(request), lesson_id)

    @patch(
        "/{lesson_id:uuid}",
        guards=[requires(Permission.MANAGE_OWN_COURSES)],
        security=BEARER,
        responses=errors(BAD, UNAUTHORIZED, FORBIDDEN, NOT_FOUND, CONFLICT),
        summary="Edit or move a lesson of a DRAFT course (the others shift to keep 1..n)",
    )
    async def update_lesson(
        self,
        request: PrincipalRequest,
        ctx: Ctx,
        db: Db,
        lesson_id: FromPath[uuid.UUID],
        data: JSONBody[LessonUpdate],
    ) -> Lesson:
        return await lessons.update_lesson(db, ctx, request.user, lesson_id, data)

    @delete(
        "/{lesson_id:uuid}",
        status_code=HTTP_204_NO_CONTENT,
        guards=[requires(Permission.MANAGE_OWN_COURSES)],
        security=BEARER,
        responses=errors(UNAUTHORIZED, FORBIDDEN, NOT_FOUND, CONFLICT),
        summary="Delete a lesson of a DRAFT course (creator or admin)",
    )
    async def delete_lesson(
        self, request: PrincipalRequest, ctx: Ctx, db: Db, lesson_id: FromPath[uuid.UUID]
    ) -> None:
        await lessons.delete_lesson(db, ctx, request.user, lesson_id)

    @post(
        "/{lesson_id:uuid}/transcribe",
        status_code=HTTP_202_ACCEPTED,
        guards=[requires(Permission.MANAGE_OWN_COURSES)],
        security=BEARER,
        responses=errors(UNAUTHORIZED, FORBIDDEN, NOT_FOUND, CONFLICT),
        summary="Queue the lesson's video for transcription again",
    )
    async def transcribe(
        self, request: PrincipalRequest, ctx: Ctx, db: Db, lesson_id: FromPath[uuid.UUID]
    ) -> JobQueued:
        return JobQueued(
            job_id=await lessons.requeue_transcription(db, ctx, request.user, lesson_id)
        )


class AdminCourseController(Controller):
    path = "/admin/courses"
    tags = ("admin",)
    security = BEARER
    guards = (requires(Permission.PUBLISH_COURSES),)

    @get(
        "/",
        responses=errors(BAD, UNAUTHORIZED, FORBIDDEN),
        summary="Courses in one state (PENDING by default: the review queue), newest first",
    )
    async def list_courses(
        self,
        ctx: Ctx,
        db: Db,
        status: FromQuery[Literal["DRAFT", "PENDING", "PUBLISHED"]] = "PENDING",
        limit: PageLimit = DEFAULT_LIMIT,
        cursor: PageCursor = None,
    ) -> Response[CoursePage]:
        return json_bytes(
            await authoring.review_list(db, ctx, status=status, cursor=cursor, limit=limit)
        )

    @post(
        "/{course_id:uuid}/publish",
        status_code=HTTP_200_OK,
        responses=errors(UNAUTHORIZED, FORBIDDEN, NOT_FOUND, CONFLICT),
        summary="Publish a PENDING course",
    )
    async def publish(
        self, db: Db, request: PrincipalRequest, course_id: FromPath[uuid.UUID]
    ) -> Response[Course]:
        return json_bytes(await authoring.publish_course(db, request.user, course_id))

    @post(
        "/{course_id:uuid}/reject",
        status_code=HTTP_200_OK,
        responses=errors(BAD, UNAUTHORIZED, FORBIDDEN, NOT_FOUND, CONFLICT),
        summary="Send a PENDING course back to DRAFT with feedback",
    )
    async def reject(
        self,
        db: Db,
        request: PrincipalRequest,
        course_id: FromPath[uuid.UUID],
        data: JSONBody[CourseRejection],
    ) -> Response[Course]:
        return json_bytes(await authoring.reject_course(db, request.user, course_id, data.feedback))
