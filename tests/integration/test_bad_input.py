"""Bad input of every class, to many endpoints, anonymous and signed in: a 4xx with the usual
error body, and nothing written. Control characters (NUL above all) and lone surrogates in
bodies, query strings, paths and headers; bodies too deep or too large; numbers past what a
column or a conversion holds; values of the wrong JSON type; malformed multipart forms and
headers. The edge (lms.api.input_guard, lms.api.request, lms.api.uploads) refuses them; the
database never sees them."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest
from litestar import Litestar

from tests.conftest import TestUser
from tests.integration.courses.helpers import new_course, new_lesson

# Bookkeeping every request to an auth route may touch (the per-IP counters), not data.
NOT_DATA = {"rate_limit_counters"}


async def fingerprint(db: asyncpg.Pool) -> dict[str, str]:
    """A digest of every table's rows."""
    names = [
        row["tablename"]
        for row in await db.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
        )
        if row["tablename"] not in NOT_DATA
    ]
    digests = " UNION ALL ".join(
        f"SELECT '{name}' AS name, md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), ''))"
        f' AS digest FROM "{name}" t'
        for name in names
    )
    return {row["name"]: row["digest"] for row in await db.fetch(digests)}


@dataclass
class World:
    """What the requests aim at: a DRAFT course with a lesson, and the people."""

    api: httpx.AsyncClient
    db: asyncpg.Pool
    users: dict[str, TestUser]
    course: str
    lesson: str

    def path(self, template: str) -> str:
        return template.format(
            course=self.course,
            lesson=self.lesson,
            learner=self.users["learner"].id,
            some=uuid.uuid4(),
        )

    def headers(self, who: str | None) -> dict[str, str]:
        return self.users[who].headers if who else {}

    async def refused(
        self, status: int, method: str, path: str, who: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        """Send the request; assert the status, the error body and that nothing was written."""
        before = await fingerprint(self.db)
        headers = {**self.headers(who), **kwargs.pop("headers", {})}
        if kwargs.get("json") is not None:
            # Escaped as ASCII, as a client may: a lone surrogate travels as \ud800.
            kwargs["content"] = json.dumps(kwargs.pop("json")).encode()
            headers.setdefault("content-type", "application/json")
        response = await self.api.request(method, self.path(path), headers=headers, **kwargs)
        assert response.status_code == status, response.text[:500]
        body = response.json()
        assert isinstance(body, dict) and body["status_code"] == status, body
        assert isinstance(body["detail"], str) and body["detail"], body
        assert await fingerprint(self.db) == before, "a refused request changed the database"
        return response


@pytest.fixture
async def world(
    api: httpx.AsyncClient,
    db: asyncpg.Pool,
    learner: TestUser,
    creator: TestUser,
    admin: TestUser,
) -> World:
    course = await new_course(api, creator)
    lesson = await new_lesson(api, creator, course["id"])
    users = {"learner": learner, "creator": creator, "admin": admin}
    return World(api, db, users, course["id"], lesson["id"])


# --- query strings: no control character, valid UTF-8 --------------------------------------

QUERY_TARGETS = [
    ("/courses", "q", None),
    ("/courses", "q", "learner"),
    ("/courses", "cursor", None),
    ("/courses", "creatorId", "creator"),
    ("/courses", "limit", None),
    ("/admin/users", "q", "admin"),
    ("/admin/users", "role", None),
    ("/admin/audit", "action", "admin"),
    ("/admin/applications", "status", "admin"),
    ("/admin/courses", "cursor", "admin"),
    ("/courses/{course}/search", "q", "creator"),
    ("/media/lessons/x/v1.mp4", "exp", None),
]
# Percent-encoded as they would arrive: NUL, other C0, DEL, C1 (NEL), tab and line feed (not in
# a parameter), a byte that is not UTF-8, a UTF-8-encoded lone surrogate, an overlong NUL.
QUERY_VALUES = ["a%00b", "%01", "%7F", "%C2%85", "a%09b", "a%0Ab", "%FF", "%ED%A0%80", "%C0%80"]


@pytest.mark.parametrize("value", QUERY_VALUES)
@pytest.mark.parametrize(("path", "name", "who"), QUERY_TARGETS)
async def test_query_parameters_hold_no_control_character(
    world: World, path: str, name: str, who: str | None, value: str
) -> None:
    await world.refused(400, "GET", f"{path}?{name}={value}", who)


async def test_a_control_character_in_a_parameter_name_is_refused(world: World) -> None:
    await world.refused(400, "GET", "/courses?q%00=x")


async def test_the_reported_catalog_search_with_nul(world: World) -> None:
    response = await world.refused(400, "GET", "/courses?q=%00")
    assert "U+0000" in response.json()["detail"]


async def test_a_plain_search_still_works(world: World) -> None:
    response = await world.api.get("/courses", params={"q": "compilers & types, 'quoted'"})
    assert response.status_code == 200, response.text


# --- text in JSON bodies --------------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    """A JSON body whose `field` is good as given; tests spoil it."""

    method: str
    path: str
    who: str | None
    body: dict[str, Any]
    field: str

    def with_value(self, value: Any) -> dict[str, Any]:
        return {**self.body, self.field: value}

    def spoiled(self, bad: str) -> dict[str, Any]:
        good = self.body[self.field]
        if isinstance(good, list):
            return self.with_value([f"{good[0][:1]}{bad}{good[0][1:]}"])
        return self.with_value(f"{good[:1]}{bad}{good[1:]}")

    def __str__(self) -> str:
        return f"{self.method} {self.path} {self.field}"


PASSWORD = "plum-orbit-cascade-91"
TEXT_FIELDS = [
    Field("POST", "/auth/register", None, {"email": "ada@example.test"}, "email"),
    Field(
        "POST",
        "/auth/register",
        None,
        {"email": "ada@example.test", "phoneNumber": "+14155550123"},
        "phoneNumber",
    ),
    Field("POST", "/user-auth/register", None, {"email": "ada@example.test"}, "email"),
    Field("POST", "/auth/login", None, {"username": "ada_l", "password": PASSWORD}, "username"),
    Field(
        "POST", "/auth/login", None, {"email": "ada@example.test", "password": PASSWORD}, "email"
    ),
    Field(
        "POST", "/auth/login", None, {"email": "ada@example.test", "password": PASSWORD}, "password"
    ),
    Field(
        "POST", "/auth/verify-email", None, {"email": "a@example.test", "otp": "123456"}, "email"
    ),
    Field("POST", "/auth/resend-otp", None, {"email": "ada@example.test"}, "email"),
    Field("POST", "/user-auth/forgot-password", None, {"email": "ada@example.test"}, "email"),
    Field(
        "POST",
        "/user-auth/reset-password",
        None,
        {"email": "ada@example.test", "otp": "123456", "newPassword": PASSWORD},
        "newPassword",
    ),
    Field("POST", "/auth/refresh", None, {"refreshToken": "abcdefghijkl"}, "refreshToken"),
    Field("POST", "/courses", "creator", {"title": "Types", "price": "1"}, "title"),
    Field(
        "POST",
        "/courses",
        "creator",
        {"title": "Types", "price": "1", "description": "All of them"},
        "description",
    ),
    Field(
        "POST",
        "/courses",
        "admin",
        {"title": "Types", "price": "1", "thumbnailUrl": "https://img.example.test/a.png"},
        "thumbnailUrl",
    ),
    Field("PATCH", "/courses/{course}", "creator", {"title": "Renamed"}, "title"),
    Field("POST", "/courses/{course}/lessons", "creator", {"title": "Lesson two"}, "title"),
    Field(
        "POST",
        "/courses/{course}/lessons",
        "creator",
        {"title": "Lesson two", "videoUrl": "https://videos.example.test/2.mp4"},
        "videoUrl",
    ),
    Field("PATCH", "/lessons/{lesson}", "creator", {"description": "More words"}, "description"),
    Field(
        "POST", "/courses/{course}/lessons/upload-signature", "creator", {"title": "Big"}, "title"
    ),
    Field(
        "POST",
        "/creator/apply",
        "learner",
        {"bio": "I have taught compilers for years.", "experienceYears": 3},
        "bio",
    ),
    Field(
        "POST",
        "/creator/apply",
        "learner",
        {
            "bio": "I have taught compilers for years.",
            "experienceYears": 3,
            "portfolioUrl": "https://ada.example.test",
        },
        "portfolioUrl",
    ),
    Field("POST", "/admin/applications/{some}/approve", "admin", {"notes": "Welcome"}, "notes"),
    Field("POST", "/admin/applications/{some}/reject", "admin", {"notes": "Not yet"}, "notes"),
    Field("POST", "/admin/courses/{course}/reject", "admin", {"feedback": "Fix it"}, "feedback"),
    Field("POST", "/admin/certificates/{some}/revoke", "admin", {"reason": "Fraud"}, "reason"),
    Field(
        "POST",
        "/admin/courses/{course}/enrollments",
        "admin",
        {"emails": ["ada@example.test"]},
        "emails",
    ),
    Field("PATCH", "/admin/users/{learner}", "admin", {"role": "CREATOR"}, "role"),
]
# NUL, ESC, DEL, a C1 control, and a lone surrogate (json.dumps writes it as \ud800).
BAD_CHARACTERS = ["\x00", "\x1b", "\x7f", "\x9b", "\ud800"]


@pytest.mark.parametrize("bad", BAD_CHARACTERS, ids=lambda c: f"U+{ord(c):04X}")
@pytest.mark.parametrize("target", TEXT_FIELDS, ids=str)
async def test_no_control_character_or_lone_surrogate_in_a_body(
    world: World, target: Field, bad: str
) -> None:
    await world.refused(400, target.method, target.path, target.who, json=target.spoiled(bad))


async def test_the_reported_login_and_register_with_nul(world: World) -> None:
    await world.refused(400, "POST", "/auth/login", json={"username": "a\x00", "password": "x"})
    await world.refused(400, "POST", "/auth/register", json={"email": "a\x00@example.test"})


# Names, addresses and identifiers keep no tab or line break either.
IDENTIFIERS = [t for t in TEXT_FIELDS if t.field in ("email", "username", "phoneNumber", "role")]


@pytest.mark.parametrize("bad", ["\t", "\n", "\r"], ids=["tab", "lf", "cr"])
@pytest.mark.parametrize("target", IDENTIFIERS, ids=str)
async def test_identifiers_hold_no_whitespace_controls(
    world: World, target: Field, bad: str
) -> None:
    await world.refused(400, target.method, target.path, target.who, json=target.spoiled(bad))


# An address holds no bidirectional formatting character either (one that displays as another
# address: U+202E RIGHT-TO-LEFT OVERRIDE and its kin), wherever an address is taken.
ADDRESSES = [t for t in TEXT_FIELDS if t.field in ("email", "emails")]


@pytest.mark.parametrize("bad", ["\u202e", "\u2066", "\u200f", "\u061c"], ids=repr)
@pytest.mark.parametrize("target", ADDRESSES, ids=str)
async def test_addresses_hold_no_bidirectional_formatting(
    world: World, target: Field, bad: str
) -> None:
    await world.refused(400, target.method, target.path, target.who, json=target.spoiled(bad))


async def test_free_text_keeps_tabs_and_line_breaks(world: World) -> None:
    description = "Line one\n\tindented\r\nline three"
    response = await world.api.post(
        "/courses",
        json={"title": "Types", "price": "1", "description": description},
        headers=world.headers("creator"),
    )
    assert response.status_code == 201, response.text
    assert response.json()["description"] == description


async def test_invalid_utf8_in_a_body_is_refused(world: World) -> None:
    for raw in (b'{"email": "a\xff@example.test"}', b'{"email": "a\xed\xa0\x80@example.test"}'):
        await world.refused(
            400, "POST", "/auth/register", content=raw, headers={"content-type": "application/json"}
        )


# --- structure: depth and size -------------------------------------------------------------

DEEP_TARGETS = [
    ("POST", "/auth/register", None),
    ("POST", "/auth/login", None),
    ("POST", "/courses", "creator"),
    ("PATCH", "/admin/settings", "admin"),
    ("POST", "/lessons/{lesson}/progress", "learner"),
    ("POST", "/admin/courses/{course}/enrollments", "admin"),
]
DEEP_BODIES = {
    "arrays-5000": b"[" * 5000 + b"]" * 5000,
    "objects-5000": b'{"a":' * 5000 + b"1" + b"}" * 5000,
    "arrays-40-in-a-field": b'{"title": ' + b"[" * 40 + b"]" * 40 + b', "price": "1"}',
}


@pytest.mark.parametrize("body", DEEP_BODIES.values(), ids=DEEP_BODIES.keys())
@pytest.mark.parametrize(("method", "path", "who"), DEEP_TARGETS)
async def test_deeply_nested_json_is_refused(
    world: World, method: str, path: str, who: str | None, body: bytes
) -> None:
    headers = {"content-type": "application/json"}
    await world.refused(400, method, path, who, content=body, headers=headers)


@pytest.mark.parametrize(
    ("method", "path", "who"),
    [("POST", "/auth/register", None), ("POST", "/admin/courses/{course}/enrollments", "admin")],
)
async def test_an_oversized_body_is_413(world: World, method: str, path: str, who: str) -> None:
    body = json.dumps({"emails": ["x" * 300] * 40_000, "email": "a@example.test"}).encode()
    assert len(body) > 10_000_000
    headers = {"content-type": "application/json"}
    await world.refused(413, method, path, who, content=body, headers=headers)


# --- numbers: ranges a column or a conversion holds ------------------------------------------

NUMBERS = [
    ("POST", "/courses/{course}/lessons", "creator", {"title": "t", "order": 2**31}),
    ("POST", "/courses/{course}/lessons", "creator", {"title": "t", "order": 2**63}),
    ("POST", "/courses/{course}/lessons", "creator", {"title": "t", "order": 2**64}),
    ("POST", "/courses/{course}/lessons", "creator", {"title": "t", "order": 0}),
    ("PATCH", "/lessons/{lesson}", "creator", {"order": 2**40}),
    ("PATCH", "/lessons/{lesson}", "creator", {"order": -(2**63) - 1}),
    ("POST", "/courses", "creator", {"title": "t", "price": 1e300}),
    ("POST", "/courses", "creator", {"title": "t", "price": "9" * 5000}),
    ("POST", "/courses", "creator", {"title": "t", "price": 10**30}),
    ("POST", "/courses", "creator", {"title": "t", "price": "1e3"}),
    ("POST", "/courses", "creator", {"title": "t", "price": -1}),
    ("POST", "/courses", "creator", {"title": "t", "price": "0.001"}),
    ("PATCH", "/courses/{course}", "creator", {"price": "NaN"}),
    ("PATCH", "/admin/settings", "admin", {"maxUploadBytes": 2**70}),
    ("PATCH", "/admin/settings", "admin", {"otpTtlSeconds": 2**64}),
    ("PATCH", "/admin/settings", "admin", {"otpMaxAttempts": 0}),
    ("PATCH", "/admin/settings", "admin", {"completionThresholdPercent": 100.5}),
    ("POST", "/creator/apply", "learner", {"bio": "b" * 30, "experienceYears": 2**63 + 1}),
    ("POST", "/creator/apply", "learner", {"bio": "b" * 30, "experienceYears": 81}),
    ("POST", "/lessons/{lesson}/progress", "learner", {"positionSeconds": 1e20}),
    ("POST", "/lessons/{lesson}/progress", "learner", {"positionSeconds": -1}),
]


@pytest.mark.parametrize(
    ("method", "path", "who", "body"), NUMBERS, ids=[f"{m} {p} {b}"[:70] for m, p, _, b in NUMBERS]
)
async def test_numbers_out_of_range_are_refused(
    world: World, method: str, path: str, who: str, body: dict[str, Any]
) -> None:
    await world.refused(400, method, path, who, json=body)


@pytest.mark.parametrize("raw", [b"1e400", b"-1e400", b"1" + b"0" * 5000])
async def test_numbers_json_cannot_hold_are_refused(world: World, raw: bytes) -> None:
    body = b'{"positionSeconds": ' + raw + b"}"
    headers = {"content-type": "application/json"}
    await world.refused(
        400, "POST", f"/lessons/{world.lesson}/progress", "learner", content=body, headers=headers
    )


@pytest.mark.parametrize(
    "limit", ["0", "101", "-1", "99999999999999999999", "9" * 5000, "1.5", "ten"]
)
async def test_page_limits_out_of_range_are_refused(world: World, limit: str) -> None:
    await world.refused(400, "GET", f"/courses?limit={limit}")
    await world.refused(400, "GET", f"/admin/users?limit={limit}", "admin")


# --- types: a body is decoded strictly, as the document says ---------------------------------

WRONG_TYPES = [
    ("PATCH", "/admin/settings", "admin", {"requireWatchToComplete": 0}),
    ("PATCH", "/admin/settings", "admin", {"registrationOpen": "false"}),
    ("PATCH", "/admin/settings", "admin", {"otpTtlSeconds": "600"}),
    ("PATCH", "/admin/users/{learner}", "admin", {"isActive": "true"}),
    ("POST", "/courses/{course}/lessons", "creator", {"title": "t", "order": "1"}),
    ("POST", "/courses/{course}/lessons", "creator", {"title": "t", "order": 1.5}),
    ("POST", "/courses", "creator", {"title": "t", "price": True}),
    ("POST", "/courses", "creator", {"price": "1", "title": 5}),
    ("POST", "/lessons/{lesson}/progress", "learner", {"positionSeconds": "12"}),
    ("PUT", "/courses/{course}/lessons/order", "creator", {"lessonIds": "all"}),
]


@pytest.mark.parametrize(
    ("method", "path", "who", "body"),
    WRONG_TYPES,
    ids=[f"{m} {p} {b}"[:70] for m, p, _, b in WRONG_TYPES],
)
async def test_values_of_the_wrong_type_are_refused(
    world: World, method: str, path: str, who: str, body: dict[str, Any]
) -> None:
    response = await world.refused(400, method, path, who, json=body)
    field = list(body)[-1]  # the one of the wrong type
    assert [e["key"] for e in response.json().get("extra", [])] == [field], response.text


async def test_a_whole_number_written_with_a_fraction_is_an_integer(world: World) -> None:
    """JSON Schema counts 1.0 (and 1e0) as an integer, so the API does too."""
    for written in (b"1.0", b"1e0"):
        body = b'{"title": "t", "order": ' + written + b"}"
        response = await world.api.post(
            world.path("/courses/{course}/lessons"),
            content=body,
            headers={**world.headers("creator"), "content-type": "application/json"},
        )
        assert response.status_code == 201, response.text
        assert response.json()["order"] == 1


async def test_a_tolerant_body_ignores_what_its_unknown_fields_hold(world: World) -> None:
    """Sign-in tolerates fields it does not know (clients add their own); their content, control
    characters included, is ignored with them, as the document's open object says."""
    learner = world.users["learner"]
    body = {"email": learner.email, "password": learner.password, "device\u0001": "a\u0000b"}
    response = await world.api.post(
        "/auth/login",
        content=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 200, response.text
    body["email"] = "a\u0000" + learner.email  # a field it reads is still checked
    await world.refused(400, "POST", "/auth/login", json=body)


async def test_unknown_fields_are_refused(world: World) -> None:
    await world.refused(400, "PATCH", "/admin/settings", "admin", json={"registrationOpn": False})


# --- multipart uploads ---------------------------------------------------------------------

BOUNDARY = "lms-bad-input-boundary"


def multipart(*parts: tuple[str, bytes, str]) -> bytes:
    """Parts of (headers after Content-Disposition's name, value, extra header lines)."""
    chunks = []
    for disposition, value, extra in parts:
        chunks.append(
            f"--{BOUNDARY}\r\nContent-Disposition: form-data; {disposition}\r\n{extra}\r\n".encode()
            + value
            + b"\r\n"
        )
    return b"".join(chunks) + f"--{BOUNDARY}--\r\n".encode()


def file_part() -> tuple[str, bytes, str]:
    return ('name="file"; filename="a.mp4"', b"\x00\x00\x00\x18ftypmp42", "")


MULTIPART = {
    "no boundary": ("multipart/form-data", multipart(file_part())),
    "garbage": (f"multipart/form-data; boundary={BOUNDARY}", b"garbage, not a form"),
    "unterminated": (
        f"multipart/form-data; boundary={BOUNDARY}",
        multipart(file_part()).removesuffix(f"--{BOUNDARY}--\r\n".encode()),
    ),
    "NUL in the title": (
        f"multipart/form-data; boundary={BOUNDARY}",
        multipart(('name="title"', b"In\x00tro", ""), file_part()),
    ),
    "ESC in the description": (
        f"multipart/form-data; boundary={BOUNDARY}",
        multipart(
            ('name="title"', b"Intro", ""), ('name="description"', b"\x1b[2J", ""), file_part()
        ),
    ),
    "a title too long": (
        f"multipart/form-data; boundary={BOUNDARY}",
        multipart(('name="title"', b"t" * 201, ""), file_part()),
    ),
    "a blank title": (
        f"multipart/form-data; boundary={BOUNDARY}",
        multipart(('name="title"', b"   ", ""), file_part()),
    ),
    "no title": (f"multipart/form-data; boundary={BOUNDARY}", multipart(file_part())),
    "a control character in a field name": (
        f"multipart/form-data; boundary={BOUNDARY}",
        multipart(('name="ti\x01tle"', b"Intro", ""), file_part()),
    ),
    "an unknown charset": (
        f"multipart/form-data; boundary={BOUNDARY}",
        multipart(
            ('name="title"', b"Intro", "Content-Type: text/plain; charset=no-such-charset\r\n"),
            file_part(),
        ),
    ),
    "a title that is not UTF-8": (
        f"multipart/form-data; boundary={BOUNDARY}",
        multipart(('name="title"', b"Intro \xff", ""), file_part()),
    ),
}


@pytest.mark.parametrize(("content_type", "body"), MULTIPART.values(), ids=MULTIPART.keys())
async def test_malformed_uploads_are_400(world: World, content_type: str, body: bytes) -> None:
    await world.refused(
        400,
        "POST",
        "/courses/{course}/lessons/upload",
        "creator",
        content=body,
        headers={"content-type": content_type},
    )


async def test_an_upload_that_is_not_a_form_is_415(world: World) -> None:
    headers = {"content-type": "text/plain"}
    await world.refused(
        415, "POST", "/courses/{course}/lessons/upload", "creator", content=b"x", headers=headers
    )


async def test_a_form_sent_to_a_json_route_is_400(world: World) -> None:
    headers = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}
    body = multipart(('name="title"', b"Intro", ""))
    await world.refused(400, "POST", "/courses", "creator", content=body, headers=headers)


# --- paths and headers ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/certificates/verify/%00",
        "/certificates/verify/a%0Ab",
        "/certificates/verify/%FF",
        "/media/%00.mp4?exp=1&sig=x",
    ],
)
async def test_paths_hold_no_control_character(world: World, path: str) -> None:
    await world.refused(400, "GET", path)


