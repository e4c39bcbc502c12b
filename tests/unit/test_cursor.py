"""Signed keyset cursors (lms.domain.paging) and the admin search's prefix tsquery builder."""

from __future__ import annotations

import base64
import re
import uuid
from datetime import UTC, datetime

import msgspec
import pytest

from lms.domain.admin.services import prefix_tsquery
from lms.domain.errors import Invalid
from lms.domain.paging import decode_cursor, decode_time_id_cursor, encode_cursor

SECRET = "cursor-test-secret-" + "k" * 32
AT = datetime(2026, 11, 25, 12, 0, 0, 123456, tzinfo=UTC)
ROW_ID = uuid.UUID("6f1c2d1e-9a57-4a8e-8f1e-2b7c1b0d4e55")


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def refused(cursor: str, *, secret: str = SECRET, scope: str = "users") -> None:
    with pytest.raises(Invalid) as caught:
        decode_cursor(secret, scope, cursor)
    assert caught.value.status_code == 400
    with pytest.raises(Invalid):
        decode_time_id_cursor(secret, scope, cursor)


def test_round_trip_of_a_time_id_position() -> None:
    cursor = encode_cursor(SECRET, "users", AT, ROW_ID)
    assert decode_time_id_cursor(SECRET, "users", cursor) == (AT, ROW_ID)
    assert isinstance(cursor, str) and "=" not in cursor and str(ROW_ID) not in cursor


def test_round_trip_of_plain_values() -> None:
    cursor = encode_cursor(SECRET, "things", 7, "seven", 7.5, None, True)
    assert decode_cursor(SECRET, "things", cursor) == [7, "seven", 7.5, None, True]


def test_the_same_values_give_the_same_cursor() -> None:
    assert encode_cursor(SECRET, "users", AT, ROW_ID) == encode_cursor(SECRET, "users", AT, ROW_ID)


def test_a_tampered_payload_is_refused() -> None:
    cursor = encode_cursor(SECRET, "users", AT, ROW_ID)
    body, signature = cursor.split(".")
    values = msgspec.json.decode(unb64(body))
    values[2] = str(uuid.uuid4())  # someone else's position, same signature
    forged = f"{b64(msgspec.json.encode(values))}.{signature}"
    refused(forged)


def test_a_tampered_signature_is_refused() -> None:
    cursor = encode_cursor(SECRET, "users", AT, ROW_ID)
    body, signature = cursor.split(".")
    raw = bytearray(unb64(signature))
    raw[0] ^= 0x01
    refused(f"{body}.{b64(bytes(raw))}")
    refused(f"{body}.")
    refused(f"{body}.{signature}{signature}")


def test_a_cursor_for_another_list_is_refused() -> None:
    cursor = encode_cursor(SECRET, "applications", AT, ROW_ID)
    refused(cursor, scope="users")
    assert decode_time_id_cursor(SECRET, "applications", cursor) == (AT, ROW_ID)


def test_a_cursor_signed_with_another_secret_is_refused() -> None:
    cursor = encode_cursor("another-secret-" + "z" * 32, "users", AT, ROW_ID)
    refused(cursor)


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        ".",
        "garbage",
        "garbage.garbage",
        "not base64!.@@@",
        "a.b",
        "é.é",
        "%%%.%%%",
        "x" * 500,
        "eyJ.sig.extra",
    ],
)
def test_garbage_is_refused(cursor: str) -> None:
    refused(cursor)


def test_a_signed_cursor_of_the_wrong_shape_is_refused_as_a_time_id_position() -> None:
    for values in ((AT,), (AT, ROW_ID, 3), ("yesterday", ROW_ID), (AT, "not-a-uuid")):
        cursor = encode_cursor(SECRET, "users", *values)
        with pytest.raises(Invalid):
            decode_time_id_cursor(SECRET, "users", cursor)


def test_prefix_tsquery_makes_every_word_a_prefix() -> None:
    assert prefix_tsquery("Ada Lov") == "ada:* & lov:*"
    assert prefix_tsquery("  ADA  ") == "ada:*"
    assert prefix_tsquery("ada@example.test") == "ada:* & example:* & test:*"


@pytest.mark.parametrize("text", [None, "", "   ", "!!!", "... --- +++", "@", "'\"();<>|&!:*"])
def test_prefix_tsquery_of_nothing_searchable_is_none(text: str | None) -> None:
    assert prefix_tsquery(text) is None


@pytest.mark.parametrize(
    "text",
    [
        "a' | b:* & !c <-> (d)",
        "x'); DROP TABLE users; --",
        "foo:A & bar:*B | !baz",
        "\\x00 \x00 nul",
        "ünïcødé wörds ✓ 😀",
        "a\tb\nc\rd",
        "<script>alert(1)</script>",
        "one two three four five six seven eight nine ten",
    ],
)
def test_prefix_tsquery_never_passes_operators_through(text: str) -> None:
    query = prefix_tsquery(text)
    assert query is not None
    assert re.fullmatch(r"[\w:*& ]+", query), query
    terms = query.split(" & ")
    assert len(terms) <= 8
    assert all(re.fullmatch(r"\w+:\*", term) for term in terms), terms
