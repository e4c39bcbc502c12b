"""A request's headers as one dict, made once by the outermost layer that asks and kept in its
scope, so that the layers inside (request id, CORS, the hot lane) read it instead of each
scanning or copying the header list again (three copies cost some 3 us a browser request)."""

from __future__ import annotations

from typing import Any

SCOPE_KEY = "lms.headers"


def header_map(scope: dict[str, Any]) -> dict[bytes, bytes]:
    """The request's headers by (lower-case) name; a name sent more than once maps to its last
    value, and has_repeats says whether any was."""
    found: dict[bytes, bytes] | None = scope.get(SCOPE_KEY)
    if found is None:
        found = scope[SCOPE_KEY] = dict(scope["headers"])
    return found


def has_repeats(scope: dict[str, Any]) -> bool:
    """Whether some header name comes more than once (the map then keeps only its last)."""
    return len(header_map(scope)) != len(scope["headers"])
