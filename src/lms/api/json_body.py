"""Decoding a JSON request body, once, for every route: what is not well-formed or too deep is
refused before a handler runs; the value is converted strictly to the type the handler declares,
so `"1"` is not an integer and `0` is not a boolean, as the OpenAPI document says; then what the
handler will read is refused if it holds a character the API does not store or a number no
column holds.
"""

from __future__ import annotations

import math
from typing import Any

import msgspec

from lms.api.text import bad_character
from lms.domain.errors import Invalid

# Our deepest body is three levels; past this a body is an attack on the decoder, not a request.
MAX_DEPTH = 32
# JSON numbers the API stores fit 64 bits; a wider integer only overflows a column or a
# conversion further in.
INT_MIN, INT_MAX = -(2**63), 2**63 - 1


class FieldError(Exception):
    """The body is well-formed but a value is not what the handler's type admits."""

    def __init__(self, message: str, key: str) -> None:
        super().__init__(message)
        self.message = message
        self.key = key


class _NotFinite(Exception):
    pass


def _number(text: str) -> float | int:
    """A JSON number with a fraction or exponent. JSON Schema counts 1.0 as an integer, so a
    whole value becomes an int (an int field takes it, a float field takes an int); a value past
    what a float holds (1e400) is refused rather than read as infinity."""
    value = float(text)
    if not math.isfinite(value):
        raise _NotFinite(text)
    return int(value) if value.is_integer() and INT_MIN <= value <= INT_MAX else value


_DECODER = msgspec.json.Decoder(float_hook=_number)


def decode(body: bytes, target: Any) -> Any:
    """`body` as JSON converted to `target` (a type; `Any` for no conversion). Raises Invalid for
    a body that is not acceptable JSON, FieldError for a value that does not fit `target`.

    The body's shape (its depth) is checked whole; its values (text, numbers) where the handler
    reads them: after conversion, so an unknown field that a tolerant body ignores cannot make it
    fail."""
    try:
        value = _DECODER.decode(body)
    except msgspec.DecodeError as exc:  # ValidationError too: a number out of range
        raise Invalid(f"the body is not valid JSON: {exc}") from None
    except UnicodeDecodeError:
        raise Invalid("the body is not valid UTF-8") from None
    except RecursionError:
        raise Invalid(f"the body is nested deeper than {MAX_DEPTH} levels") from None
    except _NotFinite as exc:
        raise Invalid(f"the number {str(exc)[:40]} is out of range") from None
    _check(value, values=target is Any)
    if target is Any:
        return value
    try:
        converted = msgspec.convert(value, target, strict=True)
    except msgspec.ValidationError as exc:
        message, _, where = str(exc).partition(" - at ")
        raise FieldError(message, _key(where.strip("`"))) from None
    _check(msgspec.to_builtins(converted), values=True)
    return converted


def _check(value: Any, *, values: bool) -> None:
    """Walk the body without recursion (its depth is what is being checked); with `values`, its
    text and integers too."""
    pending: list[tuple[Any, int, str]] = [(value, 1, "$")]
    while pending:
        item, depth, where = pending.pop()
        if isinstance(item, str):
            if values:
                _check_text(item, where)
        elif isinstance(item, bool | float) or item is None:
            continue
        elif isinstance(item, int):
            if values and not INT_MIN <= item <= INT_MAX:
                raise Invalid(f"{_key(where)}: the number is out of range")
        elif depth > MAX_DEPTH:
            raise Invalid(f"the body is nested deeper than {MAX_DEPTH} levels")
        elif isinstance(item, dict):
            for key, member in item.items():
                if values:
                    _check_text(key, where)
                pending.append((member, depth + 1, f"{where}.{key}"))
        elif isinstance(item, list):
            pending.extend((member, depth + 1, f"{where}[{i}]") for i, member in enumerate(item))


def _check_text(text: str, where: str) -> None:
    # Tab and line breaks stay allowed here: titles and notes are free text. Fields that are names
    # or identifiers refuse them with the patterns of their Structs.
    bad = bad_character(text, free_text=True)
    if bad is not None:
        raise Invalid(f"{_key(where)}: text may not contain the control character {bad}")


def _key(where: str) -> str:
    """`$.a.b[0]` as `a.b[0]`, the way validation errors name fields; `body` for the whole."""
    return where.removeprefix("$").removeprefix(".") or "body"
