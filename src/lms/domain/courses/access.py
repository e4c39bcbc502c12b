"""Who may see and change a course: one place for the visibility and ownership rules.

Published courses are public. A draft or pending course exists only for its owner and admins:
anyone else gets 404, as if it did not exist. Someone who can see a course but may not do the
thing asked gets 403; a change in the wrong lifecycle state gets 409.
"""

from __future__ import annotations

import uuid

import asyncpg

from lms.db.queries import Conn
from lms.db.queries import courses as sql
from lms.db.tables import CourseStatus, Role
from lms.domain.auth.authentication import Principal
from lms.domain.errors import Conflict, Forbidden, NotFound


def is_owner(principal: Principal | None, course: asyncpg.Record) -> bool:
    return principal is not None and course["creator_id"] == principal.user_id


def is_admin(principal: Principal | None) -> bool:
    return principal is not None and principal.role == Role.ADMIN


def can_manage(principal: Principal | None, course: asyncpg.Record) -> bool:
    return is_owner(principal, course) or is_admin(principal)


def can_see(principal: Principal | None, course: asyncpg.Record) -> bool:
    return course["status"] == CourseStatus.PUBLISHED or can_manage(principal, course)


async def visible_course(
    conn: Conn, course_id: uuid.UUID, principal: Principal | None, *, lock: bool = False
) -> asyncpg.Record:
    course = await sql.meta(conn, course_id, lock=lock)
    if course is None or not can_see(principal, course):
        raise NotFound("no such course")
    return course


def require_owner(principal: Principal, course: asyncpg.Record) -> None:
    if not is_owner(principal, course):
        raise Forbidden("only the course's creator may do this")


def require_manager(principal: Principal, course: asyncpg.Record) -> None:
    if not can_manage(principal, course):
        raise Forbidden("only the course's creator or an admin may do this")


def require_draft(course: asyncpg.Record, what: str = "changed") -> None:
    if course["status"] != CourseStatus.DRAFT:
        raise Conflict(f"the course is {course['status']}: it can be {what} only as a DRAFT")
