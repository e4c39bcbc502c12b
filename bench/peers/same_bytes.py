"""Do the peers answer what lms answers? The same requests to lms and to each peer, compared.

    .venv/bin/python -m bench.peers.same_bytes --lms http://127.0.0.1:8000 \\
        --peer raw=http://127.0.0.1:8001 --peer fastapi=http://127.0.0.1:8002 \\
        --peer express=http://127.0.0.1:8003

Needs the database and the JWT secret of the servers (DATABASE_URL, LMS_JWT_SECRET, as
bench.learning --url does): it mints the learners' tokens and prepares the write scenario's rows.
All servers must run with the same LMS_PUBLIC_BASE_URL and LMS_CERT_SIGNING_KEY (certificates
name the one and are signed by the other), and a search rate limit that lets some 60 searches a
minute through from one address (LMS_SEARCH_RATE_LIMIT; lms and peers share the counter table).

Reads (the catalog, course pages, verification, and their common errors) go to every server as
the same request; a cursor walk sends everyone the cursor lms answered with. Writes (heartbeats
and completions down to a course completion and its certificate) run as one fixed script on one
learner's enrollment, which is put back into the same starting state before each server's turn,
so every server starts from the same rows; afterwards the rows it left are compared too (the
lessons' progress with `credited_to`, the enrollment's watch clock: its lag behind its last
heartbeat, which the script leaves at the 2 s carry). The heartbeats play the watch clock's rules
(lms.domain.learning.progress: 429s, the carry, two lessons sharing the enrollment's time, a span
partly owed): time passes in the database, the enrollment's watch clock and previous heartbeat
moved back by whole seconds before a request, so the script takes seconds and every verdict is
far from its edge whatever the machine's latency. For the script, requireWatchToComplete is on at
95% and two lessons have a video (one still processing: 409); all is put back afterwards.

For each response: the status, the headers that carry meaning (content-type, cache-control,
vary, www-authenticate, retry-after; an ETag must be the one lms computes from the body served),
and the body. A body is IDENTICAL (same bytes), JSON-EQUAL (the same JSON tokens in the same
order, number and string literals byte for byte; only the whitespace between tokens differs, which
JSON does not give meaning to: lms's catalog bodies are PostgreSQL's json_build_object text, with
" : " and ", "), or DIFFERENT.

The same database work: with a superuser (unless --no-statements), the statements each server
runs for each request are read from PostgreSQL's statement log (bench.peers.db_work: log_statement
is set for the run and put back however it ends), with the rows its reads read (EXPLAIN ANALYZE
of the logged reads, afterwards). One check per peer and scenario is DIFFERENT when any request
of it runs more statements or round trips (BEGIN/COMMIT counted) than lms's, or reads far more
rows, unless KNOWN_EXTRAS says why the peer's stack must; the figures are printed after the
checks, and as one `same_bytes work: {json}` line.

Normalised, and why: a certificate issued during the run has its own id, serialHash, issuedAt,
verifyUrl (which holds the serial) and VC-JWT on every server (random serial, issue time), and
its own bit in a revocation status list (each issue takes the next number of
certificate_status_seq). They are checked for shape instead (the id a UUID, the serial 48 hex
digits, issuedAt whole seconds in UTC, verifyUrl naming the serial), and the VC-JWT is checked
in full: its header must be lms's byte for byte, its signature must verify with the key its kid
names and the algorithm that key signs with (RS256, ES256 or EdDSA: bench.vc_jwt), and its
payload must be lms's byte for byte once the certificate's id, serial, time and status list
entry are put back; the entry must name the list and index stored in the certificate's row. The
certificate is then revoked (the same revocation time on every server) and verified again, and
its completion repeated: a revoked certificate's answers carry `jws: null`. In the rows, the
times PostgreSQL stamps with now() are compared as present or absent, not by value.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import calendar
import contextlib
import hashlib
import json
import os
import re
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import jwt

from bench.harness import search_fills_done
from bench.peers.db_work import StatementLog, Work, rows_read, short
from bench.vc_jwt import PublishedKey, published_keys, status_entry_matches, verified_claims
from lms.derived_keys import Purpose, derived_key
from lms.domain.auth.logins import open_logins
from lms.settings import Settings

HEADERS_COMPARED = ("content-type", "cache-control", "vary", "www-authenticate", "retry-after")
NIL = "00000000-0000-0000-0000-000000000000"
TOKEN_RE = re.compile(
    r'"(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|null|[{}\[\]:,]|\S'
)


def json_tokens(body: bytes) -> list[str] | None:
    """The JSON tokens of `body` (literals as written), or None when it is not JSON."""
    text = body.decode("utf-8", errors="replace")
    try:
        json.loads(text)
    except ValueError:
        return None
    return TOKEN_RE.findall(text)


def millisecond_tokens(body: bytes) -> list[str] | None:
    """The tokens with times cut to milliseconds and cursors blanked: to tell a peer whose
    timestamps have millisecond precision (a JS Date) from one that answers otherwise wrong."""
    text = re.sub(rb"(\.\d{3})\d{3}Z", rb"\1000Z", body)
    text = re.sub(rb'"nextCursor":"[^"]*"', b'"nextCursor":"<cursor>"', text)
    return json_tokens(text)


def etag_of(body: bytes) -> str:
    return '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass
class Request:
    name: str
    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None


@dataclass
class Outcome:
    peer: str
    name: str
    verdict: str  # IDENTICAL, JSON-EQUAL, DIFFERENT
    problems: list[str]
    lms_status: int | None = None


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# ---------------------------------------------------------------------------------------------
# comparing


class Normaliser:
    """Replaces the write-time values of an issued certificate, after checking them."""

    def __init__(self, public_keys: dict[str, PublishedKey]) -> None:
        self.public_keys = public_keys

    def certificate(self, cert: dict[str, Any], problems: list[str]) -> dict[str, Any]:
        serial = str(cert.get("serialHash", ""))
        if not re.fullmatch(r"[0-9a-f]{48}", serial):
            problems.append(f"serialHash {serial!r} is not 48 hex digits")
        issued = str(cert.get("issuedAt", ""))
        if not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", issued):
            problems.append(f"issuedAt {issued!r} is not whole seconds in UTC")
        url = str(cert.get("verifyUrl", ""))
        if not url.endswith(f"/certificates/verify/{serial}"):
            problems.append(f"verifyUrl {url!r} does not name the serial")
        cert_id = str(cert.get("id", ""))
        out = dict(cert)
        out.update(
            serialHash="<serial>",
            issuedAt="<issued>",
            verifyUrl=url.replace(serial, "<serial>") if serial else url,
        )
        if "id" in cert:
            try:
                uuid.UUID(cert_id)
            except ValueError:
                problems.append(f"certificate id {cert_id!r} is not a UUID")
            out["id"] = "<id>"
        if cert.get("jws") is not None:  # null for a revoked certificate, compared as it is
            out["jws"] = self.jws(str(cert["jws"]), cert_id or None, serial, issued, problems)
        return out

    def jws(
        self, token: str, cert_id: str | None, serial: str, issued: str, problems: list[str]
    ) -> str:
        """`header.<payload with placeholders>` once the signature verified."""
        try:
            head, payload, _ = token.split(".")
            verified_claims(token, self.public_keys, check_times=False)
            text = b64url_decode(payload).decode()
        except (ValueError, jwt.InvalidTokenError) as exc:
            problems.append(f"the VC-JWT does not verify: {type(exc).__name__}: {exc}")
            return "<bad jws>"
        claims = json.loads(text)
        if claims.get("serialHash") != serial:
            problems.append("the VC-JWT's serialHash is not the certificate's")
        nbf = claims.get("nbf")
        if issued and nbf != calendar.timegm(time.strptime(issued, "%Y-%m-%dT%H:%M:%SZ")):
            problems.append(f"the VC-JWT's nbf {nbf} is not issuedAt {issued}")
        text = text.replace(serial, "<serial>").replace(issued, "<issued>")
        text = re.sub(r'"nbf":\d+', '"nbf":"<nbf>"', text)
        jti = str(claims.get("jti", ""))
        if cert_id is not None and jti != f"urn:uuid:{cert_id}":
            problems.append(f"the VC-JWT's jti {jti!r} is not the certificate's id")
        if jti.startswith("urn:uuid:"):
            text = text.replace(jti[len("urn:uuid:") :], "<id>")
        return head + "." + self.status_entry(text, claims, problems)

    @staticmethod
    def status_entry(text: str, claims: dict[str, Any], problems: list[str]) -> str:
        """The payload with its status list and index as placeholders, once the entry is shaped
        as lms's: `{issuer}/certificates/status/<list>` and `#<index>` (the row is checked
        against it in `writes`)."""
        entry = claims.get("credentialStatus")
        if not isinstance(entry, dict):
            problems.append("the VC-JWT has no credentialStatus")
            return text
        index = str(entry.get("statusListIndex", ""))
        url = str(entry.get("statusListCredential", ""))
        prefix = f"{claims.get('iss')}/certificates/status/"
        list_id = url[len(prefix) :] if url.startswith(prefix) else ""
        if not (index.isdigit() and list_id.isdigit()):
            problems.append(f"the status list entry {entry} names no list and index")
            return text
        text = text.replace(f'"statusListIndex":"{index}"', '"statusListIndex":"<index>"')
        text = text.replace(f"{url}#{index}", f"{prefix}<list>#<index>")
        return text.replace(f'"{url}"', f'"{prefix}<list>"')

    def body(self, body: bytes, problems: list[str]) -> bytes:
        """The body with any certificate in it normalised (re-encoded compactly if changed)."""
        if b'"jws"' not in body:
            return body
        try:
            value = json.loads(body)
        except ValueError:
            return body
        if isinstance(value, dict) and isinstance(value.get("certificate"), dict):
            value = {**value, "certificate": self.certificate(value["certificate"], problems)}
        return json.dumps(value, separators=(",", ":")).encode()


def compare(
    peer: str, name: str, want: Answer, got: Answer, normalise: Normaliser | None
) -> Outcome:
    problems: list[str] = []
    if got.status != want.status:
        problems.append(f"status {got.status}, lms {want.status}")
    for header in HEADERS_COMPARED:
        a, b = want.headers.get(header), got.headers.get(header)
        if a != b:
            problems.append(f"{header}: {b!r}, lms {a!r}")
    if "etag" in want.headers:
        tag = got.headers.get("etag")
        if tag is None:
            problems.append("no ETag")
        elif got.status == 200 and tag != etag_of(got.body):
            problems.append(f"ETag {tag} is not the hash of the body served")
    want_body, got_body = want.body, got.body
    if normalise is not None:
        want_body = normalise.body(want_body, [])  # lms's own certificate: the reference
        got_body = normalise.body(got_body, problems)
    if want_body == got_body:
        verdict = "IDENTICAL"
    elif (tokens := json_tokens(got_body)) is not None and tokens == json_tokens(want_body):
        verdict = "JSON-EQUAL"
    else:
        verdict = "DIFFERENT"
        if millisecond_tokens(got_body) == millisecond_tokens(want_body) is not None:
            problems.append(
                "the same but for the microseconds of timestamps (.123000Z for .123456Z) and "
                "the cursors, which carry them"
            )
        else:
            problems.append(f"body {got_body[:300]!r}\n         lms {want_body[:300]!r}")
    if problems and verdict != "DIFFERENT":
        verdict = "DIFFERENT"
    return Outcome(peer, name, verdict, problems, want.status)


# ---------------------------------------------------------------------------------------------
# the servers


class Servers:
    def __init__(self, lms: str, peers: dict[str, str]) -> None:
        self.names = ["lms", *peers]
        self.clients = {
            name: httpx.Client(base_url=url.rstrip("/"), timeout=30.0)
            for name, url in {"lms": lms, **peers}.items()
        }
        self.log: StatementLog | None = None  # --statements: each request's statements

    def send(self, name: str, request: Request) -> Answer:
        """One request (from a thread other than the event loop's when statements are logged:
        the loop runs the marker statements)."""
        window = self.log.window(name, request.name) if self.log else contextlib.nullcontext()
        with window:
            response = self.clients[name].request(
                request.method, request.path, headers=request.headers, content=request.body
            )
        return Answer(
            response.status_code,
            {k.lower(): v for k, v in response.headers.items()},
            response.content,
        )

    def close(self) -> None:
        for client in self.clients.values():
            client.close()


class Report:
    def __init__(self, peers: Iterable[str]) -> None:
        self.outcomes: dict[str, list[Outcome]] = {p: [] for p in peers}

    def add(self, outcome: Outcome) -> None:
        self.outcomes[outcome.peer].append(outcome)

    def print(self, show: bool = False) -> int:
        failed = 0
        for peer, outcomes in self.outcomes.items():
            counts: dict[str, int] = {}
            for o in outcomes:
                counts[o.verdict] = counts.get(o.verdict, 0) + 1
            summary = ", ".join(f"{n} {v}" for v, n in sorted(counts.items()))
            print(f"\n{peer}: {len(outcomes)} checks: {summary}")
            for o in outcomes:
                if show and o.verdict not in ("DIFFERENT", "KNOWN-EXTRA"):
                    print(f"  {o.verdict:<10} {o.lms_status or '':>3} {o.name}")
                if o.verdict == "DIFFERENT":
                    failed += 1
                if o.verdict in ("DIFFERENT", "KNOWN-EXTRA"):
                    print(f"  {o.verdict:<10} {o.lms_status or '':>3} {o.name}")
                    for problem in o.problems:
                        print(f"      {problem}")
        return 1 if failed else 0


def same_for_all(
    servers: Servers, report: Report, request: Request, normalise: Normaliser | None = None
) -> Answer:
    """Send `request` to every server, compare each peer with lms; lms's answer."""
    want = servers.send("lms", request)
    for peer in servers.names[1:]:
        report.add(compare(peer, request.name, want, servers.send(peer, request), normalise))
    return want


