"""Keyset pagination at the HTTP edge: the `limit` and `cursor` query parameters every list
takes (lms.domain.paging signs cursors and builds the pages)."""

from __future__ import annotations

from typing import Annotated

from litestar.params import QueryParameter

from lms.api.schemas import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE

CURSOR_PATTERN = r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$"

PageLimit = Annotated[
    int,
    QueryParameter(ge=1, le=MAX_PAGE_SIZE, description=f"page size, at most {MAX_PAGE_SIZE}"),
]
PageCursor = Annotated[
    str | None,
    QueryParameter(
        max_length=512,
        # The shape of lms.domain.paging's cursors (base64url payload and signature); only one
        # this server signed for the same query works.
        pattern=CURSOR_PATTERN,
        description="nextCursor of the previous page",
    ),
]
DEFAULT_LIMIT = DEFAULT_PAGE_SIZE
