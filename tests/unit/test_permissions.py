"""The RBAC matrix (lms.domain.auth.permissions): LEARNER < CREATOR < ADMIN, each holding all
below."""

from __future__ import annotations

import inspect
from types import SimpleNamespace
from typing import Any, cast

import pytest
from litestar import Request

from lms.api.security import requires
from lms.db.tables import Role
from lms.domain.auth.permissions import MINIMUM_ROLE, ROLE_RANK, Permission, has_permission
from lms.domain.errors import Forbidden, Unauthenticated

ROLES_LOW_TO_HIGH = [Role.LEARNER, Role.CREATOR, Role.ADMIN]


def test_every_permission_names_its_least_role() -> None:
    assert set(MINIMUM_ROLE) == set(Permission)
    assert all(isinstance(role, Role) for role in MINIMUM_ROLE.values())


def test_role_ranks_are_ordered_learner_creator_admin() -> None:
    assert set(ROLE_RANK) == set(Role)
    assert ROLE_RANK[Role.LEARNER] < ROLE_RANK[Role.CREATOR] < ROLE_RANK[Role.ADMIN]


@pytest.mark.parametrize("permission", list(Permission))
def test_holding_a_permission_is_monotonic_in_the_role(permission: Permission) -> None:
    held = [has_permission(role.value, permission) for role in ROLES_LOW_TO_HIGH]
    # Once a role holds it, every higher role does: the list is some False then all True.
    assert held == sorted(held)
    assert held[-1] is True
    least = ROLES_LOW_TO_HIGH[held.index(True)]
    assert least == MINIMUM_ROLE[permission]


def test_admin_holds_everything() -> None:
    assert all(has_permission("ADMIN", p) for p in Permission)


def test_a_learner_holds_exactly_the_learner_permissions() -> None:
    held = {p for p in Permission if has_permission("LEARNER", p)}
    assert held == {p for p in Permission if p.value.startswith("L")}
    assert held == {
        Permission.ENROLL,
        Permission.TRACK_PROGRESS,
        Permission.DOWNLOAD_CERTIFICATES,
        Permission.APPLY_FOR_CREATOR,
    }


def test_a_creator_holds_learner_and_creator_permissions_only() -> None:
    held = {p for p in Permission if has_permission("CREATOR", p)}
    assert held == {p for p in Permission if p.value[0] in "LC"}
    assert not any(has_permission("CREATOR", p) for p in Permission if p.value.startswith("A"))


def test_the_matrix_matches_the_design_codes() -> None:
    prefix = {Role.LEARNER: "L", Role.CREATOR: "C", Role.ADMIN: "A"}
    for permission, role in MINIMUM_ROLE.items():
        assert permission.value.startswith(prefix[role]), permission


def test_an_unknown_role_is_not_silently_granted() -> None:
    with pytest.raises(ValueError, match="SUPERUSER"):
        has_permission("SUPERUSER", Permission.ENROLL)


def _connection(user: object | None) -> Request[Any, Any, Any]:
    scope: dict[str, Any] = {
        "type": "http",
        "method": "GET",
        "path": "/",
        "query_string": b"",
        "headers": [],
        "client": ("127.0.0.1", 1),
    }
    if user is not None:
        scope["user"] = user
    return Request(cast(Any, scope))


async def test_the_guard_admits_the_role_and_those_above() -> None:
    guard = requires(Permission.CREATE_COURSES)
    assert guard.__name__ == "requires_create_courses"
    # A coroutine function: Litestar would run a plain one in a worker thread on every request.
    assert inspect.iscoroutinefunction(guard)
    for role in ("CREATOR", "ADMIN"):
        await guard(_connection(SimpleNamespace(role=role)), cast(Any, None))  # type: ignore[misc]
    with pytest.raises(Forbidden) as denied:
        await guard(_connection(SimpleNamespace(role="LEARNER")), cast(Any, None))  # type: ignore[misc]
    assert denied.value.status_code == 403
    with pytest.raises(Unauthenticated) as anonymous:
        await guard(_connection(None), cast(Any, None))  # type: ignore[misc]
    assert anonymous.value.status_code == 401
