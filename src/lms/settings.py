"""Runtime configuration: the only module that reads the environment."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from lms.errors import StartupError

WhisperDevice = Literal["auto", "cpu", "cuda"]
LogFormat = Literal["json", "text"]


@dataclass(frozen=True, slots=True)
class Settings:
    """Every setting of the service; field docs are the README's configuration table."""

    database_url: str | None = None
    nats_url: str | None = None
    cloudinary_url: str | None = None
    smtp_url: str | None = None
    email_from: str = "LMS <no-reply@lms.local>"
    jwt_secret: str | None = None
    jwt_algorithm: str = "HS256"
    access_token_ttl_seconds: int = 900
    refresh_token_ttl_seconds: int = 30 * 86400
    sms_url: str | None = None
    sms_from: str | None = None
    trusted_proxies: tuple[str, ...] = ()
    auth_rate_limit_per_minute: int = 60
    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = Path(".lms")
    cors_origins: tuple[str, ...] = ()
    log_level: str = "INFO"
    log_format: LogFormat = "json"
    db_pool_min: int = 2
    db_pool_max: int = 10
    jobs_stream: str = "LMS_JOBS"
    jobs_subject: str = "lms.jobs"
    jobs_ack_wait_seconds: int = 60
    jobs_max_deliver: int = 5
    jobs_replicas: int = 1
    sweep_interval_seconds: int = 30
    worker_metrics_port: int | None = None
    whisper_model: str = "default"
    whisper_device: WhisperDevice = "auto"
    whisper_compute_type: str = "default"
    granian_config: Path | None = None
    public_base_url: str | None = None
    # An Ed25519 private key (PEM text, or the path of a PEM file) that signs certificates.
    cert_signing_key: str | None = None
    issuer_name: str = "LMS"  # who issues certificates, as credentials and pages name it

    @property
    def media_dir(self) -> Path:
        return self.data_dir / "media"

    @property
    def base_url(self) -> str:
        return self.public_base_url or f"http://{self.host}:{self.port}"

    def to_environ(self) -> dict[str, str]:
        """The environment variables that reproduce the service URLs in a child process."""
        env: dict[str, str] = {"LMS_DATA_DIR": str(self.data_dir), "LMS_PORT": str(self.port)}
        if self.database_url:
            env["DATABASE_URL"] = self.database_url
        if self.nats_url:
            env["NATS_URL"] = self.nats_url
        if self.jwt_secret:
            env["LMS_JWT_SECRET"] = self.jwt_secret
        if self.cert_signing_key:
            env["LMS_CERT_SIGNING_KEY"] = self.cert_signing_key
        return env


