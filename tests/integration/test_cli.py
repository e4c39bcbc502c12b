"""The `lms` command: help for each subcommand, and operator mistakes as one clear line."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg
import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from lms.db.migrate import known_migrations, migrate_forward
from lms.domain.certificates.keys import key_file, load_signing_key
from lms.netutil import free_port
from tests.conftest import ServerUrls
from tests.helpers import child_env, error_lines, run_lms, wait_ready

COMMANDS = ["dev", "serve", "worker", "migrate", "create-admin"]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_help() -> None:
    result = run_lms("--help")
    assert result.returncode == 0
    for command in COMMANDS:
        assert command in result.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str) -> None:
    result = run_lms(command, "--help")
    assert result.returncode == 0, result.stderr
    assert f"usage: lms {command}" in result.stdout


def test_unreachable_database_is_one_line(server_urls: ServerUrls) -> None:
    result = run_lms(
        "migrate",
        DATABASE_URL=f"postgresql://postgres@127.0.0.1:{_closed_port()}/lms",
        NATS_URL=server_urls.nats,
    )
    assert result.returncode == 2
    assert len(error_lines(result)) == 1, result.stderr
    assert error_lines(result)[0].startswith(
        "lms: error: cannot connect to PostgreSQL at 127.0.0.1:"
    )


def test_wrong_database_name_is_one_line(server_urls: ServerUrls) -> None:
    missing = server_urls.postgres.rsplit("/", 1)[0] + "/no_such_db_" + uuid.uuid4().hex[:6]
    result = run_lms("serve", DATABASE_URL=missing, NATS_URL=server_urls.nats)
    assert result.returncode == 2
    assert len(error_lines(result)) == 1, result.stderr
    assert "refused the connection" in result.stderr and "does not exist" in result.stderr


def test_malformed_database_url_is_one_line() -> None:
    result = run_lms("migrate", DATABASE_URL="mysql://root:topsecret@db/lms")
    assert result.returncode == 2
    assert error_lines(result) == [
        "lms: error: DATABASE_URL must be a postgresql://... or postgres://... URL, "
        "got 'mysql://root:***@db/lms'"
    ]


def test_serve_refuses_an_unmigrated_database(
    scratch_database: str, server_urls: ServerUrls
) -> None:
    result = run_lms("serve", DATABASE_URL=scratch_database, NATS_URL=server_urls.nats)
    assert result.returncode == 2
    assert len(error_lines(result)) == 1, result.stderr
    assert "schema is behind" in result.stderr and "run `lms migrate`" in result.stderr


async def test_migrate_then_check(scratch_database: str, server_urls: ServerUrls) -> None:
    env = {"DATABASE_URL": scratch_database, "NATS_URL": server_urls.nats}
    check = run_lms("migrate", "--check", **env)
    assert check.returncode == 2 and "pending" in check.stderr
    applied = run_lms("migrate", **env)
    assert applied.returncode == 0, applied.stderr
    assert f"{len(known_migrations())} migration(s) applied" in applied.stdout
    assert run_lms("migrate", "--check", **env).stdout.strip() == "schema is current"


async def test_serve_refuses_a_port_in_use(scratch_database: str, server_urls: ServerUrls) -> None:
    await migrate_forward(scratch_database, quiet=True)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_lms(
            "serve", DATABASE_URL=scratch_database, NATS_URL=server_urls.nats, LMS_PORT=str(port)
        )
    assert result.returncode == 2
    assert error_lines(result) == [
        f"lms: error: port {port} on 127.0.0.1 is already in use (set LMS_PORT)"
    ]


async def test_create_admin(db: asyncpg.Pool, database_url: str, server_urls: ServerUrls) -> None:
    env = {"DATABASE_URL": database_url, "NATS_URL": server_urls.nats}
    created = run_lms(
        "create-admin", "--email", "Root@Example.test", "--password", "s3cret-enough", **env
    )
    assert created.returncode == 0, created.stderr
    assert created.stdout.startswith("created ADMIN root@example.test (username root,")
    row = await db.fetchrow("SELECT * FROM users WHERE email = 'root@example.test'")
    assert row["role"] == "ADMIN" and row["email_verified"] and row["is_profile_complete"]
    assert row["password_hash"].startswith("$argon2id$")

    again = run_lms(
        "create-admin", "--email", "root@example.test", "--password", "another-secret", **env
    )
    assert again.returncode == 0 and again.stdout.startswith("updated existing user to ADMIN")
    after = await db.fetchrow("SELECT * FROM users WHERE email = 'root@example.test'")
    assert after["id"] == row["id"] and after["password_hash"] != row["password_hash"]
    assert after["token_version"] == row["token_version"] + 1


def test_create_admin_refuses_a_short_password(database_url: str, server_urls: ServerUrls) -> None:
    result = run_lms(
        "create-admin",
        "--email",
        "a@b.test",
        "--password",
        "short",
        DATABASE_URL=database_url,
        NATS_URL=server_urls.nats,
    )
    assert result.returncode == 2
    assert error_lines(result) == ["lms: error: password must be at least 10 characters"]


def create_admin_with(
    database_url: str, server_urls: ServerUrls, *args: str, stdin: str | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lms", "create-admin", *args],
        env=child_env(DATABASE_URL=database_url, NATS_URL=server_urls.nats, **env),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_create_admin_takes_the_password_off_the_command_line(
    api: httpx.AsyncClient, database_url: str, server_urls: ServerUrls
) -> None:
    """From standard input (--password-stdin, or --password -) or LMS_ADMIN_PASSWORD, where other
    users of the machine cannot read it in the process list."""
    ways = [
        ("stdin@example.test", ["--password-stdin"], "harbour-violet-lantern\n", {}),
        ("dash@example.test", ["--password", "-"], "copper-meadow-whistle\r\n", {}),
        ("env@example.test", [], None, {"LMS_ADMIN_PASSWORD": "quiet-orchard-bicycle"}),
    ]
    for email, args, stdin, env in ways:
        result = create_admin_with(
            database_url, server_urls, "--email", email, *args, stdin=stdin, **env
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith(f"created ADMIN {email}")
        password = (stdin or env.get("LMS_ADMIN_PASSWORD", "")).rstrip("\r\n")
        login = await api.post("/auth/login", json={"email": email, "password": password})
        assert login.status_code == 200, login.text
        assert login.json()["user"]["role"] == "ADMIN"


def test_create_admin_needs_a_password_from_somewhere(
    database_url: str, server_urls: ServerUrls
) -> None:
    missing = create_admin_with(database_url, server_urls, "--email", "none@example.test")
    assert missing.returncode == 2
    [line] = error_lines(missing)
    assert line.startswith("lms: error: ") and "--password-stdin" in line
    empty = create_admin_with(
        database_url, server_urls, "--email", "none@example.test", "--password-stdin", stdin=""
    )
    assert empty.returncode == 2
    assert error_lines(empty) == ["lms: error: no password on standard input"]
    both = create_admin_with(
        database_url,
        server_urls,
        "--email",
        "none@example.test",
        "--password",
        "visible-password",
        "--password-stdin",
        stdin="hidden-password\n",
    )
    assert both.returncode == 2 and "not allowed with" in both.stderr


def test_create_admin_help_warns_that_a_password_argument_is_visible() -> None:
    result = run_lms("create-admin", "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "--password-stdin" in text and "LMS_ADMIN_PASSWORD" in text
    assert "visible to other users" in text


def production_settings(tmp_path: Path) -> dict[str, str]:
    """Everything LMS_ENV=production asks for (lms.production), the signing key as lms makes one."""
    return {
        "LMS_ENV": "production",
        "LMS_SMTP_URL": "smtp://127.0.0.1:2525",
        "LMS_SMS_URL": "https://AC123:token@127.0.0.1:9",
        "LMS_METRICS_TOKEN": "scrape-" + "t" * 32,
        "LMS_JWT_SECRET": "s" * 32,
        "LMS_CERT_SIGNING_KEY": str(key_file(tmp_path / "keys")),
        "LMS_PUBLIC_BASE_URL": "https://learn.example.test",
    }


def test_serve_refuses_production_without_mail_and_sms(
    scratch_database: str, server_urls: ServerUrls, tmp_path: Path
) -> None:
    """Unset, LMS_SMTP_URL and LMS_SMS_URL mean one-time codes are written to the log, where
    whoever reads the log can take over accounts: LMS_ENV=production does not start that way."""
    services = {"DATABASE_URL": scratch_database, "NATS_URL": server_urls.nats}
    ready = production_settings(tmp_path)
    del ready["LMS_SMTP_URL"], ready["LMS_SMS_URL"]
    for missing in ({}, {"LMS_SMTP_URL": "smtp://127.0.0.1:2525"}):
        result = run_lms("serve", **ready, **missing, **services)
        assert result.returncode == 2, result.stderr[-2000:]
        [line] = error_lines(result)
        assert line.startswith("lms: error: LMS_ENV=production") and "LMS_SMS_URL" in line
        assert ("LMS_SMTP_URL" in line) == ("LMS_SMTP_URL" not in missing)
    # Configured, production goes on to its next check (this database is not migrated).
    configured = run_lms("serve", **production_settings(tmp_path), **services)
    assert configured.returncode == 2
    assert "schema is behind" in configured.stderr and "LMS_ENV" not in configured.stderr


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"LMS_METRICS_TOKEN": ""}, "LMS_METRICS_TOKEN or LMS_METRICS_ALLOW"),
        ({"LMS_JWT_SECRET": "s" * 31}, "LMS_JWT_SECRET of at least 32 bytes"),
        ({"LMS_JWT_SECRET": "é" * 15 + "s"}, "LMS_JWT_SECRET of at least 32 bytes"),  # 31 bytes
        ({"LMS_JWT_SECRET": ""}, "LMS_JWT_SECRET of at least 32 bytes"),
        ({"LMS_CERT_SIGNING_KEY": ""}, "LMS_CERT_SIGNING_KEY"),
        ({"LMS_PUBLIC_BASE_URL": ""}, "LMS_PUBLIC_BASE_URL"),
        # Stripe without its webhook secret would take payments and never fulfil them.
        ({"LMS_STRIPE_SECRET_KEY": "sk_live_x"}, "LMS_STRIPE_WEBHOOK_SECRET"),
        # A local Stripe-compatible server (what `lms dev` starts) is for development only.
        (
            {
                "LMS_STRIPE_SECRET_KEY": "sk_live_x",
                "LMS_STRIPE_WEBHOOK_SECRET": "whsec_x",
                "LMS_STRIPE_API_BASE": "http://127.0.0.1:8420",
            },
            "LMS_STRIPE_API_BASE of https://",
        ),
    ],
)
def test_serve_refuses_production_without_each_safe_setting(
    scratch_database: str,
    server_urls: ServerUrls,
    tmp_path: Path,
    change: dict[str, str],
    named: str,
) -> None:
    """/metrics open to anyone, a weak JWT secret, a signing key generated per host, a service
    that does not know its public URL: each is one line naming the setting, before anything
    starts (the database here is not even migrated)."""
    services = {"DATABASE_URL": scratch_database, "NATS_URL": server_urls.nats}
    result = run_lms("serve", **(production_settings(tmp_path) | change), **services)
    assert result.returncode == 2, result.stderr[-2000:]
    [line] = error_lines(result)
    assert line.startswith("lms: error: LMS_ENV=production needs ") and named in line
    assert "schema" not in line and line.count(";") == 0, "only the one setting is named"
    # The same settings in development go on to the next check (this database's schema).
    development = production_settings(tmp_path) | change | {"LMS_ENV": "development"}
    if "LMS_JWT_SECRET" in change:
        development["LMS_JWT_SECRET"] = ""  # too short anywhere: this one is generated instead
    result = run_lms("serve", **development, **services, LMS_DATA_DIR=str(tmp_path / "data"))
    assert result.returncode == 2 and "schema is behind" in result.stderr, result.stderr[-2000:]


def test_serve_takes_a_metrics_allow_list_instead_of_a_token_in_production(
    scratch_database: str, server_urls: ServerUrls, tmp_path: Path
) -> None:
    services = {"DATABASE_URL": scratch_database, "NATS_URL": server_urls.nats}
    settings = production_settings(tmp_path) | {
        "LMS_METRICS_TOKEN": "",
        "LMS_METRICS_ALLOW": "10.0.0.0/8",
    }
    result = run_lms("serve", **settings, **services)
    assert result.returncode == 2
    assert "schema is behind" in result.stderr and "LMS_ENV" not in result.stderr


def test_lms_env_is_development_or_production() -> None:
    result = run_lms("migrate", LMS_ENV="staging")
    assert result.returncode == 2
    assert error_lines(result) == [
        "lms: error: LMS_ENV must be one of development, production, got 'staging'"
    ]


@pytest.mark.slow
def test_serve_without_mail_or_sms_warns_that_codes_are_logged(
    scratch_database: str, server_urls: ServerUrls, tmp_path: Path
) -> None:
    services = {"DATABASE_URL": scratch_database, "NATS_URL": server_urls.nats}
    assert run_lms("migrate", **services).returncode == 0
    port = free_port()
    env = child_env(**services, LMS_DATA_DIR=str(tmp_path), LMS_PORT=str(port))
    proc = subprocess.Popen(
        [sys.executable, "-m", "lms", "serve", "--workers", "1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        ready = wait_ready(port, 60)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        output = proc.communicate(timeout=30)[0].decode(errors="replace")
    assert ready, output[-3000:]
    warnings = [line for line in output.splitlines() if "written to the log" in line]
    assert len(warnings) == 1, output[-3000:]
    assert "WARNING" in warnings[0].upper() and "LMS_SMTP_URL" in warnings[0]


@pytest.mark.slow
def test_serve_hands_its_resolved_settings_to_the_granian_workers(
    scratch_database: str, server_urls: ServerUrls, tmp_path: Path
) -> None:
    """No LMS_JWT_SECRET or LMS_CERT_SIGNING_KEY in the environment: serve generates them into
    the data dir, and the workers (forked by Granian) must see them rather than a settings cache
    filled before it; both workers publish the one signing key."""
    services = {"DATABASE_URL": scratch_database, "NATS_URL": server_urls.nats}
    assert run_lms("migrate", **services).returncode == 0
    port = free_port()
    env = child_env(**services, LMS_DATA_DIR=str(tmp_path), LMS_PORT=str(port))
    proc = subprocess.Popen(
        [sys.executable, "-m", "lms", "serve", "--workers", "2"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        ready = wait_ready(port, 60)
        keys = [httpx.get(f"http://127.0.0.1:{port}/.well-known/jwks.json").json() for _ in "ab"]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        # A worker still starting when SIGTERM comes (a slow machine: the other one answered)
        # is killed by Granian after its own 30 s grace period: wait past that.
        output = proc.communicate(timeout=60)[0].decode(errors="replace")
    assert ready, output[-3000:]
    assert "create_app needs" not in output
    assert (tmp_path / "jwt-secret").exists()
    generated = load_signing_key(str(tmp_path / "cert-signing-key-rs256.pem"))
    assert generated.algorithm == "RS256"
    for answer in keys:
        assert [(k["n"], k["alg"]) for k in answer["keys"]] == [
            (generated.public_jwk["n"], "RS256")
        ]


def test_serve_refuses_a_signing_key_it_cannot_sign_certificates_with_in_one_line(
    scratch_database: str, server_urls: ServerUrls
) -> None:
    short_rsa_pem = (
        rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    services = {"DATABASE_URL": scratch_database, "NATS_URL": server_urls.nats}
    for key, message in [
        (short_rsa_pem, "is an RSA key of 1024 bits: RS256 needs 2048 bits or more"),
        ("/nonexistent/key.pem", "is neither PEM text nor a readable file"),
    ]:
        result = run_lms("serve", LMS_CERT_SIGNING_KEY=key, **services)
        assert result.returncode == 2, result.stderr[-2000:]
        [line] = error_lines(result)
        assert line.startswith("lms: error: LMS_CERT_SIGNING_KEY ") and message in line


def test_worker_refuses_cuda_without_a_gpu_in_one_line(
    database_url: str, server_urls: ServerUrls
) -> None:
    import ctranslate2

    if ctranslate2.get_cuda_device_count() > 0:
        pytest.skip("this machine has a GPU")
    result = run_lms(
        "worker", "--device", "cuda", DATABASE_URL=database_url, NATS_URL=server_urls.nats
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert len(error_lines(result)) == 1 and "cuda" in result.stderr.lower(), result.stderr
