"""Bulk enrollment's CSV parsed as it arrives (lms.domain.learning.bulk_csv): however the body is
cut into chunks, the addresses are what csv.reader finds in the whole body; refusals come as soon
as the body earns them."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable

import pytest

from lms.domain.errors import Invalid
from lms.domain.learning.bulk_csv import MAX_LINE_CHARS, MAX_ROW_CHARS, CsvAddresses

BODIES = [
    "email\na@example.test\nb@example.test\n",
    "a@example.test\r\n\r\nb@example.test\rc@example.test",
    '\ufeffName,Email\n"Ada, Countess",a@example.test\nBob,b@example.test\n',
    # A quoted name running over lines, an escaped quote, and non-ASCII text.
    'name,email\n"Zoë\nvan ""Dijk""",zoe@example.test\r\n"Jürgen\r\nS.",j@example.test\n',
    "a@example.test,extra,columns\n,\nb@example.test",
    'name,email\n"unfinished,a@example.test\nb@example.test\n',  # a quote never closed
]


def whole(body: str) -> list[str]:
    """What the previous implementation made of the body: csv.reader over all of it."""
    text = io.StringIO(body.removeprefix("\ufeff"), newline="")
    rows = [row for row in csv.reader(text) if any(map(str.strip, row))]
    if not rows:
        return []
    header = [cell.strip().lower() for cell in rows[0]]
    column = header.index("email") if "email" in header else 0
    rows = rows[1:] if "email" in header else rows
    return [row[column] if column < len(row) else "" for row in rows]


def feed_all(parser: CsvAddresses, chunks: Iterable[bytes]) -> None:
    for chunk in chunks:
        parser.feed(chunk)


def parse(body: bytes, size: int, max_rows: int = 50_000) -> list[str]:
    parser = CsvAddresses(max_rows)
    for start in range(0, len(body), size):
        parser.feed(body[start : start + size])
    return parser.finish()


@pytest.mark.parametrize("body", BODIES)
def test_every_chunking_gives_what_the_whole_body_gives(body: str) -> None:
    expected = whole(body)
    if body.startswith('name,email\n"unfinished'):
        # The open quote swallows the rest: one address that is not one.
        with pytest.raises(Invalid, match="row 2"):
            parse(body.encode(), len(body))
        return
    encoded = body.encode()
    for size in range(1, len(encoded) + 1):
        assert parse(encoded, size) == expected, size


def test_the_row_past_the_cap_is_refused_as_it_arrives() -> None:
    parser = CsvAddresses(max_rows=3)
    for _ in range(3):
        parser.feed(b"a@example.test\n")
    with pytest.raises(Invalid, match="at most 3 addresses"):
        parser.feed(b"d@example.test\n")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"\xff\xfe", "UTF-8"),
        (b"a@example.test\n\xc3", "UTF-8"),  # cut inside a character at the end
        (b"a\x00b@example.test\n", "must be text"),
        ("email\na@example.test\n\u202eb@example.test\n".encode(), r"row 3 \(address 2\).*U\+202E"),
        (b"email\n\x07a@example.test\n", r"row 2 \(address 1\).*U\+0007"),
        (b"email,name\n,Ada\n", "row 2 .* not an email address"),
    ],
)
def test_refusals(body: bytes, message: str) -> None:
    with pytest.raises(Invalid, match=message):
        parse(body, 3)


def test_a_line_or_row_longer_than_any_address_needs_is_refused_before_it_ends() -> None:
    parser = CsvAddresses()
    with pytest.raises(Invalid, match="line longer"):
        feed_all(parser, [b"x" * 1024] * (MAX_LINE_CHARS // 1024 + 1))
    # Within the line limit, a quoted field that runs over many lines.
    parser = CsvAddresses()
    parser.feed(b'"')
    # Noticed once the row is past the limit, at most twice the limit later (parsed again only
    # as what waits doubles).
    with pytest.raises(Invalid, match="row longer"):
        feed_all(parser, [b"x" * 1023 + b"\n"] * (4 * MAX_ROW_CHARS // 1024))


def test_a_record_arriving_a_line_at_a_time_is_not_parsed_again_for_every_line() -> None:
    """A quoted field opened and fed one line break at a time: each record put back is parsed
    again only once what waits has doubled, so this ends (refused for its length) at once
    rather than after a quadratic number of reparses."""
    parser = CsvAddresses()
    parser.feed(b'"')
    with pytest.raises(Invalid, match="row longer"):
        feed_all(parser, [b"\n"] * (4 * MAX_ROW_CHARS))
