"""The floor: lms's five hot endpoints as a bare ASGI callable on Granian, no framework.

The same work as lms per request (the token check against the user's current state, the same
SQL on asyncpg, PostgreSQL building the catalog's JSON, msgspec for the rest) and nothing else:
no routing table, no middleware stack, no dependency injection, no request logging or metrics.
It imports from `lms` what needs no framework: the SQL itself (`lms.db.queries.{catalog,
learning,certificates,rate_limits,users}`, constants or the query functions), the token check
(`lms.domain.auth.tokens.decode_token`), the wire Structs (`lms.domain.{learning,certificates}.
schemas`), cursor signing and the page text (`lms.domain.paging`), the rate-limit client key
(`lms.domain.rate_limits.client_key`), the per-process search cap and its wait in line
(`lms.domain.courses.search_slots`), the body decoder and its error messages
(`lms.api.json_body`), the certificate key and VC-JWT (`lms.domain.certificates.keys`,
`.credential`). Nothing that imports Litestar: what lms keeps only in such modules (the HTTP
wording of authentication, the cache headers, the watch rule, the certificate services) is
copied here and says so.

    .venv/bin/python -m bench.peers.raw_limit --port 8001 --workers 2

Environment (as lms): DATABASE_URL, LMS_JWT_SECRET, LMS_JWT_ALGORITHM, LMS_CERT_SIGNING_KEY,
LMS_PUBLIC_BASE_URL (else http://LMS_HOST:LMS_PORT), LMS_ISSUER_NAME, LMS_SEARCH_RATE_LIMIT,
LMS_SEARCH_CONCURRENCY, LMS_DB_POOL_MIN, LMS_DB_POOL_MAX.
"""

from __future__ import annotations

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
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg
import msgspec

from lms.api.json_body import FieldError
from lms.api.json_body import decode as decode_body
from lms.db.queries import catalog as catalog_sql
from lms.db.queries import certificates as certificate_sql
from lms.db.queries import learning as learning_sql
from lms.db.queries import refresh_tokens as refresh_token_sql
from lms.db.queries import users as user_sql
from lms.domain.auth import session_state
from lms.domain.auth.tokens import ACCESS, InvalidToken, decode_token
from lms.domain.certificates import credential, status_list
from lms.domain.certificates.keys import SigningKey, load_signing_key
from lms.domain.certificates.schemas import (
    Certificate,
    CertificateCourse,
    CertificateLearner,
    NotVerified,
    Verification,
    VerifiedCertificate,
)
from lms.domain.courses.catalog import KEEP_FROM_MATCHES
from lms.domain.courses.catalog import _keep as keep_search_top
from lms.domain.courses.search_slots import SEARCH_LINE_PER_SLOT, SEARCH_WAIT_SECONDS, SearchSlots
from lms.domain.errors import Invalid, TooMany, Unavailable
from lms.domain.events.log import event_texts, record_events
from lms.domain.learning.schemas import Heartbeat, LessonCompletion
from lms.domain.paging import decode_cursor, encode_cursor, json_page
from lms.domain.rate_limits import BatchedLimit, client_key
from lms.settings import Settings

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
    cors_origins: frozenset[str]
    pool_min: int
    pool_max: int
    signing_key: SigningKey
    # what lms.domain.auth.tokens.decode_token reads: the JWT secret and algorithm
    token_settings: Settings

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
        jwt_secret, jwt_algorithm = env["LMS_JWT_SECRET"], get("LMS_JWT_ALGORITHM", "HS256")
        return cls(
            database_url=env["DATABASE_URL"],
            jwt_secret=jwt_secret,
            jwt_algorithm=jwt_algorithm,
            base_url=get("LMS_PUBLIC_BASE_URL", f"http://{host}:{port}").rstrip("/"),
            issuer_name=get("LMS_ISSUER_NAME", "LMS"),
            search_rate_limit=int(get("LMS_SEARCH_RATE_LIMIT", "120")),
            search_concurrency=int(get("LMS_SEARCH_CONCURRENCY", "4")),
            cors_origins=frozenset(
                o.strip() for o in env.get("LMS_CORS_ORIGINS", "").split(",") if o.strip()
            ),
            pool_min=int(get("LMS_DB_POOL_MIN", "2")),
            pool_max=int(get("LMS_DB_POOL_MAX", "10")),
            signing_key=load_signing_key(env["LMS_CERT_SIGNING_KEY"]),
            token_settings=Settings(jwt_secret=jwt_secret, jwt_algorithm=jwt_algorithm),
        )


