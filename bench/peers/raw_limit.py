"""The floor: lms's five hot endpoints as a bare ASGI callable on Granian, no framework.

The same work as lms per request (the token check against the user's current state, the same
SQL on asyncpg, PostgreSQL building the catalog's JSON, msgspec for the rest) and nothing else:
no routing table, no middleware stack, no dependency injection, no request logging or metrics.
It imports from `lms` only pure helpers that define the wire format: cursor signing
(`lms.domain.paging`), the body decoder and its error messages (`lms.api.json_body`), the
certificate key and VC-JWT (`lms.domain.certificates.keys`, `.credential`).

    .venv/bin/python -m bench.peers.raw_limit --port 8001 --workers 2

Environment (as lms): DATABASE_URL, LMS_JWT_SECRET, LMS_JWT_ALGORITHM, LMS_CERT_SIGNING_KEY,
LMS_PUBLIC_BASE_URL (else http://LMS_HOST:LMS_PORT), LMS_ISSUER_NAME, LMS_SEARCH_RATE_LIMIT,
LMS_SEARCH_CONCURRENCY, LMS_DB_POOL_MIN, LMS_DB_POOL_MAX.
"""

from __future__ import annotations

# ruff: noqa: S608 - SQL texts built from this module's own constants; values go as $n parameters
import argparse
import asyncio
import contextlib
import hashlib
import json
import math
import os
import re
import secrets
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any

import asyncpg
import jwt
import msgspec

from lms.api.json_body import FieldError
from lms.api.json_body import decode as decode_body
from lms.domain.certificates import credential
from lms.domain.certificates.keys import SigningKey, load_signing_key
from lms.domain.errors import Invalid
from lms.domain.paging import decode_cursor, encode_cursor

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

# ---------------------------------------------------------------------------------------------
# configuration (the variables lms reads, where they overlap)


@dataclass(frozen=True)
class Config:
    database_url: str
    jwt_secret: str
    jwt_algorithm: str
    base_url: str
    issuer_name: str
    search_rate_limit: int
    search_concurrency: int
    pool_min: int
    pool_max: int
    signing_key: SigningKey

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Config:
        env = dict(os.environ if environ is None else environ)

        def get(name: str, default: str) -> str:
            return env.get(name, "").strip() or default

        missing = [
            n for n in ("DATABASE_URL", "LMS_JWT_SECRET", "LMS_CERT_SIGNING_KEY") if not env.get(n)
        ]
        if missing:
            raise SystemExit(f"raw_limit: error: set {', '.join(missing)} (as for lms serve)")
        host, port = get("LMS_HOST", "127.0.0.1"), get("LMS_PORT", "8000")
        return cls(
            database_url=env["DATABASE_URL"],
            jwt_secret=env["LMS_JWT_SECRET"],
            jwt_algorithm=get("LMS_JWT_ALGORITHM", "HS256"),
            base_url=get("LMS_PUBLIC_BASE_URL", f"http://{host}:{port}").rstrip("/"),
            issuer_name=get("LMS_ISSUER_NAME", "LMS"),
            search_rate_limit=int(get("LMS_SEARCH_RATE_LIMIT", "120")),
            search_concurrency=int(get("LMS_SEARCH_CONCURRENCY", "4")),
            pool_min=int(get("LMS_DB_POOL_MIN", "2")),
            pool_max=int(get("LMS_DB_POOL_MAX", "10")),
            signing_key=load_signing_key(env["LMS_CERT_SIGNING_KEY"]),
        )


# ---------------------------------------------------------------------------------------------
# SQL: the statements lms runs on these paths (src/lms/db/queries/{catalog,learning,
# certificates,rate_limits}.py), spelled out


def iso(column: str) -> str:
    return f"""to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"""


COURSE_SUMMARY = (
    "json_build_object('id', c.id, 'title', c.title, 'description', c.description, "
    "'thumbnailUrl', c.thumbnail_url, 'price', to_char(c.price, 'FM9999999990.00'), "
    "'status', c.status, 'creator', json_build_object('id', u.id, "
    "'name', coalesce(u.name, u.full_name, u.username)), 'lessonCount', c.lesson_count, "
    f"'publishedAt', {iso('c.published_at')})"
)
LESSON_SUMMARIES = (
    "(SELECT coalesce(json_agg(json_build_object('id', l.id, 'title', l.title, "
    "'order', l.position, 'durationSeconds', l.duration_seconds, "
    "'transcriptStatus', l.transcript_status) ORDER BY l.position), '[]'::json) "
    "FROM lessons l WHERE l.course_id = c.id)"
)
COURSE = (
    "json_build_object('id', c.id, 'title', c.title, 'description', c.description, "
    "'thumbnailUrl', c.thumbnail_url, 'price', to_char(c.price, 'FM9999999990.00'), "
    "'status', c.status, 'creator', json_build_object('id', u.id, "
    "'name', coalesce(u.name, u.full_name, u.username)), 'lessonCount', c.lesson_count, "
    f"'publishedAt', {iso('c.published_at')}, 'createdAt', {iso('c.created_at')}, "
    f"'updatedAt', {iso('c.updated_at')}, 'submittedAt', {iso('c.submitted_at')}, "
    f"'reviewNotes', c.review_notes, 'lessons', {LESSON_SUMMARIES})"
)