HEADERS = [
    ("GET", "/auth/me", "learner", {"authorization": "Bearer \x01abc"}),
    ("GET", "/courses", None, {"if-none-match": '"\x00"'}),
    ("GET", "/courses", None, {"user-agent": "agent\x00"}),
    ("POST", "/auth/login", None, {"x-forwarded-for": "1.2.3.4\x00"}),
    ("POST", "/auth/login", None, {"content-type": "application/json; charset=\x1b"}),
    ("GET", "/courses", None, {"x-anything": "a\nb"}),
]


@pytest.mark.parametrize(
    ("method", "path", "who", "headers"), HEADERS, ids=[next(iter(h)) for *_, h in HEADERS]
)
async def test_headers_hold_no_control_character(
    world: World, method: str, path: str, who: str | None, headers: dict[str, str]
) -> None:
    body = {"username": "ada_l", "password": PASSWORD} if method == "POST" else None
    await world.refused(400, method, path, who, json=body, headers=headers)


@pytest.mark.parametrize(
    ("value", "status"), [("abc", 400), ("-1", 400), ("1.5", 400), ("9" * 30, 413)]
)
async def test_a_malformed_content_length_is_refused(world: World, value: str, status: int) -> None:
    headers = {"content-type": "application/json", "content-length": value}
    await world.refused(status, "POST", "/auth/register", content=b"{}", headers=headers)


