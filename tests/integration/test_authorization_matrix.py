"""Every route of the app, called as anonymous, LEARNER, CREATOR and ADMIN, against the permission
table of the contract. A route missing from EXPECTED fails the suite: a new route must be added
here with who may call it, and then it is checked."""

from __future__ import annotations

import re
import uuid

import httpx
import pytest
from litestar import Litestar

from lms.domain.auth.tokens import issue_profile_token
from lms.settings import Settings
from tests.conftest import TestUser

PUBLIC = "anyone"
PROFILE_TOKEN = "profile token only"  # finishing sign-up: the access token does not do
PROFILE_OR_ACCESS = "profile or access token"
ANY_ROLE = "LEARNER"  # any signed-in user
SIGNED_URL = "signed URL"  # authorized by the URL's signature, whoever calls: unsigned is 403
CREATOR = "CREATOR"
ADMIN = "ADMIN"

RANK = {"LEARNER": 1, "CREATOR": 2, "ADMIN": 3}

EXPECTED: dict[tuple[str, str], str] = {
    # operations and docs
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/readyz"): PUBLIC,
    ("GET", "/metrics"): PUBLIC,
    ("GET", "/schema"): PUBLIC,
    ("GET", "/schema/openapi.json"): PUBLIC,
    ("GET", "/schema/oauth2-redirect.html"): PUBLIC,
    ("GET", "/schema/{path:str}"): PUBLIC,
    ("GET", "/schema/assets/{file_path:path}"): PUBLIC,
    ("HEAD", "/schema/assets/{file_path:path}"): PUBLIC,
    # authentication
    ("POST", "/auth/register"): PUBLIC,
    ("POST", "/user-auth/register"): PUBLIC,
    ("POST", "/auth/verify-email"): PUBLIC,
    ("POST", "/user-auth/verify-email-otp"): PUBLIC,
    ("POST", "/auth/verify-phone"): PROFILE_OR_ACCESS,
    ("POST", "/auth/complete-profile"): PROFILE_TOKEN,
    ("POST", "/user-auth/complete-profile"): PROFILE_TOKEN,
    ("POST", "/auth/login"): PUBLIC,
    ("POST", "/user-auth/login"): PUBLIC,
    ("GET", "/auth/me"): ANY_ROLE,
    ("POST", "/auth/refresh"): PUBLIC,
    ("POST", "/auth/logout"): ANY_ROLE,
    ("POST", "/auth/resend-otp"): PUBLIC,
    ("POST", "/user-auth/forgot-password"): PUBLIC,
    ("POST", "/user-auth/reset-password"): PUBLIC,
    # creator system
    ("POST", "/creator/apply"): ANY_ROLE,  # LEARNER's right; CREATOR/ADMIN get 409 from the service
    ("GET", "/creator/status"): ANY_ROLE,
    # courses and lessons (ownership on top is checked by the services: 404/403 tests elsewhere)
    ("GET", "/courses"): PUBLIC,
    ("GET", "/courses/{course_id:uuid}"): PUBLIC,
    ("POST", "/courses"): CREATOR,
    ("PATCH", "/courses/{course_id:uuid}"): CREATOR,
    ("POST", "/courses/{course_id:uuid}/submit"): CREATOR,
    ("DELETE", "/courses/{course_id:uuid}"): CREATOR,
    ("GET", "/courses/{course_id:uuid}/lessons"): PUBLIC,
    ("POST", "/courses/{course_id:uuid}/lessons"): CREATOR,
    ("PUT", "/courses/{course_id:uuid}/lessons/order"): CREATOR,
    ("GET", "/lessons/{lesson_id:uuid}"): PUBLIC,
    ("PATCH", "/lessons/{lesson_id:uuid}"): CREATOR,
    ("DELETE", "/lessons/{lesson_id:uuid}"): CREATOR,
    ("POST", "/lessons/{lesson_id:uuid}/transcribe"): CREATOR,
    ("POST", "/courses/{course_id:uuid}/lessons/upload"): CREATOR,
    ("POST", "/courses/{course_id:uuid}/lessons/upload-signature"): CREATOR,
    ("POST", "/webhooks/cloudinary"): PUBLIC,  # authorized by Cloudinary's signature
    ("GET", "/media/{key:path}"): SIGNED_URL,
    ("HEAD", "/media/{key:path}"): SIGNED_URL,
    # transcripts: enrolled, owner or admin, decided by the service (random ids: 404 for everyone)
    ("GET", "/lessons/{lesson_id:uuid}/transcript"): ANY_ROLE,
    ("GET", "/lessons/{lesson_id:uuid}/captions.vtt"): ANY_ROLE,
    ("GET", "/lessons/{lesson_id:uuid}/captions.srt"): ANY_ROLE,
    ("GET", "/courses/{course_id:uuid}/search"): ANY_ROLE,
    # admin
    ("GET", "/admin/courses"): ADMIN,
    ("POST", "/admin/courses/{course_id:uuid}/publish"): ADMIN,
    ("POST", "/admin/courses/{course_id:uuid}/reject"): ADMIN,
    ("GET", "/admin/applications"): ADMIN,
    ("POST", "/admin/applications/{application_id:uuid}/approve"): ADMIN,
    ("POST", "/admin/applications/{application_id:uuid}/reject"): ADMIN,
    ("GET", "/admin/users"): ADMIN,
    ("PATCH", "/admin/users/{user_id:uuid}"): ADMIN,
    ("GET", "/admin/settings"): ADMIN,
    ("PATCH", "/admin/settings"): ADMIN,
    ("GET", "/admin/audit"): ADMIN,
}


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
    path = path.replace("{file_path:path}", "swagger-ui.css")
    path = path.replace("{key:path}", f"lessons/{uuid.uuid4()}/v1.mp4")
    return path.replace("{path:str}", "swagger")


def test_every_route_is_in_the_table(app: Litestar) -> None:
    routes = app_routes(app)
    missing = sorted(routes - EXPECTED.keys())
    stale = sorted(EXPECTED.keys() - routes)
    assert not missing, f"routes without an entry in EXPECTED (who may call them?): {missing}"
    assert not stale, f"EXPECTED names routes the app does not have: {stale}"


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
