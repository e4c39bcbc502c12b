"""Bodies of /courses, /lessons and /admin/courses. Course responses on the hot path are JSON built
by PostgreSQL; these Structs describe them for the OpenAPI document and build the rest."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Literal

from msgspec import UNSET, Meta, UnsetType

from lms.api.schemas import CamelStruct

Title = Annotated[str, Meta(min_length=1, max_length=200)]
Description = Annotated[str, Meta(max_length=20_000)]
Url = Annotated[str, Meta(max_length=2000, description="an http(s) URL")]
PriceInput = Annotated[
    str | float | int, Meta(description='a decimal with at most two places, e.g. "49.99" or 49.99')
]
CourseStatus = Literal["DRAFT", "PENDING", "PUBLISHED"]
TranscriptStatus = Literal["NONE", "QUEUED", "PROCESSING", "DONE", "FAILED"]

MAX_PRICE = Decimal("99999999.99")


def parse_price(value: str | float | int) -> Decimal | None:
    """The price as a 2-place Decimal, or None when it is not a valid amount."""
    if isinstance(value, bool):
        return None
    try:
        price = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    if (
        not price.is_finite()
        or price < 0
        or price > MAX_PRICE
        or price != price.quantize(Decimal("0.01"))
    ):
        return None
    return price.quantize(Decimal("0.01"))


class CreatorRef(CamelStruct):
    id: uuid.UUID
    name: str | None


class CourseSummary(CamelStruct):
    id: uuid.UUID
    title: str
    description: str
    thumbnail_url: str | None
    price: str
    status: CourseStatus
    creator: CreatorRef
    lesson_count: int
    published_at: datetime | None


class LessonSummary(CamelStruct):
    id: uuid.UUID
    title: str
    order: int
    duration_seconds: float | None
    transcript_status: TranscriptStatus


class Course(CourseSummary):
    created_at: datetime
    updated_at: datetime
    submitted_at: datetime | None
    review_notes: str | None
    lessons: list[LessonSummary]


class Lesson(LessonSummary):
    description: str
    course_id: uuid.UUID
    video_url: str | None  # only for an enrolled learner, the owner and admins
    created_at: datetime
    updated_at: datetime


class CourseCreate(CamelStruct, forbid_unknown_fields=True):
    title: Title
    price: PriceInput
    description: Description = ""
    thumbnail_url: Url | None = None


class CourseUpdate(CamelStruct, forbid_unknown_fields=True):
    title: Title | UnsetType = UNSET
    description: Description | UnsetType = UNSET
    price: PriceInput | UnsetType = UNSET
    thumbnail_url: Url | UnsetType | None = UNSET


class LessonCreate(CamelStruct, forbid_unknown_fields=True):
    title: Title
    description: Description = ""
    video_url: Url | None = None
    order: Annotated[int, Meta(ge=1)] | None = None


class LessonUpdate(CamelStruct, forbid_unknown_fields=True):
    title: Title | UnsetType = UNSET
    description: Description | UnsetType = UNSET
    order: Annotated[int, Meta(ge=1)] | UnsetType = UNSET


class LessonOrder(CamelStruct, forbid_unknown_fields=True):
    lesson_ids: Annotated[list[uuid.UUID], Meta(min_length=1, max_length=1000)]


class CourseRejection(CamelStruct, forbid_unknown_fields=True):
    feedback: Annotated[str, Meta(min_length=1, max_length=10_000)]


class UploadSignature(CamelStruct):
    lesson_id: uuid.UUID
    upload_url: str
    params: dict[str, str]
