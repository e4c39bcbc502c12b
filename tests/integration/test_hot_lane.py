"""The hot lane (lms.hot_lane) answers exactly as Litestar does: each request is sent through
the app twice, once with the lane and once with the lane stepping aside, and the two answers
(status, every header, body) must be the same. Each case also says which way the lane must go:
answer itself, or hand the request on to Litestar."""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any
from urllib.parse import quote

import asyncpg
import httpx
import jwt
import pytest
from litestar import Litestar, get, post
from litestar import Request as LitestarRequest
from litestar.datastructures import Cookie, ResponseHeader, State
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, QueryParameter

from lms.api.allow_header import AllowHeader
from lms.api.answers import ANSWER, respond
from lms.api.dependencies import Ctx
from lms.api.pagination import DEFAULT_LIMIT, PageCursor, PageLimit
from lms.api.request import LmsRequest
from lms.api.security import PUBLIC, requires
from lms.derived_keys import Purpose, derived_key
from lms.domain.auth.permissions import Permission
from lms.domain.certificates.controllers import VERIFY_CACHE
from lms.domain.courses.controllers import catalog_page
from lms.domain.learning.controllers import completion_answer
from lms.edge import Edge
from lms.hot_lane import HotLane, LaneCannotServe, lane_routes
from lms.settings import Settings
from tests.conftest import TestUser
from tests.integration.courses.helpers import new_course
from tests.integration.learning.helpers import complete, course_with_lessons, enroll

Message = dict[str, Any]


@dataclass
class Answer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


@dataclass
class Lane:
    """The app's hot lane, with a record of the requests it handed on."""

    edge: Edge
    handed_on: list[str] = field(default_factory=list)

    @property
    def lane(self) -> HotLane:
        return self.edge.lane

    @contextmanager
    def aside(self) -> Iterator[None]:
        """The lane steps aside: every request goes to Litestar, as before the lane existed."""
        self.lane.route = lambda scope: None
        try:
            yield
        finally:
            del self.lane.route


@pytest.fixture
def lane(app: Litestar) -> Iterator[Lane]:
    edge = app.asgi_handler
    assert isinstance(edge, Edge)
    record = Lane(edge)
    litestar = edge.app

    async def recording(scope: Any, receive: Any, send: Any) -> None:
        record.handed_on.append(f"{scope['method']} {scope['path']}")
        await litestar(scope, receive, send)

    edge.app = recording
    yield record
    edge.app = litestar