# ---------------------------------------------------------------------------------------------
# tokens and fixtures from the database


@dataclass
class Fixtures:
    learner: uuid.UUID
    learner_version: int
    learner_login: uuid.UUID  # a login of the learner's (lms.domain.auth.logins), live
    ended_login: uuid.UUID  # another, ended before the run (as a logout ends one)
    enrollment: uuid.UUID
    lessons: list[tuple[uuid.UUID, float]]  # the enrolled course's lessons in order
    foreign_lesson: uuid.UUID  # a lesson of a course the learner is not enrolled in
    creator: uuid.UUID  # the creator with the most published courses
    creator_version: int
    creator_login: uuid.UUID
    hidden_course: uuid.UUID  # a course of that creator, made PENDING for the run
    serial: str | None  # a certificate issued before the run, if any
    public_keys: dict[str, PublishedKey]


def token(
    secret: str,
    algorithm: str,
    user: uuid.UUID,
    version: int,
    login: uuid.UUID | None,
    **extra: object,
) -> str:
    """An access token as lms issues it (lms.domain.auth.tokens), naming `login` (its `sid`;
    None: no login, as a profile token, or a forged access token)."""
    now = int(time.time())
    claims: dict[str, object] = {
        "sub": str(user),
        "role": "LEARNER",
        "ver": version,
        "typ": "access",
        "iat": now,
        "exp": now + 900,
        "jti": uuid.uuid4().hex,
    }
    if login is not None:
        claims["sid"] = str(login)
    claims.update(extra)
    # Each kind with its own key, as lms signs it (lms.derived_keys).
    purpose = Purpose.PROFILE_TOKEN if claims["typ"] == "profile" else Purpose.ACCESS_TOKEN
    return jwt.encode(claims, derived_key(secret, purpose), algorithm=algorithm)