def _page(inner: str) -> str:
    return f"""
    WITH page AS ({inner}),
    numbered AS (SELECT *, row_number() OVER (ORDER BY sort_key DESC, id DESC) AS rn FROM page)
    SELECT coalesce(json_agg(item ORDER BY rn) FILTER (WHERE rn <= $1), '[]'::json)::text AS items,
           (array_agg(sort_key) FILTER (WHERE rn = $1))[1] AS last_key,
           (array_agg(id) FILTER (WHERE rn = $1))[1] AS last_id,
           count(*) > $1 AS more
    FROM numbered"""


def _listing(after: bool, by_creator: bool) -> str:
    where, n = ["c.status = 'PUBLISHED'"], 1
    if by_creator:
        n += 1
        where.append(f"c.creator_id = ${n}")
    if after:
        where.append(f"(c.published_at, c.id) < (${n + 1}::timestamptz, ${n + 2}::uuid)")
    return _page(
        f"SELECT c.id, c.published_at AS sort_key, {COURSE_SUMMARY} AS item "
        "FROM courses c JOIN users u ON u.id = c.creator_id "
        f"WHERE {' AND '.join(where)} ORDER BY c.published_at DESC, c.id DESC LIMIT $1 + 1"
    )


def _search(after: bool, by_creator: bool) -> str:
    where, n = ["c.status = 'PUBLISHED'", "c.search_vector @@ query"], 2
    if by_creator:
        n += 1
        where.append(f"c.creator_id = ${n}")
    if after:
        where.append(
            f"(ts_rank_cd(c.search_vector, query), c.id) < (${n + 1}::real, ${n + 2}::uuid)"
        )
    return _page(
        f"SELECT r.id, r.sort_key, {COURSE_SUMMARY} AS item FROM ("
        "SELECT c.id, ts_rank_cd(c.search_vector, query) AS sort_key "
        "FROM courses c, websearch_to_tsquery('english', $2) AS query "
        f"WHERE {' AND '.join(where)} ORDER BY sort_key DESC, c.id DESC LIMIT $1 + 1"
        ") r JOIN courses c ON c.id = r.id JOIN users u ON u.id = c.creator_id"
    )


LISTINGS = {(a, b): _listing(a, b) for a in (False, True) for b in (False, True)}
SEARCHES = {(a, b): _search(a, b) for a in (False, True) for b in (False, True)}
COURSE_BY_ID = (
    f"SELECT {COURSE}::text AS body, c.status, c.creator_id "
    "FROM courses c JOIN users u ON u.id = c.creator_id WHERE c.id = $1"
)
AUTH_STATE = "SELECT role, is_active, token_version FROM users WHERE id = $1"
SYSTEM_SETTINGS = (
    "SELECT completion_threshold_percent, require_watch_to_complete FROM system_settings "
    "WHERE id = 1"
)
RATE_HIT = """
INSERT INTO rate_limit_counters AS c (key, window_start, hits)
VALUES ($1, now(), 1)
ON CONFLICT (key) DO UPDATE SET
    window_start = CASE WHEN c.window_start <= now() - make_interval(secs => $2)
                        THEN now() ELSE c.window_start END,
    hits = CASE WHEN c.window_start <= now() - make_interval(secs => $2)
                THEN 1 ELSE c.hits + 1 END
RETURNING hits,
          extract(epoch FROM window_start + make_interval(secs => $2) - now())::float8 AS reset_in
"""
_WATCHED_AFTER = """
    CASE WHEN p.last_heartbeat_at IS NOT NULL
              AND EXCLUDED.position_seconds > p.position_seconds
              AND EXCLUDED.position_seconds - p.position_seconds
                  <= extract(epoch FROM EXCLUDED.last_heartbeat_at - p.last_heartbeat_at)::float8
                     + $4::float8
         THEN p.watched + nummultirange(numrange(round(p.position_seconds::numeric, 3),
                                                 round(EXCLUDED.position_seconds::numeric, 3)))
         ELSE p.watched END"""
