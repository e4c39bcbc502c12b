"""The first check every routed request passes: its path, query string and headers are text the API
can hold. Registered once in create_app, so a new route is covered without asking.

Bodies are checked where they are decoded (lms.api.request for JSON, lms.api.uploads for forms).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote_to_bytes

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, Scope, Send

from lms.api.text import bad_character
from lms.domain.errors import Invalid, TooLarge

# RFC 9110 5.5: a field value is visible characters, spaces and tabs; any other control byte is
# an attack on whatever stores or logs it (a user agent is stored with each login).
_HEADER_CONTROLS = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_DIGITS = re.compile(rb"[0-9]+")
# A Content-Length with more digits than this is past every size limit we have (and past what
# int() converts without complaint).
MAX_LENGTH_DIGITS = 18


def check_path(path: str, raw: bytes | None) -> None:
    """The path as the server decoded it, and the raw one (when the server gives it) as UTF-8:
    servers differ in what they make of percent-escapes that are not UTF-8."""
    if raw:
        try:
            unquote_to_bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            raise Invalid("the path is not valid UTF-8") from None
    bad = bad_character(path, free_text=False)
    if bad is not None:
        raise Invalid(f"the path may not contain the control character {bad}")


def check_query(raw: bytes) -> None:
    """The query string percent-decoded must be UTF-8 (so no lone surrogate) with no control
    character in any name or value."""
    if not raw:
        return
    try:
        text = unquote_to_bytes(raw.replace(b"+", b" ")).decode("utf-8")
    except UnicodeDecodeError:
        raise Invalid("the query string is not valid UTF-8") from None
    bad = bad_character(text, free_text=False)
    if bad is not None:
        raise Invalid(f"query parameters may not contain the control character {bad}")


def check_headers(headers: list[tuple[bytes, bytes]]) -> None:
    for name, value in headers:
        if _HEADER_CONTROLS.search(name) or _HEADER_CONTROLS.search(value):
            shown = name.decode("latin-1")[:64]
            raise Invalid(f"the {shown} header may not contain control characters")
        if name == b"content-length":
            if not _DIGITS.fullmatch(value):
                raise Invalid("Content-Length must be a number of bytes")
            if len(value) > MAX_LENGTH_DIGITS:
                raise TooLarge("the body is larger than this API takes")


class InputGuard:
    """ASGI middleware: refuses (400, 413) a request whose path, query or headers fail the rules
    above, before authentication, parameter parsing or a handler sees them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP:
            http: Any = scope
            check_path(http["path"], http.get("raw_path"))
            check_query(http["query_string"])
            check_headers(http["headers"])
        await self.app(scope, receive, send)
