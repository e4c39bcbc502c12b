"""The served OpenAPI document tells the truth in a shape generators can use: one schema for every
error answer, no duplicated alternatives, stable names and order, optional tokens declared."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

ERROR_REF = "#/components/schemas/ErrorBody"
# An answer on an error status with a body of its own (verification's {valid: false}).
OWN_ERROR_BODIES = {
    ("/certificates/verify/{serial_hash}", "get", "404"),
    # The contract's 402 adds checkoutPath beside status_code and detail.
    ("/courses/{course_id}/enroll", "post", "402"),
}


@pytest.fixture
async def document(api: httpx.AsyncClient) -> dict[str, Any]:
    response = await api.get("/schema/openapi.json")
    assert response.status_code == 200
    return dict(response.json())


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in ("get", "post", "put", "patch", "delete", "head")
    ]


async def test_every_error_answer_is_the_one_error_schema(document: dict[str, Any]) -> None:
    wrong = []
    for path, method, operation in operations(document):
        for status, response in operation.get("responses", {}).items():
            if not status.startswith(("4", "5")) or (path, method, status) in OWN_ERROR_BODIES:
                continue
            schema = response.get("content", {}).get("application/json", {}).get("schema", {})
            if schema.get("$ref") != ERROR_REF:
                wrong.append(f"{method.upper()} {path} {status}: {schema}")
    assert not wrong, "\n".join(wrong[:20])
    error = document["components"]["schemas"]["ErrorBody"]
    assert set(error["required"]) == {"status_code", "detail"}
    extra = error["properties"]["extra"]
    arrays = [s for s in extra.get("anyOf", []) if s.get("type") == "array"]
    assert all("items" in s for s in arrays)


async def test_no_content_answers_document_no_body(document: dict[str, Any]) -> None:
    """A 204 has no body: a documented one (even `null`) has generated clients parse the empty
    answer as JSON."""
    with_body = [
        f"{method.upper()} {path}"
        for path, method, operation in operations(document)
        if "content" in operation.get("responses", {}).get("204", {})
    ]
    assert not with_body, with_body


async def test_component_names_are_plain(document: dict[str, Any]) -> None:
    odd = [name for name in document["components"]["schemas"] if not name.isidentifier()]
    assert not odd, odd


async def test_paths_come_in_a_stable_order(document: dict[str, Any]) -> None:
    assert list(document["paths"]) == sorted(document["paths"])


async def test_public_views_that_take_a_token_say_so(document: dict[str, Any]) -> None:
    for path in (
        "/courses",
        "/courses/{course_id}",
        "/courses/{course_id}/lessons",
        "/lessons/{lesson_id}",
    ):
        security = document["paths"][path]["get"].get("security")
        assert security == [{}, {"BearerToken": []}], (path, security)


async def test_pages_always_carry_next_cursor(document: dict[str, Any]) -> None:
    pages = [
        schema
        for name, schema in document["components"]["schemas"].items()
        if name.endswith("Page")
    ]
    assert pages
    assert all(set(s["required"]) == {"items", "nextCursor"} for s in pages), pages


async def test_every_page_names_its_item_schema(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    pages = {name: schema for name, schema in schemas.items() if name.endswith("Page")}
    items = {name: page["properties"]["items"].get("items", {}) for name, page in pages.items()}
    vague = {name: item for name, item in items.items() if "$ref" not in item}
    assert not vague, vague
    names = {name: item["$ref"].rsplit("/", 1)[-1] for name, item in items.items()}
    assert all(page == f"{item}Page" for page, item in names.items()), names


async def test_bulk_enrollment_states_its_body_limit_and_address_rule(
    document: dict[str, Any],
) -> None:
    operation = document["paths"]["/admin/courses/{course_id}/enrollments"]["post"]
    assert "413" in operation["responses"]
    assert "bytes (413 past that)" in operation["description"]
    emails = operation["requestBody"]["content"]["application/json"]["schema"]
    assert set(operation["requestBody"]["content"]) == {"application/json", "text/csv"}
    assert emails["properties"]["emails"]["maxItems"] == 50_000
    assert "\\u202e" in emails["properties"]["emails"]["items"]["pattern"]


async def test_every_answer_that_says_when_to_retry_documents_retry_after(
    document: dict[str, Any],
) -> None:
    """429 and 503 answers always carry Retry-After (lms.api.errors); the heartbeat's 429 is the
    one a player meets in normal use (heartbeats of one enrollment less than 0.5 s apart)."""
    heartbeat = document["paths"]["/lessons/{lesson_id}/progress"]["post"]["responses"]
    assert "429" in heartbeat, sorted(heartbeat)
    missing = [
        f"{method.upper()} {path} {status}"
        for path, method, operation in operations(document)
        for status, response in operation.get("responses", {}).items()
        if status in ("429", "503") and "Retry-After" not in response.get("headers", {})
    ]
    assert not missing, missing[:20]
    header = heartbeat["429"]["headers"]["Retry-After"]
    assert header["required"] is True and header["schema"]["type"] == "integer", header
    assert "name" not in header and "in" not in header, header  # a Header Object, not a Parameter