async def fixtures(conn: asyncpg.Connection, secret: str, algorithm: str) -> Fixtures:
    row = await conn.fetchrow(
        """
        SELECT e.id, e.user_id, u.token_version FROM enrollments e
        JOIN users u ON u.id = e.user_id JOIN courses c ON c.id = e.course_id
        WHERE u.email LIKE 'learner%@bench.lms.test' AND c.lesson_count = 5
          AND NOT EXISTS (SELECT 1 FROM lessons l WHERE l.course_id = c.id
                          AND (l.duration_seconds IS NULL OR l.duration_seconds < 600))
        ORDER BY e.id LIMIT 1
        """
    )
    if row is None:
        raise SystemExit("same_bytes: error: no seeded enrollment to play with: run bench.seed")
    lessons = await conn.fetch(
        "SELECT l.id, l.duration_seconds FROM lessons l JOIN enrollments e "
        "ON e.course_id = l.course_id WHERE e.id = $1 ORDER BY l.position",
        row["id"],
    )
    foreign = await conn.fetchval(
        "SELECT l.id FROM lessons l WHERE NOT EXISTS (SELECT 1 FROM enrollments e "
        "WHERE e.course_id = l.course_id AND e.user_id = $1) ORDER BY l.id LIMIT 1",
        row["user_id"],
    )
    creator = await conn.fetchrow(
        "SELECT c.creator_id, u.token_version FROM courses c JOIN users u ON u.id = c.creator_id "
        "WHERE c.status = 'PUBLISHED' GROUP BY 1, 2 ORDER BY count(*) DESC, 1 LIMIT 1"
    )
    # Real logins, opened as lms opens one (every access token must name a live one); the third
    # is ended at once.
    logins = await open_logins(
        conn,
        Settings(jwt_secret=secret, jwt_algorithm=algorithm),
        [row["user_id"], row["user_id"], creator["creator_id"]],
        user_agent="bench.peers.same_bytes",
    )
    learner_login, ended_login, creator_login = (login.session_id for login in logins)
    await conn.execute(
        "UPDATE refresh_tokens SET revoked_at = now() WHERE family_id = $1", ended_login
    )
    hidden = await conn.fetchval(
        "SELECT id FROM courses WHERE creator_id = $1 ORDER BY published_at LIMIT 1",
        creator["creator_id"],
    )
    serial = await conn.fetchval("SELECT serial_hash FROM certificates ORDER BY issued_at LIMIT 1")
    keys = published_keys(
        await conn.fetch("SELECT kid, public_jwk::text AS public_jwk FROM certificate_signing_keys")
    )
    return Fixtures(
        learner=row["user_id"],
        learner_version=row["token_version"],
        learner_login=learner_login,
        ended_login=ended_login,
        enrollment=row["id"],
        lessons=[(r["id"], float(r["duration_seconds"])) for r in lessons],
        foreign_lesson=foreign,
        creator=creator["creator_id"],
        creator_version=creator["token_version"],
        creator_login=creator_login,
        hidden_course=hidden,
        serial=serial,
        public_keys=keys,
    )


