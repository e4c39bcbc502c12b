"""The payment tests' world: the session's localstripe delivers its signed webhooks to a relay on
loopback, which hands them to the app under test (or drops them, when a test says so)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.conftest import STRIPE_WEBHOOK_SECRET
from tests.support.localstripe import LocalStripe, WebhookRelay


@pytest.fixture(scope="session")
async def relay(client: httpx.AsyncClient, localstripe: LocalStripe) -> AsyncIterator[WebhookRelay]:
    async def forward(body: bytes, signature: str) -> int:
        response = await client.post(
            "/payments/stripe/webhook",
            content=body,
            headers={"Stripe-Signature": signature, "Content-Type": "application/json"},
        )
        return response.status_code

    relay = WebhookRelay(forward)
    await relay.start()
    localstripe.register_webhook("lms-tests", relay.url, STRIPE_WEBHOOK_SECRET)
    yield relay
    await relay.stop()


@pytest.fixture
async def stripe_world(api: httpx.AsyncClient, relay: WebhookRelay) -> WebhookRelay:
    """The relay, with what earlier tests delivered forgotten."""
    relay.clear()
    return relay
