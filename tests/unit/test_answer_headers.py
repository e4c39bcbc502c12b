"""Answer.raw_headers: a constant header set (encoded once) and any other set encode alike."""

from __future__ import annotations

import uuid

from lms.api.answers import Answer, constant_headers
from lms.hot_lane import parse_uuid
from lms.observability.middleware import duration_ms

PAIRS = (("Cache-Control", "public, max-age=25"), ("Vary", "Accept"), ("X-Odd", "caf\xe9"))


def test_constant_headers_encode_as_any_other_set() -> None:
    constant = constant_headers(*PAIRS)
    assert constant == PAIRS
    made = Answer(200, b'{"ok":true}', constant).raw_headers()
    assert made == Answer(200, b'{"ok":true}', tuple(PAIRS)).raw_headers()
    assert made[:3] == [
        (b"cache-control", b"public, max-age=25"),
        (b"vary", b"Accept"),
        (b"x-odd", b"caf\xe9"),
    ]
    # Each answer gets its own list: the edge appends to it.
    made.append((b"x-request-id", b"1"))
    assert (b"x-request-id", b"1") not in Answer(304, b"", constant).raw_headers()


def test_the_lanes_uuid_is_a_uuid() -> None:
    text = "0190E5A4-1111-7222-8333-444455556666"
    parsed = parse_uuid(text)
    assert isinstance(parsed, uuid.UUID)
    assert parsed == uuid.UUID(text) and hash(parsed) == hash(uuid.UUID(text))
    assert str(parsed) == text.lower()


def test_duration_ms_keeps_the_microseconds() -> None:
    assert duration_ms(0.0123456) == 12.346
    assert duration_ms(0.0) == 0.0
    assert duration_ms(1.5) == 1500.0