# ---------------------------------------------------------------------------------------------
# reads


def walk(
    servers: Servers, report: Report, name: str, path: str, pages: int
) -> list[dict[str, Any]]:
    """Follow lms's nextCursor for up to `pages` pages, every server asked the same."""
    bodies = []
    cursor = None
    for page in range(1, pages + 1):
        sep = "&" if "?" in path else "?"
        url = path + (f"{sep}cursor={cursor}" if cursor else "")
        answer = same_for_all(servers, report, Request(f"{name} page {page}", "GET", url))
        if answer.status != 200:
            break
        body = json.loads(answer.body)
        bodies.append(body)
        cursor = body["nextCursor"]
        if cursor is None:
            break
    return bodies


# The searches of `reads` that a large dataset makes common queries (lms_0016).
WARMED_SEARCHES = (
    "/courses?q=python",
    "/courses?q=python%20docker&limit=5",
    "/courses?q=%22intermediate%20javascript%22",
    "/courses?q=python%20-docker%20or%20%22data%22&limit=4",
)


async def warm_search_tops(servers: Servers, conn: asyncpg.Connection) -> None:
    """A common query's top (lms_0016) is kept, in the background, by whichever server ranks it
    first: asked of lms once before the checks, and waited for, so every server answers them
    from the same state and no request's statements include a fill another one started."""
    client = servers.clients["lms"]
    for path in WARMED_SEARCHES:
        await asyncio.to_thread(client.get, path)
    await search_fills_done(conn, within=60)


def reads(servers: Servers, report: Report, fx: Fixtures, secret: str, algorithm: str) -> None:
    def get(name: str, path: str, **headers: str) -> Answer:
        return same_for_all(servers, report, Request(name, "GET", path, headers))

    first = get("catalog first page", "/courses")
    get("catalog limit=1", "/courses?limit=1")
    get("catalog limit=100", "/courses?limit=100")
    walk(servers, report, "catalog walk limit=100", "/courses?limit=100", 40)
    walk(servers, report, "catalog walk limit=7", "/courses?limit=7", 4)
    walk(servers, report, "creator walk", f"/courses?creatorId={fx.creator}&limit=5", 10)
    searches = walk(servers, report, "search python", "/courses?q=python", 3)
    walk(servers, report, "search pair", "/courses?q=python%20docker&limit=5", 3)
    walk(servers, report, "search phrase", "/courses?q=%22intermediate%20javascript%22", 2)
    walk(servers, report, "search rare word", "/courses?q=brewing&limit=3", 3)
    walk(servers, report, "search with creator", f"/courses?q=the&creatorId={fx.creator}", 2)
    get("search, no match", "/courses?q=zzzqqqxxy")
    get("search, operators", "/courses?q=python%20-docker%20or%20%22data%22&limit=4")
    get("search, blank q is the listing", "/courses?q=%20%20&limit=3")
    # errors of the catalog
    get("limit=0", "/courses?limit=0")
    get("limit=101", "/courses?limit=101")
    get("limit=abc", "/courses?limit=abc")
    get("limit=1.5", "/courses?limit=1.5")
    get("cursor not a cursor", "/courses?cursor=xyz")
    get("cursor forged", "/courses?cursor=abc.def")
    get("cursor too long", "/courses?cursor=" + "a" * 300 + "." + "b" * 300)
    if searches and searches[0]["nextCursor"]:
        get("cursor of a search without q", f"/courses?cursor={searches[0]['nextCursor']}")
    listing_cursor = json.loads(first.body).get("nextCursor")
    if listing_cursor:
        get("cursor of the listing with q", f"/courses?q=python&cursor={listing_cursor}")
        get(
            "cursor of the listing by creator",
            f"/courses?creatorId={fx.creator}&cursor={listing_cursor}",
        )
    get("creatorId not a UUID", "/courses?creatorId=nope")
    get("q too long", "/courses?q=" + "a" * 201)
    # who is asking
    learner = token(secret, algorithm, fx.learner, fx.learner_version, fx.learner_login)
    get("catalog as a learner", "/courses?limit=3", Authorization=f"Bearer {learner}")
    get("catalog, garbage token", "/courses?limit=3", Authorization="Bearer garbage")
    get("catalog, not bearer", "/courses?limit=3", Authorization="Basic abc")
    expired = token(
        secret,
        algorithm,
        fx.learner,
        fx.learner_version,
        fx.learner_login,
        iat=int(time.time()) - 2000,
        exp=int(time.time()) - 1000,
    )
    get("catalog, expired token", "/courses?limit=3", Authorization=f"Bearer {expired}")
    revoked = token(secret, algorithm, fx.learner, fx.learner_version + 1, fx.learner_login)
    get("catalog, revoked token", "/courses?limit=3", Authorization=f"Bearer {revoked}")
    profile = token(secret, algorithm, fx.learner, fx.learner_version, None, typ="profile")
    get("catalog, profile token", "/courses?limit=3", Authorization=f"Bearer {profile}")
    no_login = token(secret, algorithm, fx.learner, fx.learner_version, None)
    get("catalog, token of no login", "/courses?limit=3", Authorization=f"Bearer {no_login}")
    ended = token(secret, algorithm, fx.learner, fx.learner_version, fx.ended_login)
    get("catalog, token of an ended login", "/courses?limit=3", Authorization=f"Bearer {ended}")
    # A client revalidates with the ETag the server gave it: each server gets its own.
    own = Request("catalog If-None-Match its own ETag", "GET", "/courses")
    tags = {name: servers.send(name, own).headers.get("etag", "") for name in servers.names}
    answers = {
        name: servers.send(name, Request(own.name, "GET", "/courses", {"If-None-Match": tag}))
        for name, tag in tags.items()
    }
    for peer in servers.names[1:]:
        report.add(compare(peer, own.name, answers["lms"], answers[peer], None))
    # course pages
    for item in json.loads(first.body)["items"][:3]:
        get(f"course {item['id'][:8]}", f"/courses/{item['id']}")
    get("course unknown", f"/courses/{NIL}")
    get("course not a UUID", "/courses/not-a-uuid")
    get("course pending, anonymous", f"/courses/{fx.hidden_course}")
    owner = token(
        secret, algorithm, fx.creator, fx.creator_version, fx.creator_login, role="CREATOR"
    )
    get(
        "course pending, its creator",
        f"/courses/{fx.hidden_course}",
        Authorization=f"Bearer {owner}",
    )
    get(
        "course pending, a learner",
        f"/courses/{fx.hidden_course}",
        Authorization=f"Bearer {learner}",
    )
    get("no such route", "/nowhere")
    # verification
    if fx.serial:
        get("verify a certificate", f"/certificates/verify/{fx.serial}")
        get("verify, upper case", f"/certificates/verify/{fx.serial.upper()}")
    get("verify unknown serial", "/certificates/verify/" + "0" * 48)
    get("verify malformed serial", "/certificates/verify/abc")