HEARTBEAT = f"""
WITH target AS (
    SELECT l.id AS lesson_id, l.duration_seconds, e.id AS enrollment_id
    FROM lessons l JOIN enrollments e ON e.course_id = l.course_id AND e.user_id = $2
    WHERE l.id = $1
), saved AS (
    INSERT INTO lesson_progress AS p
        (user_id, lesson_id, enrollment_id, position_seconds, last_heartbeat_at, updated_at)
    SELECT $2, t.lesson_id, t.enrollment_id, $3, now(), now()
    FROM target t
    WHERE t.duration_seconds IS NULL OR $3 <= t.duration_seconds
    ON CONFLICT (enrollment_id, lesson_id) DO UPDATE SET
        watched = {_WATCHED_AFTER},
        watched_seconds = (SELECT coalesce(sum(upper(r) - lower(r)), 0)
                           FROM unnest({_WATCHED_AFTER}) AS r)::float8,
        position_seconds = EXCLUDED.position_seconds,
        last_heartbeat_at = EXCLUDED.last_heartbeat_at,
        updated_at = EXCLUDED.updated_at
    RETURNING p.watched_seconds, p.completed
)
SELECT t.duration_seconds, s.watched_seconds, s.completed, s.completed IS NOT NULL AS saved
FROM target t LEFT JOIN saved s ON true
"""
LOCK_FOR_COMPLETION = """
SELECT e.id AS enrollment_id, e.course_id, e.user_id, e.completed AS course_completed,
       l.duration_seconds, l.video_version > 0 AS has_video,
       coalesce(p.completed, false) AS lesson_completed,
       coalesce(p.watched_seconds, 0) AS watched_seconds,
       c.title AS course_title,
       coalesce(cu.name, cu.full_name, cu.username) AS creator_name,
       coalesce(lu.full_name, lu.name, lu.username) AS learner_name,
       cert.id AS certificate_id
FROM lessons l
JOIN enrollments e ON e.course_id = l.course_id AND e.user_id = $2
JOIN courses c ON c.id = e.course_id
JOIN users cu ON cu.id = c.creator_id
JOIN users lu ON lu.id = e.user_id
LEFT JOIN lesson_progress p ON p.enrollment_id = e.id AND p.lesson_id = l.id
LEFT JOIN certificates cert ON cert.enrollment_id = e.id
WHERE l.id = $1
FOR NO KEY UPDATE OF e
"""
MARK_COMPLETED = """
WITH marked AS (
    INSERT INTO lesson_progress AS p
        (user_id, lesson_id, enrollment_id, completed, completed_at, updated_at)
    VALUES ($3, $2, $1, true, now(), now())
    ON CONFLICT (enrollment_id, lesson_id) DO UPDATE
        SET completed = true, completed_at = coalesce(p.completed_at, now()), updated_at = now()
    RETURNING p.lesson_id
), tally AS (
    SELECT (SELECT count(*) FROM lesson_progress
            WHERE enrollment_id = $1 AND completed AND lesson_id <> $2) + 1 AS done,
           (SELECT count(*) FROM lessons WHERE course_id = $4) AS total
)
UPDATE enrollments e
SET progress = round(100.0 * least(t.done, t.total) / greatest(t.total, 1), 2),
    completed = e.completed OR t.done >= t.total,
    completed_at = CASE WHEN e.completed THEN e.completed_at
                        WHEN t.done >= t.total THEN now() END
FROM tally t, (SELECT count(*) FROM marked) m
WHERE e.id = $1
RETURNING e.progress, e.completed, e.completed_at
"""
CERT_COLUMNS = (
    "id, user_id, course_id, enrollment_id, serial_hash, learner_name, course_title, "
    "creator_name, status, jws, issued_at, revoked_at"
)
CERT_INSERT = f"""
INSERT INTO certificates (id, user_id, course_id, enrollment_id, serial_hash, learner_name,
                          course_title, creator_name, jws, issued_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
ON CONFLICT (enrollment_id) DO NOTHING
RETURNING {CERT_COLUMNS}
"""
CERT_BY_ID = f"SELECT {CERT_COLUMNS} FROM certificates WHERE id = $1"
CERT_OF_ENROLLMENT = f"SELECT {CERT_COLUMNS} FROM certificates WHERE enrollment_id = $1"
CERT_BY_SERIAL = """
SELECT serial_hash, learner_name, course_title, creator_name, course_id, status,
       issued_at, revoked_at, jws
FROM certificates WHERE serial_hash = $1
"""
REGISTER_KEY = """
INSERT INTO certificate_signing_keys (kid, public_jwk) VALUES ($1, $2::jsonb)
ON CONFLICT (kid) DO NOTHING
"""

# ---------------------------------------------------------------------------------------------
# wire objects (msgspec, camelCase: the Structs of lms.domain.{learning,certificates}.schemas)


class Camel(msgspec.Struct, rename="camel", kw_only=True):
    pass


class Heartbeat(Camel, forbid_unknown_fields=True):
    position_seconds: Annotated[float, msgspec.Meta(ge=0, le=7 * 86400)]