# ---------------------------------------------------------------------------------------------
# SQL: lms's own statements on these paths, imported from lms.db.queries (so "the same SQL" holds
# by construction), plus the two this process must run differently (below). bench.suite's pgbench
# scripts read LISTINGS, SEARCHES, COURSE_BY_ID, CERT_BY_SERIAL, HEARTBEAT, LOCK_FOR_COMPLETION
# and MARK_COMPLETED from this module.

LISTINGS = catalog_sql.LISTINGS
SEARCHES = catalog_sql.SEARCHES
COURSE_BY_ID = catalog_sql.COURSE_BY_ID
HEARTBEAT = learning_sql.HEARTBEAT
LOCK_FOR_COMPLETION = learning_sql.LOCK_FOR_COMPLETION
MARK_COMPLETED = learning_sql.MARK_COMPLETED


def _statement_of(query: Callable[..., Coroutine[Any, Any, object]], *args: object) -> str:
    """The text an lms query function sends, for a statement lms keeps inside a function body:
    the function is run against a connection that records the statement instead of running it."""

    class Recorder:
        statement = ""

        async def fetchrow(self, statement: str, *_args: object) -> None:
            self.statement = statement

    recorder = Recorder()
    with contextlib.suppress(StopIteration):
        query(recorder, *args).send(None)
    if not recorder.statement:
        raise RuntimeError(f"{query.__qualname__} sent no statement through fetchrow")
    return recorder.statement


# For bench.suite's pgbench script (verify answers through certificate_sql.by_serial itself).
CERT_BY_SERIAL = _statement_of(certificate_sql.by_serial, "")

# Local on purpose. lms reads the settings row through Piccolo's builder (lms.db.queries.
# system_settings.read: every column, on Piccolo's engine), which this process does not start;
# these are the two columns the learning paths use, on the asyncpg pool.
SYSTEM_SETTINGS = (
    "SELECT completion_threshold_percent, require_watch_to_complete FROM system_settings "
    "WHERE id = 1"
)
# Local on purpose: lms.db.queries.certificates.register_signing_key passes the JWK as a dict
# through the jsonb codec lms's pool installs on every connection (lms.db.engine); this pool
# installs none, so the JWK goes as JSON text with a cast. Run once, at startup.
REGISTER_KEY = """
INSERT INTO certificate_signing_keys (kid, public_jwk) VALUES ($1, $2::jsonb)
ON CONFLICT (kid) DO NOTHING
"""

# ---------------------------------------------------------------------------------------------
# wire objects: lms's own Structs (lms.domain.{learning,certificates}.schemas, imported above);
# these two are the shape of Litestar's validation error, which lms does not declare


class ValidationItem(msgspec.Struct):
    message: str
    key: str
    source: str


class ValidationFailed(msgspec.Struct):
    status_code: int
    detail: str
    extra: list[ValidationItem]