# ---------------------------------------------------------------------------------------------
# writes


RESET = [
    "DELETE FROM certificates WHERE enrollment_id = $1",
    "DELETE FROM lesson_progress WHERE enrollment_id = $1",
    "UPDATE enrollments SET progress = 0, completed = false, completed_at = NULL,"
    " last_heartbeat_at = NULL, watch_clock = NULL WHERE id = $1",
]
# A lesson part-way through, last heartbeat a minute ago; and one at 94% watched.
SEED_ROW = """
INSERT INTO lesson_progress (user_id, lesson_id, enrollment_id, position_seconds,
                             watched_seconds, watched, last_heartbeat_at, created_at, updated_at)
VALUES ($1, $2, $3, $4::float8, $4::float8, nummultirange(numrange(0, $4::numeric)),
        now() - interval '60 seconds', now() - interval '1 hour', now() - interval '60 seconds')
"""
# The watch rule the script is written for (lms.domain.learning.completion): completing a video
# lesson needs 95% of it watched. Set for the write script, then put back.
WATCH_RULE = "SELECT completion_threshold_percent, require_watch_to_complete FROM system_settings"
SET_WATCH_RULE = """
UPDATE system_settings SET completion_threshold_percent = $1, require_watch_to_complete = $2
WHERE id = 1
"""
# How long lms and raw-limit may serve their cached settings after a change they did not hear of
# (lms.domain.admin.system_settings.STALE_AFTER_SECONDS), plus a margin.
SETTINGS_SETTLE_SECONDS = 2.5
LESSON_VIDEOS = "SELECT id, video_version, duration_seconds FROM lessons WHERE id = ANY($1::uuid[])"
SET_LESSON_VIDEO = "UPDATE lessons SET video_version = $2, duration_seconds = $3 WHERE id = $1"
# Time passing, without waiting for it: the enrollment's watch clock and its previous heartbeat
# moved back by $2 seconds, as if its previous heartbeat had come that much earlier. The real time
# between two requests of the script (milliseconds) adds to it; every step below keeps far from
# the edges its rules decide on, so that the answers and rows do not depend on it.
ELAPSE = """
UPDATE enrollments SET last_heartbeat_at = last_heartbeat_at - make_interval(secs => $2),
                       watch_clock = watch_clock - make_interval(secs => $2)
WHERE id = $1
"""
# The enrollment's previous heartbeat accepted a moment ago: the next one is too soon, whatever
# the machine's latency.
JUST_NOW = "UPDATE enrollments SET last_heartbeat_at = now() WHERE id = $1"
SNAPSHOT = """
SELECT json_build_object(
  'enrollment', (SELECT json_build_object('progress', progress, 'completed', completed,
                 'completedAt', completed_at IS NOT NULL,
                 'lastHeartbeat', last_heartbeat_at IS NOT NULL,
                 'clockLag', extract(epoch FROM last_heartbeat_at - watch_clock))
                 FROM enrollments WHERE id = $1),
  'lessons', (SELECT json_agg(json_build_object('lesson', l.position,
                 'completed', p.completed, 'completedAt', p.completed_at IS NOT NULL,
                 'position', p.position_seconds, 'creditedTo', p.credited_to,
                 'watchedSeconds', p.watched_seconds, 'watched', p.watched::text,
                 'lastHeartbeat', p.last_heartbeat_at IS NOT NULL)
                 ORDER BY l.position)
              FROM lesson_progress p JOIN lessons l ON l.id = p.lesson_id
              WHERE p.enrollment_id = $1),
  'certificates', (SELECT json_agg(json_build_object('learner', learner_name,
                 'course', course_title, 'creator', creator_name, 'status', status))
                 FROM certificates WHERE enrollment_id = $1))::text
"""


@dataclass
class Step:
    """One request of the write script, and what is done to the rows first."""

    request: Request
    elapse: float = 0.0  # seconds of time passing first (ELAPSE)
    just_now: bool = False  # the previous heartbeat a moment ago (JUST_NOW)
    lesson_as_seeded: uuid.UUID | None = None  # this lesson's video put back as seeded


async def reset(conn: asyncpg.Connection, fx: Fixtures) -> None:
    async with conn.transaction():
        for statement in RESET:
            await conn.execute(statement, fx.enrollment)
        (l3, d3), (l4, d4) = fx.lessons[2], fx.lessons[3]
        await conn.execute(SEED_ROW, fx.learner, l3, fx.enrollment, round(d3 * 0.5, 3))
        await conn.execute(SEED_ROW, fx.learner, l4, fx.enrollment, round(d4 * 0.94, 3))
        # Lesson 2 has a video still processing (its length not known yet), lesson 4 one of
        # known length: the watch rule holds them back (409) until watched, or measured.
        (l2, _) = fx.lessons[1]
        await conn.execute(SET_LESSON_VIDEO, l2, 1, None)
        await conn.execute(SET_LESSON_VIDEO, l4, 1, d4)


