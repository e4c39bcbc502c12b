"""Bodies of /creator and /admin/applications."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from msgspec import Meta

from lms.api.schemas import HTTP_URL_PATTERN, CamelStruct, Page, RowStruct
from lms.api.text import WORDS_PATTERN


class ApplicationRequest(CamelStruct):
    bio: Annotated[
        str,
        Meta(min_length=20, max_length=5000, description="who you are and what you would teach"),
    ]
    experience_years: Annotated[int, Meta(ge=0, le=80)]
    portfolio_url: (
        Annotated[
            str,
            Meta(
                max_length=500,
                pattern=HTTP_URL_PATTERN,
                description="an http(s) URL; blank for none",
            ),
        ]
        | None
    ) = None


class CreatorApplication(RowStruct):
    id: uuid.UUID
    user_id: uuid.UUID
    bio: str
    portfolio_url: str | None
    experience_years: int
    status: Literal["PENDING", "APPROVED", "REJECTED"]
    reviewer_notes: str | None
    reviewer_id: uuid.UUID | None
    created_at: datetime
    reviewed_at: datetime | None


class CreatorApplicationPage(Page[CreatorApplication]):
    """A page of creator applications, newest first."""

    items: list[CreatorApplication]


class CreatorStatus(CamelStruct):
    status: Literal["NONE", "PENDING", "APPROVED", "REJECTED"]
    application: CreatorApplication | None = None


class ApproveRequest(CamelStruct):
    notes: Annotated[str, Meta(max_length=5000)] | None = None


class RejectRequest(CamelStruct):
    notes: Annotated[
        str,
        Meta(
            min_length=1,
            max_length=5000,
            pattern=WORDS_PATTERN,
            description="why, for the applicant",
        ),
    ]
