"""Pydantic response and request models: camelCase on the wire, as lms's contract says."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer
from pydantic.alias_generators import to_camel


def _timestamp(value: datetime | None) -> str | None:
    """As lms's catalog writes times: UTC, always six digits of microseconds, Z."""
    return None if value is None else value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _seconds(value: float | None) -> float | int | None:
    """A length in seconds as PostgreSQL's JSON writes a float8: no '.0' on whole numbers."""
    return int(value) if value is not None and value.is_integer() else value


Timestamp = Annotated[datetime | None, PlainSerializer(_timestamp)]
Seconds = Annotated[float | None, PlainSerializer(_seconds)]


class CamelModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, from_attributes=True)


class CreatorRef(CamelModel):
    id: uuid.UUID
    name: str | None


class CourseSummary(CamelModel):
    id: uuid.UUID
    title: str
    description: str
    thumbnail_url: str | None
    price: str
    status: str
    creator: CreatorRef
    lesson_count: int
    published_at: Timestamp


class LessonSummary(CamelModel):
    id: uuid.UUID
    title: str
    order: int
    duration_seconds: Seconds
    transcript_status: str


class CourseDetail(CourseSummary):
    created_at: Timestamp
    updated_at: Timestamp
    submitted_at: Timestamp
    review_notes: str | None
    lessons: list[LessonSummary]


class CoursePage(CamelModel):
    items: list[CourseSummary]
    next_cursor: str | None


class Heartbeat(CamelModel):
    model_config = ConfigDict(alias_generator=to_camel, extra="forbid")

    position_seconds: float = Field(ge=0, le=7 * 86400, strict=True)


class CertificateCourse(CamelModel):
    id: uuid.UUID
    title: str


class CertificateLearner(CamelModel):
    full_name: str


class CertificateOut(CamelModel):
    id: uuid.UUID
    serial_hash: str
    issued_at: datetime
    enrollment_id: uuid.UUID
    course: CertificateCourse
    learner: CertificateLearner
    creator_name: str | None
    verify_url: str
    status: str
    revoked_at: datetime | None
    jws: str | None


class LessonCompletion(CamelModel):
    lesson_id: uuid.UUID
    completed: bool
    progress: float
    course_completed: bool
    certificate: CertificateOut | None = None


class VerifiedCertificate(CamelModel):
    serial_hash: str
    issued_at: datetime
    learner_name: str
    course_title: str
    course_id: uuid.UUID
    creator_name: str | None
    status: str
    revoked_at: datetime | None
    verify_url: str
    jws: str | None


class Verification(CamelModel):
    valid: bool
    certificate: VerifiedCertificate


class NotVerified(BaseModel):
    valid: bool = False
    status_code: int = 404
    detail: str = "no certificate has this serial"
