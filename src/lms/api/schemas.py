"""Base Structs for the wire: camelCase field names, keyword-only construction, keyset pages."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Generic, Self, TypeVar

import msgspec

T = TypeVar("T")

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100


class CamelStruct(msgspec.Struct, rename="camel", kw_only=True, omit_defaults=False):
    """Every request and response body: snake_case in Python, camelCase on the wire."""


class RowStruct(CamelStruct):
    """A response built from a database row whose columns are named like the fields."""

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Self:
        return cls(**{field: row[field] for field in cls.__struct_fields__})


class Page(CamelStruct, Generic[T]):
    """A keyset page: pass `nextCursor` back as `cursor` for the next one; null at the end.
    Responses use a subclass per item type that declares `items` again (`class UserPage(Page[User])`
    with `items: list[User]`): Litestar's OpenAPI generator does not resolve a generic base's
    parameter, and the subclass gives the document a plain name."""

    items: list[T]
    next_cursor: str | None
