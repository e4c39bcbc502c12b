"""What Piccolo's table DSL cannot say: CHECK constraints on enums and ranges, composite and partial
uniques, keyset and GIN indexes, generated tsvector columns for full-text search, and the one row of
system settings. Each step is a (forward, backward) pair so the migration undoes cleanly.

Frozen history: never import application code here.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.apps.migrations.tables import Migration

ID = "2026-11-25T12:55:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "Constraints, indexes, full-text search columns and the system settings row"

Step = tuple[str, str]


def check(table: str, name: str, expr: str) -> Step:
    return (
        f"ALTER TABLE {table} ADD CONSTRAINT {name} CHECK ({expr})",
        f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {name}",
    )


def one_of(table: str, column: str, values: tuple[str, ...]) -> Step:
    listed = ", ".join(f"'{v}'" for v in values)
    return check(table, f"{table}_{column}_check", f"{column} IN ({listed})")


def index(name: str, definition: str, unique: bool = False) -> Step:
    kind = "UNIQUE INDEX" if unique else "INDEX"
    return f"CREATE {kind} {name} ON {definition}", f"DROP INDEX IF EXISTS {name}"


def generated_tsvector(table: str, column: str, expression: str) -> Step:
    return (
        f"ALTER TABLE {table} ADD COLUMN {column} tsvector"
        f" GENERATED ALWAYS AS ({expression}) STORED",
        f"ALTER TABLE {table} DROP COLUMN IF EXISTS {column}",
    )


ROLES = ("LEARNER", "CREATOR", "ADMIN")
COURSE_STATUSES = ("DRAFT", "PENDING", "PUBLISHED")
TRANSCRIPT_STATUSES = ("NONE", "QUEUED", "PROCESSING", "DONE", "FAILED")
APPLICATION_STATUSES = ("PENDING", "APPROVED", "REJECTED")
JOB_STATUSES = ("QUEUED", "PROCESSING", "DONE", "FAILED")

STEPS: list[Step] = [
    # users
    one_of("users", "role", ROLES),
    check(
        "users", "users_email_lower_check", "email = lower(email) AND position('@' in email) > 1"
    ),
    check("users", "users_username_lower_check", "username = lower(username)"),
    check("users", "users_token_version_check", "token_version >= 0"),
    check(
        "users",
        "users_profile_complete_check",
        "NOT is_profile_complete OR (username IS NOT NULL AND password_hash IS NOT NULL)",
    ),
    generated_tsvector(
        "users",
        "search_vector",
        "to_tsvector('simple', regexp_replace(email, '[@.+_-]', ' ', 'g') || ' ' || email"
        " || ' ' || coalesce(username, '') || ' ' || coalesce(full_name, '')"
        " || ' ' || coalesce(name, ''))",
    ),
    index("users_search_idx", "users USING gin (search_vector)"),
    index("users_keyset_idx", "users (created_at DESC, id DESC)"),
    index("users_role_keyset_idx", "users (role, created_at DESC, id DESC)"),
    # courses
    one_of("courses", "status", COURSE_STATUSES),
    check("courses", "courses_price_check", "price >= 0"),
    check("courses", "courses_title_check", "char_length(btrim(title)) > 0"),
    check("courses", "courses_lesson_count_check", "lesson_count >= 0"),
    check(
        "courses", "courses_published_at_check", "status <> 'PUBLISHED' OR published_at IS NOT NULL"
    ),
    check("courses", "courses_submitted_at_check", "status = 'DRAFT' OR submitted_at IS NOT NULL"),
    generated_tsvector(
        "courses",
        "search_vector",
        "setweight(to_tsvector('english', coalesce(title, '')), 'A')"
        " || setweight(to_tsvector('english', coalesce(description, '')), 'B')",
    ),
    # The catalog: newest published first, keyset on (published_at, id).
    index(
        "courses_catalog_idx",
        "courses (published_at DESC, id DESC) WHERE status = 'PUBLISHED'",
    ),
    index(
        "courses_creator_catalog_idx",
        "courses (creator_id, published_at DESC, id DESC) WHERE status = 'PUBLISHED'",
    ),
    index(
        "courses_search_idx",
        "courses USING gin (search_vector) WHERE status = 'PUBLISHED'",
    ),
    index("courses_review_queue_idx", "courses (status, submitted_at, id)"),
    index("courses_creator_idx", "courses (creator_id, created_at DESC, id DESC)"),
    # lessons
    one_of("lessons", "transcript_status", TRANSCRIPT_STATUSES),
    check("lessons", "lessons_position_check", "position >= 1"),
    check("lessons", "lessons_video_version_check", "video_version >= 0"),
    check("lessons", "lessons_duration_check", "duration_seconds IS NULL OR duration_seconds >= 0"),
    check(
        "lessons",
        "lessons_video_provider_check",
        "video_provider IS NULL OR video_provider IN ('local', 'cloudinary', 'external')",
    ),
    # Deferrable so a reorder can swap positions inside one transaction and be checked at commit.
    (
        "ALTER TABLE lessons ADD CONSTRAINT lessons_course_position_key"
        " UNIQUE (course_id, position) DEFERRABLE INITIALLY IMMEDIATE",
        "ALTER TABLE lessons DROP CONSTRAINT IF EXISTS lessons_course_position_key",
    ),
    # enrollments
    (
        "ALTER TABLE enrollments"
        " ADD CONSTRAINT enrollments_user_course_key UNIQUE (user_id, course_id)",
        "ALTER TABLE enrollments DROP CONSTRAINT IF EXISTS enrollments_user_course_key",
    ),
    check("enrollments", "enrollments_progress_check", "progress >= 0 AND progress <= 100"),
    check("enrollments", "enrollments_completed_check", "completed = (completed_at IS NOT NULL)"),
    index("enrollments_course_idx", "enrollments (course_id)"),
    index("enrollments_user_keyset_idx", "enrollments (user_id, enrolled_at DESC, id DESC)"),
    # lesson_progress
    (
        "ALTER TABLE lesson_progress ADD CONSTRAINT lesson_progress_enrollment_lesson_key"
        " UNIQUE (enrollment_id, lesson_id)",
        "ALTER TABLE lesson_progress"
        " DROP CONSTRAINT IF EXISTS lesson_progress_enrollment_lesson_key",
    ),
    check("lesson_progress", "lesson_progress_position_check", "position_seconds >= 0"),
    check(
        "lesson_progress",
        "lesson_progress_completed_check",
        "completed = (completed_at IS NOT NULL)",
    ),
    index("lesson_progress_user_lesson_idx", "lesson_progress (user_id, lesson_id)"),
    index("lesson_progress_lesson_idx", "lesson_progress (lesson_id)"),
    # certificates
    one_of("certificates", "status", ("VALID", "REVOKED")),
    check(
        "certificates",
        "certificates_revoked_check",
        "(status = 'REVOKED') = (revoked_at IS NOT NULL)",
    ),
    check("certificates", "certificates_serial_check", "char_length(serial_hash) >= 32"),
    index("certificates_user_idx", "certificates (user_id, issued_at DESC, id DESC)"),
    index("certificates_course_idx", "certificates (course_id)"),
    # creator_applications
    one_of("creator_applications", "status", APPLICATION_STATUSES),
    check(
        "creator_applications",
        "creator_applications_experience_check",
        "experience_years >= 0 AND experience_years <= 80",
    ),
    check(
        "creator_applications",
        "creator_applications_reviewed_check",
        "(status = 'PENDING') = (reviewed_at IS NULL)",
    ),
    # One PENDING application per user, enforced by the database under concurrency.
    index(
        "creator_applications_one_pending_idx",
        "creator_applications (user_id) WHERE status = 'PENDING'",
        unique=True,
    ),
    index(
        "creator_applications_status_keyset_idx",
        "creator_applications (status, created_at DESC, id DESC)",
    ),
    index(
        "creator_applications_keyset_idx",
        "creator_applications (created_at DESC, id DESC)",
    ),
    index("creator_applications_user_idx", "creator_applications (user_id, created_at DESC)"),
    # otp_codes
    one_of("otp_codes", "channel", ("EMAIL", "SMS")),
    one_of("otp_codes", "purpose", ("VERIFY_EMAIL", "VERIFY_PHONE", "RESET_PASSWORD")),
    check("otp_codes", "otp_codes_attempts_check", "attempts >= 0 AND max_attempts >= 1"),
    index(
        "otp_codes_live_idx",
        "otp_codes (user_id, purpose, created_at DESC)"
        " WHERE consumed_at IS NULL AND invalidated_at IS NULL",
    ),
    index("otp_codes_expires_idx", "otp_codes (expires_at)"),
    # refresh_tokens
    index("refresh_tokens_family_idx", "refresh_tokens (family_id)"),
    index("refresh_tokens_user_live_idx", "refresh_tokens (user_id) WHERE revoked_at IS NULL"),
    index("refresh_tokens_expires_idx", "refresh_tokens (expires_at)"),
    # transcription_jobs
    one_of("transcription_jobs", "status", JOB_STATUSES),
    check("transcription_jobs", "transcription_jobs_attempts_check", "attempts >= 0"),
    # One job per video version: re-queueing reuses the row, so a transcript is written once.
    (
        "ALTER TABLE transcription_jobs ADD CONSTRAINT transcription_jobs_lesson_version_key"
        " UNIQUE (lesson_id, video_version)",
        "ALTER TABLE transcription_jobs"
        " DROP CONSTRAINT IF EXISTS transcription_jobs_lesson_version_key",
    ),
    index(
        "transcription_jobs_sweep_idx",
        "transcription_jobs (status, published_at) WHERE status IN ('QUEUED', 'PROCESSING')",
    ),
    # transcripts and their segments
    check("transcripts", "transcripts_video_version_check", "video_version >= 0"),
    generated_tsvector("transcripts", "search_vector", "to_tsvector('english', text)"),
    index("transcripts_search_idx", "transcripts USING gin (search_vector)"),
    (
        "ALTER TABLE transcript_segments ADD CONSTRAINT transcript_segments_lesson_seq_key"
        " UNIQUE (lesson_id, seq)",
        "ALTER TABLE transcript_segments"
        " DROP CONSTRAINT IF EXISTS transcript_segments_lesson_seq_key",
    ),
    check(
        "transcript_segments",
        "transcript_segments_time_check",
        "start_seconds >= 0 AND end_seconds >= start_seconds",
    ),
    generated_tsvector("transcript_segments", "search_vector", "to_tsvector('english', text)"),
    index("transcript_segments_search_idx", "transcript_segments USING gin (search_vector)"),
    # audit_log
    index("audit_log_keyset_idx", "audit_log (created_at DESC, id DESC)"),
    index("audit_log_action_keyset_idx", "audit_log (action, created_at DESC, id DESC)"),
    index("audit_log_actor_keyset_idx", "audit_log (actor_id, created_at DESC, id DESC)"),
    # system_settings: exactly one row, with sane ranges
    check("system_settings", "system_settings_single_row_check", "id = 1"),
    check(
        "system_settings",
        "system_settings_ranges_check",
        "otp_ttl_seconds BETWEEN 60 AND 86400"
        " AND otp_max_attempts BETWEEN 1 AND 20"
        " AND completion_threshold_percent > 0 AND completion_threshold_percent <= 100"
        " AND max_upload_bytes BETWEEN 1048576 AND 1099511627776",
    ),
    (
        "INSERT INTO system_settings (id) VALUES (1) ON CONFLICT (id) DO NOTHING",
        "DELETE FROM system_settings WHERE id = 1",
    ),
]


async def _run(statements: list[str]) -> None:
    # Table.raw runs inside the migration's transaction, so a failure undoes every step.
    for sql in statements:
        await Migration.raw(sql).run()


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="lms", description=DESCRIPTION)

    async def run_forwards() -> None:
        await _run([forward for forward, _ in STEPS])

    async def run_backwards() -> None:
        await _run([backward for _, backward in reversed(STEPS)])

    manager.add_raw(run_forwards)
    manager.add_raw_backwards(run_backwards)
    return manager
