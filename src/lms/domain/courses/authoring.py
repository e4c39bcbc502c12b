"""Creating, editing, submitting and deleting courses, and the admin review that publishes or
sends them back. Course bodies come back as JSON text built by PostgreSQL (see catalog SQL)."""

from __future__ import annotations

import uuid
from decimal import Decimal
from urllib.parse import urlsplit

import asyncpg
from msgspec import UNSET

from lms.context import AppContext
from lms.db.queries import courses as sql
from lms.db.tables import CourseStatus
from lms.domain import audit
from lms.domain.auth.authentication import Principal
from lms.domain.courses.access import require_draft, require_manager, require_owner, visible_course
from lms.domain.courses.schemas import CourseCreate, CourseUpdate, parse_price
from lms.domain.errors import Conflict, Invalid, NotFound
from lms.domain.events.log import record_event
from lms.domain.paging import after_position, encode_cursor, json_page


def valid_price(value: str | float | int) -> Decimal:
    price = parse_price(value)
    if price is None:
        raise Invalid("price must be an amount from 0 to 99999999.99 with at most two decimals")
    return price


def valid_url(value: str | None, field: str) -> str | None:
    if value is None or not value.strip():
        return None
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Invalid(f"{field} must be an http(s) URL")
    return value.strip()


def valid_title(value: str) -> str:
    if not value.strip():
        raise Invalid("title must not be blank")
    return value.strip()


async def create_course(db: asyncpg.Pool, principal: Principal, body: CourseCreate) -> str:
    async with db.acquire() as conn, conn.transaction():
        course_id = await sql.insert(
            conn,
            creator_id=principal.user_id,
            title=valid_title(body.title),
            description=body.description.strip(),
            price=valid_price(body.price),
            thumbnail_url=valid_url(body.thumbnail_url, "thumbnailUrl"),
        )
        return await sql.as_json(conn, course_id)


async def update_course(
    db: asyncpg.Pool, principal: Principal, course_id: uuid.UUID, body: CourseUpdate
) -> str:
    values: dict[str, object] = {}
    if body.title is not UNSET:
        values["title"] = valid_title(body.title)
    if body.description is not UNSET:
        values["description"] = body.description.strip()
    if body.price is not UNSET:
        values["price"] = valid_price(body.price)
    if body.thumbnail_url is not UNSET:
        values["thumbnail_url"] = valid_url(body.thumbnail_url, "thumbnailUrl")
    if not values:
        raise Invalid("give at least one of title, description, price, thumbnailUrl")
    async with db.acquire() as conn, conn.transaction():
        course = await visible_course(conn, course_id, principal, lock=True)
        require_manager(principal, course)
        require_draft(course, "edited")
        await sql.update_draft(conn, course_id, values)
        return await sql.as_json(conn, course_id)


async def submit_course(db: asyncpg.Pool, principal: Principal, course_id: uuid.UUID) -> str:
    async with db.acquire() as conn, conn.transaction():
        course = await visible_course(conn, course_id, principal)
        require_owner(principal, course)
        if not await sql.submit(conn, course_id, principal.user_id):
            current = await sql.meta(conn, course_id)
            if current is None:
                raise NotFound("no such course")
            require_draft(current, "submitted")
            raise Conflict("a course needs at least one lesson before it is submitted")
        await record_event(
            conn,
            "course.submitted",
            {"courseId": course_id, "creatorId": principal.user_id, "title": course["title"]},
        )
        return await sql.as_json(conn, course_id)


async def delete_course(
    db: asyncpg.Pool, ctx: AppContext, principal: Principal, course_id: uuid.UUID
) -> None:
    """The owner deletes a DRAFT; an admin any course without certificates or orders. Videos go
    after commit."""
    async with db.acquire() as conn:
        try:
            async with conn.transaction():
                course = await visible_course(conn, course_id, principal, lock=True)
                require_manager(principal, course)
                if principal.role != "ADMIN":
                    require_draft(course, "deleted by its creator")
                videos = await sql.video_keys(conn, course_id)
                await sql.delete(conn, course_id)
                if principal.role == "ADMIN" and course["creator_id"] != principal.user_id:
                    await audit.record(
                        conn,
                        actor_id=principal.user_id,
                        action="course.delete",
                        target_type="course",
                        target_id=course_id,
                        before={"status": course["status"], "title": course["title"]},
                    )
        except asyncpg.ForeignKeyViolationError:
            raise Conflict(
                "the course has issued certificates or has orders and cannot be deleted"
            ) from None
    await ctx.delete_videos([v["video_key"] for v in videos if v["video_provider"] != "external"])


async def publish_course(db: asyncpg.Pool, admin: Principal, course_id: uuid.UUID) -> str:
    return await _review(db, admin, course_id, publish=True, feedback=None)


async def reject_course(
    db: asyncpg.Pool, admin: Principal, course_id: uuid.UUID, feedback: str
) -> str:
    if not feedback.strip():
        raise Invalid("feedback must not be blank: tell the creator what to change")
    return await _review(db, admin, course_id, publish=False, feedback=feedback.strip())


async def _review(
    db: asyncpg.Pool, admin: Principal, course_id: uuid.UUID, *, publish: bool, feedback: str | None
) -> str:
    async with db.acquire() as conn, conn.transaction():
        course = await sql.meta(conn, course_id)
        if course is None:
            raise NotFound("no such course")
        done = (
            await sql.publish(conn, course_id)
            if publish
            else await sql.send_back(conn, course_id, feedback or "")
        )
        if not done:
            raise Conflict(
                f"the course is {course['status']}: only a PENDING course can be reviewed"
            )
        new_status = CourseStatus.PUBLISHED if publish else CourseStatus.DRAFT
        about = {"courseId": course_id, "creatorId": course["creator_id"], "title": course["title"]}
        if publish:
            await record_event(conn, "course.published", about)
        else:
            await record_event(conn, "course.rejected", about | {"feedback": feedback})
        await audit.record(
            conn,
            actor_id=admin.user_id,
            action="course.publish" if publish else "course.reject",
            target_type="course",
            target_id=course_id,
            before={"status": course["status"]},
            after={"status": new_status.value, "feedback": feedback},
        )
        return await sql.as_json(conn, course_id)


async def review_list(
    db: asyncpg.Pool, ctx: AppContext, *, status: str, cursor: str | None, limit: int
) -> str:
    """A page of full Course bodies, as JSON text."""
    scope = f"admin-courses:{status}"
    after = after_position(ctx.secret, scope, cursor)
    rows = await sql.review_page(db, status=status, after=after, limit=limit + 1)
    items = rows[:limit]
    next_cursor = None
    if len(rows) > limit:
        last = items[-1]
        next_cursor = encode_cursor(
            ctx.secret, scope, last["created_at"].isoformat(), str(last["id"])
        )
    return json_page("[" + ",".join(r["body"] for r in items) + "]", next_cursor)
