"""Shared steps for the course tests: make courses and lessons through the API."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import TestUser


async def new_course(api: httpx.AsyncClient, owner: TestUser, **fields: Any) -> dict[str, Any]:
    body = {
        "title": "Compilers from scratch",
        "description": "Parsing, types and code generation",
        # Free: enrolling needs no payment (issue 21); the payment tests price their courses.
        "price": "0.00",
    }
    response = await api.post("/courses", json=body | fields, headers=owner.headers)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def new_lesson(
    api: httpx.AsyncClient, owner: TestUser, course_id: str, **fields: Any
) -> dict[str, Any]:
    response = await api.post(
        f"/courses/{course_id}/lessons", json={"title": "Lesson"} | fields, headers=owner.headers
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def published_course(
    api: httpx.AsyncClient, owner: TestUser, admin: TestUser, lessons: int = 1, **fields: Any
) -> dict[str, Any]:
    course = await new_course(api, owner, **fields)
    for i in range(lessons):
        await new_lesson(api, owner, course["id"], title=f"Lesson {i + 1}")
    assert (
        await api.post(f"/courses/{course['id']}/submit", headers=owner.headers)
    ).status_code == 200
    published = await api.post(f"/admin/courses/{course['id']}/publish", headers=admin.headers)
    assert published.status_code == 200, published.text
    return dict(published.json())
