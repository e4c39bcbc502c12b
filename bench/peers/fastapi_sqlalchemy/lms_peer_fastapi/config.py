"""Settings from the environment variables lms reads (where they overlap), the engine and the
session dependency."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import Depends
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

# The keys lms signs certificates with, and the JWS algorithm of each (RS256 is lms's default).
SigningKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | Ed25519PrivateKey


@dataclass(frozen=True)
class Settings:
    database_url: str
    jwt_secret: str
    jwt_algorithm: str
    base_url: str
    issuer_name: str
    signing_key: SigningKey
    signing_algorithm: str
    search_rate_limit: int
    search_concurrency: int
    pool_size: int


def _signing_key(value: str) -> tuple[SigningKey, str]:
    """(the key, its JWS algorithm), refusing what lms refuses."""
    text = value.strip()
    if "-----BEGIN" not in text:
        text = Path(text).expanduser().read_text()
    key = serialization.load_pem_private_key(text.encode(), password=None)
    if isinstance(key, rsa.RSAPrivateKey) and key.key_size >= 2048:
        return key, "RS256"
    if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
        return key, "ES256"
    if isinstance(key, Ed25519PrivateKey):
        return key, "EdDSA"
    raise SystemExit(
        "LMS_CERT_SIGNING_KEY must be an RSA key of 2048 bits or more (RS256), a P-256 key "
        "(ES256) or an Ed25519 key (EdDSA)"
    )


@lru_cache
def get_settings() -> Settings:
    env = os.environ
    host, port = env.get("LMS_HOST") or "127.0.0.1", env.get("LMS_PORT") or "8000"
    signing_key, signing_algorithm = _signing_key(env["LMS_CERT_SIGNING_KEY"])
    return Settings(
        database_url=env["DATABASE_URL"],
        jwt_secret=env["LMS_JWT_SECRET"],
        jwt_algorithm=env.get("LMS_JWT_ALGORITHM") or "HS256",
        base_url=(env.get("LMS_PUBLIC_BASE_URL") or f"http://{host}:{port}").rstrip("/"),
        issuer_name=env.get("LMS_ISSUER_NAME") or "LMS",
        signing_key=signing_key,
        signing_algorithm=signing_algorithm,
        search_rate_limit=int(env.get("LMS_SEARCH_RATE_LIMIT") or 120),
        search_concurrency=int(env.get("LMS_SEARCH_CONCURRENCY") or 4),
        pool_size=int(env.get("LMS_DB_POOL_MAX") or 10),
    )


def async_url(url: str) -> str:
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    return url


@lru_cache
def get_engine() -> AsyncEngine:
    settings = get_settings()
    return create_async_engine(
        async_url(settings.database_url), pool_size=settings.pool_size, max_overflow=0
    )


@lru_cache
def get_sessionmaker() -> async_sessionmaker[AsyncSession]:
    """Sessions whose work is one transaction (BEGIN ... COMMIT): completion."""
    return async_sessionmaker(get_engine(), expire_on_commit=False)


@lru_cache
def get_autocommit_sessionmaker() -> async_sessionmaker[AsyncSession]:
    """Sessions on the same pool in the driver's autocommit mode: each statement is its own
    transaction, with no BEGIN/COMMIT round trips around it (SQLAlchemy's documented
    isolation_level="AUTOCOMMIT"). For requests that read, or write with one statement: the
    catalog, the search counter, the heartbeat, verification; as lms runs them on its pool."""
    return async_sessionmaker(
        get_engine().execution_options(isolation_level="AUTOCOMMIT"), expire_on_commit=False
    )


async def get_session() -> AsyncIterator[AsyncSession]:
    async with get_autocommit_sessionmaker()() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