ENCODER = msgspec.json.Encoder()
# Copies of lms's values: the modules that define them (lms.domain.learning.{completion,progress},
# lms.domain.certificates.services, lms.domain.courses.catalog) import lms.context, which imports
# Litestar, and this process stays free of it.
NOT_ENROLLED = "no such lesson in a course you are enrolled in"
SERIAL_PATTERN = re.compile(r"^[0-9a-f]{32,64}$")
CURSOR_PATTERN = r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$"
CURSOR_RE = re.compile(CURSOR_PATTERN)
PUBLIC_CACHE = "public, max-age=30, stale-while-revalidate=60"
PRIVATE_CACHE = "private, no-cache"
VERIFY_CACHE = "public, max-age=25"  # lms.domain.certificates.controllers.VERIFY_CACHE
SEARCH_TIMEOUT_SECONDS = 5.0
SEEK_SLACK_SECONDS = 2.0
MIN_INTERVAL_SECONDS = 0.5
WATCH_CARRY_SECONDS = 2.0
TOO_SOON = "heartbeat too soon: one a second per enrollment is enough (this one changed nothing)"
STILL_PROCESSING = (
    "this lesson's video is still processing: its length is not known yet, so how much of it "
    "was watched cannot be measured; try again in a few minutes"
)
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
        # login (refresh token family) -> (revoked, loaded at), as lms.domain.auth.session_state
        self.sessions: dict[uuid.UUID, tuple[bool, float]] = {}
        self.settings: tuple[float, bool] | None = None  # threshold percent, require watching
        self.settings_loaded_at = 0.0
        self.listening = False
        # lms's own per-process cap and its short wait in line (lms.domain.courses.search_slots).
        self.searches = SearchSlots()
        # lms's search limit, counted as lms counts it (lms.domain.courses.catalog).
        self.search_counts = BatchedLimit(60)
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
        self.sessions.clear()
        self.settings = None

    def _user_changed(self, _c: object, _p: int, _ch: str, payload: str) -> None:
        try:
            self.users.pop(uuid.UUID(payload), None)
        except ValueError:
            self.users.clear()

    def _session_revoked(self, _c: object, _p: int, _ch: str, payload: str) -> None:
        try:
            self.sessions.pop(uuid.UUID(payload), None)
        except ValueError:
            self.sessions.clear()

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
                await conn.add_listener(session_state.CHANNEL, self._session_revoked)
                self.users.clear()
                self.sessions.clear()
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
        row = await user_sql.auth_state(self.db, user_id)
        if row is None:
            return None
        state = UserState(row["role"], row["is_active"], row["token_version"], now)
        if self.listening:
            if len(self.users) >= 100_000:
                self.users.pop(next(iter(self.users)))
            self.users[user_id] = state
        return state

    async def session_revoked(self, session_id: uuid.UUID) -> bool:
        """Whether the login was ended: lms's cache (no query on a hit while the LISTEN
        connection is up, none older than its max age) and lms's statement on a miss."""
        hit = self.sessions.get(session_id)
        now = time.monotonic()
        if hit is not None and self.listening and now - hit[1] < session_state.MAX_AGE_SECONDS:
            return hit[0]
        revoked = await refresh_token_sql.session_revoked(self.db, session_id)
        if self.listening:
            if len(self.sessions) >= session_state.MAX_ENTRIES:
                self.sessions.pop(next(iter(self.sessions)))
            self.sessions[session_id] = (revoked, now)
        return revoked

    async def watch_rule(self) -> tuple[float, bool]:
        now = time.monotonic()
        if self.settings is not None and (self.listening or now - self.settings_loaded_at < 2.0):
            return self.settings
        row = await self.db.fetchrow(SYSTEM_SETTINGS)
        value = (float(row["completion_threshold_percent"]), row["require_watch_to_complete"])
        self.settings, self.settings_loaded_at = value, now
        return value


# ---------------------------------------------------------------------------------------------
# authentication: lms's token check (lms.domain.auth.tokens), then the user's current state and
# the 401 wording of lms.domain.auth.authentication, copied (it imports Litestar via lms.context).
# An access token names its login (`sid`, required by decode_token), refused once that login has
# ended, from a per-process cache as lms keeps it (no query on a hit).


async def authenticate(state: State, headers: dict[bytes, bytes]) -> tuple[uuid.UUID, str] | None:
    """(user id, current role) for a valid access token; None without a bearer token."""
    scheme, _, token = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    try:
        claims = decode_token(state.config.token_settings, token, (ACCESS,))
    except InvalidToken as exc:
        raise unauthenticated(str(exc)) from None
    user_id, version = claims.user_id, claims.token_version
    user = await state.user(user_id)
    if user is None:
        raise unauthenticated("invalid token")
    if not user.is_active:
        raise unauthenticated("account is deactivated")
    if user.token_version != version:
        raise unauthenticated("token has been revoked; log in again")
    if claims.session_id is not None and await state.session_revoked(claims.session_id):
        raise unauthenticated("this login is revoked; log in again")
    return user_id, user.role


async def require_user(state: State, headers: dict[bytes, bytes]) -> uuid.UUID:
    who = await authenticate(state, headers)
    if who is None:
        raise unauthenticated("missing bearer token")
    return who[0]  # every role may track progress (LEARNER and up)


# ---------------------------------------------------------------------------------------------
# the catalog: the ETag and 304 rule of lms.domain.courses.catalog, copied (it imports Litestar
# via lms.context); the query parameters as Litestar checks lms's handler signature


def etag_of(body: bytes) -> str:
    return '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'


