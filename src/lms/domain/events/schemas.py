"""Bodies of /admin/webhooks."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

from msgspec import UNSET, Meta, UnsetType

from lms.api.schemas import CamelStruct, Page, RowStruct

WebhookUrl = Annotated[str, Meta(min_length=1, max_length=2000)]
EventTypes = Annotated[
    list[Annotated[str, Meta(min_length=1, max_length=64)]], Meta(min_length=1, max_length=100)
]
Description = Annotated[str, Meta(max_length=500)]
DeliveryStatus = Literal["PENDING", "DELIVERED"]


class WebhookCreate(CamelStruct, forbid_unknown_fields=True):
    url: WebhookUrl
    events: EventTypes
    description: Description = ""


class WebhookUpdate(CamelStruct, forbid_unknown_fields=True):
    json_schema_extra: ClassVar[dict[str, Any]] = {"minProperties": 1}

    url: WebhookUrl | UnsetType = UNSET
    events: EventTypes | UnsetType = UNSET
    description: Description | UnsetType = UNSET
    # false disables it; true enables it again (an automatically disabled one included: its
    # waiting deliveries go out at once)
    enabled: bool | UnsetType = UNSET


class Webhook(RowStruct):
    id: uuid.UUID
    url: str
    events: list[str]
    description: str
    created_at: datetime
    disabled_at: datetime | None
    disabled_reason: str | None
    failing_since: datetime | None
    consecutive_failures: int
    last_success_at: datetime | None


class WebhookCreated(Webhook):
    """The new endpoint with its signing secret, shown this once."""

    secret: str


class WebhookDelivery(CamelStruct):
    id: uuid.UUID
    event_id: uuid.UUID
    type: str
    attempt: int
    status: str
    response_status: int | None
    error: str | None
    created_at: datetime
    delivered_at: datetime | None


class WebhookDeliveryPage(Page[WebhookDelivery]):
    """An endpoint's deliveries, newest first."""

    items: list[WebhookDelivery]
