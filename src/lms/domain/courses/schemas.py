"""Bodies of /courses, /lessons and /admin/courses. Course responses on the hot path are JSON built
by PostgreSQL; these Structs describe them for the OpenAPI document and build the rest."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, ClassVar, Literal

from msgspec import UNSET, Meta, UnsetType

from lms.api.schemas import HTTP_URL_PATTERN, CamelStruct, Page
from lms.api.text import WORDS_PATTERN
from lms.db.projection import json_object, sql

Title = Annotated[
    str,
    Meta(
        min_length=1, max_length=200, pattern=WORDS_PATTERN, examples=["Python for data analysis"]
    ),
]
Description = Annotated[
    str, Meta(max_length=20_000, examples=["From lists and loops to pandas, in ten lessons."])
]
Url = Annotated[
    str,
    Meta(
        max_length=2000,
        pattern=HTTP_URL_PATTERN,
        description="an http(s) URL; blank for none",
        examples=["https://images.example.com/python.png"],
    ),
]
MAX_PRICE = Decimal("99999999.99")
# A price as text: what parse_price takes (numbers go by their value).
PRICE_TEXT = r"^[0-9]{1,8}(\.[0-9]{1,2})?$"
PriceInput = Annotated[
    str | float | int,
    Meta(
        description='a decimal with at most two places, e.g. "49.99" or 49.99',
        # A union carries no Meta constraints of its own: its schema is stated here in full.
        extra_json_schema={
            "extra": {
                "one_of": None,
                "any_of": [
                    {"type": "string", "pattern": PRICE_TEXT},
                    {
                        "type": "number",
                        "minimum": 0,
                        "maximum": float(MAX_PRICE),
                        "multipleOf": 0.01,
                    },
                ],
            }
        },
    ),
]
CourseStatus = Literal["DRAFT", "PENDING", "PUBLISHED"]
TranscriptStatus = Literal["NONE", "QUEUED", "PROCESSING", "DONE", "FAILED"]

_PRICE_TEXT = re.compile(PRICE_TEXT)


def parse_price(value: str | float | int) -> Decimal | None:
    """The price as a 2-place Decimal, or None when it is not a valid amount: text in the one
    form the document gives (PRICE_TEXT), or a number."""
    if isinstance(value, bool) or (isinstance(value, str) and not _PRICE_TEXT.fullmatch(value)):
        return None
    try:
        price = Decimal(str(value))
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


# The course objects are built by PostgreSQL on the hot paths (catalog, course page): each
# field names its SQL expression (aliases: c = courses, u = the creator's users row, l = lessons)
# and lms.db.projection writes the JSON from these definitions. They forbid unknown fields so that
# a test decoding the SQL-built bodies strictly catches any drift.


class CreatorRef(CamelStruct, forbid_unknown_fields=True):
    id: Annotated[uuid.UUID, sql("u.id")]
    name: Annotated[str | None, sql("coalesce(u.name, u.full_name, u.username)")]


class CourseSummary(CamelStruct, forbid_unknown_fields=True):
    id: Annotated[uuid.UUID, sql("c.id")]
    title: Annotated[str, sql("c.title")]
    description: Annotated[str, sql("c.description")]
    thumbnail_url: Annotated[str | None, sql("c.thumbnail_url")]
    price: Annotated[
        str, sql("to_char(c.price, 'FM9999999990.00')"), Meta(description='e.g. "49.99"')
    ]
    status: Annotated[CourseStatus, sql("c.status")]
    creator: CreatorRef
    lesson_count: Annotated[int, sql("c.lesson_count")]
    published_at: Annotated[datetime | None, sql("c.published_at")]


class LessonSummary(CamelStruct, forbid_unknown_fields=True):
    id: Annotated[uuid.UUID, sql("l.id")]
    title: Annotated[str, sql("l.title")]
    order: Annotated[int, sql("l.position")]
    duration_seconds: Annotated[float | None, sql("l.duration_seconds")]
    transcript_status: Annotated[TranscriptStatus, sql("l.transcript_status")]


# A subquery built from our own Struct: no input ever reaches it.
LESSON_SUMMARIES_OF_C = (
    f"(SELECT coalesce(json_agg({json_object(LessonSummary)} ORDER BY l.position), '[]'::json)"  # noqa: S608
    " FROM lessons l WHERE l.course_id = c.id)"
)


class Course(CourseSummary):
    created_at: Annotated[datetime, sql("c.created_at")]
    updated_at: Annotated[datetime, sql("c.updated_at")]
    submitted_at: Annotated[datetime | None, sql("c.submitted_at")]
    review_notes: Annotated[str | None, sql("c.review_notes")]
    lessons: Annotated[list[LessonSummary], sql(LESSON_SUMMARIES_OF_C)]


class CourseSummaryPage(Page[CourseSummary]):
    """A page of the catalog."""

    items: list[CourseSummary]


class CoursePage(Page[Course]):
    """A page of courses with their lessons (the admin's review queue)."""

    items: list[Course]


class Lesson(LessonSummary):
    description: str
    course_id: uuid.UUID
    video_url: str | None  # only for an enrolled learner, the owner and admins
    created_at: datetime
    updated_at: datetime


# A lesson's 1-based place in its course; the service bounds it by the lesson count, this by the
# column (int4).
Position = Annotated[
    int,
    Meta(ge=1, le=2**31 - 1, description="1-based; at most the lesson count (+1 when adding)"),
]
# Every field of a PATCH is optional, but one of them must be there.
AT_LEAST_ONE_FIELD: dict[str, Any] = {"minProperties": 1}


class CourseCreate(CamelStruct, forbid_unknown_fields=True):
    title: Title
    price: PriceInput
    description: Description = ""
    thumbnail_url: Url | None = None


class CourseUpdate(CamelStruct, forbid_unknown_fields=True):
    json_schema_extra: ClassVar[dict[str, Any]] = AT_LEAST_ONE_FIELD

    title: Title | UnsetType = UNSET
    description: Description | UnsetType = UNSET
    price: PriceInput | UnsetType = UNSET
    thumbnail_url: Url | UnsetType | None = UNSET


class LessonCreate(CamelStruct, forbid_unknown_fields=True):
    title: Title
    description: Description = ""
    video_url: Url | None = None
    order: Position | None = None


class LessonUploadForm(CamelStruct):
    """The text fields of the multipart upload of a lesson video (the file part is `file`)."""

    title: Title
    description: Description = ""


class LessonUpdate(CamelStruct, forbid_unknown_fields=True):
    json_schema_extra: ClassVar[dict[str, Any]] = AT_LEAST_ONE_FIELD

    title: Title | UnsetType = UNSET
    description: Description | UnsetType = UNSET
    order: Position | UnsetType = UNSET


class LessonOrder(CamelStruct, forbid_unknown_fields=True):
    lesson_ids: Annotated[
        list[uuid.UUID],
        Meta(
            min_length=1,
            max_length=1000,
            description="every lesson of the course, each once, in the new order",
            extra_json_schema={"extra": {"unique_items": True}},
        ),
    ]


class CourseRejection(CamelStruct, forbid_unknown_fields=True):
    feedback: Annotated[str, Meta(min_length=1, max_length=10_000, pattern=WORDS_PATTERN)]


class UploadSignature(CamelStruct):
    lesson_id: uuid.UUID
    upload_url: str
    params: dict[str, str]