@pytest.mark.parametrize(
    "authorization",
    ["Bearer " + "a" * 8000, "Bearer", "Basic YWRhOnB3", "Bearer a.b.c", "bearer  \t "],
)
async def test_a_malformed_authorization_is_401(world: World, authorization: str) -> None:
    await world.refused(401, "GET", "/auth/me", headers={"authorization": authorization})


@pytest.mark.parametrize("value", ['W/"x", ,,* junk', "garbage", '"' * 500])
async def test_a_malformed_if_none_match_is_ignored(world: World, value: str) -> None:
    response = await world.api.get("/courses", headers={"if-none-match": value})
    assert response.status_code == 200, response.text


@pytest.fixture
async def behind_a_proxy(app: Litestar) -> AsyncIterator[None]:
    """The app as deployed behind a load balancer on this client's address (127.0.0.1)."""
    ctx = app.state.ctx
    settings = ctx.settings
    ctx.settings = dataclasses.replace(settings, trusted_proxies=("127.0.0.1",))
    try:
        yield
    finally:
        ctx.settings = settings


@pytest.mark.parametrize(
    "forwarded", ["not-an-ip", "1.2.3.4, " + "9" * 300, "fe80::1%" + "x" * 100, "1.2.3.4:80"]
)
async def test_a_forwarded_for_that_names_no_address_is_400(
    world: World, behind_a_proxy: None, forwarded: str
) -> None:
    body = {"username": "ada_l", "password": PASSWORD}
    headers = {"x-forwarded-for": forwarded}
    await world.refused(400, "POST", "/auth/login", json=body, headers=headers)


async def test_a_forwarded_client_address_still_works(world: World, behind_a_proxy: None) -> None:
    body = {"username": "ada_l", "password": PASSWORD}
    headers = {"x-forwarded-for": "6.6.6.6, 198.51.100.7"}
    await world.refused(401, "POST", "/auth/login", json=body, headers=headers)
