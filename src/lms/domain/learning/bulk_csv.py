"""The addresses of a bulk enrollment's text/csv body, parsed as the body arrives.

The body is never held whole: each chunk is decoded (UTF-8, a byte-order mark allowed), cut into
lines and parsed by the csv module at once, and reading stops at the first refusal, in particular
at the row past the cap, so five million rows cost what MAX_BULK_ROWS + 1 do. A chunk is parsed
in slices with a turn of the event loop between them, and a line or a row longer than any
address needs is refused, so no part of a body keeps the loop for long.

csv.reader keeps no state between records, only within one: it is fed the complete lines received
so far, and when a record (a quoted field running over lines) needs a line not yet received, the
lines it took are put back and the record is parsed again, whole, once more have come. Rows are
those of the column headed `email` when the first row has one, else of the first column; blank
rows are skipped; each address gets the rules a JSON row gets (lms.domain.learning.schemas.Email).
"""

from __future__ import annotations

import asyncio
import codecs
import csv
import re
from collections import deque
from collections.abc import AsyncIterable

import msgspec

from lms.api.text import bad_in_address
from lms.domain.errors import Invalid
from lms.domain.learning.schemas import MAX_BULK_ROWS, Email

# Far past any address (320 characters) and any export's row of a few columns, and small enough
# that putting a row's lines back and parsing them again costs little.
MAX_LINE_CHARS = 16 * 1024
MAX_ROW_CHARS = 64 * 1024
# How much of a chunk is parsed before the event loop gets a turn.
SLICE_BYTES = 16 * 1024

_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)")


class _Starved(Exception):
    """The reader wants a line that has not arrived yet."""


class _Lines:
    """The iterator csv.reader reads: the complete lines received so far."""

    def __init__(self) -> None:
        self.ready: deque[str] = deque()
        self.taken: list[str] = []  # the lines the record being parsed has taken
        self.finished = False

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        if not self.ready:
            if self.finished:
                raise StopIteration
            raise _Starved
        line = self.ready.popleft()
        self.taken.append(line)
        return line


class CsvAddresses:
    """Feed it the body's bytes as they come (`feed`), then `finish`: the addresses, in order.
    Raises Invalid as soon as the body is refused."""

    def __init__(self, max_rows: int = MAX_BULK_ROWS) -> None:
        self.max_rows = max_rows
        self.addresses: list[str] = []
        self._decoder = codecs.getincrementaldecoder("utf-8-sig")()
        self._lines = _Lines()
        self._reader = csv.reader(self._lines)
        self._partial = ""  # the start of a line whose end has not arrived
        self._column: int | None = None  # None until the first row said whether it is a header
        self._rows = 0  # rows of the CSV so far, blank ones and the header included
        # A record put back (it needs lines not received yet) is parsed again only once what
        # waits has doubled, so a record arriving a line at a time costs linear time in all.
        self._put_back = 0  # the weight (characters + lines) of the record put back; 0: none
        self._waiting = 0  # the weight of the lines waiting since, that record's included

    def feed(self, chunk: bytes) -> None:
        try:
            text = self._decoder.decode(chunk)
        except UnicodeDecodeError:
            raise Invalid("the CSV body must be UTF-8 text") from None
        self._take(text)

    def finish(self) -> list[str]:
        try:
            rest = self._decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise Invalid("the CSV body must be UTF-8 text") from None
        self._take(rest, final=True)
        return self.addresses

    def _take(self, text: str, *, final: bool = False) -> None:
        if "\x00" in text:
            raise Invalid("the CSV body must be text")
        text = self._partial + text
        # Lines end at the last line break: the regex never scans a line that has not ended
        # (it would scan it from every position, quadratic in its length).
        end = max(text.rfind("\n"), text.rfind("\r")) + 1
        lines = _LINE.findall(text, 0, end)
        self._lines.ready.extend(lines)
        self._waiting += end + len(lines)
        self._partial = text[end:]
        # A carriage return may be the first half of CRLF: wait for what follows.
        ready = self._lines.ready
        if not final and not self._partial and ready and ready[-1].endswith("\r"):
            self._partial = ready.pop()
        if len(self._partial) > MAX_LINE_CHARS:
            raise Invalid(f"the CSV body has a line longer than {MAX_LINE_CHARS} characters")
        if final:
            if self._partial:
                self._lines.ready.append(self._partial)
                self._partial = ""
            self._lines.finished = True
        self._parse()

    def _parse(self) -> None:
        lines = self._lines
        if self._put_back and not lines.finished and self._waiting < 2 * self._put_back:
            return
        self._put_back = 0
        while lines.ready or lines.finished:
            lines.taken.clear()
            try:
                row = next(self._reader)
            except _Starved:
                chars = sum(map(len, lines.taken))
                if chars > MAX_ROW_CHARS:
                    raise Invalid(
                        f"the CSV body has a row longer than {MAX_ROW_CHARS} characters"
                    ) from None
                lines.ready.extendleft(reversed(lines.taken))  # parsed again, whole, later
                self._put_back = self._waiting = chars + len(lines.taken)
                return
            except StopIteration:
                return
            except csv.Error as exc:
                raise Invalid(f"the CSV body is malformed: {exc}") from None
            self._row(row)

    def _row(self, row: list[str]) -> None:
        self._rows += 1
        if not any(cell.strip() for cell in row):
            return
        if self._column is None:
            header = [cell.strip().lower() for cell in row]
            self._column = header.index("email") if "email" in header else 0
            if "email" in header:
                return
        number = len(self.addresses) + 1
        if number > self.max_rows:
            raise Invalid(f"at most {self.max_rows} addresses per request")
        value = row[self._column] if self._column < len(row) else ""
        try:
            address: str = msgspec.convert(value, Email, strict=True)
        except msgspec.ValidationError:
            # The JSON rows' type, so the JSON rows' rules; the answer names the character.
            bad = bad_in_address(value)
            why = f"may not contain {bad}" if bad else "is not an email address"
            raise Invalid(f"row {self._rows} (address {number}) {why}: {value[:80]!r}") from None
        self.addresses.append(address)


async def addresses_from_csv(
    body: AsyncIterable[bytes], max_rows: int = MAX_BULK_ROWS
) -> list[str]:
    """The addresses of a text/csv body read from `body` as it arrives; reading stops at the
    first refusal (Invalid)."""
    parser = CsvAddresses(max_rows)
    async for chunk in body:
        for start in range(0, len(chunk), SLICE_BYTES):
            parser.feed(chunk[start : start + SLICE_BYTES])
            await asyncio.sleep(0)
    return parser.finish()
