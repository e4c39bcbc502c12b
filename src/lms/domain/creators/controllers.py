"""/creator (apply, status) and /admin/applications (the review queue)."""

from __future__ import annotations

import uuid
from typing import Any, Literal

from litestar import Controller, Request, get, post
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from lms.api.dependencies import Ctx
from lms.api.openapi import BAD, BEARER, CONFLICT, FORBIDDEN, NOT_FOUND, UNAUTHORIZED, errors
from lms.api.pagination import DEFAULT_LIMIT, PageCursor, PageLimit
from lms.api.security import requires
from lms.domain.auth.authentication import Principal
from lms.domain.auth.permissions import Permission
from lms.domain.creators import services
from lms.domain.creators.schemas import (
    ApplicationRequest,
    ApproveRequest,
    CreatorApplication,
    CreatorApplicationPage,
    CreatorStatus,
    RejectRequest,
)

PrincipalRequest = Request[Principal, Any, Any]


class CreatorController(Controller):
    path = "/creator"
    tags = ("creators",)
    security = BEARER

    @post(
        "/apply",
        status_code=HTTP_201_CREATED,
        guards=[requires(Permission.APPLY_FOR_CREATOR)],
        responses=errors(BAD, UNAUTHORIZED, FORBIDDEN, CONFLICT),
        summary="Apply to become a creator (one pending application at a time)",
    )
    async def apply(
        self, request: PrincipalRequest, data: JSONBody[ApplicationRequest]
    ) -> CreatorApplication:
        return await services.apply(request.user, data)

    @get(
        "/status",
        responses=errors(UNAUTHORIZED),
        summary="The caller's newest application, or NONE",
    )
    async def status(self, request: PrincipalRequest) -> CreatorStatus:
        return await services.status(request.user)


class ApplicationReviewController(Controller):
    path = "/admin/applications"
    tags = ("admin",)
    security = BEARER

    @get(
        "/",
        guards=[requires(Permission.REVIEW_APPLICATIONS)],
        responses=errors(BAD, UNAUTHORIZED, FORBIDDEN),
        summary="Creator applications, newest first",
    )
    async def list_applications(
        self,
        ctx: Ctx,
        status: FromQuery[Literal["PENDING", "APPROVED", "REJECTED"] | None] = None,
        limit: PageLimit = DEFAULT_LIMIT,
        cursor: PageCursor = None,
    ) -> CreatorApplicationPage:
        return await services.list_applications(ctx, status=status, cursor=cursor, limit=limit)

    @post(
        "/{application_id:uuid}/approve",
        status_code=HTTP_200_OK,
        guards=[requires(Permission.DECIDE_APPLICATIONS)],
        responses=errors(BAD, UNAUTHORIZED, FORBIDDEN, NOT_FOUND, CONFLICT),
        summary="Approve: the applicant becomes CREATOR",
    )
    async def approve(
        self,
        request: PrincipalRequest,
        ctx: Ctx,
        application_id: FromPath[uuid.UUID],
        data: JSONBody[ApproveRequest | None] = None,
    ) -> CreatorApplication:
        notes = data.notes if data else None
        return await services.decide(ctx, request.user, application_id, approve=True, notes=notes)

    @post(
        "/{application_id:uuid}/reject",
        status_code=HTTP_200_OK,
        guards=[requires(Permission.DECIDE_APPLICATIONS)],
        responses=errors(BAD, UNAUTHORIZED, FORBIDDEN, NOT_FOUND, CONFLICT),
        summary="Reject with notes for the applicant",
    )
    async def reject(
        self,
        request: PrincipalRequest,
        ctx: Ctx,
        application_id: FromPath[uuid.UUID],
        data: JSONBody[RejectRequest],
    ) -> CreatorApplication:
        return await services.decide(
            ctx, request.user, application_id, approve=False, notes=data.notes
        )
