"""Bodies of enrollment, progress, completion, bulk enrollment and the creator dashboard."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from msgspec import Meta

from lms.api.schemas import CamelStruct
from lms.api.text import ADDRESS_PATTERN
from lms.db.projection import json_object, sql
from lms.domain.certificates.schemas import Certificate
from lms.domain.courses.schemas import CourseSummary

# A lesson video longer than a week is not a lesson; anything above is a client bug.
MAX_POSITION_SECONDS = 7 * 86400
MAX_BULK_ROWS = 50_000
Percent = Annotated[float, Meta(ge=0, le=100, description="percent, two decimals")]


# Enrollments are listed by PostgreSQL's JSON on GET /progress (aliases: e = enrollments,
# cert = its certificate, and the course summary's own): fields name their SQL expressions.


class Enrollment(CamelStruct, forbid_unknown_fields=True):
    id: Annotated[uuid.UUID, sql("e.id")]
    course_id: Annotated[uuid.UUID, sql("e.course_id")]
    user_id: Annotated[uuid.UUID, sql("e.user_id")]
    progress: Annotated[float, sql("e.progress::float8"), Meta(ge=0, le=100)]
    completed: Annotated[bool, sql("e.completed")]
    enrolled_at: Annotated[datetime, sql("e.enrolled_at")]
    completed_at: Annotated[datetime | None, sql("e.completed_at")]


class ProgressEntry(CamelStruct, forbid_unknown_fields=True):
    enrollment: Enrollment
    course: CourseSummary
    certificate_id: Annotated[uuid.UUID | None, sql("cert.id")]


class LessonState(CamelStruct):
    lesson_id: uuid.UUID
    title: str
    order: int
    duration_seconds: float | None
    completed: bool
    completed_at: datetime | None
    position_seconds: Annotated[float, Meta(description="where to resume")]
    watched_seconds: Annotated[
        float, Meta(description="seconds of the video really played (seeks forward excluded)")
    ]


class CourseProgress(CamelStruct):
    enrollment_id: uuid.UUID
    course_id: uuid.UUID
    progress: Percent
    completed: bool
    completed_at: datetime | None
    certificate_id: uuid.UUID | None
    lessons: list[LessonState]


class Heartbeat(CamelStruct, forbid_unknown_fields=True):
    position_seconds: Annotated[
        float,
        Meta(
            ge=0,
            le=MAX_POSITION_SECONDS,
            description="the player's current position in seconds; send one when playback "
            "starts and then about every second (at most one per half second per enrollment)",
            examples=[42.5],
        ),
    ]


class LessonCompletion(CamelStruct):
    lesson_id: uuid.UUID
    completed: bool
    progress: Percent
    course_completed: bool
    certificate: Certificate | None = None


# One row of a bulk enrollment, JSON or CSV (lms.domain.learning.bulk_csv converts each CSV row
# to it): the service trims and lower-cases it; a row that names no user is reported as
# NO_SUCH_USER, not refused. One line without control or bidirectional formatting characters.
Email = Annotated[str, Meta(max_length=320, pattern=ADDRESS_PATTERN)]
# The most a bulk enrollment's body may hold (JSON or CSV): 50,000 rows of some 160 bytes each.
MAX_BULK_BODY_BYTES = 8 * 1024 * 1024


class BulkEnrollmentRequest(CamelStruct, forbid_unknown_fields=True):
    emails: Annotated[list[Email], Meta(min_length=1, max_length=MAX_BULK_ROWS)]


class BulkEnrollmentResult(CamelStruct):
    email: str
    status: Literal["ENROLLED", "ALREADY_ENROLLED", "NO_SUCH_USER"]


class BulkEnrollmentCounts(CamelStruct):
    enrolled: int
    already_enrolled: int
    no_such_user: int


class BulkEnrollmentResponse(CamelStruct):
    results: list[BulkEnrollmentResult]  # one per input row, in order
    counts: BulkEnrollmentCounts


# The creator dashboard is one aggregate statement (lms.db.queries.dashboard): its objects are
# projected from the statement's CTEs (s = per lesson, r = per course, mine = the creator's
# courses, my_enrollments = their enrollments).


class DashboardLesson(CamelStruct, forbid_unknown_fields=True):
    id: Annotated[uuid.UUID, sql("s.id")]
    title: Annotated[str, sql("s.title")]
    order: Annotated[int, sql("s.position")]
    started_count: Annotated[int, sql("s.started")]
    completed_count: Annotated[int, sql("s.completed")]
    average_watched_seconds: Annotated[float, sql("round(s.average_watched::numeric, 2)::float8")]


class DashboardRevenue(CamelStruct, forbid_unknown_fields=True):
    """What the course has sold (orders in LMS_CURRENCY): every payment taken, and the part of
    it refunded since."""

    gross_amount: Annotated[
        str, sql("to_char(r.gross, 'FM9999999990.00')"), Meta(pattern=r"^\d+\.\d{2}$")
    ]
    refunded_amount: Annotated[
        str, sql("to_char(r.refunded, 'FM9999999990.00')"), Meta(pattern=r"^\d+\.\d{2}$")
    ]
    currency: Annotated[str, sql("$2::text"), Meta(pattern="^[a-z]{3}$")]


class DashboardCourse(CamelStruct, forbid_unknown_fields=True):
    id: Annotated[uuid.UUID, sql("r.id")]
    title: Annotated[str, sql("r.title")]
    status: Annotated[Literal["DRAFT", "PENDING", "PUBLISHED"], sql("r.status")]
    lesson_count: Annotated[int, sql("r.lesson_count")]
    enrollment_count: Annotated[int, sql("r.enrollments")]
    completion_count: Annotated[int, sql("r.completions")]
    average_progress: Annotated[
        float,
        sql("round(r.progress_sum / greatest(r.enrollments, 1), 2)::float8"),
        Meta(ge=0, le=100),
    ]
    lessons: Annotated[list[DashboardLesson], sql("r.lessons")]
    revenue: DashboardRevenue


class DashboardTotals(CamelStruct, forbid_unknown_fields=True):
    course_count: Annotated[int, sql("(SELECT count(*) FROM mine)")]
    lesson_count: Annotated[int, sql("(SELECT coalesce(sum(lesson_count), 0) FROM mine)")]
    enrollment_count: Annotated[int, sql("(SELECT count(*) FROM my_enrollments)")]
    completion_count: Annotated[int, sql("(SELECT count(*) FROM my_enrollments WHERE completed)")]
    learner_count: Annotated[int, sql("(SELECT count(DISTINCT user_id) FROM my_enrollments)")]
    average_progress: Annotated[
        float,
        sql("(SELECT coalesce(round(avg(progress), 2), 0)::float8 FROM my_enrollments)"),
        Meta(ge=0, le=100),
    ]


class CreatorDashboard(CamelStruct, forbid_unknown_fields=True):
    courses: Annotated[
        list[DashboardCourse],
        sql(
            f"coalesce((SELECT json_agg({json_object(DashboardCourse)}"  # noqa: S608 - our Struct
            " ORDER BY r.created_at DESC, r.id DESC) FROM course_rows r), '[]'::json)"
        ),
    ]
    totals: DashboardTotals