def _int(env: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise StartupError(f"{name} must be an integer, got {raw!r}") from None
    if not lo <= value <= hi:
        raise StartupError(f"{name} must be between {lo} and {hi}, got {value}")
    return value


def _url(env: Mapping[str, str], name: str, schemes: tuple[str, ...]) -> str | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    parts = urlsplit(raw)
    if parts.scheme not in schemes or not (parts.hostname or parts.path):
        wanted = " or ".join(f"{s}://..." for s in schemes)
        raise StartupError(f"{name} must be a {wanted} URL, got {redact_url(raw)!r}")
    return raw


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env.get(name, "").strip().lower() or default
    if value not in choices:
        raise StartupError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def _networks(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """A comma-separated list of IP addresses or CIDR networks, checked here, kept as text."""
    items = tuple(i.strip() for i in env.get(name, "").split(",") if i.strip())
    for item in items:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise StartupError(f"{name}: {item!r} is not an IP address or network") from None
    return items


def _text(env: Mapping[str, str], name: str, default: str, max_length: int) -> str:
    value = " ".join(env.get(name, "").split()) or default
    if len(value) > max_length:
        raise StartupError(f"{name} must be at most {max_length} characters")
    return value


def redact_url(url: str) -> str:
    """The URL with its password replaced, safe for logs and error lines."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


_DEFAULTS = Settings()


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from the environment, refusing bad values with a one-line StartupError."""
    env = os.environ if env is None else env
    origins = tuple(o.strip() for o in env.get("LMS_CORS_ORIGINS", "").split(",") if o.strip())
    granian_config = env.get("LMS_GRANIAN_CONFIG", "").strip()
    return Settings(
        database_url=_url(env, "DATABASE_URL", ("postgresql", "postgres")),
        nats_url=_url(env, "NATS_URL", ("nats", "tls")),
        cloudinary_url=_url(env, "CLOUDINARY_URL", ("cloudinary",)),
        smtp_url=_url(env, "LMS_SMTP_URL", ("smtp", "smtps")),
        email_from=env.get("LMS_EMAIL_FROM", "").strip() or _DEFAULTS.email_from,
        jwt_secret=env.get("LMS_JWT_SECRET") or None,
        jwt_algorithm=_choice(
            env, "LMS_JWT_ALGORITHM", "hs256", ("hs256", "hs384", "hs512")
        ).upper(),
        access_token_ttl_seconds=_int(env, "LMS_ACCESS_TOKEN_TTL", 900, 30, 86400),
        refresh_token_ttl_seconds=_int(
            env, "LMS_REFRESH_TOKEN_TTL", _DEFAULTS.refresh_token_ttl_seconds, 300, 365 * 86400
        ),
        sms_url=_url(env, "LMS_SMS_URL", ("http", "https")),
        sms_from=env.get("LMS_SMS_FROM", "").strip() or None,
        trusted_proxies=_networks(env, "LMS_TRUSTED_PROXIES"),
        auth_rate_limit_per_minute=_int(env, "LMS_AUTH_RATE_LIMIT", 60, 1, 100_000),
        host=env.get("LMS_HOST", "").strip() or _DEFAULTS.host,
        port=_int(env, "LMS_PORT", 8000, 1, 65535),
        data_dir=Path(env.get("LMS_DATA_DIR", "").strip() or ".lms").expanduser().absolute(),
        cors_origins=origins,
        log_level=_choice(
            env, "LMS_LOG_LEVEL", "info", ("debug", "info", "warning", "error")
        ).upper(),
        log_format=_choice(env, "LMS_LOG_FORMAT", "json", ("json", "text")),  # type: ignore[arg-type]
        db_pool_min=_int(env, "LMS_DB_POOL_MIN", 2, 0, 1000),
        db_pool_max=_int(env, "LMS_DB_POOL_MAX", 10, 1, 1000),
        jobs_stream=env.get("LMS_JOBS_STREAM", "").strip() or _DEFAULTS.jobs_stream,
        jobs_subject=env.get("LMS_JOBS_SUBJECT", "").strip() or _DEFAULTS.jobs_subject,
        jobs_ack_wait_seconds=_int(env, "LMS_JOBS_ACK_WAIT", 60, 3, 3600),
        jobs_max_deliver=_int(env, "LMS_JOBS_MAX_DELIVER", 5, 1, 100),
        jobs_replicas=_int(env, "LMS_JOBS_REPLICAS", 1, 1, 5),
        sweep_interval_seconds=_int(env, "LMS_SWEEP_INTERVAL", 30, 1, 3600),
        worker_metrics_port=_int(env, "LMS_WORKER_METRICS_PORT", 0, 0, 65535) or None,
        whisper_model=env.get("LMS_WHISPER_MODEL", "").strip() or _DEFAULTS.whisper_model,
        whisper_device=_choice(  # type: ignore[arg-type]
            env, "LMS_WHISPER_DEVICE", "auto", ("auto", "cpu", "cuda")
        ),
        whisper_compute_type=env.get("LMS_WHISPER_COMPUTE_TYPE", "").strip() or "default",
        granian_config=Path(granian_config) if granian_config else None,
        public_base_url=(_url(env, "LMS_PUBLIC_BASE_URL", ("http", "https")) or "").rstrip("/")
        or None,
        cert_signing_key=env.get("LMS_CERT_SIGNING_KEY", "").strip() or None,
        issuer_name=_text(env, "LMS_ISSUER_NAME", _DEFAULTS.issuer_name, 200),
    )


@cache
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()
