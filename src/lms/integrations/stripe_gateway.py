"""Stripe through its official SDK (PaymentIntents, refunds, webhook signatures), pointed at
LMS_STRIPE_API_BASE: Stripe itself, or localstripe in development and tests. No HTTP types of
ours inside; the SDK's errors become `GatewayError` so the services need not know the SDK."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import stripe

from lms.settings import Settings

SIGNATURE_TOLERANCE_SECONDS = 300  # Stripe's own default: a delivery older than this is refused
REQUEST_TIMEOUT_SECONDS = 20.0


class GatewayError(Exception):
    """Stripe did not do what was asked (down, refused, timed out); the message is for logs."""


class UnknownIntent(GatewayError):
    """Stripe does not know the PaymentIntent (404): it was never made there, or the local
    development server was restarted and forgot it."""


class BadSignature(Exception):
    """A webhook body whose Stripe-Signature is missing, wrong or too old."""


def to_minor_units(amount: Decimal) -> int:
    """Cents (hundredths): LMS_CURRENCY is always counted in hundredths (lms.settings)."""
    return int((amount * 100).to_integral_exact())


@dataclass(frozen=True, slots=True)
class PaymentIntent:
    id: str
    status: str  # requires_payment_method, requires_confirmation, processing, succeeded, canceled
    amount: int  # minor units
    currency: str
    client_secret: str | None
    metadata: dict[str, str]
    failure: str | None  # the last payment error's message, when there was one


def _intent(resource: Any) -> PaymentIntent:
    obj = resource.to_dict()
    error = obj.get("last_payment_error")
    return PaymentIntent(
        id=str(obj["id"]),
        status=str(obj["status"]),
        amount=int(obj["amount"]),
        currency=str(obj["currency"]).lower(),
        client_secret=obj.get("client_secret"),
        metadata={str(k): str(v) for k, v in dict(obj.get("metadata") or {}).items()},
        failure=None if not error else str(error.get("message") or error.get("code") or "failed"),
    )


class StripeGateway:
    def __init__(self, secret_key: str, webhook_secret: str, api_base: str) -> None:
        self._client = stripe.StripeClient(
            secret_key,
            base_addresses={"api": api_base},
            http_client=stripe.HTTPXClient(timeout=REQUEST_TIMEOUT_SECONDS),
            max_network_retries=2,  # safe: every write carries an idempotency key
        )
        self._webhook_secret = webhook_secret

    async def create_payment_intent(
        self, order_id: uuid.UUID, amount: Decimal, currency: str, metadata: dict[str, str]
    ) -> PaymentIntent:
        """The order's PaymentIntent: the idempotency key is the order's, so a retry (ours, the
        SDK's, a second checkout of the same order) gets the same intent from Stripe."""
        try:
            obj = await self._client.v1.payment_intents.create_async(
                params={
                    "amount": to_minor_units(amount),
                    "currency": currency,
                    "metadata": metadata,
                },
                options={"idempotency_key": f"lms-order-{order_id}"},
            )
        except stripe.StripeError as exc:
            raise GatewayError(f"Stripe refused the PaymentIntent: {exc}") from exc
        return _intent(obj)

    async def payment_intent(self, intent_id: str) -> PaymentIntent:
        try:
            obj = await self._client.v1.payment_intents.retrieve_async(intent_id)
        except stripe.InvalidRequestError as exc:
            if exc.http_status == 404:
                raise UnknownIntent(f"no PaymentIntent {intent_id} at Stripe") from exc
            raise GatewayError(f"could not read PaymentIntent {intent_id}: {exc}") from exc
        except stripe.StripeError as exc:
            raise GatewayError(f"could not read PaymentIntent {intent_id}: {exc}") from exc
        return _intent(obj)

    async def cancel_payment_intent(self, intent_id: str) -> None:
        try:
            await self._client.v1.payment_intents.cancel_async(intent_id)
        except stripe.StripeError as exc:
            raise GatewayError(f"could not cancel PaymentIntent {intent_id}: {exc}") from exc

    async def refund(self, intent_id: str, order_id: uuid.UUID) -> str:
        """Refund the whole payment; the refund's id. Keyed by the order: two refunds of one
        order are one refund at Stripe."""
        try:
            obj = await self._client.v1.refunds.create_async(
                params={"payment_intent": intent_id, "metadata": {"order_id": str(order_id)}},
                options={"idempotency_key": f"lms-refund-{order_id}"},
            )
        except stripe.StripeError as exc:
            raise GatewayError(f"Stripe refused the refund: {exc}") from exc
        return str(obj.to_dict()["id"])

    def verify(self, body: bytes, signature: str | None) -> None:
        """Raise BadSignature unless `signature` signs `body` (the raw bytes) with the webhook
        secret, within the tolerance."""
        if not signature:
            raise BadSignature("no Stripe-Signature header")
        try:
            stripe.WebhookSignature.verify_header(
                body.decode("utf-8"),
                signature,
                self._webhook_secret,
                SIGNATURE_TOLERANCE_SECONDS,
            )
        except (stripe.SignatureVerificationError, UnicodeDecodeError, ValueError) as exc:
            raise BadSignature(str(exc)) from None


def make_gateway(settings: Settings) -> StripeGateway | None:
    """None when payments are not configured (checkout answers 503)."""
    if not settings.stripe_secret_key or not settings.stripe_webhook_secret:
        return None
    return StripeGateway(
        settings.stripe_secret_key, settings.stripe_webhook_secret, settings.stripe_api_base
    )
