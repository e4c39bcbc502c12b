"""JSON built by PostgreSQL, defined once, by the Struct that documents it.

A hot path that hands PostgreSQL's JSON to the client untouched must still answer exactly the
object its Struct (and so the OpenAPI document) describes. So the Struct is the one definition:
each field declares its SQL expression next to its type (`Annotated[str, sql("c.title")]`), and
`json_object(TheStruct)` writes the `json_build_object(...)` from the fields, keyed by their wire
names. A renamed or added field changes the SQL with it; a field without an expression is an
error when the statement is built, at import, not a silently missing key.

- A field whose type is a Struct and has no expression of its own nests that Struct's object.
- Timestamps are formatted as the API writes them (ISO 8601, UTC, `Z`).
- `overrides` replace a field's expression for one statement (another alias, a subquery).
"""

from __future__ import annotations

import msgspec
from msgspec import Meta, inspect

_KEY = "sql"


def sql(expression: str) -> Meta:
    """The SQL expression a field is built from, for `Annotated[T, sql("...")]`."""
    return Meta(extra={_KEY: expression})


def iso(column: str) -> str:
    """A timestamptz as the API writes it (UTC, microseconds, Z), or null."""
    return f"""to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"""


def _expression(field_type: inspect.Type) -> str | None:
    if isinstance(field_type, inspect.Metadata) and field_type.extra:
        value = field_type.extra.get(_KEY)
        return str(value) if value is not None else None
    return None


def _unwrapped(field_type: inspect.Type) -> inspect.Type:
    while isinstance(field_type, inspect.Metadata):
        field_type = field_type.type
    return field_type


def _is_timestamp(field_type: inspect.Type) -> bool:
    inner = _unwrapped(field_type)
    options = inner.types if isinstance(inner, inspect.UnionType) else (inner,)
    return any(isinstance(_unwrapped(t), inspect.DateTimeType) for t in options)


def _nested_struct(field_type: inspect.Type) -> type[msgspec.Struct] | None:
    inner = _unwrapped(field_type)
    if isinstance(inner, inspect.StructType):
        return inner.cls
    return None


def json_object(struct: type[msgspec.Struct], **overrides: str) -> str:
    """`json_build_object('key', expression, ...)` for every field of `struct`, in order."""
    info = inspect.type_info(struct)
    if not isinstance(info, inspect.StructType):
        raise RuntimeError(f"json_object() takes a msgspec Struct type, got {struct!r}")
    pairs: list[str] = []
    for field in info.fields:
        expression = overrides.get(field.name) or _expression(field.type)
        if expression is None:
            nested = _nested_struct(field.type)
            if nested is None:
                raise TypeError(f"{struct.__name__}.{field.name} declares no SQL expression")
            expression = json_object(nested)
        elif _is_timestamp(field.type):
            expression = iso(expression)
        pairs.append(f"'{field.encode_name}', {expression}")
    return f"json_build_object({', '.join(pairs)})"


def wire_names(struct: type[msgspec.Struct]) -> list[str]:
    """The keys of `struct` on the wire, in order (for tests and error messages)."""
    return [f.encode_name for f in msgspec.structs.fields(struct)]