async def call(
    app: Litestar,
    method: str,
    path: str,
    query: str = "",
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    chunks: int = 1,
) -> Answer:
    """One request through the whole app (the request id fixed, so both answers carry it)."""
    raw_headers = [(b"host", b"testserver"), (b"x-request-id", b"hot-lane-parity")]
    raw_headers += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    if body and chunks == 1:
        raw_headers.append((b"content-length", str(len(body)).encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": quote(path).encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": raw_headers,
        "client": ("127.0.0.1", 40000),
        "server": ("testserver", 80),
    }
    size = max(1, -(-len(body) // chunks))
    parts = [body[i : i + size] for i in range(0, len(body), size)] or [b""]
    incoming: list[Message] = [
        {"type": "http.request", "body": part, "more_body": i < len(parts) - 1}
        for i, part in enumerate(parts)
    ]
    sent: list[Message] = []

    async def receive() -> Message:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)  # type: ignore[arg-type]
    start = sent[0]
    assert start["type"] == "http.response.start"
    return Answer(
        start["status"],
        sorted((k.decode().lower(), v.decode()) for k, v in start.get("headers", [])),
        b"".join(m.get("body", b"") for m in sent[1:]),
    )


Request = Callable[[], Awaitable[Answer]]


async def same_both_ways(lane: Lane, request: Request, *, hot: bool) -> Answer:
    """The lane's answer, checked equal to Litestar's; `hot`: the lane answered it itself."""
    lane.handed_on.clear()
    with lane.aside():
        reference = await request()
    assert lane.handed_on, "the reference request must go through Litestar"
    lane.handed_on.clear()
    answer = await request()
    assert (not lane.handed_on) is hot, (
        f"expected the lane to {'answer' if hot else 'hand on'}; handed on: {lane.handed_on}"
    )
    assert answer == reference
    return answer


async def test_catalog_pages_searches_and_their_refusals_answer_alike(
    api: httpx.AsyncClient,
    app: Litestar,
    lane: Lane,
    db: asyncpg.Pool,
    creator: TestUser,
    admin: TestUser,
    learner: TestUser,
    settings: Settings,
) -> None:
    for i in range(3):
        await course_with_lessons(
            api, db, creator, admin, [None], title=f"Graph theory {i}", description="Graphs"
        )
    first = await call(app, "GET", "/courses", "limit=2")
    cursor = httpx.Response(200, content=first.body).json()["nextCursor"]
    assert cursor
    etag = dict(first.headers)["etag"]
    now = int(time.time())
    expired = jwt.encode(
        {"sub": str(learner.id), "ver": 0, "typ": "access", "sid": str(uuid.uuid4())}
        | {"iat": now - 120, "exp": now - 60},
        derived_key(str(settings.jwt_secret), Purpose.ACCESS_TOKEN),
        algorithm=settings.jwt_algorithm,
    )

    sidless = token_of_no_login(settings, learner)

    def get(query: str = "", **headers: str) -> Request:
        return lambda: call(app, "GET", "/courses", query, headers)

    answered = [
        get(),
        get("limit=2"),
        get(f"limit=2&cursor={cursor}"),
        get("q=graph"),
        get("q=graph+theory&limit=1"),
        get("q=graph%20theory"),
        get(f"creatorId={creator.id}"),
        get(f"creatorId={str(creator.id).upper()}&limit=100"),
        get("limit=2", **{"If-None-Match": etag}),
        get("", Authorization=f"Bearer {learner.token}"),
        get("", Authorization="Bearer not-a-token"),
        get("", Authorization=f"Bearer {expired}"),
        get("", Authorization="Basic dXNlcjpwYXNz"),
        get(f"cursor={cursor}"),  # a cursor for another query: the service refuses it
        get("", Authorization=f"Bearer {sidless}"),
    ]
    for request in answered:
        await same_both_ways(lane, request, hot=True)
    assert (await same_both_ways(lane, answered[8], hot=True)).status == 304
    assert (await same_both_ways(lane, answered[10], hot=True)).status == 401
    # A token that names no login gets the answer any invalid token gets.
    assert await same_both_ways(lane, answered[-1], hot=True) == await answered[10]()

    handed_on = [
        get("limit=0"),
        get("limit=101"),
        get("limit=abc"),
        get("limit=02"),
        get("limit=1&limit=2"),
        get("cursor=not-a-cursor"),
        get("q=" + "x" * 201),
        get("q="),
        get("creatorId=nope"),
        get("q=%ZZ"),
        get("q=%00"),
        get("q=%FF"),
        get("limit=1;q=x"),
        # A parameter the handler does not declare, or one given twice: Litestar's to read.
        get("unknown=1&limit=3"),
        get("limit=3&category=python"),
        get("q=graph&q=theory"),
        get("creatorId=" + str(creator.id) + "&creatorId=" + str(creator.id)),
        get("", Host="bad host"),
        lambda: call(
            app,
            "GET",
            "/courses",
            headers={"Authorization": f"Bearer {learner.token}", "AUTHORIZATION": "Bearer x"},
        ),
        lambda: call(app, "HEAD", "/courses"),
        lambda: call(app, "OPTIONS", "/courses"),
        lambda: call(app, "GET", "/courses/"),
    ]
    for request in handed_on:
        await same_both_ways(lane, request, hot=False)


async def test_course_pages_answer_alike(
    api: httpx.AsyncClient,
    app: Litestar,
    lane: Lane,
    db: asyncpg.Pool,
    creator: TestUser,
    admin: TestUser,
    learner: TestUser,
) -> None:
    course, _ = await course_with_lessons(api, db, creator, admin, [30.0, None])
    draft = await new_course(api, creator, title="Unfinished")

    def get(course_id: str, query: str = "", **headers: str) -> Request:
        return lambda: call(app, "GET", f"/courses/{course_id}", query, headers)

    answered = [
        get(course["id"]),
        get(course["id"].upper()),
        get(course["id"], Authorization=f"Bearer {learner.token}"),
        get(draft["id"]),  # 404 to a stranger
        get(draft["id"], Authorization=f"Bearer {creator.token}"),  # the owner's draft
        get(str(uuid.uuid4())),
        get(course["id"], Authorization="Bearer x"),
    ]
    answers = [await same_both_ways(lane, request, hot=True) for request in answered]
    assert [a.status for a in answers] == [200, 200, 200, 404, 200, 404, 401]
    etag = dict(answers[0].headers)["etag"]
    assert (
        await same_both_ways(lane, get(course["id"], **{"If-None-Match": etag}), hot=True)
    ).status == 304

    for request in [
        get("not-a-uuid"),
        get(course["id"].replace("-", "")),
        get(course["id"], "x=1"),
        lambda: call(app, "GET", f"/courses/{course['id']}/"),
    ]:
        await same_both_ways(lane, request, hot=False)


async def test_certificate_verification_answers_alike(
    api: httpx.AsyncClient,
    app: Litestar,
    lane: Lane,
    db: asyncpg.Pool,
    creator: TestUser,
    admin: TestUser,
    learner: TestUser,
) -> None:
    course, lessons = await course_with_lessons(api, db, creator, admin, [None])
    await enroll(api, learner, course["id"])
    certificate = (await complete(api, learner, lessons[0]["id"])).json()["certificate"]
    serial = certificate["serialHash"]

    def get(serial_hash: str, **headers: str) -> Request:
        return lambda: call(app, "GET", f"/certificates/verify/{serial_hash}", "", headers)

    answered = [
        get(serial),
        get(serial.upper()),
        get("0" * 64),
        get("abc"),
        get(serial, Accept="application/json"),
        get(serial, Accept="*/*"),
        get(serial, Accept="application/json, text/plain, */*"),
        get(serial, Authorization="Bearer anything"),  # a public route reads no token
        # The printable page: the same answer function, so the lane serves it too.
        get(serial, Accept="text/html"),
        get(serial, Accept="text/html,application/xhtml+xml,*/*;q=0.8"),
        get("0" * 64, Accept="text/html"),
        get(serial + "-x"),
    ]
    answers = [await same_both_ways(lane, request, hot=True) for request in answered]
    statuses = [200, 200, 404, 404, 200, 200, 200, 200, 200, 200, 404, 404]
    assert [a.status for a in answers] == statuses
    assert dict(answers[8].headers)["content-type"] == "text/html; charset=utf-8"
    # Cached no longer than the README's revocation bound allows, both ways.
    assert {dict(a.headers)["cache-control"] for a in answers} == {VERIFY_CACHE}

    revoked = await api.post(
        f"/admin/certificates/{certificate['id']}/revoke",
        json={"reason": "issued in error"},
        headers=admin.headers,
    )
    assert revoked.status_code == 200, revoked.text
    # Revoked: both ways valid false, REVOKED, no credential (jws null), the same max-age.
    after = await same_both_ways(lane, get(serial), hot=True)
    assert after.status == 200 and b'"valid":false' in after.body
    assert b'"jws":null' in after.body and certificate["jws"].encode() not in after.body
    assert dict(after.headers)["cache-control"] == VERIFY_CACHE

    for request in [
        get(serial + "%20x"),
        get(serial, Accept="application/json", ACCEPT="text/html"),
        # A control byte in a header: Litestar's to refuse, though the name (and the value
        # without it) came clean a moment ago and the lane remembers those as clean.
        get(serial, Accept="application/json\x01"),
        get(serial, **{"User-Agent": "agent\x7f"}),
        lambda: call(app, "GET", f"/certificates/verify/{serial}", "x=1"),
    ]:
        await same_both_ways(lane, request, hot=False)


async def test_heartbeats_and_completions_answer_alike(
    api: httpx.AsyncClient,
    app: Litestar,
    lane: Lane,
    db: asyncpg.Pool,
    creator: TestUser,
    admin: TestUser,
    learner: TestUser,
    make_user: Any,
    settings: Settings,
) -> None:
    """Writes: the reference and the lane each act as a learner of their own in the same state,
    so that both find what the other would have found. A second passes before each pair (the
    learners' watch clocks move back), as between a player's heartbeats, unless `wait` is off."""
    course, lessons = await course_with_lessons(api, db, creator, admin, [100.0, 100.0, None])
    other = await make_user()
    stranger = await make_user()
    for user in (learner, other):
        await enroll(api, user, course["id"])
    video, second, text = (lesson["id"] for lesson in lessons)
    json_type = {"Content-Type": "application/json"}

    async def a_second_passes() -> None:
        await db.execute(
            """UPDATE enrollments SET last_heartbeat_at = last_heartbeat_at - interval '1 s',
                                      watch_clock = watch_clock - interval '1 s'
               WHERE user_id = ANY($1::uuid[])""",
            [learner.id, other.id],
        )

    async def both(make: Callable[[TestUser], Request], *, hot: bool, wait: bool = True) -> Answer:
        if wait:
            await a_second_passes()
        lane.handed_on.clear()
        with lane.aside():
            reference = await make(learner)()
        lane.handed_on.clear()
        answer = await make(other)()
        assert (not lane.handed_on) is hot, lane.handed_on
        assert answer == reference
        return answer

    def beat(
        lesson: str, body: bytes, headers: dict[str, str] | None = None, chunks: int = 1
    ) -> Callable[[TestUser], Request]:
        return lambda user: (
            lambda: call(
                app,
                "POST",
                f"/lessons/{lesson}/progress",
                headers={"Authorization": f"Bearer {user.token}"}
                | (json_type if headers is None else headers),
                body=body,
                chunks=chunks,
            )
        )

    def done(lesson: str) -> Callable[[TestUser], Request]:
        return lambda user: (
            lambda: call(
                app,
                "POST",
                f"/lessons/{lesson}/complete",
                headers={"Authorization": f"Bearer {user.token}"},
            )
        )

    assert (await both(beat(video, b'{"positionSeconds": 5}'), hot=True)).status == 204
    assert (await both(beat(video, b'{"positionSeconds": 10.5}', {}), hot=True)).status == 204
    assert (await both(beat(video, b'{"positionSeconds": 12}', chunks=3), hot=True)).status == 204
    answered = [
        beat(video, b'{"positionSeconds": 1e400}'),  # refused whole by the decoder
        beat(video, b'{"positionSeconds": '),
        beat(video, b"[" * 40 + b"]" * 40),
        beat(video, b'{"positionSeconds": 500}'),  # past the video's end
        beat(str(uuid.uuid4()), b'{"positionSeconds": 1}'),
        beat(video, b'{"positionSeconds": 1}', {**json_type, "Authorization": "Bearer nope"}),
        beat(video, b'{"positionSeconds": 1}', {"Authorization": ""}),
    ]
    statuses = [(await both(request, hot=True)).status for request in answered]
    assert statuses == [400, 400, 400, 400, 404, 401, 401]

    # A token of a login that has ended (its refresh token was replayed: token theft).
    ended = {user.id: await ended_login_token(api, user) for user in (learner, other)}

    def of_ended_login(make: Callable[[TestUser], Request]) -> Callable[[TestUser], Request]:
        return lambda user: make(dataclasses.replace(user, token=ended[user.id]))

    for request in (beat(video, b'{"positionSeconds": 13}'), done(text)):
        answer = await both(of_ended_login(request), hot=True)
        assert answer.status == 401 and b"this login is revoked" in answer.body

    # A token signed with the right key that names no login: refused as an invalid token.
    def of_no_login(make: Callable[[TestUser], Request]) -> Callable[[TestUser], Request]:
        return lambda user: make(dataclasses.replace(user, token=token_of_no_login(settings, user)))

    for request in (beat(video, b'{"positionSeconds": 13}'), done(text)):
        answer = await both(of_no_login(request), hot=True)
        assert answer.status == 401
        assert httpx.Response(401, content=answer.body).json()["detail"] == "invalid token"

    handed_on = [
        beat(video, b'{"positionSeconds": -1}'),  # a field refused: Litestar words it
        beat(video, b'{"positionSeconds": "5"}'),
        beat(video, b'{"positionSeconds": 5, "extra": 1}'),
        beat(video, b"{}"),
        beat(video, b'{"positionSeconds": 5}', {"Content-Type": "text/plain"}),
        beat(video, b'{"positionSeconds": 5}' + b" " * 5000),
        beat(video, b'{"positionSeconds": 5}' + b" " * 5000, chunks=4),
    ]
    for request in handed_on:
        answer = await both(request, hot=False)
        assert answer.status in (204, 400), answer

    assert (await both(done(text), hot=True)).status == 200  # not the last: no certificate
    assert (await both(done(text), hot=True)).status == 200  # again: idempotent
    assert (await both(done(str(uuid.uuid4())), hot=True)).status == 404
    # The last lesson: each learner gets a certificate of their own, the same shape.
    await complete(api, learner, second)
    await complete(api, other, second)
    with lane.aside():
        reference = await done(video)(learner)()
    lane.handed_on.clear()
    answer = await done(video)(other)()
    assert not lane.handed_on
    # The whole answer, but what must differ: each has its own ids, serial, signature, moment
    # and name (and so its own length).
    assert answer.status == reference.status == 200
    assert [h for h in answer.headers if h[0] != "content-length"] == [
        h for h in reference.headers if h[0] != "content-length"
    ]
    mine, theirs = normalised(answer.body), normalised(reference.body)
    assert mine == theirs
    assert mine["courseCompleted"] is True and mine["certificate"]["status"] == "VALID"
    assert mine["certificate"]["jws"] == "<differs>"

    # Not enrolled: a stranger, a creator, an admin (every role holds TRACK_PROGRESS; a 403 is
    # in test_a_permission_the_caller_lacks_is_the_same_403_both_ways).
    for user, status in ((stranger, 404), (creator, 404), (admin, 404)):
        for request in (done(text), beat(video, b'{"positionSeconds": 14}')):
            lane.handed_on.clear()
            with lane.aside():
                reference = await request(user)()
            lane.handed_on.clear()
            assert await request(user)() == reference
            assert not lane.handed_on
            assert reference.status == status, reference

    # The watch rules' refusals: a heartbeat too soon (429 with Retry-After), a video watched too
    # little or still processing (409), as the same bytes both ways.
    changed = await api.patch(
        "/admin/settings", json={"requireWatchToComplete": True}, headers=admin.headers
    )
    assert changed.status_code == 200, changed.text
    watched, (short, processing) = await course_with_lessons(
        api, db, creator, admin, [100.0, 100.0]
    )
    await db.execute(
        "UPDATE lessons SET duration_seconds = NULL WHERE id = $1", uuid.UUID(processing["id"])
    )
    for user in (learner, other):
        await enroll(api, user, watched["id"])
    assert (await both(beat(short["id"], b'{"positionSeconds": 1}'), hot=True)).status == 204
    too_soon = await both(beat(short["id"], b'{"positionSeconds": 2}'), hot=True, wait=False)
    assert too_soon.status == 429 and ("retry-after", "1") in too_soon.headers, too_soon
    too_little = await both(done(short["id"]), hot=True)
    assert too_little.status == 409 and b"95 more seconds" in too_little.body, too_little
    still_processing = await both(done(processing["id"]), hot=True)
    assert still_processing.status == 409 and b"still processing" in still_processing.body


# Keys whose values are each learner's own (ids, serial, signature, moments, name, links); the
# lesson's and the course's ids are the same for both and stay.
DIFFERS = {"id", "serialHash", "jws", "issuedAt", "enrollmentId", "fullName", "verifyUrl"}


def normalised(body: bytes) -> Any:
    """The JSON answer with the values that must differ between two learners replaced."""

    def walk(value: Any, key: str = "") -> Any:
        if isinstance(value, dict):
            if key == "course":
                return value
            return {k: walk(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        if key in DIFFERS and value is not None:
            return "<differs>"
        return value

    return walk(httpx.Response(200, content=body).json())


def token_of_no_login(settings: Settings, user: TestUser) -> str:
    """An access token as the API issued them before they named their login (no `sid`), signed
    with the access key: well formed, live, of a user who exists, but no login's."""
    now = int(time.time())
    claims = {"sub": str(user.id), "role": user.role, "ver": 0, "typ": "access"}
    return jwt.encode(
        claims | {"iat": now, "exp": now + 60, "jti": uuid.uuid4().hex},
        derived_key(str(settings.jwt_secret), Purpose.ACCESS_TOKEN),
        algorithm=settings.jwt_algorithm,
    )


async def ended_login_token(api: httpx.AsyncClient, user: TestUser) -> str:
    """An access token of a login that was ended by replaying its used refresh token."""
    login = await api.post("/auth/login", json={"email": user.email, "password": user.password})
    tokens = login.json()
    rotated = await api.post("/auth/refresh", json={"refreshToken": tokens["refreshToken"]})
    assert rotated.status_code == 200
    replay = await api.post("/auth/refresh", json={"refreshToken": tokens["refreshToken"]})
    assert replay.status_code == 401
    return str(tokens["accessToken"])


HOT_ROUTES = {
    ("GET", "/courses"): (True, ()),
    ("GET", "/courses/{course_id}"): (True, ()),
    ("GET", "/certificates/verify/{serial_hash}"): (True, ()),
    ("POST", "/lessons/{lesson_id}/progress"): (False, (Permission.TRACK_PROGRESS,)),
    ("POST", "/lessons/{lesson_id}/complete"): (False, (Permission.TRACK_PROGRESS,)),
}


def test_the_lane_serves_the_handlers_naming_an_answer_function(app: Litestar) -> None:
    """The lane reads its routes from the app (their templates label metrics and log lines),
    and reads the same thing the handlers declare."""
    routes = lane_routes(app)
    assert {(r.method, r.template): (r.public, r.permissions) for r in routes} == HOT_ROUTES
    templates = {route.path_format for route in app.routes}
    assert {r.template for r in routes} <= templates
    catalog = next(r for r in routes if r.template == "/courses")
    assert {(q.key, q.name, q.kind, q.default) for q in catalog.query.values()} == {
        ("limit", "limit", int, 20),
        ("cursor", "cursor", str, None),
        ("q", "q", str, None),
        ("creatorId", "creator_id", uuid.UUID, None),
    }
    verify = next(r for r in routes if r.template.startswith("/certificates"))
    assert not verify.reads_caller  # a public answer that reads no token


# -- drift: a handler that changes alone makes the lane refuse to serve it -----------------------


def drifted(app: Litestar, *handlers: Any, ctx: Any = None, **layer: Any) -> Litestar:
    """An app like `app` (its middleware, dependencies and error handlers) with `handlers`."""
    return Litestar(
        route_handlers=list(handlers),
        middleware=app.middleware,
        dependencies={"ctx": Provide(lambda: ctx, sync_to_thread=False)},
        exception_handlers=app.exception_handlers,
        request_class=LmsRequest,
        **layer,
    )


def refusal(app: Litestar) -> str:
    with pytest.raises(LaneCannotServe) as refused:
        lane_routes(app)
    return str(refused.value)


PageQuery = Annotated[str | None, QueryParameter(max_length=200)]
CreatorQuery = Annotated[uuid.UUID | None, QueryParameter(name="creatorId")]


def catalog_handler(**decorator: Any) -> Any:
    """GET /courses as CourseController.list_courses declares it, `decorator` added."""

    @get(
        "/courses", opt={PUBLIC: True, ANSWER: catalog_page} | decorator.pop("opt", {}), **decorator
    )
    async def list_courses(
        request: LitestarRequest[Any, Any, Any],
        ctx: Ctx,
        limit: PageLimit = DEFAULT_LIMIT,
        cursor: PageCursor = None,
        q: PageQuery = None,
        creator_id: CreatorQuery = None,
    ) -> Any:
        return await respond(request, ctx, limit=limit, cursor=cursor, q=q, creator_id=creator_id)

    return list_courses


async def a_hook(*_: Any) -> None:
    return None


async def a_guard(connection: Any, _: Any) -> None:
    return None


def test_a_copy_of_the_catalog_handler_is_served(app: Litestar) -> None:
    """The baseline the drift cases below change one thing of."""
    assert [r.template for r in lane_routes(drifted(app, catalog_handler()))] == ["/courses"]


@pytest.mark.parametrize(
    ("decorator", "why"),
    [
        ({"before_request": a_hook}, "before_request"),
        ({"after_request": a_hook}, "after_request"),
        ({"after_response": a_hook}, "after_response"),
        ({"guards": [a_guard]}, "the guard a_guard"),
        ({"guards": [requires(Permission.TRACK_PROGRESS)]}, "public route with a permission"),
        ({"middleware": [AllowHeader]}, "middleware of its own"),
        ({"response_headers": [ResponseHeader(name="X-Extra", value="1")]}, "response headers"),
        ({"response_cookies": [Cookie(key="seen", value="1")]}, "response cookies"),
        ({"opt": {"exclude_from_csrf": True}}, "opt ['exclude_from_csrf']"),
        ({"cache": 30}, "response cache"),
    ],
)
def test_a_handler_gaining_a_hook_guard_middleware_header_or_opt_is_refused(
    app: Litestar, decorator: dict[str, Any], why: str
) -> None:
    assert why in refusal(drifted(app, catalog_handler(**decorator)))


def test_a_handler_gaining_a_parameter_or_dependency_is_refused(app: Litestar) -> None:
    @get("/courses", opt={PUBLIC: True, ANSWER: catalog_page})
    async def with_category(
        request: LitestarRequest[Any, Any, Any],
        ctx: Ctx,
        limit: PageLimit = DEFAULT_LIMIT,
        cursor: PageCursor = None,
        q: PageQuery = None,
        creator_id: CreatorQuery = None,
        category: Annotated[str | None, QueryParameter()] = None,
    ) -> Any:
        return await respond(request, ctx, limit=limit, cursor=cursor, q=q, creator_id=creator_id)

    assert "category" in refusal(drifted(app, with_category))

    @get(
        "/courses",
        opt={PUBLIC: True, ANSWER: catalog_page},
        dependencies={"clock": Provide(lambda: 0, sync_to_thread=False)},
    )
    async def with_clock(
        request: LitestarRequest[Any, Any, Any],
        ctx: Ctx,
        clock: NamedDependency[int],
        limit: PageLimit = DEFAULT_LIMIT,
        cursor: PageCursor = None,
        q: PageQuery = None,
        creator_id: CreatorQuery = None,
    ) -> Any:
        return await respond(request, ctx, limit=limit, cursor=cursor, q=q, creator_id=creator_id)

    assert "the dependency clock" in refusal(drifted(app, with_clock))

    @get("/courses", opt={PUBLIC: True, ANSWER: catalog_page})
    async def with_a_list(
        request: LitestarRequest[Any, Any, Any],
        ctx: Ctx,
        limit: PageLimit = DEFAULT_LIMIT,
        cursor: PageCursor = None,
        q: PageQuery = None,
        creator_id: Annotated[list[uuid.UUID] | None, QueryParameter(name="creatorId")] = None,
    ) -> Any:
        return await respond(request, ctx, limit=limit, cursor=cursor, q=q, creator_id=creator_id)

    assert "creator_id" in refusal(drifted(app, with_a_list))

    @get("/courses", opt={PUBLIC: True, ANSWER: catalog_page})
    async def with_a_multiple(
        request: LitestarRequest[Any, Any, Any],
        ctx: Ctx,
        limit: Annotated[int, QueryParameter(multiple_of=10)] = DEFAULT_LIMIT,
        cursor: PageCursor = None,
        q: PageQuery = None,
        creator_id: CreatorQuery = None,
    ) -> Any:
        return await respond(request, ctx, limit=limit, cursor=cursor, q=q, creator_id=creator_id)

    assert "limit's options" in refusal(drifted(app, with_a_multiple))


def test_a_layer_above_the_handler_drifts_it_too(app: Litestar) -> None:
    """A hook or header on the router (or controller) the handler sits under counts as its."""
    for layer, why in (
        ({"before_request": a_hook}, "before_request"),
        ({"response_headers": [ResponseHeader(name="X-Extra", value="1")]}, "response headers"),
        (
            {
                "parameters": {
                    "region": QueryParameter(annotation=str, name="region", required=False)
                }
            },
            "layer",
        ),
    ):
        assert why in refusal(drifted(app, catalog_handler(), **layer))


# -- browsers ------------------------------------------------------------------------------------

ALLOWED = "https://app.example.test"  # LMS_CORS_ORIGINS in tests/conftest.py
# What a current Chromium sends with a fetch() from a page of `Origin` (cookies included).
CHROMIUM = {
    "Accept": "*/*",
    "Accept-Encoding": "gzip, deflate, br, zstd",
    "Accept-Language": "en-US,en;q=0.9",
    "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36",
    "sec-ch-ua": '"Chromium";v="131", "Not_A Brand";v="24"',
    "sec-ch-ua-mobile": "?0",
    "sec-ch-ua-platform": '"Linux"',
    "Sec-Fetch-Dest": "empty",
    "Sec-Fetch-Mode": "cors",
    "Sec-Fetch-Site": "cross-site",
    "Cookie": "theme=dark; _ga=GA1.1.1234567890.1733300000",
}


def unsized(answer: Answer) -> list[tuple[str, str]]:
    return [h for h in answer.headers if h[0] != "content-length"]


def browser(origin: str, **headers: str) -> dict[str, str]:
    return CHROMIUM | {"Origin": origin, "Referer": f"{origin}/courses"} | headers


async def test_browsers_take_the_lane_with_the_cors_headers_litestar_sends(
    api: httpx.AsyncClient,
    app: Litestar,
    lane: Lane,
    db: asyncpg.Pool,
    creator: TestUser,
    admin: TestUser,
    learner: TestUser,
    make_user: Any,
) -> None:
    """Every browser request of the hot routes is the lane's, with the same Access-Control-* and
    Vary headers as through Litestar, for an allowed origin and for a disallowed one (answered,
    without them); the preflight stays Litestar's and lets the browser keep it (Max-Age)."""
    course, lessons = await course_with_lessons(api, db, creator, admin, [100.0, None])
    other = await make_user()
    for user in (learner, other):
        await enroll(api, user, course["id"])
    for user in (learner, other):
        await complete(api, user, lessons[1]["id"])
    video = lessons[0]["id"]

    def get(path: str, query: str = "", **headers: str) -> Request:
        return lambda: call(app, "GET", path, query, headers)

    for origin in (ALLOWED, "https://elsewhere.example.test"):
        signed_in = {"Authorization": f"Bearer {learner.token}"}
        answers = [
            await same_both_ways(lane, request, hot=True)
            for request in [
                get("/courses", **browser(origin)),
                get("/courses", "q=compilers&limit=5", **browser(origin)),
                get("/courses", **browser(origin, **signed_in)),
                get(f"/courses/{course['id']}", **browser(origin)),
                get(f"/courses/{uuid.uuid4()}", **browser(origin)),
                get("/courses", "limit=2", **browser(origin, Authorization="Bearer x")),
                get(f"/certificates/verify/{'0' * 64}", **browser(origin)),
            ]
        ]
        assert [a.status for a in answers] == [200, 200, 200, 200, 404, 401, 404]
        for answer in answers:
            headers = dict(answer.headers)
            assert headers["access-control-expose-headers"] == (
                "ETag, Location, Retry-After, X-Request-ID"
            )
            if origin == ALLOWED:
                assert headers["access-control-allow-origin"] == origin
            else:
                assert "access-control-allow-origin" not in headers

        # The player's writes, each learner in the same state both ways.
        for path, body in (
            (f"/lessons/{video}/progress", b'{"positionSeconds": 3}'),
            (f"/lessons/{video}/complete", b""),
        ):
            await db.execute(
                """UPDATE enrollments SET last_heartbeat_at = last_heartbeat_at - interval '1 s',
                                          watch_clock = watch_clock - interval '1 s'""",
            )

            def post(
                user: TestUser, path: str = path, body: bytes = body, origin: str = origin
            ) -> Request:
                extra = {"Content-Type": "application/json"} if body else {}
                headers = browser(origin, Authorization=f"Bearer {user.token}", **extra)
                return lambda: call(app, "POST", path, headers=headers, body=body)

            lane.handed_on.clear()
            with lane.aside():
                reference = await post(learner)()
            lane.handed_on.clear()
            answer = await post(other)()
            assert not lane.handed_on
            # A completion issues each learner a certificate of their own: whole, normalised.
            assert (answer.status, unsized(answer)) == (reference.status, unsized(reference))
            if body:
                assert answer.body == reference.body and answer.status == 204
            else:
                assert normalised(answer.body) == normalised(reference.body)
            assert (("access-control-allow-origin", origin) in answer.headers) is (
                origin == ALLOWED
            )

    # The route's own Vary (Authorization on the catalog, Accept on certificates) is kept and
    # Origin added, both ways (Litestar's CORS middleware replaced it with Origin).
    for request, vary in (
        (get("/courses", **browser(ALLOWED)), "Authorization, Origin"),
        (get("/courses", **browser(ALLOWED, **signed_in)), "Authorization, Origin"),
        (get("/courses", **browser("https://elsewhere.example.test")), "Authorization, Origin"),
        (get("/courses"), "Authorization, Origin"),
        (get(f"/certificates/verify/{'0' * 64}", **browser(ALLOWED)), "Accept, Origin"),
    ):
        page = await same_both_ways(lane, request, hot=True)
        assert [v for k, v in page.headers if k == "vary"] == [vary]

    # The preflight is the CORS layer's: neither the lane's nor Litestar's.
    lane.handed_on.clear()
    preflight = await call(
        app,
        "OPTIONS",
        f"/lessons/{video}/progress",
        headers=browser(
            ALLOWED,
            **{
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
        ),
    )
    assert not lane.handed_on
    assert preflight.status == 204
    assert [v for k, v in preflight.headers if k == "vary"] == ["Origin"]
    assert dict(preflight.headers)["access-control-max-age"] == "600"
    assert dict(preflight.headers)["access-control-allow-origin"] == ALLOWED


async def test_a_database_outage_is_the_same_503_both_ways(
    api: httpx.AsyncClient,
    app: Litestar,
    lane: Lane,
    db: asyncpg.Pool,
    settings: Settings,
    creator: TestUser,
    admin: TestUser,
    learner: TestUser,
) -> None:
    course, lessons = await course_with_lessons(api, db, creator, admin, [100.0])
    await enroll(api, learner, course["id"])
    ctx = app.state.ctx
    closed = await asyncpg.create_pool(str(settings.database_url), min_size=0, max_size=1)
    await closed.close()
    ctx.db = closed  # the primary cannot be had: every write and signed-in read fails
    try:
        headers = {"Authorization": f"Bearer {learner.token}"}
        for request in [
            lambda: call(
                app,
                "POST",
                f"/lessons/{lessons[0]['id']}/progress",
                headers=headers | {"Content-Type": "application/json"},
                body=b'{"positionSeconds": 1}',
            ),
            lambda: call(app, "POST", f"/lessons/{lessons[0]['id']}/complete", headers=headers),
            lambda: call(app, "GET", "/courses", headers=headers),
        ]:
            answer = await same_both_ways(lane, request, hot=True)
            assert answer.status == 503 and ("retry-after", "1") in answer.headers, answer
    finally:
        ctx.db = db


async def test_a_permission_the_caller_lacks_is_the_same_403_both_ways(
    api: httpx.AsyncClient,
    app: Litestar,
    db: asyncpg.Pool,
    creator: TestUser,
    admin: TestUser,
    learner: TestUser,
) -> None:
    """No role lacks TRACK_PROGRESS today, so the app's hot routes have no 403 to give: a copy
    of the completion handler demanding CREATE_COURSES shows the lane's guard answers as
    Litestar's does."""
    ctx = app.state.ctx

    @post(
        "/lessons/{lesson_id:uuid}/complete",
        status_code=200,
        guards=[requires(Permission.CREATE_COURSES)],
        opt={ANSWER: completion_answer},
    )
    async def guarded(
        request: LitestarRequest[Any, Any, Any], ctx: Ctx, lesson_id: FromPath[uuid.UUID]
    ) -> Any:
        return await respond(request, ctx, lesson_id=lesson_id)

    copy = drifted(app, guarded, ctx=ctx, state=State({"ctx": ctx}))
    litestar = copy.asgi_handler
    record = Lane(Edge(litestar, HotLane(ctx, lane_routes(copy)), None))  # type: ignore[arg-type]

    async def recording(scope: Any, receive: Any, send: Any) -> None:
        record.handed_on.append(f"{scope['method']} {scope['path']}")
        await litestar(scope, receive, send)

    record.edge.app = recording
    copy.asgi_handler = record.edge  # type: ignore[assignment]
    course, lessons = await course_with_lessons(api, db, creator, admin, [None])
    await enroll(api, learner, course["id"])
    path = f"/lessons/{lessons[0]['id']}/complete"
    for user, status in ((learner, 403), (creator, 404)):
        headers = {"Authorization": f"Bearer {user.token}"}

        def send(headers: dict[str, str] = headers) -> Awaitable[Answer]:
            return call(copy, "POST", path, headers=headers)

        answer = await same_both_ways(record, send, hot=True)
        assert answer.status == status, answer
