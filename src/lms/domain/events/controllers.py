"""/admin/webhooks: endpoints that receive the platform's events, and their delivery log."""

from __future__ import annotations

import uuid

from litestar import Controller, delete, get, patch, post
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.status_codes import HTTP_201_CREATED, HTTP_202_ACCEPTED, HTTP_204_NO_CONTENT

from lms.api.dependencies import Ctx, Db
from lms.api.openapi import BAD, BEARER, CONFLICT, FORBIDDEN, NOT_FOUND, UNAUTHORIZED, errors
from lms.api.pagination import DEFAULT_LIMIT, PageCursor, PageLimit
from lms.api.security import requires
from lms.domain.auth.permissions import Permission
from lms.domain.events import webhooks
from lms.domain.events.schemas import (
    DeliveryStatus,
    Webhook,
    WebhookCreate,
    WebhookCreated,
    WebhookDeliveryPage,
    WebhookUpdate,
)


class AdminWebhookController(Controller):
    path = "/admin/webhooks"
    tags = ("admin",)
    security = BEARER
    guards = (requires(Permission.SYSTEM_SETTINGS),)

    @post(
        "/",
        status_code=HTTP_201_CREATED,
        responses=errors(BAD, UNAUTHORIZED, FORBIDDEN),
        summary="Register an endpoint for event types; its signing secret is shown only here",
    )
    async def create_webhook(
        self, ctx: Ctx, db: Db, data: JSONBody[WebhookCreate]
    ) -> WebhookCreated:
        """Deliveries follow the Standard Webhooks specification (README, Integrations)."""
        return await webhooks.create(db, ctx.settings, data)

    @get("/", responses=errors(UNAUTHORIZED, FORBIDDEN), summary="Every webhook endpoint")
    async def list_webhooks(self, db: Db) -> list[Webhook]:
        return await webhooks.list_all(db)

    @get(
        "/{webhook_id:uuid}",
        responses=errors(UNAUTHORIZED, FORBIDDEN, NOT_FOUND),
        summary="One endpoint, with why it is disabled if it is",
    )
    async def get_webhook(self, db: Db, webhook_id: FromPath[uuid.UUID]) -> Webhook:
        return await webhooks.get(db, webhook_id)

    @patch(
        "/{webhook_id:uuid}",
        responses=errors(BAD, UNAUTHORIZED, FORBIDDEN, NOT_FOUND),
        summary="Change an endpoint's URL, event types or description; disable or enable it",
    )
    async def update_webhook(
        self, ctx: Ctx, db: Db, webhook_id: FromPath[uuid.UUID], data: JSONBody[WebhookUpdate]
    ) -> Webhook:
        return await webhooks.update(db, ctx.settings, webhook_id, data)

    @delete(
        "/{webhook_id:uuid}",
        status_code=HTTP_204_NO_CONTENT,
        responses=errors(UNAUTHORIZED, FORBIDDEN, NOT_FOUND),
        summary="Remove an endpoint and its delivery log",
    )
    async def delete_webhook(self, db: Db, webhook_id: FromPath[uuid.UUID]) -> None:
        await webhooks.delete(db, webhook_id)

    @get(
        "/{webhook_id:uuid}/deliveries",
        responses=errors(BAD, UNAUTHORIZED, FORBIDDEN, NOT_FOUND),
        summary="An endpoint's deliveries, newest first",
    )
    async def list_deliveries(
        self,
        ctx: Ctx,
        db: Db,
        webhook_id: FromPath[uuid.UUID],
        status: FromQuery[DeliveryStatus | None] = None,
        limit: PageLimit = DEFAULT_LIMIT,
        cursor: PageCursor = None,
    ) -> WebhookDeliveryPage:
        return await webhooks.deliveries(
            db, ctx.secret, webhook_id, status=status, cursor=cursor, limit=limit
        )

    @post(
        "/{webhook_id:uuid}/deliveries/{delivery_id:uuid}/retry",
        status_code=HTTP_202_ACCEPTED,
        responses=errors(UNAUTHORIZED, FORBIDDEN, NOT_FOUND, CONFLICT),
        summary="Send a delivery again (first in the endpoint's queue), with the same webhook-id",
    )
    async def retry_delivery(
        self,
        ctx: Ctx,
        db: Db,
        webhook_id: FromPath[uuid.UUID],
        delivery_id: FromPath[uuid.UUID],
    ) -> None:
        await webhooks.retry(db, ctx.settings, ctx.nats, webhook_id, delivery_id)