class CertificateCourse(Camel):
    id: uuid.UUID
    title: str


class CertificateLearner(Camel):
    full_name: str


class Certificate(Camel):
    id: uuid.UUID
    serial_hash: str
    issued_at: datetime
    enrollment_id: uuid.UUID
    course: CertificateCourse
    learner: CertificateLearner
    creator_name: str | None
    verify_url: str
    status: str
    revoked_at: datetime | None
    jws: str


class LessonCompletion(Camel):
    lesson_id: uuid.UUID
    completed: bool
    progress: float
    course_completed: bool
    certificate: Certificate | None = None


class VerifiedCertificate(Camel):
    serial_hash: str
    issued_at: datetime
    learner_name: str
    course_title: str
    course_id: uuid.UUID
    creator_name: str | None
    status: str
    revoked_at: datetime | None
    verify_url: str
    jws: str


class Verification(Camel):
    valid: bool
    certificate: VerifiedCertificate


class ValidationItem(msgspec.Struct):
    message: str
    key: str
    source: str


class ValidationFailed(msgspec.Struct):
    status_code: int
    detail: str
    extra: list[ValidationItem]


class NotVerified(msgspec.Struct):
    valid: bool
    status_code: int
    detail: str


ENCODER = msgspec.json.Encoder()
NOT_ENROLLED = "no such lesson in a course you are enrolled in"
SERIAL_PATTERN = re.compile(r"^[0-9a-f]{32,64}$")
CURSOR_PATTERN = r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$"
CURSOR_RE = re.compile(CURSOR_PATTERN)
PUBLIC_CACHE = "public, max-age=30, stale-while-revalidate=60"
PRIVATE_CACHE = "private, no-cache"
VERIFY_CACHE = "public, max-age=60"
SEARCH_TIMEOUT_SECONDS = 5.0
SEEK_SLACK_SECONDS = 2.0
USER_CACHE_MAX_AGE = 60.0


class HttpError(Exception):
    def __init__(self, status: int, detail: str, headers: list[tuple[bytes, bytes]] | None = None):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or []


def unauthenticated(detail: str) -> HttpError:
    return HttpError(401, detail, [(b"www-authenticate", b"Bearer")])


class QueryInvalid(Exception):
    def __init__(self, message: str, key: str) -> None:
        super().__init__(message)
        self.message, self.key = message, key


# ---------------------------------------------------------------------------------------------
# per-process state: the pool, and the two caches lms keeps fresh with LISTEN/NOTIFY


@dataclass(frozen=True, slots=True)
class UserState:
    role: str
    is_active: bool
    token_version: int
    loaded_at: float


class State:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.pool: asyncpg.Pool | None = None
        self.users: dict[uuid.UUID, UserState] = {}
        self.settings: tuple[float, bool] | None = None  # threshold percent, require watching
        self.settings_loaded_at = 0.0
        self.listening = False
        self.searches = 0
        self.cursor_key = config.jwt_secret
        self._listener: asyncio.Task[None] | None = None

    @property
    def db(self) -> asyncpg.Pool:
        if self.pool is None:
            raise RuntimeError("the pool starts with the app")
        return self.pool

    async def start(self) -> None:
        async def keep_session(_conn: asyncpg.Connection) -> None:
            """No reset on release, as lms: pooled code keeps no session state."""

        self.pool = await asyncpg.create_pool(
            dsn=self.config.database_url,
            min_size=self.config.pool_min,
            max_size=self.config.pool_max,
            statement_cache_size=256,
            max_inactive_connection_lifetime=300,
            reset=keep_session,
        )
        key = self.config.signing_key
        await self.pool.execute(
            REGISTER_KEY, key.kid(self.config.base_url), json.dumps(key.public_jwk)
        )
        self._listener = asyncio.get_running_loop().create_task(self._listen())

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(BaseException):
                await self._listener
        if self.pool is not None:
            await self.pool.close()

    def _down(self, *_: object) -> None:
        self.listening = False
        self.users.clear()
        self.settings = None

    def _user_changed(self, _c: object, _p: int, _ch: str, payload: str) -> None:
        try:
            self.users.pop(uuid.UUID(payload), None)
        except ValueError:
            self.users.clear()

    def _settings_changed(self, *_: object) -> None:
        self.settings = None

    async def _listen(self) -> None:
        """One LISTEN connection: while it is up, cached user states and settings are trusted
        (a change would have been heard); while it is down, nothing is cached."""
        while True:
            lost = asyncio.Event()
            try:
                conn = await asyncpg.connect(self.config.database_url, timeout=5)

                def on_termination(_conn: object, lost: asyncio.Event = lost) -> None:
                    self._down()
                    lost.set()

                conn.add_termination_listener(on_termination)
                await conn.add_listener("lms_user_auth", self._user_changed)
                await conn.add_listener("lms_system_settings", self._settings_changed)
                self.users.clear()
                self.settings = None
                self.listening = True
                while not lost.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(lost.wait(), 5.0)
                    if not lost.is_set():
                        await asyncio.wait_for(conn.fetchval("SELECT 1"), 2.0)
            except asyncio.CancelledError:
                self._down()
                raise
            except Exception:
                self._down()
                await asyncio.sleep(1.0)

    async def user(self, user_id: uuid.UUID) -> UserState | None:
        hit = self.users.get(user_id)
        now = time.monotonic()
        if hit is not None and self.listening and now - hit.loaded_at < USER_CACHE_MAX_AGE:
            return hit
        row = await self.db.fetchrow(AUTH_STATE, user_id)
        if row is None:
            return None
        state = UserState(row["role"], row["is_active"], row["token_version"], now)
        if self.listening:
            if len(self.users) >= 100_000:
                self.users.pop(next(iter(self.users)))
            self.users[user_id] = state
        return state

    async def watch_rule(self) -> tuple[float, bool]:
        now = time.monotonic()
        if self.settings is not None and (self.listening or now - self.settings_loaded_at < 2.0):
            return self.settings
        row = await self.db.fetchrow(SYSTEM_SETTINGS)
        value = (float(row["completion_threshold_percent"]), row["require_watch_to_complete"])
        self.settings, self.settings_loaded_at = value, now
        return value


