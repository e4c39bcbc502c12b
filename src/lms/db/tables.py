"""Piccolo tables: the whole schema.

Column and table names are the SQL names; the wire uses camelCase (see domain schemas).
What Piccolo cannot express (CHECK constraints, partial and GIN indexes, generated tsvector
columns, deferrable uniques) is created by raw SQL in the migrations, next to these columns.
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum

from piccolo.columns import (
    JSONB,
    UUID,
    BigInt,
    Boolean,
    DoublePrecision,
    ForeignKey,
    Integer,
    Numeric,
    OnDelete,
    Text,
    Timestamptz,
    Varchar,
)
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table


class Role(StrEnum):
    LEARNER = "LEARNER"
    CREATOR = "CREATOR"
    ADMIN = "ADMIN"


class CourseStatus(StrEnum):
    DRAFT = "DRAFT"
    PENDING = "PENDING"
    PUBLISHED = "PUBLISHED"


class TranscriptStatus(StrEnum):
    NONE = "NONE"
    QUEUED = "QUEUED"
    PROCESSING = "PROCESSING"
    DONE = "DONE"
    FAILED = "FAILED"


class ApplicationStatus(StrEnum):
    PENDING = "PENDING"
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"


class CertificateStatus(StrEnum):
    VALID = "VALID"
    REVOKED = "REVOKED"


class OtpChannel(StrEnum):
    EMAIL = "EMAIL"
    SMS = "SMS"


class OtpPurpose(StrEnum):
    VERIFY_EMAIL = "VERIFY_EMAIL"
    VERIFY_PHONE = "VERIFY_PHONE"
    RESET_PASSWORD = "RESET_PASSWORD"  # noqa: S105 - a purpose, not a secret


class MessageChannel(StrEnum):
    EMAIL = "EMAIL"
    SMS = "SMS"


class MessageStatus(StrEnum):
    PENDING = "PENDING"
    SENT = "SENT"
    FAILED = "FAILED"  # gave up: past its expiry or out of attempts


class JobStatus(StrEnum):
    QUEUED = "QUEUED"
    PROCESSING = "PROCESSING"
    DONE = "DONE"
    FAILED = "FAILED"


class OrderStatus(StrEnum):
    PENDING = "PENDING"
    PAID = "PAID"
    FAILED = "FAILED"
    REFUNDED = "REFUNDED"


class User(Table, tablename="users"):
    id = UUID(primary_key=True)
    email = Varchar(length=320, unique=True)  # stored lower-cased
    phone_number = Varchar(length=16, null=True, unique=True, default=None)  # E.164
    name = Varchar(length=100, null=True, default=None)
    username = Varchar(length=50, null=True, unique=True, default=None)  # stored lower-cased
    password_hash = Text(null=True, default=None, secret=True)
    full_name = Varchar(length=200, null=True, default=None)
    country = Varchar(length=100, null=True, default=None)
    state = Varchar(length=100, null=True, default=None)
    zip = Varchar(length=20, null=True, default=None)
    email_verified = Boolean(default=False)
    phone_verified = Boolean(default=False)
    is_profile_complete = Boolean(default=False)
    is_active = Boolean(default=True)
    role = Varchar(length=16, default=Role.LEARNER.value, choices=Role)
    # Bumped on role change, deactivation and password reset: access tokens carry it, so a
    # stale token is refused on the next request rather than at expiry.
    token_version = Integer(default=0)
    created_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(default=TimestamptzNow())
    last_login_at = Timestamptz(null=True, default=None)


class Course(Table, tablename="courses"):
    id = UUID(primary_key=True)
    title = Varchar(length=200)
    description = Text(default="")
    thumbnail_url = Text(null=True, default=None)
    price = Numeric(digits=(10, 2), default=Decimal("0.00"))
    status = Varchar(length=16, default=CourseStatus.DRAFT.value, choices=CourseStatus)
    creator = ForeignKey(
        db_column_name="creator_id", references=User, on_delete=OnDelete.restrict, null=False
    )
    review_notes = Text(null=True, default=None)
    # Kept in step with the lessons table in the same transaction, so the catalog never counts.
    lesson_count = Integer(default=0)
    created_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(default=TimestamptzNow())
    submitted_at = Timestamptz(null=True, default=None)
    published_at = Timestamptz(null=True, default=None)


class Lesson(Table, tablename="lessons"):
    id = UUID(primary_key=True)
    course = ForeignKey(
        db_column_name="course_id", references=Course, on_delete=OnDelete.cascade, null=False
    )
    title = Varchar(length=200)
    description = Text(default="")
    position = Integer()  # `order` on the wire; dense 1..n per course
    video_url = Text(null=True, default=None)
    video_provider = Varchar(
        length=16, null=True, default=None
    )  # "local" | "cloudinary" | "external"
    video_key = Text(null=True, default=None)  # storage key / Cloudinary public_id
    # Every new video bumps this; transcripts and jobs are keyed by (lesson, video_version).
    video_version = Integer(default=0)
    duration_seconds = DoublePrecision(null=True, default=None)
    transcript_status = Varchar(
        length=16, default=TranscriptStatus.NONE.value, choices=TranscriptStatus
    )
    created_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(default=TimestamptzNow())


class Enrollment(Table, tablename="enrollments"):
    id = UUID(primary_key=True)
    user = ForeignKey(
        db_column_name="user_id", references=User, on_delete=OnDelete.cascade, null=False
    )
    course = ForeignKey(
        db_column_name="course_id", references=Course, on_delete=OnDelete.cascade, null=False
    )
    progress = Numeric(digits=(5, 2), default=Decimal("0.00"))
    completed = Boolean(default=False)
    enrolled_at = Timestamptz(default=TimestamptzNow())
    completed_at = Timestamptz(null=True, default=None)
    # The watch clock, shared by all the enrollment's lessons (lms.domain.learning.progress):
    # when its previous heartbeat was accepted, and up to when real time has been credited as
    # watched; the gap between now and the latter bounds what a heartbeat may credit.
    last_heartbeat_at = Timestamptz(null=True, default=None)
    watch_clock = Timestamptz(null=True, default=None)


class LessonProgress(Table, tablename="lesson_progress"):
    id = UUID(primary_key=True)
    user = ForeignKey(
        db_column_name="user_id", references=User, on_delete=OnDelete.cascade, null=False
    )
    lesson = ForeignKey(
        db_column_name="lesson_id", references=Lesson, on_delete=OnDelete.cascade, null=False
    )
    enrollment = ForeignKey(
        db_column_name="enrollment_id",
        references=Enrollment,
        on_delete=OnDelete.cascade,
        null=False,
    )
    completed = Boolean(default=False)
    completed_at = Timestamptz(null=True, default=None)
    position_seconds = DoublePrecision(default=0)  # where to resume
    # Seconds of the video really watched: the measure of the spans played (a seek forward
    # covers nothing, watching a span twice counts it once). The spans themselves live in the
    # `watched` nummultirange column, added by raw SQL (Piccolo has no multirange type).
    watched_seconds = DoublePrecision(default=0)
    # Server time of the previous heartbeat of this lesson (whether its position was reported
    # by a heartbeat, and so whether a jump from it can be playback).
    last_heartbeat_at = Timestamptz(null=True, default=None)
    # How far playback has been credited: from here to position_seconds was played but not
    # credited yet (the heartbeat came before that much real time had passed); NULL: nothing
    # owed, as at position_seconds.
    credited_to = DoublePrecision(null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(default=TimestamptzNow())


class Certificate(Table, tablename="certificates"):
    id = UUID(primary_key=True)
    user = ForeignKey(
        db_column_name="user_id", references=User, on_delete=OnDelete.restrict, null=False
    )
    course = ForeignKey(
        db_column_name="course_id", references=Course, on_delete=OnDelete.restrict, null=False
    )
    # The enrollment it was earned in, as its signed credential names it. lms_0013 dropped the
    # database's foreign key: a refund deletes the enrollment, and the (revoked) certificate
    # stays verifiable.
    enrollment = ForeignKey(
        db_column_name="enrollment_id",
        references=Enrollment,
        on_delete=OnDelete.restrict,
        null=False,
        unique=True,
    )
    serial_hash = Varchar(length=64, unique=True)
    # Snapshots taken at issue: a certificate says what was true when it was earned.
    learner_name = Text()
    course_title = Text()
    creator_name = Text(null=True, default=None)
    status = Varchar(length=16, default=CertificateStatus.VALID.value, choices=CertificateStatus)
    jws = Text()
    issued_at = Timestamptz(default=TimestamptzNow())
    revoked_at = Timestamptz(null=True, default=None)
    revoked_reason = Text(null=True, default=None)


class CertificateSigningKey(Table, tablename="certificate_signing_keys"):
    """Every public key that has signed certificates, so /.well-known/jwks.json keeps serving old
    keys after a rotation and old certificates stay verifiable. Each API process registers the
    key it signs with at startup; the private key never leaves LMS_CERT_SIGNING_KEY."""

    kid = Varchar(length=500, primary_key=True)  # the JWS `kid`: a URI naming this key in the set
    public_jwk = JSONB()  # {kty: OKP, crv: Ed25519, x}: never a private part
    created_at = Timestamptz(default=TimestamptzNow())


class CreatorApplication(Table, tablename="creator_applications"):
    id = UUID(primary_key=True)
    user = ForeignKey(
        db_column_name="user_id", references=User, on_delete=OnDelete.cascade, null=False
    )
    bio = Text()
    portfolio_url = Text(null=True, default=None)
    experience_years = Integer(default=0)
    status = Varchar(length=16, default=ApplicationStatus.PENDING.value, choices=ApplicationStatus)
    reviewer_notes = Text(null=True, default=None)
    reviewer = ForeignKey(
        db_column_name="reviewer_id", references=User, on_delete=OnDelete.set_null, null=True
    )
    created_at = Timestamptz(default=TimestamptzNow())
    reviewed_at = Timestamptz(null=True, default=None)


class OtpCode(Table, tablename="otp_codes"):
    id = UUID(primary_key=True)
    user = ForeignKey(
        db_column_name="user_id", references=User, on_delete=OnDelete.cascade, null=False
    )
    channel = Varchar(length=8, choices=OtpChannel)
    purpose = Varchar(length=16, choices=OtpPurpose)
    destination = Varchar(length=320)  # the address or number the code was sent to
    code_hash = Varchar(length=128, secret=True)
    attempts = Integer(default=0)
    max_attempts = Integer(default=5)
    expires_at = Timestamptz()
    consumed_at = Timestamptz(null=True, default=None)
    invalidated_at = Timestamptz(null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())


class RefreshToken(Table, tablename="refresh_tokens"):
    id = UUID(primary_key=True)
    user = ForeignKey(
        db_column_name="user_id", references=User, on_delete=OnDelete.cascade, null=False
    )
    # Every token of one login shares a family; presenting a rotated token revokes the family.
    family_id = UUID()
    token_hash = Varchar(length=64, unique=True, secret=True)
    created_at = Timestamptz(default=TimestamptzNow())
    expires_at = Timestamptz()
    rotated_at = Timestamptz(null=True, default=None)
    revoked_at = Timestamptz(null=True, default=None)
    user_agent = Text(null=True, default=None)
    ip_address = Varchar(length=64, null=True, default=None)


class TranscriptionJob(Table, tablename="transcription_jobs"):
    id = UUID(primary_key=True)
    lesson = ForeignKey(
        db_column_name="lesson_id", references=Lesson, on_delete=OnDelete.cascade, null=False
    )
    video_version = Integer()
    status = Varchar(length=16, default=JobStatus.QUEUED.value, choices=JobStatus)
    attempts = Integer(default=0)
    error = Text(null=True, default=None)
    request_id = Varchar(
        length=128, null=True, default=None
    )  # the API request that queued it, for tracing
    created_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(default=TimestamptzNow())
    published_at = Timestamptz(null=True, default=None)  # last publish to NATS (sweeper uses it)
    started_at = Timestamptz(null=True, default=None)
    finished_at = Timestamptz(null=True, default=None)


class Transcript(Table, tablename="transcripts"):
    id = UUID(primary_key=True)
    lesson = ForeignKey(
        db_column_name="lesson_id", references=Lesson, on_delete=OnDelete.cascade, unique=True
    )
    video_version = Integer()
    language = Varchar(length=16, null=True, default=None)
    duration_seconds = DoublePrecision(null=True, default=None)
    text = Text(default="")
    created_at = Timestamptz(default=TimestamptzNow())
    # lms_0011: the speech VAD found, the share of it the segments cover, and what a transcript
    # still short after a second decoding says to its readers (lms.integrations.whisper.coverage).
    speech_seconds = DoublePrecision(null=True, default=None)
    speech_coverage = DoublePrecision(null=True, default=None)
    warning = Text(null=True, default=None)


class TranscriptSegment(Table, tablename="transcript_segments"):
    id = UUID(primary_key=True)
    lesson = ForeignKey(
        db_column_name="lesson_id", references=Lesson, on_delete=OnDelete.cascade, null=False
    )
    seq = Integer()
    start_seconds = DoublePrecision()
    end_seconds = DoublePrecision()
    text = Text()
    words = JSONB(null=True, default=None)  # [{start, end, word, probability}]


class AuditEntry(Table, tablename="audit_log"):
    id = UUID(primary_key=True)
    actor = ForeignKey(
        db_column_name="actor_id", references=User, on_delete=OnDelete.set_null, null=True
    )
    action = Varchar(length=64)
    target_type = Varchar(length=32)
    target_id = Varchar(length=64, null=True, default=None)
    before = JSONB(null=True, default=None)
    after = JSONB(null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())


class SystemSettings(Table, tablename="system_settings"):
    """One row (id = 1) of runtime settings that admins change without a restart."""

    id = Integer(primary_key=True)
    registration_open = Boolean(default=True)
    otp_ttl_seconds = Integer(default=600)
    otp_max_attempts = Integer(default=5)
    completion_threshold_percent = Numeric(digits=(5, 2), default=Decimal("95.00"))
    # When true, /complete on a video lesson needs completion_threshold_percent of it watched.
    require_watch_to_complete = Boolean(default=False)
    max_upload_bytes = BigInt(default=2 * 1024**3)
    updated_at = Timestamptz(default=TimestamptzNow())
    updated_by = ForeignKey(
        db_column_name="updated_by_id", references=User, on_delete=OnDelete.set_null, null=True
    )


class OutboundMessage(Table, tablename="outbound_messages"):
    """The outbox: an email or SMS written in the transaction that decided to send it, then
    delivered (and retried) by a dispatcher in every API process. The body is wiped once sent."""

    id = UUID(primary_key=True)
    channel = Varchar(length=8, choices=MessageChannel)
    recipient = Varchar(length=320)
    subject = Text(default="")
    body_text = Text(null=True, default=None, secret=True)
    body_html = Text(null=True, default=None, secret=True)
    purpose = Varchar(length=32)  # e.g. "otp.verify-email": for logs and metrics
    status = Varchar(length=8, default=MessageStatus.PENDING.value, choices=MessageStatus)
    attempts = Integer(default=0)
    next_attempt_at = Timestamptz(default=TimestamptzNow())
    locked_until = Timestamptz(null=True, default=None)  # claimed by a dispatcher until then
    last_error = Text(null=True, default=None)
    # Not worth sending after this (an OTP past its expiry); null means retry until max attempts.
    expires_at = Timestamptz(null=True, default=None)
    request_id = Varchar(length=128, null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())
    sent_at = Timestamptz(null=True, default=None)


class RateLimitCounter(Table, tablename="rate_limit_counters"):
    """Fixed-window hit counters shared by every API process (an UNLOGGED table: losing the
    counts in a crash only forgives a few requests)."""

    key = Varchar(length=200, primary_key=True)
    window_start = Timestamptz(default=TimestamptzNow())
    hits = Integer(default=0)


class UploadSlot(Table, tablename="upload_slots"):
    """A video upload in flight through the API, one row per request: at most
    LMS_MAX_UPLOADS_PER_USER live rows per user, counted by every API process. The request
    renews its lease while it reads the body and deletes the row when done; a row whose lease ran
    out belongs to an upload that died (its process killed) and counts for nothing."""

    id = UUID(primary_key=True)
    user = ForeignKey(
        db_column_name="user_id", references=User, on_delete=OnDelete.cascade, null=False
    )
    expires_at = Timestamptz()
    created_at = Timestamptz(default=TimestamptzNow())


class CloudinaryNotification(Table, tablename="cloudinary_notifications"):
    """Cloudinary notifications already processed, by their signature, so a replay is refused.
    Only as long as their timestamp would be accepted: older ones are refused for that anyway."""

    signature = Varchar(length=128, primary_key=True)
    signed_at = Timestamptz()


ALL_TABLES: list[type[Table]] = [
    User,
    Course,
    Lesson,
    Enrollment,
    LessonProgress,
    Certificate,
    CertificateSigningKey,
    CreatorApplication,
    OtpCode,
    RefreshToken,
    TranscriptionJob,
    Transcript,
    TranscriptSegment,
    AuditEntry,
    SystemSettings,
    OutboundMessage,
    RateLimitCounter,
    UploadSlot,
    CloudinaryNotification,
]


class Order(Table, tablename="orders"):
    """A learner buying a priced course (lms.domain.payments). Amount and currency are copied
    from the course when ordered. lms_0013 adds in SQL: one PENDING order per (user, course)
    (a partial unique index), amount > 0, the status/timestamp consistency checks."""

    id = UUID(primary_key=True)
    user = ForeignKey(
        db_column_name="user_id", references=User, on_delete=OnDelete.restrict, null=False
    )
    course = ForeignKey(
        db_column_name="course_id", references=Course, on_delete=OnDelete.restrict, null=False
    )
    amount = Numeric(digits=(10, 2))
    currency = Varchar(length=3)  # ISO 4217, lower case
    status = Varchar(length=16, default=OrderStatus.PENDING.value, choices=OrderStatus)
    provider = Varchar(length=16, default="stripe")
    payment_intent_id = Varchar(length=255, null=True, default=None, unique=True)
    client_secret = Text(null=True, default=None, secret=True)
    # Why a payment was not fulfilled (its amount or currency differ from the order's): for admins.
    flag = Text(null=True, default=None)
    failure_reason = Text(null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(default=TimestamptzNow())
    checked_at = Timestamptz(null=True, default=None)  # last looked up at Stripe (reconciler)
    paid_at = Timestamptz(null=True, default=None)
    refunded_at = Timestamptz(null=True, default=None)


class StripeEvent(Table, tablename="stripe_events"):
    """Every Stripe event handled, by its id: a replay or a concurrent duplicate is a no-op."""

    id = Varchar(length=255, primary_key=True)
    type = Varchar(length=100)
    order = ForeignKey(
        db_column_name="order_id", references=Order, on_delete=OnDelete.set_null, null=True
    )
    outcome = Varchar(length=32)
    received_at = Timestamptz(default=TimestamptzNow())
