// lms's five hot endpoints on Express 5 + Prisma 7 (driver adapter @prisma/adapter-pg, no Rust
// query engine), one process per worker through node:cluster. A benchmark peer of lms: see
// bench/peers/README.md. Prisma's client API wherever it can say the query; raw SQL ($queryRaw)
// where it cannot: ranked full-text search, row locks, the nummultirange of watched spans.
"use strict";

const cluster = require("node:cluster");
const crypto = require("node:crypto");
const fs = require("node:fs");
const express = require("express");
const jwt = require("jsonwebtoken");
const { createBLAKE2b } = require("hash-wasm");
const { Client } = require("pg");
const { PrismaClient, Prisma } = require("@prisma/client");
const { PrismaPg } = require("@prisma/adapter-pg");

// ---------------------------------------------------------------------------------------------
// configuration: the environment variables lms reads, where they overlap

function config() {
  const env = process.env;
  for (const name of ["DATABASE_URL", "LMS_JWT_SECRET", "LMS_CERT_SIGNING_KEY"]) {
    if (!env[name]) throw new Error(`set ${name} (as for lms serve)`);
  }
  const host = env.LMS_HOST || "127.0.0.1";
  const port = Number(argument("--port") || env.LMS_PORT || 8000);
  let pem = env.LMS_CERT_SIGNING_KEY.trim();
  if (!pem.includes("-----BEGIN")) pem = fs.readFileSync(pem, "utf8");
  return {
    host,
    port,
    workers: Number(argument("--workers") || 1),
    databaseUrl: env.DATABASE_URL,
    jwtSecret: env.LMS_JWT_SECRET,
    jwtAlgorithm: env.LMS_JWT_ALGORITHM || "HS256",
    baseUrl: (env.LMS_PUBLIC_BASE_URL || `http://${host}:${port}`).replace(/\/+$/, ""),
    issuerName: env.LMS_ISSUER_NAME || "LMS",
    signingKey: signingKey(pem),
    searchRateLimit: Number(env.LMS_SEARCH_RATE_LIMIT || 120),
    searchConcurrency: Number(env.LMS_SEARCH_CONCURRENCY || 4),
    poolMax: Number(env.LMS_DB_POOL_MAX || 10),
  };
}

// The key certificates are signed with, and its JWS algorithm: what lms accepts (RS256 is the
// key lms generates; ES256 for a P-256 key, EdDSA for an Ed25519 one).
function signingKey(pem) {
  const key = crypto.createPrivateKey(pem);
  const details = key.asymmetricKeyDetails ?? {};
  if (key.asymmetricKeyType === "rsa" && details.modulusLength >= 2048) return { key, alg: "RS256" };
  if (key.asymmetricKeyType === "ec" && details.namedCurve === "prime256v1") return { key, alg: "ES256" };
  if (key.asymmetricKeyType === "ed25519") return { key, alg: "EdDSA" };
  throw new Error(
    "LMS_CERT_SIGNING_KEY must be an RSA key of 2048 bits or more (RS256), a P-256 key (ES256) or an Ed25519 key (EdDSA)",
  );
}

function argument(name) {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : undefined;
}

const CFG = config();
const prisma = new PrismaClient({
  adapter: new PrismaPg({ connectionString: CFG.databaseUrl, max: CFG.poolMax }),
});

// ---------------------------------------------------------------------------------------------
// wire helpers

class HttpError extends Error {
  constructor(status, detail, headers = {}, extra = undefined) {
    super(detail);
    this.status = status;
    this.detail = detail;
    this.headers = headers;
    this.extra = extra;
  }
}

const unauthenticated = (detail) => new HttpError(401, detail, { "WWW-Authenticate": "Bearer" });
const NOT_ENROLLED = "no such lesson in a course you are enrolled in";
const STILL_PROCESSING =
  "this lesson's video is still processing: its length is not known yet, so how much of it " +
  "was watched cannot be measured; try again in a few minutes";
const UUID_RE = /^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$/i;
const CURSOR_RE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;
const CURSOR_PATTERN_REPR = "'^[A-Za-z0-9_-]+\\\\.[A-Za-z0-9_-]+$'";

