"""Bodies of enrollment, progress, completion, bulk enrollment and the creator dashboard."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from msgspec import Meta

from lms.api.schemas import CamelStruct
from lms.domain.certificates.schemas import Certificate
from lms.domain.courses.schemas import CourseSummary

# A lesson video longer than a week is not a lesson; anything above is a client bug.
MAX_POSITION_SECONDS = 7 * 86400
MAX_BULK_ROWS = 50_000
Percent = Annotated[float, Meta(ge=0, le=100, description="percent, two decimals")]


class Enrollment(CamelStruct):
    id: uuid.UUID
    course_id: uuid.UUID
    user_id: uuid.UUID
    progress: Percent
    completed: bool
    enrolled_at: datetime
    completed_at: datetime | None


class ProgressEntry(CamelStruct):
    enrollment: Enrollment
    course: CourseSummary
    certificate_id: uuid.UUID | None


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
            "starts and then every few seconds",
        ),
    ]


class LessonCompletion(CamelStruct):
    lesson_id: uuid.UUID
    completed: bool
    progress: Percent
    course_completed: bool
    certificate: Certificate | None = None


Email = Annotated[str, Meta(max_length=320)]


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


class DashboardLesson(CamelStruct):
    id: uuid.UUID
    title: str
    order: int
    started_count: int
    completed_count: int
    average_watched_seconds: float


class DashboardCourse(CamelStruct):
    id: uuid.UUID
    title: str
    status: Literal["DRAFT", "PENDING", "PUBLISHED"]
    lesson_count: int
    enrollment_count: int
    completion_count: int
    average_progress: Percent
    lessons: list[DashboardLesson]


class DashboardTotals(CamelStruct):
    course_count: int
    lesson_count: int
    enrollment_count: int
    completion_count: int
    learner_count: int
    average_progress: Percent


class CreatorDashboard(CamelStruct):
    courses: list[DashboardCourse]
    totals: DashboardTotals