def not_modified(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    candidates = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
    return "*" in candidates or etag in candidates


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


def search_slot_hit(state: State, client: str | None) -> None:
    """lms's search limit, as lms counts it (lms.domain.rate_limits.BatchedLimit): in memory,
    added to the shared counters in aggregate every 0.1 s, no statement per search."""
    try:
        state.search_counts.take(
            state.db,
            f"ip:search:{client_key(client)}",
            state.config.search_rate_limit,
            "searches from this address",
            label="search",
        )
    except TooMany as exc:
        raise HttpError(
            429, exc.detail, [(b"retry-after", str(exc.retry_after).encode())]
        ) from None


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
        after_rank: tuple[float, uuid.UUID] | None = None
        if cursor:
            rank, last_id = _position(state.cursor_key, scope, cursor)
            if not isinstance(rank, int | float) or isinstance(rank, bool):
                raise Invalid("malformed cursor")
            after_rank = (float(rank), last_id)
        search_slot_hit(state, client)
        cap = state.config.search_concurrency
        try:
            async with state.searches.take(
                cap, wait=SEARCH_WAIT_SECONDS, line=cap * SEARCH_LINE_PER_SLOT
            ):
                # As lms.domain.courses.catalog: a common query's kept top first (lms_0016),
                # else (or below it) the plain ranked search; a common query's top is then
                # kept, in the background, by lms's own code.
                kept = None
                if creator_id is None:
                    kept = await catalog_sql.kept_search_page(
                        state.db,
                        query=query,
                        limit=limit,
                        after=after_rank,
                        within=SEARCH_TIMEOUT_SECONDS,
                    )
                row = (
                    kept
                    if kept is not None
                    else await catalog_sql.search_page(
                        state.db,
                        query=query,
                        limit=limit,
                        after=after_rank,
                        creator_id=creator_id,
                        within=SEARCH_TIMEOUT_SECONDS,
                    )
                )
        except Unavailable as exc:  # no slot freed within the wait
            raise HttpError(503, exc.detail, [(b"retry-after", b"1")]) from None
        except TimeoutError:
            if creator_id is None and after_rank is None:
                keep_search_top(state.db, query)
            raise HttpError(
                503, "search took too long; try more specific words", [(b"retry-after", b"1")]
            ) from None
        common = kept is None and after_rank is None and row["matches"] >= KEEP_FROM_MATCHES
        if common and creator_id is None:
            keep_search_top(state.db, query)
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
    page: str = json_page(row["items"], next_cursor)
    return page


# ---------------------------------------------------------------------------------------------
# learning: the heartbeat and completion (lms.domain.learning.{progress,completion}) and the
# certificate's issue (lms.domain.certificates.services): their steps and the watch rule are
# copied, as those modules take lms.context.AppContext (Litestar); the SQL is lms's own


def needed_seconds(threshold: float, duration: float) -> float:
    return duration * threshold / 100.0


def watched_enough(threshold: float, watched: float, duration: float | None) -> bool:
    return bool(duration) and watched >= needed_seconds(threshold, duration or 0.0)


async def heartbeat(state: State, user_id: uuid.UUID, lesson_id: uuid.UUID, body: bytes) -> None:
    data = decode_body(body, Heartbeat)
    position = data.position_seconds
    try:
        row = await state.db.fetchrow(
            HEARTBEAT,
            lesson_id,
            user_id,
            position + 0.0,
            SEEK_SLACK_SECONDS,
            MIN_INTERVAL_SECONDS,
            WATCH_CARRY_SECONDS,
        )
    except asyncpg.ForeignKeyViolationError:
        raise HttpError(404, NOT_ENROLLED) from None
    if row is None:
        raise HttpError(404, NOT_ENROLLED)
    if not row["in_video"]:
        raise Invalid(
            f"positionSeconds {position:g} is past the end of the video "
            f"({row['duration_seconds']:g} s)"
        )
    if not row["on_time"]:
        raise HttpError(429, TOO_SOON, [(b"retry-after", b"1")])
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
        jws=row["jws"] if row["status"] == "VALID" else None,
    )


