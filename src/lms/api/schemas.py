"""Base Structs for the wire: camelCase field names, keyword-only construction, keyset pages."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Generic, Self, TypeVar

import msgspec

from lms.api.text import CONTROLS

T = TypeVar("T")

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100

# An absolute http(s) URL as the services take it (urlsplit finds that scheme and a host), or
# blank for none. The host and user are RFC 3986's ASCII (an IDN as punycode; no IPv6 literal):
# urlsplit raises on a malformed bracket or a non-ASCII netloc that NFKC turns into a delimiter.
# No space or control character inside; spaces, tabs and line breaks around it are trimmed.
HTTP_URL_PATTERN = (
    r"^[ \t\n\r]*$|^[ \t\n\r]*[Hh][Tt][Tt][Pp][Ss]?://(?:[A-Za-z0-9._~%!$&'()*+,;=:-]*@)?"
    r"[A-Za-z0-9._~%!$&'()*+,;=-]+(?::[0-9]*)?"
    rf"(?:[/?#][^\s{CONTROLS}]*)?[ \t\n\r]*$"
)


class CamelStruct(msgspec.Struct, rename="camel", kw_only=True, omit_defaults=False):
    """Every request and response body: snake_case in Python, camelCase on the wire.

    A request body states what its fields' Meta cannot (at least one field of a PATCH, one of
    two alternatives) in `json_schema_extra`: JSON Schema keywords the OpenAPI document adds to
    its schema (lms.api.openapi_constraints). The service enforces them."""

    json_schema_extra: ClassVar[dict[str, Any]] = {}


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