function canonicalUuid(text) {
  const hex = text.replace(/-/g, "").toLowerCase();
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

// JSON.stringify writes what msgspec writes for these bodies (compact, keys in order, UTF-8),
// except a float with no fraction: Python's repr says 40.0 where JS says 40.
const toJson = JSON.stringify;
const pyFloat = (v) => (Number.isInteger(v) && Math.abs(v) < 1e16 ? v.toFixed(1) : JSON.stringify(v));

function sendJson(res, status, text, headers = {}) {
  // setHeader, not res.set/res.type: Express would add "; charset=utf-8", which lms does not send.
  res.status(status).set(headers).setHeader("Content-Type", "application/json");
  res.send(typeof text === "string" ? Buffer.from(text) : text);
}

// Times as lms writes them: the catalog six digits of microseconds (PostgreSQL's to_char),
// certificates whole seconds. A JS Date holds milliseconds: the last three digits are 000.
const catalogTime = (d) => (d ? d.toISOString().replace(/\.(\d{3})Z$/, ".$1000Z") : null);
const wholeSeconds = (d) => (d ? d.toISOString().replace(/\.\d{3}Z$/, "Z") : null);
// A time PostgreSQL stamped with now() (a revocation), as msgspec writes it: no fraction when it
// has none, else six digits, of which a JS Date keeps three.
const stampedTime = (d) => (d && d.getUTCMilliseconds() ? catalogTime(d) : wholeSeconds(d));

// Python's format(x, ".<digits>f"): the nearest decimal, an exact tie to the even digit, where
// toFixed takes the larger one (646.5 is "646" in lms's message and "647" by toFixed; the bench's
// same-bytes check failed on such a lesson). toFixed(100) is the double's exact expansion.
function pyFixed(x, digits) {
  const [whole, fraction] = Math.abs(x).toFixed(100).split(".");
  const rest = fraction.slice(digits);
  if (rest[0] !== "5" || !/^0*$/.test(rest.slice(1))) return x.toFixed(digits);
  const kept = digits ? `${whole}.${fraction.slice(0, digits)}` : whole;
  if (Number(kept[kept.length - 1]) % 2 !== 0) return x.toFixed(digits); // odd: up to even
  return (x < 0 ? "-" : "") + kept;
}

// %g of Python: up to six significant digits, no trailing zeros.
function pyG(x) {
  if (x === 0) return "0";
  const exp = Math.floor(Math.log10(Math.abs(x)));
  if (exp < -4 || exp >= 6) {
    const [m, e] = x.toExponential(5).split("e");
    const mant = m.replace(/\.?0+$/, "");
    const n = Number(e);
    return `${mant}e${n < 0 ? "-" : "+"}${String(Math.abs(n)).padStart(2, "0")}`;
  }
  return String(Number(x.toPrecision(6)));
}

// ---------------------------------------------------------------------------------------------
// authentication: lms's access JWT, checked against the user's current row

function bearer(req) {
  const header = req.get("authorization") || "";
  const space = header.indexOf(" ");
  const scheme = space < 0 ? header : header.slice(0, space);
  const token = space < 0 ? "" : header.slice(space + 1).trim();
  return scheme.toLowerCase() === "bearer" && token ? token : null;
}

// lms's per-purpose keys (lms.derived_keys): HKDF-SHA256 of the secret, info "lms/<purpose>".
const derivedKey = (purpose) =>
  Buffer.from(crypto.hkdfSync("sha256", CFG.jwtSecret, Buffer.alloc(0), `lms/${purpose}`, 64));
const accessTokenKey = derivedKey("access-token");
const profileTokenKey = derivedKey("profile-token");

// As lms words a refusal: a profile token (signed with the profile key) is told to send an
// access token; anything else is an invalid token.
function refusal(token) {
  try {
    const claims = jwt.verify(token, profileTokenKey, {
      algorithms: [CFG.jwtAlgorithm],
      ignoreExpiration: true,
    });
    return claims.typ === "profile" ? "a access token is required" : "invalid token";
  } catch {
    return "invalid token";
  }
}

async function userFromToken(token) {
  let claims;
  try {
    claims = jwt.verify(token, accessTokenKey, { algorithms: [CFG.jwtAlgorithm] });
  } catch (err) {
    if (err.name === "TokenExpiredError") throw unauthenticated("token has expired");
    if (err.message === "invalid signature") throw unauthenticated(refusal(token));
    throw unauthenticated("invalid token");
  }
  for (const claim of ["exp", "iat", "sub", "typ", "ver", "sid"]) {
    if (claims[claim] === undefined) throw unauthenticated("invalid token");
  }
  if (claims.typ !== "access") throw unauthenticated("invalid token");
  const version = Number(claims.ver);
  if (!UUID_RE.test(String(claims.sub)) || !Number.isInteger(version)) {
    throw unauthenticated("invalid token");
  }
  if (!UUID_RE.test(String(claims.sid))) {
    throw unauthenticated("invalid token");
  }
  const user = await authState(canonicalUuid(String(claims.sub)));
  if (!user) throw unauthenticated("invalid token");
  if (!user.isActive) throw unauthenticated("account is deactivated");
  if (user.tokenVersion !== version) throw unauthenticated("token has been revoked; log in again");
  if (await loginEnded(canonicalUuid(String(claims.sid)))) {
    throw unauthenticated("this login is revoked; log in again");
  }
  return user;
}

// ---------------------------------------------------------------------------------------------
// per-process caches, kept fresh by PostgreSQL's NOTIFY as lms keeps its own (lms's triggers
// announce a user's role/activity/token version on lms_user_auth, an ended login on
// lms_session_revoked, the settings row on lms_system_settings). While the LISTEN connection is
// up an entry is trusted (a change would have been heard), for at most CACHE_MAX_AGE_MS; while it
// is down nothing is cached. So a heartbeat with a warm cache is one statement, as lms's.

const CACHE_MAX_AGE_MS = 60_000;
const CACHE_MAX_ENTRIES = 100_000;
const users = new Map(); // id -> { id, role, isActive, tokenVersion, at }
const logins = new Map(); // refresh token family -> { ended, at }
let settingsCache = null; // { completionThresholdPercent, requireWatchToComplete, at }
let listening = false;

function forgetAll() {
  users.clear();
  logins.clear();
  settingsCache = null;
}

function remember(map, key, value) {
  if (!listening) return;
  if (map.size >= CACHE_MAX_ENTRIES) map.delete(map.keys().next().value);
  map.set(key, value);
}

const fresh = (entry) => entry && listening && Date.now() - entry.at < CACHE_MAX_AGE_MS;

async function listen() {
  const client = new Client({ connectionString: CFG.databaseUrl });
  const down = () => {
    listening = false;
    forgetAll();
    client.end().catch(() => {});
    setTimeout(() => listen().catch(() => {}), 1000);
  };
  client.on("error", down);
  client.on("notification", ({ channel, payload }) => {
    if (channel === "lms_user_auth") users.delete(payload);
    else if (channel === "lms_session_revoked") logins.delete(payload);
    else settingsCache = null;
  });
  try {
    await client.connect();
    await client.query("LISTEN lms_user_auth; LISTEN lms_session_revoked; LISTEN lms_system_settings");
  } catch {
    down();
    return;
  }
  forgetAll();
  listening = true;
}

async function authState(id) {
  const hit = users.get(id);
  if (fresh(hit)) return hit;
  const row = await prisma.user.findUnique({
    where: { id },
    select: { id: true, role: true, isActive: true, tokenVersion: true },
  });
  if (!row) return null;
  const state = { ...row, at: Date.now() };
  remember(users, id, state);
  return state;
}

// As lms decides it: a login is ended once any of its refresh tokens is revoked, or when none is
// left (an ended login stays ended: only a miss reads the table).
async function loginEnded(familyId) {
  const hit = logins.get(familyId);
  if (fresh(hit)) return hit.ended;
  const tokens = await prisma.refreshToken.aggregate({
    where: { familyId },
    _count: { _all: true, revokedAt: true },
  });
  const ended = tokens._count._all === 0 || tokens._count.revokedAt > 0;
  remember(logins, familyId, { ended, at: Date.now() });
  return ended;
}

async function watchRule() {
  if (fresh(settingsCache)) return settingsCache;
  const row = await prisma.systemSettings.findUnique({
    where: { id: 1 },
    select: { completionThresholdPercent: true, requireWatchToComplete: true },
  });
  const rule = {
    threshold: Number(row.completionThresholdPercent),
    required: row.requireWatchToComplete,
    at: Date.now(),
  };
  if (listening) settingsCache = rule;
  return rule;
}

async function optionalUser(req) {
  const token = bearer(req);
  return token === null ? null : userFromToken(token);
}

async function requireUser(req, _res, next) {
  const token = bearer(req);
  if (token === null) throw unauthenticated("missing bearer token");
  req.user = await userFromToken(token);
  next();
}

// ---------------------------------------------------------------------------------------------
// keyset cursors, signed as lms signs them

const b64url = (buf) => Buffer.from(buf).toString("base64url");
const cursorKey = derivedKey("cursor");

function encodeCursor(scope, ...values) {
  const payload = Buffer.from(JSON.stringify([scope, ...values]));
  const signature = crypto.createHmac("sha256", cursorKey).update(payload).digest().subarray(0, 12);
  return `${b64url(payload)}.${b64url(signature)}`;
}

function decodeCursor(scope, cursor) {
  const malformed = new HttpError(400, "malformed cursor");
  const [body, signature] = cursor.split(".");
  const payload = Buffer.from(body, "base64url");
  const expected = crypto.createHmac("sha256", cursorKey).update(payload).digest().subarray(0, 12);
  const given = Buffer.from(signature, "base64url");
  if (given.length !== expected.length || !crypto.timingSafeEqual(given, expected)) throw malformed;
  let values;
  try {
    values = JSON.parse(payload.toString());
  } catch {
    throw malformed;
  }
  if (!Array.isArray(values) || values[0] !== scope || values.length !== 3) throw malformed;
  if (!UUID_RE.test(String(values[2]))) throw malformed;
  return [values[1], canonicalUuid(String(values[2]))];
}

// ---------------------------------------------------------------------------------------------
// the catalog

const PUBLIC_CACHE = "public, max-age=30, stale-while-revalidate=60";
const PRIVATE_CACHE = "private, no-cache";

// As lms's search line (lms.domain.courses.search_slots): at most LMS_SEARCH_CONCURRENCY searches
// at once per process; one over the cap waits up to SEARCH_WAIT_MS for a slot, behind at most
// SEARCH_LINE_PER_SLOT others per slot, and is refused (503) only when none frees in time.
const SEARCH_WAIT_MS = 1000;
const SEARCH_LINE_PER_SLOT = 64;
let searchesRunning = 0;
const searchLine = []; // { resolve, timer } in arrival order

const searchBusy = () =>
  new HttpError(503, "too many searches at once; try again in a moment", { "Retry-After": "1" });

function searchSlot() {
  if (searchesRunning < CFG.searchConcurrency && searchLine.length === 0) {
    searchesRunning += 1;
    return Promise.resolve();
  }
  if (searchLine.length >= SEARCH_LINE_PER_SLOT * CFG.searchConcurrency) return Promise.reject(searchBusy());
  return new Promise((resolve, reject) => {
    const turn = { resolve };
    turn.timer = setTimeout(() => {
      searchLine.splice(searchLine.indexOf(turn), 1);
      reject(searchBusy());
    }, SEARCH_WAIT_MS);
    searchLine.push(turn);
  });
}

// The slot goes to the first in line (it stays counted as running), else it is freed.
function releaseSearchSlot() {
  const next = searchLine.shift();
  if (next) {
    clearTimeout(next.timer);
    next.resolve();
  } else {
    searchesRunning -= 1;
  }
}

function queryInvalid(req, message, key) {
  const where = req.originalUrl;
  return new HttpError(400, `Validation failed for ${req.method} ${where}`, {}, [
    { message, key, source: "query" },
  ]);
}

function catalogParams(req) {
  const params = new URLSearchParams(req.originalUrl.split("?")[1] || "");
  const out = { limit: 20, cursor: null, q: null, creatorId: null };
  if (params.has("limit")) {
    const text = params.get("limit");
    if (!/^\s*[+-]?[0-9]+\s*$/.test(text)) throw queryInvalid(req, "Expected `int`, got `str`", "limit");
    out.limit = Number(text);
    if (out.limit < 1) throw queryInvalid(req, "Expected `int` >= 1", "limit");
    if (out.limit > 100) throw queryInvalid(req, "Expected `int` <= 100", "limit");
  }
  if (params.has("cursor")) {
    out.cursor = params.get("cursor");
    if (out.cursor.length > 512) throw queryInvalid(req, "Expected `str` of length <= 512", "cursor");
    if (!CURSOR_RE.test(out.cursor)) {
      throw queryInvalid(req, `Expected \`str\` matching regex ${CURSOR_PATTERN_REPR}`, "cursor");
    }
  }
  if (params.has("q")) {
    out.q = params.get("q");
    if ([...out.q].length > 200) throw queryInvalid(req, "Expected `str` of length <= 200", "q");
  }
  if (params.has("creatorId")) {
    const id = params.get("creatorId");
    if (!UUID_RE.test(id)) throw queryInvalid(req, "Invalid UUID", "creator_id");
    out.creatorId = canonicalUuid(id);
  }
  return out;
}

function summary(c) {
  return {
    id: c.id,
    title: c.title,
    description: c.description,
    thumbnailUrl: c.thumbnailUrl,
    price: c.price.toFixed(2),
    status: c.status,
    creator: { id: c.creator.id, name: c.creator.name ?? c.creator.fullName ?? c.creator.username },
    lessonCount: c.lessonCount,
    publishedAt: catalogTime(c.publishedAt),
  };
}

function cachedJson(req, res, text, isPrivate) {
  const body = Buffer.from(text);
  const tag = `"${blake2b16(body)}"`;
  const headers = {
    ETag: tag,
    "Cache-Control": isPrivate ? PRIVATE_CACHE : PUBLIC_CACHE,
    Vary: "Authorization",
  };
  const sent = req.get("if-none-match");
  if (sent) {
    const candidates = new Set(sent.split(",").map((t) => t.trim().replace(/^W\//, "")));
    if (candidates.has("*") || candidates.has(tag)) {
      res.status(304).set(headers).end();
      return;
    }
  }
  sendJson(res, 200, body, headers);
}

// BLAKE2b with a 16-byte digest (lms's ETag: catalog.etag_of). Node 20's OpenSSL has only
// BLAKE2b-512, and a 16-byte BLAKE2b is not its truncation (the digest length is a parameter of
// the hash): hash-wasm's WebAssembly BLAKE2b computes it, made once per process.
let blake2b128 = null;
function blake2b16(body) {
  return blake2b128.init().update(body).digest("hex");
}

// lms's search limit, counted as lms counts it (lms.domain.rate_limits.BatchedLimit, its rule
// restated): in this process's memory, a search admitted while the client's shared count as of
// the last flush plus this process's searches since stays within the limit; every 0.1 s one
// upsert adds each client's new searches to the shared counters (the rate_limit_counters rows
// lms's processes count in) and brings back their totals. No statement per search; a refusal
// writes nothing. Prisma's upsert takes one row, so the many-row upsert is $queryRaw.
const SEARCH_WINDOW_SECONDS = 60;
const SEARCH_FLUSH_MS = 100;
const searchCounts = new Map(); // key -> {shared, pending, resetsAt (ms, monotonic)}
let searchFlusher = null;

function countSearch(client) {
  const now = performance.now();
  const key = `ip:search:${client}`;
  let count = searchCounts.get(key);
  if (count === undefined) {
    count = { shared: 0, pending: 0, resetsAt: now + SEARCH_WINDOW_SECONDS * 1000 };
    searchCounts.set(key, count);
  } else if (now >= count.resetsAt) {
    count.shared = 0;
    count.resetsAt = now + SEARCH_WINDOW_SECONDS * 1000;
  }
  if (count.shared + count.pending + 1 > CFG.searchRateLimit) {
    const seconds = Math.max(1, Math.ceil((count.resetsAt - now) / 1000));
    throw new HttpError(429, `too many searches from this address; try again in ${seconds} s`, {
      "Retry-After": String(seconds),
    });
  }
  count.pending += 1;
  if (searchFlusher === null) searchFlusher = flushSearchesSoon();
}

async function flushSearchesSoon() {
  try {
    while ([...searchCounts.values()].some((c) => c.pending)) {
      await new Promise((resolve) => setTimeout(resolve, SEARCH_FLUSH_MS));
      await flushSearches();
    }
  } finally {
    searchFlusher = null;
  }
}

async function flushSearches() {
  const pending = [...searchCounts.entries()]
    .filter(([, c]) => c.pending)
    .map(([key, c]) => [key, c.pending])
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  if (pending.length === 0) return;
  for (const [key, n] of pending) searchCounts.get(key).pending -= n;
  let rows;
  try {
    rows = await prisma.$queryRaw`
      INSERT INTO rate_limit_counters AS c (key, window_start, hits)
      VALUES ${Prisma.join(pending.map(([key, n]) => Prisma.sql`(${key}, now(), ${n}::int)`))}
      ON CONFLICT (key) DO UPDATE SET
          window_start = CASE WHEN c.window_start <= now() - make_interval(secs => 60)
                              THEN now() ELSE c.window_start END,
          hits = CASE WHEN c.window_start <= now() - make_interval(secs => 60)
                      THEN excluded.hits ELSE c.hits + excluded.hits END
      RETURNING key, hits,
          extract(epoch FROM window_start + make_interval(secs => 60) - now())::float8 AS reset_in`;
  } catch (err) {
    for (const [key, n] of pending) {
      const count = searchCounts.get(key);
      if (count !== undefined) count.pending += n;
    }
    return;
  }
  const now = performance.now();
  for (const row of rows) {
    const count = searchCounts.get(row.key);
    if (count !== undefined) {
      count.shared = row.hits;
      count.resetsAt = now + Math.max(row.reset_in, 0) * 1000;
    }
  }
  for (const [key, c] of [...searchCounts.entries()]) {
    if (!c.pending && now >= c.resetsAt) searchCounts.delete(key);
  }
}

function clientKey(ip) {
  if (!ip) return "unknown";
  const mapped = ip.match(/^::ffff:(\d+\.\d+\.\d+\.\d+)$/i);
  return mapped ? mapped[1] : ip; // (IPv6 clients are not folded into their /64 here)
}

// A keyset page of the listing, newest first: the courses after the cursor's (publishedAt, id),
// limit + 1 of them (the one over says there is a next page), one statement with a LIMIT (the
// creators joined in). Prisma has no row comparison, and its Date holds milliseconds where the
// cursor's time has microseconds, so the database is asked for the courses published before the
// end of the cursor's millisecond (a range on the catalog index), and those of that millisecond
// up to the cursor's course (already served: PostgreSQL orders them by microsecond, then id) are
// dropped here. One more row is asked for, as the cursor's course is among them; more only in
// the rare case of several courses published in one millisecond.
async function keysetPage(where, cursor, limit) {
  for (let extra = cursor ? 1 : 0; ; extra *= 4) {
    const take = limit + 1 + extra;
    const rows = await prisma.course.findMany({
      relationLoadStrategy: "join",
      where: cursor ? { ...where, publishedAt: { lt: new Date(cursor.at.getTime() + 1) } } : where,
      include: { creator: true },
      orderBy: [{ publishedAt: "desc" }, { id: "desc" }],
      take,
    });
    if (!cursor) return rows;
    const ms = cursor.at.getTime();
    let skip = rows.findIndex((c) => c.id === cursor.id) + 1;
    if (skip === 0) {
      // The cursor's course left the listing: of its millisecond, keep the ones after its id.
      skip = rows.findIndex((c) => c.publishedAt.getTime() < ms || c.id < cursor.id);
      if (skip < 0) skip = rows.length;
    }
    if (rows.length < take || rows.length - skip >= limit + 1) return rows.slice(skip, skip + limit + 1);
  }
}

async function listCourses(req, res) {
  const p = catalogParams(req);
  const user = await optionalUser(req);
  const query = p.q ? p.q.trim() : "";
  const scope = `catalog:${query}:${p.creatorId ?? ""}`;
  const where = { status: "PUBLISHED", ...(p.creatorId ? { creatorId: p.creatorId } : {}) };
  let courses;
  let keys;
  if (query) {
    let after = null;
    if (p.cursor) {
      const [rank, id] = decodeCursor(scope, p.cursor);
      if (typeof rank !== "number") throw new HttpError(400, "malformed cursor");
      after = { rank, id };
    }
    countSearch(clientKey(req.socket.remoteAddress));
    await searchSlot();
    let ranked;
    try {
      // Prisma cannot order by a rank: the ranked page is SQL, one statement as lms's (the
      // courses with their creators), shaped as Prisma's objects for the same summary().
      ranked = await prisma.$queryRaw`
        SELECT c.id::text AS id, c.title, c.description, c.thumbnail_url AS "thumbnailUrl",
               c.price, c.status, c.lesson_count AS "lessonCount", c.published_at AS "publishedAt",
               u.id::text AS creator_id, u.name AS creator_name, u.full_name AS creator_full_name,
               u.username AS creator_username, ts_rank_cd(c.search_vector, q) AS rank
        FROM courses c JOIN users u ON u.id = c.creator_id,
             websearch_to_tsquery('english', ${query}) AS q
        WHERE c.status = 'PUBLISHED' AND c.search_vector @@ q
          ${p.creatorId ? Prisma.sql`AND c.creator_id = ${p.creatorId}::uuid` : Prisma.empty}
          ${after ? Prisma.sql`AND (ts_rank_cd(c.search_vector, q), c.id) < (${after.rank}::real, ${after.id}::uuid)` : Prisma.empty}
        ORDER BY rank DESC, c.id DESC
        LIMIT ${p.limit + 1}`;
    } finally {
      releaseSearchSlot();
    }
    courses = ranked.map((r) => ({
      ...r,
      creator: { id: r.creator_id, name: r.creator_name, fullName: r.creator_full_name, username: r.creator_username },
    }));
    // A real (float4) widened to a double, as asyncpg hands it to lms.
    keys = ranked.map((r) => Math.fround(Number(r.rank)));
  } else {
    let cursor = null;
    if (p.cursor) {
      const [at, id] = decodeCursor(scope, p.cursor);
      if (typeof at !== "string" || Number.isNaN(Date.parse(at))) throw new HttpError(400, "malformed cursor");
      cursor = { at: new Date(at), id };
    }
    courses = await keysetPage(where, cursor, p.limit);
    keys = courses.map((c) => c.publishedAt.toISOString().replace(/\.(\d{3})Z$/, ".$1000+00:00"));
  }
  let nextCursor = null;
  if (courses.length > p.limit) {
    nextCursor = encodeCursor(scope, keys[p.limit - 1], courses[p.limit - 1].id);
  }
  const page = { items: courses.slice(0, p.limit).map(summary), nextCursor };
  cachedJson(req, res, toJson(page), user !== null);
}

async function getCourse(req, res, next) {
  if (!UUID_RE.test(req.params.id)) return next();
  const user = await optionalUser(req);
  const course = await prisma.course.findUnique({
    relationLoadStrategy: "join",
    where: { id: canonicalUuid(req.params.id) },
    include: { creator: true, lessons: { orderBy: { position: "asc" } } },
  });
  const visible =
    course &&
    (course.status === "PUBLISHED" ||
      (user && (course.creatorId === user.id || user.role === "ADMIN")));
  if (!visible) throw new HttpError(404, "no such course");
  const detail = {
    ...summary(course),
    createdAt: catalogTime(course.createdAt),
    updatedAt: catalogTime(course.updatedAt),
    submittedAt: catalogTime(course.submittedAt),
    reviewNotes: course.reviewNotes,
    lessons: course.lessons.map((l) => ({
      id: l.id,
      title: l.title,
      order: l.position,
      durationSeconds: l.durationSeconds,
      transcriptStatus: l.transcriptStatus,
    })),
  };
  cachedJson(req, res, toJson(detail), user !== null);
}

// ---------------------------------------------------------------------------------------------
// the heartbeat

// The watch clock's rules, as lms's (one clock per enrollment, shared by its lessons): a jump
// forward up to the real time available plus SEEK_SLACK_SECONDS is playback, more is a seek;
// heartbeats of one enrollment at least MIN_INTERVAL_SECONDS apart (else 429, Retry-After: 1);
// real time a heartbeat could not use carries over up to WATCH_CARRY_SECONDS.
const SEEK_SLACK_SECONDS = 2.0;
const MIN_INTERVAL_SECONDS = 0.5;
const WATCH_CARRY_SECONDS = 2.0;
const RETRY_AFTER_SECONDS = 1;
const TOO_SOON = "heartbeat too soon: one a second per enrollment is enough (this one changed nothing)";

function bodyInvalid(req, message, key) {
  return new HttpError(400, `Validation failed for ${req.method} ${req.originalUrl}`, {}, [
    { message, key, source: "body" },
  ]);
}

function jsonType(v) {
  if (v === null) return "null";
  if (Array.isArray(v)) return "array";
  if (typeof v === "string") return "str";
  if (typeof v === "boolean") return "bool";
  if (typeof v === "object") return "object";
  return "float";
}

function heartbeatBody(req) {
  const body = req.body;
  if (body === null || typeof body !== "object" || Array.isArray(body)) {
    throw bodyInvalid(req, `Expected \`object\`, got \`${jsonType(body)}\``, "body");
  }
  for (const key of Object.keys(body)) {
    if (key !== "positionSeconds") throw bodyInvalid(req, `Object contains unknown field \`${key}\``, "body");
  }
  if (!("positionSeconds" in body)) {
    throw bodyInvalid(req, "Object missing required field `positionSeconds`", "body");
  }
  const p = body.positionSeconds;
  if (typeof p !== "number") {
    throw bodyInvalid(req, `Expected \`float\`, got \`${jsonType(p)}\``, "positionSeconds");
  }
  if (p < 0) throw bodyInvalid(req, "Expected `float` >= 0.0", "positionSeconds");
  if (p > 604800) throw bodyInvalid(req, "Expected `float` <= 604800.0", "positionSeconds");
  return p;
}

// The heartbeat in one statement, as lms runs it (restated here, rule for rule). Prisma's client
// API cannot say it (a row lock on the enrollment, decisions on the values the lock returns, a
// nummultirange union, three tables written in one round trip), so it is raw SQL. In lms's lock
// order (the enrollment, then the lesson's row), so heartbeats and completions of one enrollment
// queue up instead of deadlocking:
// - target: the enrollment, locked, with the verdicts: in the video, on time (MIN_INTERVAL after
//   the enrollment's previous accepted heartbeat), and the real time not yet credited (budget);
// - previous: the lesson's row, if a heartbeat wrote it (locked: the latest version);
// - span: a jump forward within budget + slack is playback, credited from where credit stopped
//   (credited_to) for as much as the budget pays, no further than the new position;
// - saved: the lesson's row (without playback nothing stays owed, unless the player stood still);
//   clock: the enrollment's watch clock moves on by what was gained, never lagging now by more
//   than the carry. Positions rounded to the millisecond, as lms keeps them.
// A refused heartbeat (404, 400, 429) writes nothing.
function heartbeatStatement(lessonId, userId, position) {
  const lesson = Prisma.sql`${lessonId}::uuid`;
  const user = Prisma.sql`${userId}::uuid`;
  const pos = Prisma.sql`${position}::float8`;
  return Prisma.sql`
    WITH target AS (
        SELECT l.id AS lesson_id, l.duration_seconds, e.id AS enrollment_id, e.watch_clock,
               (l.duration_seconds IS NULL OR ${pos} <= l.duration_seconds) AS in_video,
               (e.last_heartbeat_at IS NULL
                OR e.last_heartbeat_at <= now() - make_interval(secs => ${MIN_INTERVAL_SECONDS}::float8)) AS on_time,
               extract(epoch FROM now() - e.watch_clock)::float8 AS budget
        FROM lessons l JOIN enrollments e ON e.course_id = l.course_id AND e.user_id = ${user}
        WHERE l.id = ${lesson}
        FOR NO KEY UPDATE OF e
    ), accepted AS (
        SELECT * FROM target WHERE in_video AND on_time
    ), previous AS (
        SELECT p.position_seconds, coalesce(p.credited_to, p.position_seconds) AS credited_to,
               p.watched, p.watched_seconds
        FROM lesson_progress p
        WHERE p.enrollment_id = (SELECT a.enrollment_id FROM accepted a)
          AND p.lesson_id = ${lesson} AND p.last_heartbeat_at IS NOT NULL
        FOR NO KEY UPDATE OF p
    ), span AS (
        SELECT pr.watched, pr.watched_seconds,
               numrange(round(pr.credited_to::numeric, 3),
                        round((pr.credited_to + least(${pos} - pr.credited_to, a.budget))::numeric, 3))
                   AS played
        FROM accepted a JOIN previous pr ON true
        WHERE ${pos} > pr.position_seconds
          AND ${pos} - pr.position_seconds <= a.budget + ${SEEK_SLACK_SECONDS}::float8
    ), credit AS (
        SELECT w.watched, upper(s.played)::float8 AS credited_to, m.seconds AS watched_seconds,
               greatest(m.seconds - s.watched_seconds, 0) AS gained
        FROM span s,
             LATERAL (SELECT s.watched + nummultirange(s.played) AS watched) w,
             LATERAL (SELECT coalesce(sum(upper(r) - lower(r)), 0)::float8 AS seconds
                      FROM unnest(w.watched) AS r) m
    ), saved AS (
        INSERT INTO lesson_progress AS p (user_id, lesson_id, enrollment_id, position_seconds,
                                          credited_to, last_heartbeat_at, updated_at)
        SELECT ${user}, a.lesson_id, a.enrollment_id, ${pos}, ${pos}, now(), now() FROM accepted a
        ON CONFLICT (enrollment_id, lesson_id) DO UPDATE SET
            watched = coalesce((SELECT c.watched FROM credit c), p.watched),
            watched_seconds = coalesce((SELECT c.watched_seconds FROM credit c), p.watched_seconds),
            credited_to = coalesce(
                (SELECT c.credited_to FROM credit c),
                CASE WHEN EXCLUDED.position_seconds = p.position_seconds THEN p.credited_to
                     ELSE EXCLUDED.position_seconds END),
            position_seconds = EXCLUDED.position_seconds,
            last_heartbeat_at = EXCLUDED.last_heartbeat_at,
            updated_at = EXCLUDED.updated_at
        RETURNING p.watched_seconds, p.completed
    ), clock AS (
        UPDATE enrollments e
        SET last_heartbeat_at = now(),
            watch_clock = least(now(), greatest(
                coalesce(a.watch_clock
                         + make_interval(secs => coalesce((SELECT c.gained FROM credit c), 0)),
                         now()),
                now() - make_interval(secs => ${WATCH_CARRY_SECONDS}::float8)))
        FROM accepted a
        WHERE e.id = a.enrollment_id
    )
    SELECT t.duration_seconds, t.in_video, t.on_time, s.watched_seconds, s.completed
    FROM target t LEFT JOIN saved s ON true`;
}

async function heartbeat(req, res, next) {
  if (!UUID_RE.test(req.params.id)) return next();
  const lessonId = canonicalUuid(req.params.id);
  const position = heartbeatBody(req) + 0; // -0 is 0
  const user = req.user;
  const [row] = await prisma.$queryRaw(heartbeatStatement(lessonId, user.id, position));
  if (!row) throw new HttpError(404, NOT_ENROLLED);
  const duration = row.duration_seconds;
  if (!row.in_video) {
    throw new HttpError(400, `positionSeconds ${pyG(position)} is past the end of the video (${pyG(duration)} s)`);
  }
  if (!row.on_time) {
    throw new HttpError(429, TOO_SOON, { "Retry-After": String(RETRY_AFTER_SECONDS) });
  }
  if (!row.completed) {
    const { threshold } = await watchRule();
    if (duration && row.watched_seconds >= (duration * threshold) / 100) {
      await completeLesson(user, lessonId);
    }
  }
  res.status(204).end();
}

// ---------------------------------------------------------------------------------------------
// completion and certificates

// Completion in lms's statements, one transaction: (1) lock the enrollment and read what the
// rules and the certificate need; (2) mark the lesson and recompute the enrollment from the rows;
// then, the first time the course is complete, (3) the certificate's status number and (4) the
// certificate, or on a repeat the certificate. Prisma cannot say (1) (a row lock) or (2) (an upsert
// feeding an UPDATE in one statement), so they are SQL, restated from lms; (3) is SQL (Prisma has
// no sequences); (4) is Prisma's.
function lockForCompletion(tx, lessonId, userId) {
  return tx.$queryRaw`
    SELECT e.id::text AS enrollment_id, e.course_id::text AS course_id, e.completed AS course_completed,
           l.duration_seconds, l.video_version > 0 AS has_video,
           coalesce(p.completed, false) AS lesson_completed,
           coalesce(p.watched_seconds, 0) AS watched_seconds,
           c.title AS course_title,
           coalesce(cu.name, cu.full_name, cu.username) AS creator_name,
           coalesce(lu.full_name, lu.name, lu.username) AS learner_name,
           cert.id::text AS certificate_id
    FROM lessons l
    JOIN enrollments e ON e.course_id = l.course_id AND e.user_id = ${userId}::uuid
    JOIN courses c ON c.id = e.course_id
    JOIN users cu ON cu.id = c.creator_id
    JOIN users lu ON lu.id = e.user_id
    LEFT JOIN lesson_progress p ON p.enrollment_id = e.id AND p.lesson_id = l.id
    LEFT JOIN certificates cert ON cert.enrollment_id = e.id
    WHERE l.id = ${lessonId}::uuid
    FOR NO KEY UPDATE OF e`;
}

function markCompleted(tx, enrollmentId, lessonId, userId, courseId) {
  return tx.$queryRaw`
    WITH marked AS (
        INSERT INTO lesson_progress AS p
            (user_id, lesson_id, enrollment_id, completed, completed_at, updated_at)
        VALUES (${userId}::uuid, ${lessonId}::uuid, ${enrollmentId}::uuid, true, now(), now())
        ON CONFLICT (enrollment_id, lesson_id) DO UPDATE
            SET completed = true, completed_at = coalesce(p.completed_at, now()), updated_at = now()
        RETURNING p.lesson_id
    ), tally AS (
        SELECT (SELECT count(*) FROM lesson_progress
                WHERE enrollment_id = ${enrollmentId}::uuid AND completed
                  AND lesson_id <> ${lessonId}::uuid) + 1 AS done,
               (SELECT count(*) FROM lessons WHERE course_id = ${courseId}::uuid) AS total
    )
    UPDATE enrollments e
    SET progress = round(100.0 * least(t.done, t.total) / greatest(t.total, 1), 2),
        completed = e.completed OR t.done >= t.total,
        completed_at = CASE WHEN e.completed THEN e.completed_at
                            WHEN t.done >= t.total THEN now() END
    FROM tally t, (SELECT count(*) FROM marked) m
    WHERE e.id = ${enrollmentId}::uuid
    RETURNING e.progress::float8 AS progress, e.completed`;
}

async function completeLesson(user, lessonId) {
  const rule = await watchRule();
  const body = await prisma.$transaction(async (tx) => {
    const [facts] = await lockForCompletion(tx, lessonId, user.id);
    if (!facts) throw new HttpError(404, NOT_ENROLLED);
    const duration = facts.duration_seconds;
    if (rule.required && facts.has_video && !facts.lesson_completed) {
      // A video whose length is not known yet cannot be measured, so not completed either.
      if (!duration) throw new HttpError(409, STILL_PROCESSING);
      const watched = facts.watched_seconds;
      const needed = (duration * rule.threshold) / 100;
      if (watched < needed) {
        const left = Math.ceil(needed - watched);
        throw new HttpError(
          409,
          `watch ${left} more second${left !== 1 ? "s" : ""} of this lesson's video first: ` +
            `${pyFixed((watched / duration) * 100, 1)}% of ${pyFixed(duration, 0)} s watched, ` +
            `${pyG(rule.threshold)}% needed`,
        );
      }
    }
    const [state] = await markCompleted(tx, facts.enrollment_id, lessonId, user.id, facts.course_id);
    let certificate = null;
    if (state.completed) {
      certificate = facts.certificate_id
        ? await tx.certificate.findUnique({ where: { id: facts.certificate_id } })
        : await tx.certificate.create({ data: await newCertificate(tx, user.id, facts) });
    }
    return { progress: state.progress, courseCompleted: state.completed, certificate };
  });
  // msgspec's bytes for lms's LessonCompletion: `progress` is a float (40.0, not 40).
  return (
    `{"lessonId":${toJson(lessonId)},"completed":true,"progress":${pyFloat(body.progress)},` +
    `"courseCompleted":${body.courseCompleted},` +
    `"certificate":${toJson(body.certificate && certificateJson(body.certificate))}}`
  );
}

// The public key as lms stores it: the members RFC 7638 hashes for the thumbprint (the kid), only.
const THUMBPRINT_MEMBERS = { RSA: ["e", "kty", "n"], EC: ["crv", "kty", "x", "y"], OKP: ["crv", "kty", "x"] };
const exported = crypto.createPublicKey(CFG.signingKey.key).export({ format: "jwk" });
const publicJwk = Object.fromEntries(THUMBPRINT_MEMBERS[exported.kty].map((name) => [name, exported[name]]));
const thumbprint = b64url(crypto.createHash("sha256").update(JSON.stringify(publicJwk)).digest());
const KID = `${CFG.baseUrl}/.well-known/jwks.json#${thumbprint}`;

// JWS signatures (RFC 7518): RSASSA-PKCS1-v1_5 with SHA-256, ECDSA P-256 as r || s, Ed25519.
function jwsSignature(input) {
  const { key, alg } = CFG.signingKey;
  if (alg === "RS256") return crypto.sign("sha256", input, { key, padding: crypto.constants.RSA_PKCS1_PADDING });
  if (alg === "ES256") return crypto.sign("sha256", input, { key, dsaEncoding: "ieee-p1363" });
  return crypto.sign(null, input, key);
}

// Revocation status lists (W3C Bitstring Status List) of 131,072 bits, as lms: number n of
// certificate_status_seq is bit n % size of list n / size + 1.
const STATUS_LIST_SIZE = 131072;

async function statusPosition(tx) {
  // Prisma's client has no sequences: nextval by SQL, as lms runs it.
  const [{ number }] = await tx.$queryRaw`SELECT nextval('certificate_status_seq') AS number`;
  const n = Number(number);
  return { statusList: Math.floor(n / STATUS_LIST_SIZE) + 1, statusIndex: n % STATUS_LIST_SIZE };
}

// JSON as Python's json.dumps writes it for PyJWT (compact, non-ASCII escaped): lms's VC-JWT
// payload bytes.
const asciiJson = (v) => JSON.stringify(v).replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);

function signCredential({ id, serialHash, enrollmentId, issuedAt, learnerName, courseId, courseTitle, statusList, statusIndex }) {
  const issuer = CFG.baseUrl;
  const statusUrl = `${issuer}/certificates/status/${statusList}`;
  const credential = {
    "@context": ["https://www.w3.org/ns/credentials/v2", "https://purl.imsglobal.org/spec/ob/v3p0/context-3.0.3.json"],
    id: `urn:uuid:${id}`,
    type: ["VerifiableCredential", "OpenBadgeCredential"],
    name: `Certificate of completion: ${courseTitle}`,
    issuer: { id: issuer, type: ["Profile"], name: CFG.issuerName, url: issuer },
    validFrom: wholeSeconds(issuedAt),
    credentialStatus: {
      id: `${statusUrl}#${statusIndex}`,
      type: "BitstringStatusListEntry",
      statusPurpose: "revocation",
      statusListIndex: String(statusIndex),
      statusListCredential: statusUrl,
    },
    credentialSubject: {
      id: `urn:uuid:${enrollmentId}`,
      type: ["AchievementSubject"],
      identifier: [{ type: "IdentityObject", identityType: "name", hashed: false, identityHash: learnerName }],
      achievement: {
        id: `${issuer}/courses/${courseId}`,
        type: ["Achievement"],
        achievementType: "Course",
        name: courseTitle,
        description: `Completion of the course ${courseTitle}`,
        criteria: { narrative: `Completed every lesson of the course ${courseTitle}, as recorded by ${CFG.issuerName}.` },
      },
    },
  };
  const payload = {
    ...credential,
    iss: issuer,
    jti: credential.id,
    sub: credential.credentialSubject.id,
    nbf: Math.floor(issuedAt.getTime() / 1000),
    serialHash,
  };
  const input = `${b64url(asciiJson({ alg: CFG.signingKey.alg, kid: KID, typ: "JWT" }))}.${b64url(asciiJson(payload))}`;
  return `${input}.${b64url(jwsSignature(Buffer.from(input)))}`;
}

async function newCertificate(tx, userId, facts) {
  const status = await statusPosition(tx);
  const data = {
    id: crypto.randomUUID(),
    userId,
    courseId: facts.course_id,
    enrollmentId: facts.enrollment_id,
    serialHash: crypto.randomBytes(24).toString("hex"),
    learnerName: facts.learner_name,
    courseTitle: facts.course_title,
    creatorName: facts.creator_name,
    status: "VALID",
    issuedAt: new Date(Math.floor(Date.now() / 1000) * 1000),
    ...status,
  };
  data.jws = signCredential(data);
  return data;
}

const verifyUrl = (serial) => `${CFG.baseUrl}/certificates/verify/${serial}`;
// A revoked certificate's answers carry no VC-JWT (as lms's): one would look valid to a verifier
// that skips the status check.
const credentialOf = (c) => (c.status === "VALID" ? c.jws : null);

function certificateJson(c) {
  return {
    id: c.id,
    serialHash: c.serialHash,
    issuedAt: wholeSeconds(c.issuedAt),
    enrollmentId: c.enrollmentId,
    course: { id: c.courseId, title: c.courseTitle },
    learner: { fullName: c.learnerName },
    creatorName: c.creatorName,
    verifyUrl: verifyUrl(c.serialHash),
    status: c.status,
    revokedAt: stampedTime(c.revokedAt),
    jws: credentialOf(c),
  };
}

async function complete(req, res, next) {
  if (!UUID_RE.test(req.params.id)) return next();
  sendJson(res, 200, await completeLesson(req.user, canonicalUuid(req.params.id)));
}

const VERIFY_HEADERS = { "Cache-Control": "public, max-age=25", Vary: "Accept" };

async function verify(req, res) {
  const serial = req.params.serial.trim().toLowerCase();
  const c = /^[0-9a-f]{32,64}$/.test(serial)
    ? await prisma.certificate.findUnique({ where: { serialHash: serial } })
    : null;
  if (!c) {
    const body = { valid: false, status_code: 404, detail: "no certificate has this serial" };
    return sendJson(res, 404, toJson(body), VERIFY_HEADERS);
  }
  const answer = {
    valid: c.status === "VALID",
    certificate: {
      serialHash: c.serialHash,
      issuedAt: wholeSeconds(c.issuedAt),
      learnerName: c.learnerName,
      courseTitle: c.courseTitle,
      courseId: c.courseId,
      creatorName: c.creatorName,
      status: c.status,
      revokedAt: stampedTime(c.revokedAt),
      verifyUrl: verifyUrl(c.serialHash),
      jws: credentialOf(c),
    },
  };
  sendJson(res, 200, toJson(answer), VERIFY_HEADERS);
}

// ---------------------------------------------------------------------------------------------
// the app

// The bench's browser variant: CORS for the origins of LMS_CORS_ORIGINS with the lists lms
// configures (lms.app's CORSConfig), the headers as lms sends them; nothing when it is unset.
function cors(origins) {
  const methods = "DELETE, GET, OPTIONS, PATCH, POST, PUT";
  const allowed = ["authorization", "content-type", "if-none-match", "x-request-id"];
  const preflightAllowed = [...allowed, "Accept", "Accept-Language", "Content-Language", "Content-Type"];
  const preflightHeaders = preflightAllowed.sort().join(", ");
  const asked = new Set([...allowed, "accept", "accept-language", "content-language"]);
  return (req, res, next) => {
    const origin = req.headers.origin;
    if (origin === undefined) return next();
    const ok = origins.has(origin);
    if (req.method === "OPTIONS") {
      const headers = (req.headers["access-control-request-headers"] || "").split(",");
      const badHeaders = headers.some((h) => h.trim() && !asked.has(h.trim().toLowerCase()));
      if (!ok || badHeaders) {
        const failures = [...(ok ? [] : ["Origin"]), ...(badHeaders ? ["headers"] : [])];
        res.status(400).type("text/plain").send(`Disallowed CORS ${failures.join(", ")}`);
        return;
      }
      res.setHeader("Access-Control-Max-Age", "600");
      res.setHeader("Vary", "Origin");
      res.setHeader("Access-Control-Allow-Headers", preflightHeaders);
      res.setHeader("Access-Control-Allow-Methods", methods);
      res.setHeader("Access-Control-Allow-Origin", origin);
      res.status(204).end();
      return;
    }
    res.setHeader("Access-Control-Expose-Headers", "ETag, Location, Retry-After, X-Request-ID");
    if (ok) {
      res.setHeader("Access-Control-Allow-Origin", origin);
      res.setHeader("Vary", "Origin");
    }
    res.setHeader("Access-Control-Allow-Headers", allowed.join(", "));
    res.setHeader("Access-Control-Allow-Methods", methods);
    next();
  };
}

function buildApp() {
  const app = express();
  app.set("etag", false);
  app.set("x-powered-by", false);
  app.set("query parser", "simple");
  const origins = (process.env.LMS_CORS_ORIGINS || "").split(",").map((o) => o.trim()).filter(Boolean);
  if (origins.length) app.use(cors(new Set(origins)));
  // X-Request-ID comes back as sent, as lms answers it: the suite's wrk scripts match responses
  // to requests by it (bench/suite.py, bench/learning.py).
  app.use((req, res, next) => {
    const id = req.headers["x-request-id"];
    if (id !== undefined) res.setHeader("X-Request-ID", id);
    next();
  });
  app.get("/courses", listCourses);
  app.get("/courses/:id", getCourse);
  const json = express.json({ strict: false, type: () => true });
  app.post("/lessons/:id/progress", requireUser, json, heartbeat);
  app.post("/lessons/:id/complete", requireUser, complete);
  app.get("/certificates/verify/:serial", verify);
  app.get("/healthz", (_req, res) => sendJson(res, 200, '{"status":"ok"}'));
  app.use((_req, _res) => {
    throw new HttpError(404, "Not Found");
  });
  app.use((err, _req, res, _next) => {
    if (err instanceof HttpError) {
      const body = { status_code: err.status, detail: err.detail };
      if (err.extra) body.extra = err.extra;
      return sendJson(res, err.status, toJson(body), err.headers);
    }
    if (err.type === "entity.parse.failed") {
      return sendJson(res, 400, toJson({ status_code: 400, detail: `the body is not valid JSON: ${err.message}` }));
    }
    console.error(err);
    sendJson(res, 500, '{"status_code":500,"detail":"Internal Server Error"}');
  });
  return app;
}

async function registerKey() {
  await prisma.certificateSigningKey.upsert({
    where: { kid: KID },
    update: {},
    create: { kid: KID, publicJwk },
  });
}

if (cluster.isPrimary && CFG.workers > 1) {
  for (let i = 0; i < CFG.workers; i += 1) cluster.fork();
  cluster.on("exit", (worker, code) => console.error(`worker ${worker.process.pid} exited (${code})`));
} else {
  Promise.all([registerKey(), createBLAKE2b(128), listen()])
    .then(([, hasher]) => {
      blake2b128 = hasher;
      buildApp().listen(CFG.port, CFG.host, () => {
        if (cluster.isPrimary || cluster.worker.id === 1) {
          console.log(`express+prisma peer on http://${CFG.host}:${CFG.port} (${CFG.workers} process(es))`);
        }
      });
    })
    .catch((err) => {
      console.error(err);
      process.exit(1);
    });
}
