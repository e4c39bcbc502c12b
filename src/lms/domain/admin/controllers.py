"""/admin/users, /admin/settings and /admin/audit: ADMIN only, like every /admin path."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from litestar import Controller, Request, get, patch
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from lms.api.dependencies import Ctx
from lms.api.openapi import BAD, BEARER, CONFLICT, FORBIDDEN, NOT_FOUND, UNAUTHORIZED, errors
from lms.api.pagination import DEFAULT_LIMIT, PageCursor, PageLimit
from lms.api.security import requires
from lms.domain import audit
from lms.domain.admin import services
from lms.domain.admin.schemas import SystemSettingsOut, SystemSettingsUpdate, UserUpdate
from lms.domain.auth.authentication import Principal
from lms.domain.auth.permissions import Permission
from lms.domain.auth.schemas import RoleName, User, UserPage

PrincipalRequest = Request[Principal, Any, Any]


class AdminUsersController(Controller):
    path = "/admin/users"
    tags = ("admin",)
    security = BEARER
    guards = (requires(Permission.MANAGE_USERS),)

    @get(
        "/",
        responses=errors(BAD, UNAUTHORIZED, FORBIDDEN),
        summary="Users, newest first; filter by role and text (email, username, name)",
    )
    async def list_users(
        self,
        ctx: Ctx,
        role: FromQuery[RoleName | None] = None,
        q: Annotated[str | None, QueryParameter(max_length=200)] = None,
        limit: PageLimit = DEFAULT_LIMIT,
        cursor: PageCursor = None,
    ) -> UserPage:
        return await services.list_users(ctx, role=role, q=q, cursor=cursor, limit=limit)

    @patch(
        "/{user_id:uuid}",
        responses=errors(BAD, UNAUTHORIZED, FORBIDDEN, NOT_FOUND, CONFLICT),
        summary="Change a user's role or activity (takes effect on their next request)",
    )
    async def update_user(
        self,
        request: PrincipalRequest,
        ctx: Ctx,
        user_id: FromPath[uuid.UUID],
        data: JSONBody[UserUpdate],
    ) -> User:
        return await services.update_user(ctx, request.user, user_id, data)


class AdminSettingsController(Controller):
    path = "/admin/settings"
    tags = ("admin",)
    security = BEARER
    guards = (requires(Permission.SYSTEM_SETTINGS),)

    @get("/", responses=errors(UNAUTHORIZED, FORBIDDEN), summary="Runtime settings")
    async def get_settings(self, ctx: Ctx) -> SystemSettingsOut:
        return await services.get_settings(ctx)

    @patch(
        "/",
        responses=errors(BAD, UNAUTHORIZED, FORBIDDEN),
        summary="Change runtime settings (every API process within seconds)",
    )
    async def update_settings(
        self, request: PrincipalRequest, ctx: Ctx, data: JSONBody[SystemSettingsUpdate]
    ) -> SystemSettingsOut:
        return await services.update_settings(ctx, request.user, data)


class AdminAuditController(Controller):
    path = "/admin/audit"
    tags = ("admin",)
    security = BEARER
    guards = (requires(Permission.SYSTEM_SETTINGS),)

    @get(
        "/",
        responses=errors(BAD, UNAUTHORIZED, FORBIDDEN),
        summary="The audit log of admin actions, newest first",
    )
    async def list_entries(
        self,
        ctx: Ctx,
        action: Annotated[str | None, QueryParameter(max_length=64)] = None,
        actor_id: Annotated[uuid.UUID | None, QueryParameter(name="actorId")] = None,
        limit: PageLimit = DEFAULT_LIMIT,
        cursor: PageCursor = None,
    ) -> audit.AuditEntryPage:
        return await audit.list_entries(
            ctx.secret, action=action, actor_id=actor_id, cursor=cursor, limit=limit
        )
