"""Applying to become a creator, and the admin review that decides it."""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit

import asyncpg

from lms.context import AppContext
from lms.db.builder import transaction
from lms.db.queries import creator_applications as sql
from lms.db.queries import users
from lms.db.tables import ApplicationStatus, Role
from lms.domain import audit
from lms.domain.auth.authentication import Principal
from lms.domain.auth.messages import application_decision_email
from lms.domain.auth.signup import wake_outbox
from lms.domain.creators.schemas import (
    ApplicationRequest,
    CreatorApplication,
    CreatorApplicationPage,
    CreatorStatus,
)
from lms.domain.errors import Conflict, Invalid, NotFound
from lms.domain.paging import after_position, time_id_page
from lms.messaging.outbox import queue_email


def _portfolio(url: str | None) -> str | None:
    if url is None or not url.strip():
        return None
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Invalid("portfolioUrl must be an http(s) URL")
    return url.strip()


async def apply(principal: Principal, body: ApplicationRequest) -> CreatorApplication:
    if principal.role != Role.LEARNER:
        raise Conflict(f"you are already a {principal.role}")
    portfolio = _portfolio(body.portfolio_url)
    try:
        row = await sql.insert(
            user_id=principal.user_id,
            bio=body.bio.strip(),
            portfolio_url=portfolio,
            experience_years=body.experience_years,
        )
    except asyncpg.UniqueViolationError:
        raise Conflict("you already have a pending application") from None
    return CreatorApplication.from_row(row)


async def status(principal: Principal) -> CreatorStatus:
    row = await sql.newest_for_user(principal.user_id)
    if row is None:
        return CreatorStatus(status="NONE")
    application = CreatorApplication.from_row(row)
    return CreatorStatus(status=application.status, application=application)


async def list_applications(
    ctx: AppContext, *, status: str | None, cursor: str | None, limit: int
) -> CreatorApplicationPage:
    after = after_position(ctx.secret, "applications", cursor)
    rows = await sql.list_page(status=status, after=after, limit=limit + 1)
    return time_id_page(
        rows,
        limit,
        page=CreatorApplicationPage,
        convert=CreatorApplication.from_row,
        secret=ctx.secret,
        scope="applications",
    )


async def decide(
    ctx: AppContext,
    reviewer: Principal,
    application_id: uuid.UUID,
    *,
    approve: bool,
    notes: str | None,
) -> CreatorApplication:
    """Approve (the applicant becomes CREATOR) or reject, in one transaction with the audit row and
    the applicant's email; of two concurrent decisions, exactly one wins."""
    new_status = ApplicationStatus.APPROVED if approve else ApplicationStatus.REJECTED
    notes = notes.strip() if notes and notes.strip() else None
    if not approve and notes is None:
        raise Invalid("notes are required to reject: tell the applicant why")
    async with transaction() as conn:
        before = await sql.by_id(application_id)
        if before is None:
            raise NotFound("no such application")
        row = await sql.decide(
            application_id, status=new_status.value, reviewer_id=reviewer.user_id, notes=notes
        )
        if row is None:
            raise Conflict(f"application is already {before['status']}")
        promoted = approve and await users.promote_learner_to_creator(row["user_id"])
        await audit.record(
            conn,
            actor_id=reviewer.user_id,
            action="application.approve" if approve else "application.reject",
            target_type="creator_application",
            target_id=application_id,
            before={"status": before["status"]},
            after={
                "status": new_status.value,
                "notes": notes,
                "userId": row["user_id"],
                "roleChanged": promoted,
            },
        )
        applicant = await users.addressee(row["user_id"])
        if applicant is not None:
            name = applicant["full_name"] or applicant["username"] or applicant["email"]
            email = application_decision_email(applicant["email"], name, approve, notes)
            # The outbox row commits with the decision, on the transaction's connection.
            await queue_email(conn, email, purpose=f"creator.{new_status.value.lower()}")
    ctx.users.invalidate(row["user_id"])
    wake_outbox(ctx)
    return CreatorApplication.from_row(row)