async def issue_certificate(
    state: State,
    conn: asyncpg.Connection,
    facts: asyncpg.Record,
    events: list[tuple[str, dict[str, object]]],
) -> asyncpg.Record:
    config = state.config
    list_id, index = status_list.position(await certificate_sql.next_status_number(conn))
    achievement = credential.Achievement(
        certificate_id=uuid.uuid4(),
        serial_hash=secrets.token_hex(24),
        enrollment_id=facts["enrollment_id"],
        issued_at=datetime.now(UTC).replace(microsecond=0),
        learner_name=facts["learner_name"],
        course_id=facts["course_id"],
        course_title=facts["course_title"],
        status_list=list_id,
        status_index=index,
    )
    jws = credential.sign(
        achievement,
        config.signing_key,
        issuer_url=config.base_url,
        issuer_name=config.issuer_name,
    )
    row = await certificate_sql.insert(
        conn,
        certificate_id=achievement.certificate_id,
        user_id=facts["user_id"],
        course_id=facts["course_id"],
        enrollment_id=facts["enrollment_id"],
        serial_hash=achievement.serial_hash,
        learner_name=achievement.learner_name,
        course_title=achievement.course_title,
        creator_name=facts["creator_name"],
        jws=jws,
        issued_at=achievement.issued_at,
        status_list=list_id,
        status_index=index,
    )
    if row is None:  # issued meanwhile by another transaction: that one stands
        row = await certificate_sql.for_enrollment(conn, facts["enrollment_id"])
        await record_events(conn, events)
        return row
    # certificate.issued, as lms.domain.certificates.services.certificate_event words it
    issued = {
        "certificateId": row["id"],
        "enrollmentId": row["enrollment_id"],
        "userId": row["user_id"],
        "courseId": row["course_id"],
        "verifyUrl": f"{config.base_url}/certificates/verify/{row['serial_hash']}",
        "issuedAt": row["issued_at"],
        "status": row["status"],
    }
    await record_events(conn, [*events, ("certificate.issued", issued)])
    return row


def check_watched(threshold: float, required: bool, facts: asyncpg.Record) -> None:
    """The watch rule's 409s (lms.domain.learning.completion._check_watched, copied)."""
    if not required or not facts["has_video"] or facts["lesson_completed"]:
        return
    duration = facts["duration_seconds"]
    if not duration:
        raise HttpError(409, STILL_PROCESSING)
    watched = facts["watched_seconds"]
    if watched_enough(threshold, watched, duration):
        return
    left = math.ceil(needed_seconds(threshold, duration) - watched)
    raise HttpError(
        409,
        f"watch {left} more second{'s' if left != 1 else ''} of this lesson's video "
        f"first: {watched / duration * 100:.1f}% of {duration:.0f} s watched, "
        f"{threshold:g}% needed",
    )


async def complete_with_certificate(
    state: State,
    threshold: float,
    required: bool,
    lesson_id: uuid.UUID,
    user_id: uuid.UUID,
    prepared: asyncpg.Record,
) -> bytes | None:
    """As lms.domain.learning.completion._complete_with_certificate: sign with no transaction
    open, then lms_complete_with_certificate() (lms_0020) stores the lesson, the enrollment,
    the certificate and the events in one statement; None: something changed, decide afresh."""
    config = state.config
    enrollment_id, course_id = prepared["enrollment_id"], prepared["course_id"]
    completed_at = datetime.now(UTC)
    list_id, index = status_list.position(prepared["status_number"])
    achievement = credential.Achievement(
        certificate_id=uuid.uuid4(),
        serial_hash=secrets.token_hex(24),
        enrollment_id=enrollment_id,
        issued_at=datetime.now(UTC).replace(microsecond=0),
        learner_name=prepared["learner_name"],
        course_id=course_id,
        course_title=prepared["course_title"],
        status_list=list_id,
        status_index=index,
    )
    jws = credential.sign(
        achievement,
        config.signing_key,
        issuer_url=config.base_url,
        issuer_name=config.issuer_name,
    )
    ids = {"enrollmentId": enrollment_id, "userId": user_id, "courseId": course_id}
    events: list[tuple[str, dict[str, object]]] = []
    if not prepared["lesson_completed"]:
        events.append(("lesson.completed", {**ids, "lessonId": lesson_id, "progress": 100.0}))
    events.append(("course.completed", {**ids, "completedAt": completed_at}))
    events.append(
        (
            "certificate.issued",
            {
                "certificateId": achievement.certificate_id,
                **ids,
                "verifyUrl": f"{config.base_url}/certificates/verify/{achievement.serial_hash}",
                "issuedAt": achievement.issued_at,
                "status": "VALID",
            },
        )
    )
    try:
        row = await learning_sql.complete_with_certificate(
            state.db,
            lesson_id,
            user_id,
            require_watch=required,
            threshold_percent=threshold,
            lesson_completed=prepared["lesson_completed"],
            completed_at=completed_at,
            certificate=certificate_sql.CertificateToStore(
                certificate_id=achievement.certificate_id,
                serial_hash=achievement.serial_hash,
                learner_name=achievement.learner_name,
                course_title=achievement.course_title,
                jws=jws,
                issued_at=achievement.issued_at,
                status_list=list_id,
                status_index=index,
            ),
            events=event_texts(events),
        )
    except asyncpg.UniqueViolationError:
        return None
    if row is None:
        return None
    return ENCODER.encode(
        LessonCompletion(
            lesson_id=lesson_id,
            completed=True,
            progress=100.0,
            course_completed=True,
            certificate=to_certificate(state, row),
        )
    )


