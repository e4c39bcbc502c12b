"""Every route of the app, called as anonymous, LEARNER, CREATOR and ADMIN, against who the API
contract says may call it. The routes come from the contract itself (tests/support/contract.py):
an endpoint of the contract without a route fails the suite, and so does a route that is neither
in the contract nor in EXTRA below (say who may call it)."""

from __future__ import annotations

import re
import uuid

import httpx
import pytest
from litestar import Litestar

from lms.domain.auth.tokens import issue_profile_token
from lms.settings import Settings
from tests.conftest import TestUser
from tests.support import contract
from tests.support.contract import (
    ADMIN,
    ANY_ROLE,
    PROFILE_OR_ACCESS,
    PROFILE_TOKEN,
    PUBLIC,
    SHARED_CONTRACT,
    SHIPPED_CONTRACT,
    path_shape,
)

SIGNED_URL = "signed URL"  # authorized by the URL's signature, whoever calls: unsigned is 403
RANK = {"LEARNER": 1, "CREATOR": 2, "ADMIN": 3}

# Sections of the contract whose issues are still open: their endpoints are not built yet. Each
# is listed by issue; test_pending_endpoints_are_still_unbuilt fails as soon as one gets a route,
# so that it is taken off this list and checked like every other endpoint.
PENDING: dict[tuple[str, str], str] = {}
ALL_CONTRACT = {(e.method, e.path): e.who for e in contract.endpoints()}
CONTRACT = {key: who for key, who in ALL_CONTRACT.items() if key not in PENDING}
# Routes the contract does not list: the docs' assets, signed media, and captions.srt (which the
# contract names only beside captions.vtt).
EXTRA: dict[tuple[str, str], str] = {
    ("GET", "/schema/oauth2-redirect.html"): PUBLIC,
    ("GET", "/schema/{path:str}"): PUBLIC,
    ("GET", "/schema/assets/{file_path:path}"): PUBLIC,
    ("HEAD", "/schema/assets/{file_path:path}"): PUBLIC,
    ("GET", "/media/{key:path}"): SIGNED_URL,
    ("HEAD", "/media/{key:path}"): SIGNED_URL,
    ("GET", "/lessons/{lesson_id:uuid}/captions.srt"): ANY_ROLE,
}
EXPECTED = {**CONTRACT, **EXTRA}


def app_routes(app: Litestar) -> set[tuple[str, str]]:
    found = set()
    for route in app.routes:
        for handler in route.route_handlers:  # type: ignore[attr-defined]
            for method in handler.http_methods:
                if method != "OPTIONS":  # CORS preflight, answered for every path
                    found.add((method, route.path))
    return found


def concrete(path: str) -> str:
    path = re.sub(r"\{[a-z_]+:uuid\}", str(uuid.uuid4()), path)
    # The contract's parameters (/courses/:id); a serial is 48 hex digits, the rest are UUIDs.
    path = re.sub(
        r"/:\w+", lambda m: "/" + ("0" * 48 if m.group() == "/:hash" else str(uuid.uuid4())), path
    )
    path = path.replace("{file_path:path}", "swagger-ui.css")
    path = path.replace("{key:path}", f"lessons/{uuid.uuid4()}/v1.mp4")
    return path.replace("{path:str}", "swagger")


def test_the_contract_is_read_whole() -> None:
    """The parser found every section's endpoints (a parsing slip must not empty the matrix)."""
    assert len(CONTRACT) >= 60
    for key in [
        ("POST", "/auth/register"),
        ("POST", "/user-auth/reset-password"),
        ("GET", "/courses/:id"),
        ("POST", "/lessons/:id/progress"),
        ("GET", "/admin/settings"),
        ("PATCH", "/admin/settings"),
        ("GET", "/.well-known/jwks.json"),
        ("GET", "/metrics"),
    ]:
        assert key in CONTRACT, key
    assert CONTRACT[("POST", "/user-auth/complete-profile")] == PROFILE_TOKEN
    assert CONTRACT[("POST", "/admin/certificates/:id/revoke")] == ADMIN


