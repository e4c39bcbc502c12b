"""GET /courses (the catalog: newest first, or ranked full-text search; keyset pages with lms's
signed cursors) and GET /courses/{id}."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import math
import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any, ClassVar

from fastapi import APIRouter, HTTPException, Query, Request, Response
from pydantic import BaseModel
from sqlalchemy import REAL, case, cast, func, literal_column, select, tuple_
from sqlalchemy.dialects.postgresql import UUID, insert
from sqlalchemy.orm import contains_eager, joinedload

from .caches import UserState
from .config import SessionDep, SettingsDep, get_autocommit_sessionmaker
from .models import Course, RateLimitCounter
from .schemas import CourseDetail, CoursePage, CourseSummary, CreatorRef, LessonSummary
from .security import BadCursor, decode_cursor, encode_cursor, optional_user

router = APIRouter()

CURSOR_PATTERN = r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$"
PUBLIC_CACHE = "public, max-age=30, stale-while-revalidate=60"
PRIVATE_CACHE = "private, no-cache"
SEARCH_TIMEOUT_SECONDS = 5.0


# As lms's search line (lms.domain.courses.search_slots): a search over the per-process cap
# waits this long for a slot, behind at most this many others per slot, before a 503.
SEARCH_WAIT_SECONDS = 1.0
SEARCH_LINE_PER_SLOT = 64


def search_busy() -> HTTPException:
    return HTTPException(
        503, "too many searches at once; try again in a moment", headers={"Retry-After": "1"}
    )


class SearchSlots:
    """Searches this process runs at once (LMS_SEARCH_CONCURRENCY): one over the cap waits in a
    bounded line for a slot handed on in order, and is refused only when none frees in time."""

    running: ClassVar[int] = 0
    line: ClassVar[collections.deque[asyncio.Future[None]]] = collections.deque()

    @classmethod
    @contextlib.asynccontextmanager
    async def take(cls, cap: int) -> AsyncIterator[None]:
        if cls.running < cap and not cls.line:
            cls.running += 1
        else:
            if len(cls.line) >= SEARCH_LINE_PER_SLOT * cap:
                raise search_busy()
            turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            cls.line.append(turn)
            try:
                await asyncio.wait_for(asyncio.shield(turn), SEARCH_WAIT_SECONDS)
            except BaseException as exc:
                if turn.done():  # handed a slot as the wait ended: give it on
                    cls.release()
                else:
                    turn.cancel()
                    cls.line.remove(turn)
                if isinstance(exc, TimeoutError):
                    raise search_busy() from None
                raise
        try:
            yield
        finally:
            cls.release()

    @classmethod
    def release(cls) -> None:
        """The slot goes to the first in line (it stays counted as running), else it is freed."""
        while cls.line:
            turn = cls.line.popleft()
            if not turn.done():
                turn.set_result(None)
                return
        cls.running -= 1


def malformed() -> HTTPException:
    return HTTPException(400, "malformed cursor")


def to_summary(course: Course) -> CourseSummary:
    return CourseSummary(
        id=course.id,
        title=course.title,
        description=course.description,
        thumbnail_url=course.thumbnail_url,
        price=f"{course.price:.2f}",
        status=course.status,
        creator=CreatorRef(id=course.creator.id, name=course.creator.display_name),
        lesson_count=course.lesson_count,
        published_at=course.published_at,
    )


def to_detail(course: Course) -> CourseDetail:
    return CourseDetail(
        **to_summary(course).model_dump(),
        created_at=course.created_at,
        updated_at=course.updated_at,
        submitted_at=course.submitted_at,
        review_notes=course.review_notes,
        lessons=[
            LessonSummary(
                id=lesson.id,
                title=lesson.title,
                order=lesson.position,
                duration_seconds=lesson.duration_seconds,
                transcript_status=lesson.transcript_status,
            )
            for lesson in course.lessons
        ],
    )


def cached_json(request: Request, model: BaseModel, private: bool) -> Response:
    """The body with an ETag (a 304 when the client has it already) and caching headers."""
    body = model.model_dump_json(by_alias=True).encode()
    etag = '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'
    headers = {
        "ETag": etag,
        "Cache-Control": PRIVATE_CACHE if private else PUBLIC_CACHE,
        "Vary": "Authorization",
    }
    sent = request.headers.get("if-none-match")
    if sent:
        candidates = {t.strip().removeprefix("W/") for t in sent.split(",")}
        if "*" in candidates or etag in candidates:
            return Response(status_code=304, headers=headers)
    return Response(body, media_type="application/json", headers=headers)


class SearchCounts:
    """lms's search limit, counted as lms counts it (lms.domain.rate_limits.BatchedLimit, its
    rule restated): in this process's memory, a search admitted while the client's shared count
    as of the last flush plus this process's searches since stays within the limit; every 0.1 s
    one ORM upsert adds each client's new searches to the shared counters (the same
    rate_limit_counters rows lms's processes count in) and brings back their totals. No
    statement per search; a refusal writes nothing."""

    WINDOW_SECONDS = 60
    INTERVAL_SECONDS = 0.1
    # client key -> [shared count at the last flush, searches since, monotonic end of window]
    counts: ClassVar[dict[str, list[float]]] = {}
    flusher: ClassVar[asyncio.Task[None] | None] = None

    @classmethod
    def take(cls, client: str, limit: int) -> None:
        now = time.monotonic()
        key = f"ip:search:{client}"
        count = cls.counts.get(key)
        if count is None:
            count = cls.counts[key] = [0, 0, now + cls.WINDOW_SECONDS]
        elif now >= count[2]:  # the window is over: a new one starts with what is pending
            count[0], count[2] = 0, now + cls.WINDOW_SECONDS
        if count[0] + count[1] + 1 > limit:
            seconds = max(1, math.ceil(count[2] - now))
            raise HTTPException(
                429,
                f"too many searches from this address; try again in {seconds} s",
                headers={"Retry-After": str(seconds)},
            )
        count[1] += 1
        if cls.flusher is None or cls.flusher.done():
            cls.flusher = asyncio.get_running_loop().create_task(cls.flush_soon())

    @classmethod
    async def flush_soon(cls) -> None:
        while any(c[1] for c in cls.counts.values()):
            await asyncio.sleep(cls.INTERVAL_SECONDS)
            await cls.flush()

    @classmethod
    async def flush(cls) -> None:
        pending = {key: int(c[1]) for key, c in cls.counts.items() if c[1]}
        if not pending:
            return
        for key, n in pending.items():
            cls.counts[key][1] -= n
        window = func.make_interval(0, 0, 0, 0, 0, 0, cls.WINDOW_SECONDS)
        expired = RateLimitCounter.window_start <= func.now() - window
        statement = insert(RateLimitCounter).values(
            [
                {"key": key, "window_start": func.now(), "hits": pending[key]}
                for key in sorted(pending)
            ]
        )
        statement = statement.on_conflict_do_update(
            index_elements=[RateLimitCounter.key],
            set_={
                "window_start": case((expired, func.now()), else_=RateLimitCounter.window_start),
                "hits": case(
                    (expired, statement.excluded.hits),
                    else_=RateLimitCounter.hits + statement.excluded.hits,
                ),
            },
        ).returning(
            RateLimitCounter.key,
            RateLimitCounter.hits,
            func.extract("epoch", RateLimitCounter.window_start + window - func.now()),
        )
        try:
            async with get_autocommit_sessionmaker()() as session:
                rows = (await session.execute(statement)).all()
        except Exception:  # kept for the next flush, as lms does
            for key, n in pending.items():
                if (count := cls.counts.get(key)) is not None:
                    count[1] += n
            return
        now = time.monotonic()
        for key, hits, reset_in in rows:
            if (count := cls.counts.get(key)) is not None:
                count[0], count[2] = hits, now + max(float(reset_in), 0.0)
        for key in [k for k, c in cls.counts.items() if not c[1] and now >= c[2]]:
            del cls.counts[key]


@router.get("/courses")
async def list_courses(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=512, pattern=CURSOR_PATTERN)] = None,
    q: Annotated[str | None, Query(max_length=200)] = None,
    creator_id: Annotated[uuid.UUID | None, Query(alias="creatorId")] = None,
) -> Response:
    user = await optional_user(request, session, settings)
    query = q.strip() if q else ""
    scope = f"catalog:{query}:{creator_id or ''}"
    statement = (
        select(Course)
        .join(Course.creator)
        .options(contains_eager(Course.creator))
        .where(Course.status == "PUBLISHED")
    )
    if creator_id is not None:
        statement = statement.where(Course.creator_id == creator_id)
    position: list[Any] | None = None
    if cursor:
        try:
            position = decode_cursor(settings.jwt_secret, scope, cursor)
            key, last_id = position
            last_id = uuid.UUID(str(last_id))
        except (BadCursor, ValueError, TypeError):
            raise malformed() from None
    if query:
        tsquery = func.websearch_to_tsquery(literal_column("'english'::regconfig"), query)
        rank = func.ts_rank_cd(Course.search_vector, tsquery)
        statement = statement.add_columns(rank).where(Course.search_vector.op("@@")(tsquery))
        if position is not None:
            if not isinstance(key, int | float) or isinstance(key, bool):
                raise malformed()
            statement = statement.where(
                tuple_(rank, Course.id) < tuple_(cast(float(key), REAL), cast(last_id, UUID))
            )
        statement = statement.order_by(rank.desc(), Course.id.desc())
        client = request.client.host if request.client else "unknown"
        SearchCounts.take(client, settings.search_rate_limit)
        async with SearchSlots.take(settings.search_concurrency):
            rows = (
                await session.execute(
                    statement.limit(limit + 1).execution_options(timeout=SEARCH_TIMEOUT_SECONDS)
                )
            ).all()
        courses = [row[0] for row in rows]
        keys: list[Any] = [row[1] for row in rows]
    else:
        if position is not None:
            try:
                at = datetime.fromisoformat(str(key))
            except ValueError:
                raise malformed() from None
            statement = statement.where(
                tuple_(Course.published_at, Course.id) < tuple_(at, last_id)
            )
        statement = statement.order_by(Course.published_at.desc(), Course.id.desc())
        courses = list((await session.scalars(statement.limit(limit + 1))).all())
        keys = [c.published_at.isoformat() if c.published_at else None for c in courses]
    next_cursor = None
    if len(courses) > limit:
        next_cursor = encode_cursor(
            settings.jwt_secret, scope, keys[limit - 1], str(courses[limit - 1].id)
        )
    page = CoursePage(items=[to_summary(c) for c in courses[:limit]], next_cursor=next_cursor)
    return cached_json(request, page, user is not None)


@router.get("/courses/{course_id:uuid}")
async def get_course(
    course_id: uuid.UUID, request: Request, session: SessionDep, settings: SettingsDep
) -> Response:
    user: UserState | None = await optional_user(request, session, settings)
    # One statement, as lms: the lessons joined in (selectinload would be a second query).
    course = (
        (
            await session.scalars(
                select(Course)
                .options(joinedload(Course.creator), joinedload(Course.lessons))
                .where(Course.id == course_id)
            )
        )
        .unique()
        .one_or_none()
    )
    visible = course is not None and (
        course.status == "PUBLISHED"
        or (user is not None and (course.creator_id == user.id or user.role == "ADMIN"))
    )
    if course is None or not visible:
        raise HTTPException(404, "no such course")
    return cached_json(request, to_detail(course), user is not None)