async def complete_lesson(state: State, user_id: uuid.UUID, lesson_id: uuid.UUID) -> bytes:
    """As lms.domain.learning.completion.complete_lesson: one call of
    lms_complete_or_prepare() (lms_0020) for every completion that issues no certificate; for
    the one that completes a course without its certificate yet, complete_with_certificate,
    and the transaction should that find something changed."""
    threshold, required = await state.watch_rule()
    try:
        quick = await learning_sql.complete_in_one_statement(
            state.db,
            lesson_id,
            user_id,
            require_watch=required,
            threshold_percent=threshold,
        )
    except asyncpg.ForeignKeyViolationError:
        raise HttpError(404, NOT_ENROLLED) from None
    if quick is None:
        raise HttpError(404, NOT_ENROLLED)
    if not quick["allowed"]:
        check_watched(threshold, required, quick)
    elif quick["needs_certificate"]:
        issued = await complete_with_certificate(
            state, threshold, required, lesson_id, user_id, quick
        )
        if issued is not None:
            return issued
    else:
        certificate = None
        if quick["completed"]:  # completed before: the same certificate, every time
            row = await certificate_sql.by_id(state.db, quick["certificate_id"])
            certificate = to_certificate(state, row)
        return ENCODER.encode(
            LessonCompletion(
                lesson_id=lesson_id,
                completed=True,
                progress=float(quick["progress"]),
                course_completed=quick["completed"],
                certificate=certificate,
            )
        )
    async with state.db.acquire() as conn, conn.transaction():
        try:
            facts = await conn.fetchrow(LOCK_FOR_COMPLETION, lesson_id, user_id)
        except asyncpg.ForeignKeyViolationError:
            raise HttpError(404, NOT_ENROLLED) from None
        if facts is None:
            raise HttpError(404, NOT_ENROLLED)
        check_watched(threshold, required, facts)
        done = await conn.fetchrow(
            MARK_COMPLETED, facts["enrollment_id"], lesson_id, user_id, facts["course_id"]
        )
        # The completion's events, as lms.domain.learning.completion writes them (one
        # statement, with certificate.issued when one is issued).
        events: list[tuple[str, dict[str, object]]] = []
        if not facts["lesson_completed"]:
            events.append(
                (
                    "lesson.completed",
                    {
                        "enrollmentId": facts["enrollment_id"],
                        "userId": user_id,
                        "courseId": facts["course_id"],
                        "lessonId": lesson_id,
                        "progress": float(done["progress"]),
                    },
                )
            )
        if done["completed"] and not facts["course_completed"]:
            events.append(
                (
                    "course.completed",
                    {
                        "enrollmentId": facts["enrollment_id"],
                        "userId": user_id,
                        "courseId": facts["course_id"],
                        "completedAt": done["completed_at"],
                    },
                )
            )
        certificate = None
        if done["completed"] and facts["certificate_id"] is None:
            row = await issue_certificate(state, conn, facts, events)
            certificate = to_certificate(state, row)
        else:
            await record_events(conn, events)
            if done["completed"]:
                row = await certificate_sql.by_id(conn, facts["certificate_id"])
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
    row = (
        await certificate_sql.by_serial(state.db, serial) if SERIAL_PATTERN.match(serial) else None
    )
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
            jws=row["jws"] if row["status"] == "VALID" else None,
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