def test_the_shipped_contract_is_the_shared_one() -> None:
    if not SHARED_CONTRACT.is_file():
        pytest.skip(f"{SHARED_CONTRACT} is not beside this checkout")
    assert SHIPPED_CONTRACT.read_text() == SHARED_CONTRACT.read_text(), (
        f"docs/api-contract.md is out of date: copy {SHARED_CONTRACT} over it"
    )


def test_pending_endpoints_are_still_unbuilt(app: Litestar) -> None:
    """PENDING names endpoints of the contract (not typos) that have no route yet."""
    assert set(PENDING) <= set(ALL_CONTRACT), sorted(set(PENDING) - set(ALL_CONTRACT))
    routes = {(method, path_shape(path)) for method, path in app_routes(app)}
    built = sorted(
        f"{m} {p} ({why})" for (m, p), why in PENDING.items() if (m, path_shape(p)) in routes
    )
    assert not built, f"built now: take them off PENDING so the matrix checks them: {built}"


def test_every_contract_endpoint_has_a_route(app: Litestar) -> None:
    routes = {(method, path_shape(path)) for method, path in app_routes(app)}
    missing = sorted(f"{m} {p}" for m, p in CONTRACT if (m, path_shape(p)) not in routes)
    assert not missing, f"endpoints of the contract without a route: {missing}"


def test_every_route_is_in_the_contract_or_accounted_for(app: Litestar) -> None:
    known = {(m, path_shape(p)) for m, p in CONTRACT} | set(EXTRA)
    unknown = sorted(
        f"{m} {p}"
        for m, p in app_routes(app)
        if (m, path_shape(p)) not in known and (m, p) not in known
    )
    assert not unknown, (
        f"routes neither in the contract nor in EXTRA (who may call them?): {unknown}"
    )
    stale = sorted(f"{m} {p}" for m, p in EXTRA if (m, p) not in app_routes(app))
    assert not stale, f"EXTRA names routes the app does not have: {stale}"


def allowed(status: int) -> bool:
    return status not in (401, 403) and status < 500


@pytest.mark.parametrize(("method", "path"), sorted(EXPECTED))
async def test_route_answers_each_caller_as_the_table_says(
    api: httpx.AsyncClient,
    settings: Settings,
    learner: TestUser,
    creator: TestUser,
    admin: TestUser,
    method: str,
    path: str,
) -> None:
    rule = EXPECTED[(method, path)]
    url = concrete(path)
    body = {"json": {}} if method in ("POST", "PUT", "PATCH") else {}

    async def call(headers: dict[str, str] | None = None) -> int:
        response = await api.request(method, url, headers=headers or {}, **body)  # type: ignore[arg-type]
        assert response.status_code < 500, (method, url, response.status_code, response.text)
        return response.status_code

    anonymous = await call()
    users = {"LEARNER": learner, "CREATOR": creator, "ADMIN": admin}
    if rule == SIGNED_URL:
        assert anonymous == 403
        for user in users.values():
            assert await call(user.headers) == 403, (method, url, user.role)
        return
    if rule == PUBLIC:
        assert allowed(anonymous), (method, url, anonymous)
        for user in users.values():
            assert allowed(await call(user.headers)), (method, url, user.role)
        return
    assert anonymous == 401, (method, url, anonymous)
    if rule == PROFILE_TOKEN:
        for user in users.values():
            assert await call(user.headers) == 401, (method, url, user.role)
        profile = issue_profile_token(settings, user_id=learner.id, token_version=0)
        assert allowed(await call({"Authorization": f"Bearer {profile}"}))
        return
    if rule == PROFILE_OR_ACCESS:
        profile = issue_profile_token(settings, user_id=learner.id, token_version=0)
        assert allowed(await call({"Authorization": f"Bearer {profile}"}))
        rule = ANY_ROLE
    for role, user in users.items():
        status = await call(user.headers)
        if RANK[role] >= RANK[rule]:
            assert allowed(status), (method, url, role, status)
        else:
            assert status == 403, (method, url, role, status)