# ---------------------------------------------------------------------------------------------
# authentication: lms.domain.auth.{tokens,authentication}


async def authenticate(state: State, headers: dict[bytes, bytes]) -> tuple[uuid.UUID, str] | None:
    """(user id, current role) for a valid access token; None without a bearer token."""
    scheme, _, token = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    config = state.config
    try:
        claims = jwt.decode(
            token,
            config.jwt_secret,
            algorithms=[config.jwt_algorithm],
            options={"require": ["exp", "iat", "sub", "typ", "ver"]},
        )
    except jwt.ExpiredSignatureError:
        raise unauthenticated("token has expired") from None
    except jwt.InvalidTokenError:
        raise unauthenticated("invalid token") from None
    if claims["typ"] != "access":
        raise unauthenticated("a access token is required")
    try:
        user_id, version = uuid.UUID(str(claims["sub"])), int(claims["ver"])
    except (ValueError, TypeError):
        raise unauthenticated("invalid token") from None
    user = await state.user(user_id)
    if user is None:
        raise unauthenticated("invalid token")
    if not user.is_active:
        raise unauthenticated("account is deactivated")
    if user.token_version != version:
        raise unauthenticated("token has been revoked; log in again")
    return user_id, user.role


async def require_user(state: State, headers: dict[bytes, bytes]) -> uuid.UUID:
    who = await authenticate(state, headers)
    if who is None:
        raise unauthenticated("missing bearer token")
    return who[0]  # every role may track progress (LEARNER and up)


# ---------------------------------------------------------------------------------------------
# the catalog


def etag_of(body: bytes) -> str:
    return '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'