def write_script(fx: Fixtures, secret: str, algorithm: str) -> list[Step]:
    """Heartbeats under the watch clock's rules (lms.domain.learning.progress), then completions
    down to the course's certificate. Where a heartbeat decides between playback and a seek, or
    credits a span, the time available is whole seconds away from the edge, so the milliseconds
    the requests themselves take change nothing."""
    learner = token(secret, algorithm, fx.learner, fx.learner_version, fx.learner_login)
    auth = {"Authorization": f"Bearer {learner}", "Content-Type": "application/json"}
    (l1, d1), (l2, _), (l3, d3), (l4, d4), (l5, _) = fx.lessons
    p3, p4 = round(d3 * 0.5, 3), round(d4 * 0.94, 3)  # as seeded (reset)
    jump = round(d4 * 0.011, 3)  # at least 6.6 s (lessons of 600 s or more): 1.1% of lesson 4

    def beat(
        name: str,
        lesson: object,
        position: float | str,
        headers: dict[str, str] = auth,
        **before: Any,
    ) -> Step:
        body = position if isinstance(position, str) else f'{{"positionSeconds": {position}}}'
        request = Request(
            f"heartbeat: {name}", "POST", f"/lessons/{lesson}/progress", headers, body.encode()
        )
        return Step(request, **before)

    def done(name: str, lesson: uuid.UUID, **before: Any) -> Step:
        return Step(
            Request(f"complete: {name}", "POST", f"/lessons/{lesson}/complete", auth), **before
        )

    def bearer(value: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {value}", "Content-Type": "application/json"}

    revoked = token(secret, algorithm, fx.learner, fx.learner_version + 1, fx.learner_login)
    no_login = token(secret, algorithm, fx.learner, fx.learner_version, None)
    ended = token(secret, algorithm, fx.learner, fx.learner_version, fx.ended_login)
    return [
        # The enrollment's first heartbeat starts its watch clock; it credits nothing.
        beat("first, inserts the row", l1, 0),
        beat("too soon: 429, nothing saved", l1, 0.5, just_now=True),
        beat("another lesson too soon: one clock per enrollment", l2, 1, just_now=True),
        # 2 s later: 1.5 s played, all of it paid. (Refused requests below change nothing.)
        beat("playing on", l1, 1.5, elapse=2),
        beat("past the end (and too soon: 400 first)", l1, d1 + 0.5),
        beat("negative", l1, -1),
        beat("over a week", l1, 604801),
        beat("a string", l1, '{"positionSeconds": "12"}'),
        beat("missing field", l1, "{}"),
        beat("unknown field", l1, '{"positionSeconds": 1, "speed": 2}'),
        beat("not enrolled", fx.foreign_lesson, 1),
        beat("no such lesson", uuid.UUID(NIL), 1),
        beat("lesson id not a UUID", "nope", 1),
        beat("no token", l1, 1, {"Content-Type": "application/json"}),
        beat("garbage token", l1, 1, bearer("x.y.z")),
        beat("revoked token", l1, 1, bearer(revoked)),
        beat("token of no login", l1, 1, bearer(no_login)),
        beat("token of an ended login", l1, 1, bearer(ended)),
        # Some 1.5 s available: a jump of 28.5 s is a seek, not counted.
        beat("a seek forward", l1, 30, elapse=1),
        beat("playing after the seek", l1, 31.25, elapse=1),
        # The player paused: nothing played, and of the time unused 2 s carry over, no more.
        beat("paused, the same position", l1, 31.25, elapse=1),
        # 1 s later, 2.75 s played: paid with the 2 s carried over.
        beat("the carry pays a longer span", l1, 34, elapse=1),
        beat("a minute later: 6 s played", l1, 40, elapse=60),
        # The idle minute was not banked: 3 s available, a jump of 9 s is a seek.
        beat("a second later, 9 s ahead: a seek", l1, 49, elapse=1),
        # Lesson 1 uses what the enrollment's time allows, then lesson 4 (last heard of a
        # minute ago on its own) jumps at once: with one clock that is a seek, not playback that
        # would complete it.
        beat("playing lesson 1", l1, round(49 + jump, 3), elapse=jump - 1),
        beat("lesson 4 at once: its time was spent", l4, round(p4 + 2 * jump, 3), elapse=0.6),
        done("lesson 4 not watched enough", l4),
        beat("crossing 95% completes", l4, round(p4 + 3 * jump, 3), elapse=jump + 1),
        # Lesson 3: more played than the time available pays; the rest is owed, stays owed
        # while the player stands still, and is paid once it plays on.
        beat("lesson 3, part of the span owed", l3, round(p3 + 3.5, 3), elapse=0.6),
        beat("lesson 3 paused: still owed", l3, round(p3 + 3.5, 3), elapse=5),
        beat("lesson 3 plays on: owed part paid", l3, round(p3 + 4.5, 3), elapse=1),
        beat("a completed lesson, backwards", l4, 3, elapse=2),
        done("lesson 1", l1),
        done("lesson 1 again", l1),
        done("lesson 2, video still processing", l2),
        done("lesson 2", l2, lesson_as_seeded=l2),
        done("lesson 3", l3),
        done("not enrolled", fx.foreign_lesson),
        Step(Request("complete: no token", "POST", f"/lessons/{l5}/complete")),
        done("the last lesson: course completed, certificate", l5),
        done("the last lesson again: the same certificate", l5),
        done("lesson 4 after the course", l4),
    ]


# The certificate the write script issued, revoked as lms's admin revocation leaves it, at one
# time for every server (with microseconds, as now() stamps it) so the answers compare.
REVOKE = """
UPDATE certificates SET status = 'REVOKED', revoked_at = $2, revoked_reason = 'same_bytes'
WHERE serial_hash = $1 AND status = 'VALID'
"""
REVOKED_AT = datetime(2026, 1, 2, 3, 4, 5, 654321, tzinfo=UTC)
CERTIFICATE_ROW = "SELECT jws, status_list, status_index FROM certificates WHERE enrollment_id = $1"


async def status_entry_of_row(conn: asyncpg.Connection, fx: Fixtures) -> bool | None:
    """Whether the stored credential's status list entry names the bit its row holds (None when
    the script left no certificate)."""
    row = await conn.fetchrow(CERTIFICATE_ROW, fx.enrollment)
    if row is None:
        return None
    claims = json.loads(b64url_decode(row["jws"].split(".")[1]))
    return status_entry_matches(claims, row["status_list"], row["status_index"])


async def writes(
    servers: Servers,
    report: Report,
    conn: asyncpg.Connection,
    fx: Fixtures,
    secret: str,
    algorithm: str,
    normalise: Normaliser,
) -> None:
    script = write_script(fx, secret, algorithm)
    # Completing the course's last lesson again answers its certificate, revoked or not.
    again = next(
        s.request for s in script if s.request.name.startswith("complete: the last lesson again")
    )
    names = [s.request.name for s in script] + [
        "verify the certificate just issued",
        "verify the certificate once revoked",
        "complete: the last lesson again, certificate revoked",
    ]
    answers: dict[str, list[Answer]] = {}
    snapshots: dict[str, Any] = {}
    lesson_ids = [lesson for lesson, _ in fx.lessons]
    seeded = {r["id"]: r for r in await conn.fetch(LESSON_VIDEOS, lesson_ids)}
    rule = await conn.fetchrow(WATCH_RULE)
    try:
        await conn.execute(SET_WATCH_RULE, 95, True)
        await asyncio.sleep(SETTINGS_SETTLE_SECONDS)  # every server's cache has heard of it
        for name in servers.names:
            await reset(conn, fx)
            answers[name] = []
            for step in script:
                if step.lesson_as_seeded is not None:
                    was = seeded[step.lesson_as_seeded]
                    await conn.execute(
                        SET_LESSON_VIDEO, was["id"], was["video_version"], was["duration_seconds"]
                    )
                if step.elapse:
                    await conn.execute(ELAPSE, fx.enrollment, step.elapse)
                if step.just_now:
                    await conn.execute(JUST_NOW, fx.enrollment)
                answers[name].append(await asyncio.to_thread(servers.send, name, step.request))
            # The certificate this server just issued, verified by this server; then revoked.
            last = answers[name][-1]
            serial = (
                (json.loads(last.body).get("certificate") or {}).get("serialHash")
                if (last.status == 200)
                else None
            )
            verify = Request(names[-3], "GET", f"/certificates/verify/{serial or 'none'}")
            answers[name].append(await asyncio.to_thread(servers.send, name, verify))
            if serial is not None:
                await conn.execute(REVOKE, serial, REVOKED_AT)
            answers[name].append(await asyncio.to_thread(servers.send, name, verify))
            answers[name].append(await asyncio.to_thread(servers.send, name, again))
            snapshot = json.loads(await conn.fetchval(SNAPSHOT, fx.enrollment))
            snapshot["statusEntryIsTheRow"] = await status_entry_of_row(conn, fx)
            snapshots[name] = snapshot
    finally:
        await reset(conn, fx)
        for was in seeded.values():
            await conn.execute(
                SET_LESSON_VIDEO, was["id"], was["video_version"], was["duration_seconds"]
            )
        await conn.execute(SET_WATCH_RULE, *rule)
    for peer in servers.names[1:]:
        for i, check in enumerate(names):
            report.add(compare(peer, check, answers["lms"][i], answers[peer][i], normalise))
        want, got = snapshots["lms"], snapshots[peer]
        problems = [] if want == got else [f"rows {got}\n         lms {want}"]
        report.add(
            Outcome(
                peer,
                "rows left by the write script",
                "IDENTICAL" if not problems else "DIFFERENT",
                problems,
            )
        )


# ---------------------------------------------------------------------------------------------
# the database work: statements per request (bench.peers.db_work), rows read per request

SCENARIOS = (
    ("heartbeat: ", "heartbeat"),
    ("complete: ", "completion"),
    ("verify", "verification"),
    ("search", "catalog search"),
    ("course ", "course page"),
)
# Where a peer's stack cannot run what lms runs: (a word of the peer's name, scenario) -> why. A
# request for which a peer runs more statements, or more round trips (BEGIN/COMMIT counted), than
# lms fails the check unless its scenario is listed here for that peer.
KNOWN_EXTRAS: dict[tuple[str, str], tuple[str, Callable[[Work], bool]]] = {}


def _stored_completion(want: Work) -> bool:
    """lms completed the lesson with its stored functions (lms_complete_or_prepare, and
    lms_complete_with_certificate for the lesson that completes a course)."""
    return any(
        "lms_complete_or_prepare(" in sql or "lms_complete_with_certificate(" in sql
        for sql in want.statements
    )


# Where lms completes a lesson in stored functions of its migrations (one round trip, two for
# the lesson that completes a course with its certificate), a FastAPI or Express team runs the
# same statements from the application, in one transaction (BEGIN, the locked read,
# mark-and-tally, COMMIT): for a completion, and for the heartbeat that completes its lesson.
# Only for such requests.
for _peer in ("fastapi", "express"):
    for _scenario in ("completion", "heartbeat"):
        KNOWN_EXTRAS[(_peer, _scenario)] = (
            "lms completes in a stored function of its own migrations; the peer runs its "
            "statements from the application, in one transaction",
            _stored_completion,
        )


def _kept_search(want: Work) -> bool:
    """lms answered the search from the top it keeps of a common query (lms_0016)."""
    return any("search_top_rows" in sql for sql in want.statements)


# Where lms answers a common query's page from the top it keeps (lms_0016: search_tops and
# search_top_rows, kept current by the migration's triggers, filled by lms's own code in the
# background), raw-limit does the same (lms's code); fastapi and express rank the query's
# matches in the one statement their stack writes for a search, reading more rows. Only for
# the searches lms answered so.
for _peer in ("fastapi", "express"):
    KNOWN_EXTRAS[(_peer, "catalog search")] = (
        "lms answers a common query from the search top it keeps (lms_0016); the peer ranks "
        "every match, as its stack writes a search",
        _kept_search,
    )


def scenario_of(check: str) -> str:
    return next((name for prefix, name in SCENARIOS if check.startswith(prefix)), "catalog listing")


def known_extra(peer: str, scenario: str, want: Work) -> str | None:
    """Why the peer's stack must do more than lms for this request, if it must."""
    for (word, sc), (why, applies) in KNOWN_EXTRAS.items():
        if word in peer and sc == scenario and applies(want):
            return why
    return None


def work_figures(
    names: list[str], works: dict[tuple[str, str], list[Work]]
) -> dict[str, dict[str, Any]]:
    """Per implementation and scenario: requests, statements and BEGIN/COMMIT per request, rows
    read per request (of those measured)."""
    figures: dict[str, Any] = {}
    for name in names:
        totals: dict[str, list[int]] = {}
        for (server, check), items in works.items():
            if server != name:
                continue
            t = totals.setdefault(scenario_of(check), [0, 0, 0, 0, 0, 0])
            for w in items:
                t[0] += 1
                t[1] += len(w.statements)
                t[2] += len(w.transaction)
                t[3] += len(w.setup)
                if w.rows_read is not None:
                    t[4] += 1
                    t[5] += int(w.rows_read)
        figures[name] = {
            sc: {
                "requests": n,
                "statements": round(st / n, 2),
                "transaction_control": round(tx / n, 2),
                "connection_setup": setup,
                "rows_read": round(rows / measured, 1) if measured else None,
            }
            for sc, (n, st, tx, setup, measured, rows) in sorted(totals.items())
            if n
        }
    return figures


def print_work(figures: dict[str, dict[str, Any]]) -> None:
    print("\ndatabase work per request (statements the server ran + BEGIN/COMMIT/ROLLBACK):")
    for name, scenarios in figures.items():
        print(f"  {name}:")
        for sc, f in scenarios.items():
            read = "" if f["rows_read"] is None else f", {f['rows_read']:,.1f} rows read"
            print(
                f"    {sc:<16} {f['statements']:.2f} + {f['transaction_control']:.2f} "
                f"({f['requests']} requests{read})"
            )


def compare_work(
    names: list[str], works: dict[tuple[str, str], list[Work]], report: Report, show: bool
) -> None:
    """One check per peer and scenario: no request of it may run more statements or round trips
    than lms's, or read far more rows, unless KNOWN_EXTRAS says why the peer's stack must."""
    scenarios = sorted({scenario_of(check) for server, check in works if server == "lms"})
    for peer in names[1:]:
        extra: dict[str, list[str]] = {}
        known: dict[str, str] = {}
        for (server, check), items in works.items():
            if server != peer:
                continue
            mine = works.get(("lms", check), [])
            for got, want in zip(items, mine, strict=False):
                more_rows = (
                    got.rows_read is not None
                    and want.rows_read is not None
                    and got.rows_read > 3 * want.rows_read + 200
                )
                if (
                    len(got.statements) <= len(want.statements)
                    and got.round_trips <= want.round_trips
                    and not more_rows
                ):
                    continue
                scenario = scenario_of(check)
                why = known_extra(peer, scenario, want)
                if why is not None:
                    known.setdefault(scenario, why)
                    continue
                lines = extra.setdefault(scenario, [])
                rows = ""
                if more_rows and got.rows_read is not None and want.rows_read is not None:
                    rows = f"; {got.rows_read:,.0f} rows read, lms {want.rows_read:,.0f}"
                lines.append(
                    f"{check}: {len(got.statements)}+{len(got.transaction)}, "
                    f"lms {len(want.statements)}+{len(want.transaction)}{rows}"
                )
                if show or not lines[1:]:
                    lines.extend(
                        f"        {peer}: {short(q)}" for q in got.transaction + got.statements
                    )
                    lines.extend(
                        f"        lms: {short(q)}" for q in want.transaction + want.statements
                    )
        for scenario in scenarios:
            lines = extra.get(scenario, [])
            verdict = "DIFFERENT" if lines else "KNOWN-EXTRA" if scenario in known else "IDENTICAL"
            problems = ["more database work than lms (statements+BEGIN/COMMIT)", *lines]
            if scenario in known:
                problems.append(f"known: {known[scenario]}")
            report.add(
                Outcome(
                    peer,
                    f"database work: {scenario}",
                    verdict,
                    problems[: None if show else 14] if verdict != "IDENTICAL" else [],
                )
            )


# ---------------------------------------------------------------------------------------------


def parse_peer(text: str) -> tuple[str, str]:
    name, sep, url = text.partition("=")
    if not sep or not url.startswith("http"):
        raise argparse.ArgumentTypeError(f"--peer NAME=URL, got {text!r}")
    return name, url


async def run(args: argparse.Namespace) -> int:
    database_url = args.database_url or os.environ.get("DATABASE_URL")
    secret = os.environ.get("LMS_JWT_SECRET")
    if not database_url or not secret:
        print(
            "same_bytes: error: set DATABASE_URL and LMS_JWT_SECRET (the servers' own)",
            file=sys.stderr,
        )
        return 2
    algorithm = os.environ.get("LMS_JWT_ALGORITHM") or "HS256"
    peers = dict(args.peer)
    servers = Servers(args.lms, peers)
    report = Report(peers)
    conn = await asyncpg.connect(database_url)
    log: StatementLog | None = None
    works: dict[tuple[str, str], list[Work]] = {}
    try:
        fx = await fixtures(conn, secret, algorithm)
        normalise = Normaliser(fx.public_keys)
        if args.statements:
            log = StatementLog(database_url)
            await log.open()
            servers.log = log
        # One course of the busiest creator is PENDING during the reads (seeded ones are all
        # PUBLISHED): its page is then for its creator only.
        await conn.execute("UPDATE courses SET status = 'PENDING' WHERE id = $1", fx.hidden_course)
        try:
            await warm_search_tops(servers, conn)
            await asyncio.to_thread(reads, servers, report, fx, secret, algorithm)
        finally:
            await conn.execute(
                "UPDATE courses SET status = 'PUBLISHED' WHERE id = $1", fx.hidden_course
            )
        if not args.reads_only:
            await writes(servers, report, conn, fx, secret, algorithm, normalise)
            # The new keys peers registered are verifiable; reload them for the report.
        if log is not None:
            works = await log.read()
            await log.close()
            servers.log = None
            await rows_read(conn, works)
            compare_work(servers.names, works, report, args.show)
    finally:
        if log is not None:
            await log.close()
        await conn.close()
        servers.close()
    status = report.print(args.show)
    if works:
        figures = work_figures(servers.names, works)
        print_work(figures)
        print("\nsame_bytes work: " + json.dumps(figures))
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.peers.same_bytes",
        description=(
            "Send the same requests to lms and to each peer and report any difference in status, "
            "headers or body."
        ),
    )
    parser.add_argument("--lms", required=True, help="lms's base URL")
    parser.add_argument(
        "--peer",
        type=parse_peer,
        action="append",
        default=[],
        metavar="NAME=URL",
        help="a peer's base URL (repeat)",
    )
    parser.add_argument("--database-url", default=None, help="default: DATABASE_URL")
    parser.add_argument("--show", action="store_true", help="list every check, not only failures")
    parser.add_argument("--reads-only", action="store_true", help="skip the write script")
    parser.add_argument(
        "--no-statements",
        dest="statements",
        action="store_false",
        help="do not log and compare the statements each request runs (they need a superuser: "
        "log_statement is set for the run, and put back)",
    )

    args = parser.parse_args(argv)
    if not args.peer:
        parser.error("give at least one --peer NAME=URL")
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
