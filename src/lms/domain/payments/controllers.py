"""Thin handlers for checkout, Stripe's webhook, the caller's orders and admin orders/refunds."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from litestar import Controller, Request, Response, get, post
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from lms.api.dependencies import Ctx, Db
from lms.api.openapi import (
    BAD,
    BEARER,
    CONFLICT,
    FORBIDDEN,
    NOT_FOUND,
    UNAUTHORIZED,
    UNAVAILABLE,
    UPSTREAM,
    errors,
)
from lms.api.pagination import DEFAULT_LIMIT, PageCursor, PageLimit
from lms.api.security import PUBLIC_OPT, requires
from lms.domain.auth.authentication import Principal
from lms.domain.auth.permissions import Permission
from lms.domain.payments import orders, webhook
from lms.domain.payments.schemas import Order, OrderPage, RefundRequest, WebhookAck

PrincipalRequest = Request[Principal, Any, Any]
AnyRequest = Request[Any, Any, Any]


class CheckoutController(Controller):
    path = "/courses"
    tags = ("payments",)
    security = BEARER

    @post(
        "/{course_id:uuid}/checkout",
        status_code=HTTP_201_CREATED,
        guards=[requires(Permission.ENROLL)],
        responses={
            **errors(BAD, UNAUTHORIZED, FORBIDDEN, NOT_FOUND, CONFLICT, UPSTREAM, UNAVAILABLE),
            HTTP_200_OK: ResponseSpec(Order, description="The PENDING order made before"),
        },
        summary="Buy a priced course: an order and its Stripe PaymentIntent (clientSecret)",
        description="201 with a new PENDING order; 200 with the same order while it is PENDING. "
        "Confirm the payment with Stripe.js and the clientSecret; the enrollment follows "
        "Stripe's webhook. Already enrolled or a free course: 409. Payments not configured: 503.",
    )
    async def checkout(
        self, db: Db, ctx: Ctx, request: PrincipalRequest, course_id: FromPath[uuid.UUID]
    ) -> Response[Order]:
        order, created = await orders.checkout(db, ctx, request.user, course_id)
        return Response(order, status_code=HTTP_201_CREATED if created else HTTP_200_OK)


class StripeWebhookController(Controller):
    path = "/payments"
    tags = ("payments",)

    @post(
        "/stripe/webhook",
        status_code=HTTP_200_OK,
        opt=PUBLIC_OPT,
        responses=errors(BAD, CONFLICT, UNAVAILABLE),
        summary="Stripe's events (signed): payments settle orders, refunds end access",
        description="The raw body is checked against `Stripe-Signature` "
        "(LMS_STRIPE_WEBHOOK_SECRET, "
        "5 minutes' tolerance): a bad or stale one is 400 and changes nothing. Each event acts "
        "once, however often it is delivered. A payment whose amount or currency differ from "
        "its order's is 409: the order is flagged, not fulfilled.",
    )
    async def stripe_webhook(self, request: AnyRequest, ctx: Ctx, db: Db) -> WebhookAck:
        body = await request.body()
        outcome = await webhook.handle(db, ctx, body, request.headers.get("stripe-signature"))
        return WebhookAck(received=True, outcome=outcome)


class OrderController(Controller):
    path = "/orders"
    tags = ("payments",)
    security = BEARER

    @get(
        "/",
        guards=[requires(Permission.ENROLL)],
        responses=errors(BAD, UNAUTHORIZED, FORBIDDEN),
        summary="The caller's orders, newest first",
    )
    async def my_orders(
        self,
        db: Db,
        ctx: Ctx,
        request: PrincipalRequest,
        limit: PageLimit = DEFAULT_LIMIT,
        cursor: PageCursor = None,
    ) -> OrderPage:
        return await orders.mine(db, ctx, request.user, cursor, limit)


class AdminOrderController(Controller):
    path = "/admin/orders"
    tags = ("admin",)
    security = BEARER
    guards = (requires(Permission.MANAGE_USERS),)

    @get(
        "/",
        responses=errors(BAD, UNAUTHORIZED, FORBIDDEN),
        summary="Every order, newest first (filter by status and course)",
    )
    async def list_orders(
        self,
        db: Db,
        ctx: Ctx,
        status: Annotated[
            Literal["PENDING", "PAID", "FAILED", "REFUNDED"] | None, QueryParameter()
        ] = None,
        course_id: Annotated[uuid.UUID | None, QueryParameter(name="courseId")] = None,
        limit: PageLimit = DEFAULT_LIMIT,
        cursor: PageCursor = None,
    ) -> OrderPage:
        return await orders.all_orders(
            db, ctx, status=status, course_id=course_id, cursor=cursor, limit=limit
        )

    @post(
        "/{order_id:uuid}/refund",
        status_code=HTTP_200_OK,
        responses=errors(BAD, UNAUTHORIZED, FORBIDDEN, NOT_FOUND, CONFLICT, UPSTREAM, UNAVAILABLE),
        summary="Refund a PAID order through Stripe (audited); the learner's access ends",
    )
    async def refund(
        self,
        request: PrincipalRequest,
        db: Db,
        ctx: Ctx,
        order_id: FromPath[uuid.UUID],
        data: JSONBody[RefundRequest],
    ) -> Order:
        return await orders.refund(db, ctx, request.user, order_id, data.reason)