def not_modified(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    candidates = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
    return "*" in candidates or etag in candidates


def client_key(ip: str | None) -> str:
    import ipaddress

    if ip is None:
        return "unknown"
    try:
        address = ipaddress.ip_address(ip.strip())
    except ValueError:
        return ip.strip()[:64] or "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(address), 64), strict=False))
    return str(address)


def query_params(raw: bytes) -> dict[str, str]:
    """The first value of each parameter (what Litestar binds to a scalar parameter)."""
    from urllib.parse import parse_qsl

    params: dict[str, str] = {}
    for key, value in parse_qsl(raw.decode("latin-1"), keep_blank_values=True):
        params.setdefault(key, value)
    return params


def catalog_params(params: dict[str, str]) -> tuple[int, str | None, str | None, uuid.UUID | None]:
    """limit, cursor, q, creatorId, checked as lms's handler signature checks them."""
    limit = 20
    if "limit" in params:
        text = params["limit"]
        if not re.fullmatch(r"[+-]?[0-9]+", text.strip()):
            raise QueryInvalid("Expected `int`, got `str`", "limit")
        limit = int(text)
        if limit < 1:
            raise QueryInvalid("Expected `int` >= 1", "limit")
        if limit > 100:
            raise QueryInvalid("Expected `int` <= 100", "limit")
    cursor = params.get("cursor")
    if cursor is not None:
        if len(cursor) > 512:
            raise QueryInvalid("Expected `str` of length <= 512", "cursor")
        if not CURSOR_RE.search(cursor):
            raise QueryInvalid(f"Expected `str` matching regex {CURSOR_PATTERN!r}", "cursor")
    q = params.get("q")
    if q is not None and len(q) > 200:
        raise QueryInvalid("Expected `str` of length <= 200", "q")
    creator = None
    if "creatorId" in params:
        try:
            creator = uuid.UUID(params["creatorId"])
        except ValueError:
            raise QueryInvalid("Invalid UUID", "creator_id") from None
    return limit, cursor, q, creator


def _position(secret: str, scope: str, cursor: str) -> tuple[object, uuid.UUID]:
    values = decode_cursor(secret, scope, cursor)
    try:
        key, last_id = values
        return key, uuid.UUID(str(last_id))
    except (ValueError, TypeError):
        raise Invalid("malformed cursor") from None


async def search_slot_hit(state: State, client: str | None) -> None:
    row = await state.db.fetchrow(RATE_HIT, f"ip:search:{client_key(client)}:60", 60.0)
    if row["hits"] > state.config.search_rate_limit:
        seconds = max(1, math.ceil(max(row["reset_in"], 0.0)))
        raise HttpError(
            429,
            f"too many searches from this address; try again in {seconds} s",
            [(b"retry-after", str(seconds).encode())],
        )


async def list_courses(state: State, params: dict[str, str], client: str | None) -> str:
    limit, cursor, q, creator_id = catalog_params(params)
    query = q.strip() if q else ""
    if len(query) > 200:
        raise Invalid("q must be at most 200 characters")
    scope = f"catalog:{query}:{creator_id or ''}"
    args: list[object] = [limit]
    if query:
        args.append(query)
    if creator_id is not None:
        args.append(creator_id)
    if query:
        if cursor:
            rank, last_id = _position(state.cursor_key, scope, cursor)
            if not isinstance(rank, int | float) or isinstance(rank, bool):
                raise Invalid("malformed cursor")
            args += [float(rank), last_id]
        await search_slot_hit(state, client)
        if state.searches >= state.config.search_concurrency:
            raise HttpError(
                503,
                "too many searches at once; try again in a moment",
                [(b"retry-after", b"1")],
            )
        state.searches += 1
        try:
            row = await state.db.fetchrow(
                SEARCHES[(bool(cursor), creator_id is not None)],
                *args,
                timeout=SEARCH_TIMEOUT_SECONDS,
            )
        except TimeoutError:
            raise HttpError(
                503, "search took too long; try more specific words", [(b"retry-after", b"1")]
            ) from None
        finally:
            state.searches -= 1
        last_key: object = row["last_key"]
    else:
        if cursor:
            at, last_id = _position(state.cursor_key, scope, cursor)
            try:
                args += [datetime.fromisoformat(str(at)), last_id]
            except ValueError:
                raise Invalid("malformed cursor") from None
        row = await state.db.fetchrow(LISTINGS[(bool(cursor), creator_id is not None)], *args)
        last_key = row["last_key"].isoformat() if row["more"] else None
    next_cursor = (
        encode_cursor(state.cursor_key, scope, last_key, str(row["last_id"]))
        if row["more"]
        else None
    )
    cursor_json = "null" if next_cursor is None else f'"{next_cursor}"'
    return f'{{"items":{row["items"]},"nextCursor":{cursor_json}}}'


# ---------------------------------------------------------------------------------------------
# learning: the heartbeat and completion (lms.domain.learning.{progress,completion})


def needed_seconds(threshold: float, duration: float) -> float:
    return duration * threshold / 100.0


def watched_enough(threshold: float, watched: float, duration: float | None) -> bool:
    return bool(duration) and watched >= needed_seconds(threshold, duration or 0.0)


async def heartbeat(state: State, user_id: uuid.UUID, lesson_id: uuid.UUID, body: bytes) -> None:
    data = decode_body(body, Heartbeat)
    position = data.position_seconds
    try:
        row = await state.db.fetchrow(
            HEARTBEAT, lesson_id, user_id, position + 0.0, SEEK_SLACK_SECONDS
        )
    except asyncpg.ForeignKeyViolationError:
        raise HttpError(404, NOT_ENROLLED) from None
    if row is None:
        raise HttpError(404, NOT_ENROLLED)
    if not row["saved"]:
        raise Invalid(
            f"positionSeconds {position:g} is past the end of the video "
            f"({row['duration_seconds']:g} s)"
        )
    if row["completed"]:
        return
    threshold, _ = await state.watch_rule()
    if watched_enough(threshold, row["watched_seconds"], row["duration_seconds"]):
        await complete_lesson(state, user_id, lesson_id)


def to_certificate(state: State, row: asyncpg.Record) -> Certificate:
    return Certificate(
        id=row["id"],
        serial_hash=row["serial_hash"],
        issued_at=row["issued_at"],
        enrollment_id=row["enrollment_id"],
        course=CertificateCourse(id=row["course_id"], title=row["course_title"]),
        learner=CertificateLearner(full_name=row["learner_name"]),
        creator_name=row["creator_name"],
        verify_url=f"{state.config.base_url}/certificates/verify/{row['serial_hash']}",
        status=row["status"],
        revoked_at=row["revoked_at"],
        jws=row["jws"],
    )


async def issue_certificate(
    state: State, conn: asyncpg.Connection, facts: asyncpg.Record
) -> asyncpg.Record:
    config = state.config
    achievement = credential.Achievement(
        certificate_id=uuid.uuid4(),
        serial_hash=secrets.token_hex(24),
        enrollment_id=facts["enrollment_id"],
        issued_at=datetime.now(UTC).replace(microsecond=0),
        learner_name=facts["learner_name"],
        course_id=facts["course_id"],
        course_title=facts["course_title"],
    )
    jws = credential.sign(
        achievement,
        config.signing_key,
        issuer_url=config.base_url,
        issuer_name=config.issuer_name,
    )
    row = await conn.fetchrow(
        CERT_INSERT,
        achievement.certificate_id,
        facts["user_id"],
        facts["course_id"],
        facts["enrollment_id"],
        achievement.serial_hash,
        achievement.learner_name,
        achievement.course_title,
        facts["creator_name"],
        jws,
        achievement.issued_at,
    )
    if row is None:  # issued meanwhile by another transaction: that one stands
        row = await conn.fetchrow(CERT_OF_ENROLLMENT, facts["enrollment_id"])
    return row


async def complete_lesson(state: State, user_id: uuid.UUID, lesson_id: uuid.UUID) -> bytes:
    threshold, required = await state.watch_rule()
    async with state.db.acquire() as conn, conn.transaction():
        try:
            facts = await conn.fetchrow(LOCK_FOR_COMPLETION, lesson_id, user_id)
        except asyncpg.ForeignKeyViolationError:
            raise HttpError(404, NOT_ENROLLED) from None
        if facts is None:
            raise HttpError(404, NOT_ENROLLED)
        duration = facts["duration_seconds"]
        if required and facts["has_video"] and not facts["lesson_completed"] and duration:
            watched = facts["watched_seconds"]
            if not watched_enough(threshold, watched, duration):
                left = math.ceil(needed_seconds(threshold, duration) - watched)
                raise HttpError(
                    409,
                    f"watch {left} more second{'s' if left != 1 else ''} of this lesson's video "
                    f"first: {watched / duration * 100:.1f}% of {duration:.0f} s watched, "
                    f"{threshold:g}% needed",
                )
        done = await conn.fetchrow(
            MARK_COMPLETED, facts["enrollment_id"], lesson_id, user_id, facts["course_id"]
        )
        certificate = None
        if done["completed"]:
            if facts["certificate_id"] is None:
                row = await issue_certificate(state, conn, facts)
            else:
                row = await conn.fetchrow(CERT_BY_ID, facts["certificate_id"])
            certificate = to_certificate(state, row)
    progress: Decimal = done["progress"]
    return ENCODER.encode(
        LessonCompletion(
            lesson_id=lesson_id,
            completed=True,
            progress=float(progress),
            course_completed=done["completed"],
            certificate=certificate,
        )
    )


async def verify(state: State, serial_hash: str) -> tuple[int, bytes]:
    serial = serial_hash.strip().lower()
    row = await state.db.fetchrow(CERT_BY_SERIAL, serial) if SERIAL_PATTERN.match(serial) else None
    if row is None:
        return 404, ENCODER.encode(
            NotVerified(valid=False, status_code=404, detail="no certificate has this serial")
        )
    answer = Verification(
        valid=row["status"] == "VALID",
        certificate=VerifiedCertificate(
            serial_hash=row["serial_hash"],
            issued_at=row["issued_at"],
            learner_name=row["learner_name"],
            course_title=row["course_title"],
            course_id=row["course_id"],
            creator_name=row["creator_name"],
            status=row["status"],
            revoked_at=row["revoked_at"],
            verify_url=f"{state.config.base_url}/certificates/verify/{row['serial_hash']}",
            jws=row["jws"],
        ),
    )
    return 200, ENCODER.encode(answer)


# ---------------------------------------------------------------------------------------------
# ASGI


JSON_TYPE = (b"content-type", b"application/json")


def error_body(status: int, detail: str) -> bytes:
    return ENCODER.encode({"status_code": status, "detail": detail})


async def respond(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    all_headers = list(headers or [])
    if body or status not in (204, 304):
        all_headers.append(JSON_TYPE)
    all_headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": all_headers})
    await send({"type": "http.response.body", "body": body})


async def read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


UUID_SEGMENT = r"([0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12})"
COURSE_PATH = re.compile(rf"^/courses/{UUID_SEGMENT}/?$")
LESSON_PATH = re.compile(rf"^/lessons/{UUID_SEGMENT}/(progress|complete)/?$")
VERIFY_PATH = re.compile(r"^/certificates/verify/([^/]+)/?$")


def echo_request_id(send: Send, request_id: bytes) -> Send:
    async def sender(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message["headers"], (b"x-request-id", request_id)]
        await send(message)

    return sender


class App:
    def __init__(self) -> None:
        self.state: State | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        state = self.state
        if state is None:
            raise RuntimeError("the lifespan starts the state")
        # X-Request-ID comes back as sent, as lms answers it: the suite's wrk scripts match
        # responses to requests by it (bench/suite.py, bench/learning.py).
        request_id = next((v for k, v in scope["headers"] if k == b"x-request-id"), None)
        if request_id is not None:
            send = echo_request_id(send, request_id)
        try:
            await self.route(state, scope, receive, send)
        except HttpError as exc:
            await respond(send, exc.status, error_body(exc.status, exc.detail), exc.headers)
        except Invalid as exc:
            await respond(send, 400, error_body(400, exc.detail))
        except (QueryInvalid, FieldError) as exc:
            query = scope.get("query_string", b"").decode("latin-1")
            where = scope["path"] + (f"?{query}" if query else "")
            source = "query" if isinstance(exc, QueryInvalid) else "body"
            body = ValidationFailed(
                400,
                f"Validation failed for {scope['method']} {where}",
                [ValidationItem(exc.message, exc.key, source)],
            )
            await respond(send, 400, ENCODER.encode(body))

    async def route(self, state: State, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        method: str = scope["method"]
        headers = dict(scope["headers"])
        if path in ("/courses", "/courses/"):
            if method != "GET":
                raise HttpError(405, "Method Not Allowed")
            params = query_params(scope.get("query_string", b""))
            catalog_params(params)  # a bad parameter is a 400 before the token is looked at
            who = await authenticate(state, headers)
            client = scope.get("client")
            text = await list_courses(state, params, client[0] if client else None)
            await self.catalog_answer(send, text.encode(), who is not None, headers)
            return
        if match := COURSE_PATH.match(path):
            if method != "GET":
                raise HttpError(405, "Method Not Allowed")
            who = await authenticate(state, headers)
            row = await state.db.fetchrow(COURSE_BY_ID, uuid.UUID(match.group(1)))
            visible = row is not None and (
                row["status"] == "PUBLISHED"
                or (who is not None and (row["creator_id"] == who[0] or who[1] == "ADMIN"))
            )
            if row is None or not visible:
                raise HttpError(404, "no such course")
            await self.catalog_answer(send, row["body"].encode(), who is not None, headers)
            return
        if match := LESSON_PATH.match(path):
            if method != "POST":
                raise HttpError(405, "Method Not Allowed")
            user_id = await require_user(state, headers)
            lesson_id = uuid.UUID(match.group(1))
            if match.group(2) == "progress":
                await heartbeat(state, user_id, lesson_id, await read_body(receive))
                await respond(send, 204, b"")
            else:
                await respond(send, 200, await complete_lesson(state, user_id, lesson_id))
            return
        if match := VERIFY_PATH.match(path):
            if method != "GET":
                raise HttpError(405, "Method Not Allowed")
            status, body = await verify(state, match.group(1))
            cache = [(b"cache-control", VERIFY_CACHE.encode()), (b"vary", b"Accept")]
            await respond(send, status, body, cache)
            return
        if path == "/healthz":
            await respond(send, 200, b'{"status":"ok"}')
            return
        raise HttpError(404, "Not Found")

    @staticmethod
    async def catalog_answer(
        send: Send, body: bytes, private: bool, headers: dict[bytes, bytes]
    ) -> None:
        etag = etag_of(body)
        extra = [
            (b"etag", etag.encode()),
            (b"cache-control", (PRIVATE_CACHE if private else PUBLIC_CACHE).encode()),
            (b"vary", b"Authorization"),
        ]
        if not_modified(headers.get(b"if-none-match", b"").decode("latin-1") or None, etag):
            await respond(send, 304, b"", extra)
        else:
            await respond(send, 200, body, extra)

    async def lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    self.state = State(Config.from_env())
                    await self.state.start()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.state is not None:
                    await self.state.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return


app = App()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.peers.raw_limit",
        description="lms's five hot endpoints as a bare ASGI app on Granian (benchmark peer)",
    )
    parser.add_argument("--host", default=os.environ.get("LMS_HOST") or "127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("LMS_PORT") or 8000))
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    Config.from_env()  # fail here, with one line, rather than in every worker
    from granian import Granian
    from granian.constants import Interfaces, Loops, RuntimeModes

    Granian(
        "bench.peers.raw_limit:app",
        address=args.host,
        port=args.port,
        interface=Interfaces.ASGI,
        workers=args.workers,
        runtime_mode=RuntimeModes.st,
        loop=Loops.uvloop,
        backlog=2048,
        log_access=False,
    ).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
