"""SQL JSON projections written from Structs: the wire names, nesting, timestamps, overrides, and a
field without an expression refused when the statement is built."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec
import pytest

from lms.db.projection import iso, json_object, sql


class Owner(msgspec.Struct, rename="camel"):
    owner_id: Annotated[int, sql("o.id")]


class Thing(msgspec.Struct, rename="camel"):
    thing_id: Annotated[int, sql("t.id")]
    made_at: Annotated[datetime | None, sql("t.made_at")]
    owner: Owner


class Unmapped(msgspec.Struct):
    name: str


def test_keys_are_the_wire_names_in_field_order() -> None:
    assert json_object(Thing) == (
        f"json_build_object('thingId', t.id, 'madeAt', {iso('t.made_at')}, "
        "'owner', json_build_object('ownerId', o.id))"
    )


def test_an_override_replaces_one_expression() -> None:
    assert json_object(Thing, owner="null").endswith("'owner', null)")


def test_a_field_without_an_expression_is_refused() -> None:
    with pytest.raises(TypeError, match=r"Unmapped\.name declares no SQL expression"):
        json_object(Unmapped)