# ---------------------------------------------------------------------------------------------
# CORS (bench suite's browser variant): the headers lms's CORSConfig (lms.app) makes Litestar
# send, for the origins of LMS_CORS_ORIGINS; nothing when it is unset, as in lms.

CORS_METHODS = b"DELETE, GET, OPTIONS, PATCH, POST, PUT"
CORS_ALLOWED = ("authorization", "content-type", "if-none-match", "x-request-id")
# Litestar adds its defaults to a preflight's list, and sorts the two together as they are.
CORS_PREFLIGHT_HEADERS = ", ".join(
    sorted({*CORS_ALLOWED, "Accept", "Accept-Language", "Content-Language", "Content-Type"})
).encode()
CORS_SIMPLE_HEADERS = ", ".join(sorted(CORS_ALLOWED)).encode()
CORS_EXPOSE = b"ETag, Location, Retry-After, X-Request-ID"
CORS_MAX_AGE = b"600"


async def cors_preflight(send: Send, origin: bytes, headers: dict[bytes, bytes], ok: bool) -> None:
    """The answer to an OPTIONS with an Origin, as Litestar's CORS middleware gives it."""
    method = headers.get(b"access-control-request-method", b"").decode("latin-1")
    asked = headers.get(b"access-control-request-headers", b"").decode("latin-1").split(",")
    allowed = {*CORS_ALLOWED, "accept", "accept-language", "content-language"}
    failures = []
    if method and method not in ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
        failures.append("method")
    if not ok:
        failures.append("Origin")
    if any(h.strip() and h.strip().lower() not in allowed for h in asked):
        failures.append("headers")
    if failures:
        body = f"Disallowed CORS {', '.join(failures)}".encode()
        text = (b"content-type", b"text/plain; charset=utf-8")
        await respond_raw(send, 400, body, [text, (b"vary", b"Origin")])
        return
    await respond_raw(
        send,
        204,
        b"",
        [
            (b"access-control-max-age", CORS_MAX_AGE),
            (b"access-control-allow-headers", CORS_PREFLIGHT_HEADERS),
            (b"access-control-allow-methods", CORS_METHODS),
            (b"access-control-allow-origin", origin),
            (b"vary", b"Origin"),
        ],
    )


async def respond_raw(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    if body:
        headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def vary_with_origin(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The answer's headers with Origin added to its Vary (kept, each value once), as lms's CORS
    layer does for every response while CORS is configured (lms.api.cors)."""
    values = [v for k, v in headers if k == b"vary"]
    tokens: list[str] = []
    for value in values:
        for token in value.decode("latin-1").split(","):
            if token.strip() and token.strip().lower() not in {t.lower() for t in tokens}:
                tokens.append(token.strip())
    if "*" not in tokens and "origin" not in {t.lower() for t in tokens}:
        tokens.append("Origin")
    vary = b"*" if "*" in tokens else ", ".join(tokens).encode("latin-1")
    return [*(h for h in headers if h[0] != b"vary"), (b"vary", vary)]


def cors_simple(send: Send, origin: bytes, ok: bool) -> Send:
    """A cross-origin request's answer gets what lms's CORS layer adds: the answer's Vary with
    Origin added, the exposed headers, the origin when allowed, the allowed headers and methods."""

    async def sender(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            headers = vary_with_origin(list(message["headers"]))
            headers.append((b"access-control-expose-headers", CORS_EXPOSE))
            if ok:
                headers.append((b"access-control-allow-origin", origin))
            headers += [
                (b"access-control-allow-headers", CORS_SIMPLE_HEADERS),
                (b"access-control-allow-methods", CORS_METHODS),
            ]
            message["headers"] = headers
        await send(message)

    return sender


def cors_varied(send: Send) -> Send:
    """A same-origin (no Origin) answer while CORS is configured: Origin added to its Vary."""

    async def sender(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = vary_with_origin(list(message["headers"]))
        await send(message)

    return sender


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
        origins = state.config.cors_origins
        origin = next((v for k, v in scope["headers"] if k == b"origin"), None) if origins else None
        if origin is not None:
            ok = origin.decode("latin-1") in origins
            if scope["method"] == "OPTIONS":
                await cors_preflight(send, origin, dict(scope["headers"]), ok)
                return
            send = cors_simple(send, origin, ok)
        elif origins:
            send = cors_varied(send)
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
