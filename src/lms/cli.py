"""The `lms` command: dev, serve, worker, migrate, create-admin.

Every command resolves PostgreSQL and NATS the same way: DATABASE_URL / NATS_URL when set,
otherwise the embedded servers under LMS_DATA_DIR (started, or reused when another `lms` process
already runs them). Operator mistakes end with one `lms: error: ...` line and exit status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path

from lms import production
from lms.errors import StartupError
from lms.netutil import reserve_ports
from lms.observability.logs import configure_logging
from lms.settings import Settings, get_settings, load_settings

log = logging.getLogger("lms.cli")

CHILD_STOP_TIMEOUT = 30.0
STDIN_ARGUMENT = "-"  # `--password -`: read it from standard input


# ---------------------------------------------------------------------------------------------
# shared resolution of services and secrets


@contextlib.contextmanager
def resolved_services(settings: Settings, *, needs_nats: bool = True) -> Iterator[Settings]:
    """Settings with concrete service URLs: the configured ones, else embedded servers (started
    or reused) for exactly what is unset. Commands that never touch NATS pass needs_nats=False."""
    # Servers this process starts (embedded ones, `lms dev`'s local Stripe) take free ports;
    # never the ones its API and worker are about to listen on.
    reserve_ports(settings.port, settings.worker_metrics_port)
    need_postgres = not settings.database_url
    need_nats = needs_nats and not settings.nats_url
    if not need_postgres and not need_nats:
        yield settings
        return
    from lms.embedded import EmbeddedServices

    embedded = EmbeddedServices(settings.data_dir, postgres=need_postgres, nats=need_nats)
    urls = embedded.acquire()
    try:
        yield replace(
            settings,
            database_url=settings.database_url or urls.database_url,
            nats_url=settings.nats_url or urls.nats_url,
        )
    finally:
        embedded.release()


def with_jwt_secret(settings: Settings) -> Settings:
    """LMS_JWT_SECRET, or a random secret generated once and kept in LMS_DATA_DIR/jwt-secret."""
    if settings.jwt_secret:
        if len(settings.jwt_secret.encode()) < production.MIN_JWT_SECRET_BYTES:
            raise StartupError(
                f"LMS_JWT_SECRET must be at least {production.MIN_JWT_SECRET_BYTES} bytes"
            )
        return settings
    path = settings.data_dir / "jwt-secret"
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(48))
    return replace(settings, jwt_secret=path.read_text().strip())


def with_cert_signing_key(settings: Settings) -> Settings:
    """LMS_CERT_SIGNING_KEY (checked now, so a bad key is one error line at startup), or an RSA
    key (RS256) generated once into LMS_DATA_DIR/cert-signing-key-rs256.pem."""
    from lms.domain.certificates.keys import key_file, load_signing_key

    if settings.cert_signing_key:
        load_signing_key(settings.cert_signing_key)
        return settings
    path = key_file(settings.data_dir)
    return replace(settings, cert_signing_key=path.read_text())


def with_secrets(settings: Settings) -> Settings:
    """The settings with every secret the API needs resolved (given, or generated in dev)."""
    return with_cert_signing_key(with_jwt_secret(settings))


def _run(coro: object) -> object:
    import uvloop

    return uvloop.run(coro)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# lms migrate


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    from lms.db.migrate import ensure_schema_current, migrate_backward, migrate_forward

    with resolved_services(settings, needs_nats=False) as s:
        if not s.database_url:
            raise RuntimeError("resolved_services() resolves database_url")
        if args.check:
            _run(ensure_schema_current(s.database_url))
            print("schema is current")
        elif args.backward:
            _run(migrate_backward(s.database_url, args.backward))
            print(f"rolled back {args.backward} migration(s)")
        else:
            applied = _run(migrate_forward(s.database_url, quiet=True))
            if not isinstance(applied, list):
                raise RuntimeError("migrate_forward() returns the list of applied migrations")
            for name in applied:
                print(f"applied {name}")
            print("schema is current" if not applied else f"{len(applied)} migration(s) applied")
    return 0


# ---------------------------------------------------------------------------------------------
# lms create-admin


def cmd_create_admin(settings: Settings, args: argparse.Namespace) -> int:
    import asyncpg

    from lms.db.engine import close_pool, start_pool
    from lms.db.migrate import ensure_schema_current
    from lms.domain.admin.bootstrap import InvalidAdminInput, create_admin

    async def go(s: Settings) -> str:
        if not s.database_url:
            raise RuntimeError("resolved_services() resolves database_url")
        await ensure_schema_current(s.database_url)
        await start_pool(replace(s, db_pool_min=1, db_pool_max=2))
        try:
            account = await create_admin(
                args.email, password, full_name=args.full_name, username=args.username
            )
        except InvalidAdminInput as exc:
            raise StartupError(str(exc)) from None
        except asyncpg.UniqueViolationError:
            raise StartupError(f"username {args.username!r} belongs to another user") from None
        finally:
            await close_pool()
        verb = "created" if account.created else "updated existing user to"
        return f"{verb} ADMIN {account.email} (username {account.username}, id {account.user_id})"

    password = admin_password(args, settings)
    with resolved_services(settings, needs_nats=False) as s:
        print(_run(go(s)))
    return 0


def admin_password(args: argparse.Namespace, settings: Settings) -> str:
    """From standard input (--password-stdin, --password -), --password (seen by anyone who lists
    the machine's processes), or LMS_ADMIN_PASSWORD."""
    if args.password_stdin or args.password == STDIN_ARGUMENT:
        # One line: what `echo`, a here-string or a secrets manager's pipe gives.
        line = sys.stdin.readline().rstrip("\r\n")
        if not line:
            raise StartupError("no password on standard input")
        return line
    if args.password is not None:
        return str(args.password)
    if settings.admin_password:
        return settings.admin_password
    raise StartupError(
        "give the password on standard input (--password-stdin) or in LMS_ADMIN_PASSWORD"
    )


# ---------------------------------------------------------------------------------------------
# lms serve


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    from lms.db.engine import check_connection
    from lms.db.migrate import ensure_schema_current
    from lms.netutil import port_is_free
    from lms.server import build_server, prepare_multiprocess_metrics

    if args.port is not None:
        settings = replace(settings, port=args.port)
    if args.host is not None:
        settings = replace(settings, host=args.host)
    # Before anything starts: what production may not run without (lms.production).
    production.check(settings)
    unsent = production.undelivered_channels(settings)
    with resolved_services(settings) as s:
        s = with_secrets(s)
        if not s.database_url:
            raise RuntimeError("resolved_services() resolves database_url")
        _run(check_connection(s.database_url))
        _run(ensure_schema_current(s.database_url))
        if not port_is_free(s.host, s.port):
            raise StartupError(f"port {s.port} on {s.host} is already in use (set LMS_PORT)")
        if unsent:
            # Loud, once, after every refusal (a command that does not start says one line).
            (log.info if args.dev else log.warning)(
                "%s unset: one-time codes (sign-up, password reset) are written to the log, "
                "where whoever reads it can use them; set %s, or LMS_ENV=production to refuse "
                "to start this way",
                " and ".join(unsent),
                "it" if len(unsent) == 1 else "them",
            )
        server = build_server(s, config_path=args.config, workers=args.workers)
        if server.workers > 1:
            prepare_multiprocess_metrics(s)
        # Granian's workers build the app from the environment: hand them the resolved settings,
        # and forget the settings read before they were resolved (the workers are forked, and
        # would inherit that cache: no database URL, no JWT secret).
        os.environ.update(s.to_environ())
        get_settings.cache_clear()
        server.serve()
    return 0


# ---------------------------------------------------------------------------------------------
# lms worker


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    from lms.worker import run_worker

    settings = replace(
        settings,
        whisper_device=args.device or settings.whisper_device,
        whisper_compute_type=args.compute_type or settings.whisper_compute_type,
    )
    with resolved_services(settings) as s:
        _run(run_worker(s, concurrency=args.concurrency))
    return 0


# ---------------------------------------------------------------------------------------------
# lms dev


def _die_with_parent() -> None:
    """In the child: get SIGTERM when `lms dev` dies, even by kill -9 (Linux prctl)."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


def _spawn(args: Sequence[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    preexec: Callable[[], None] | None = _die_with_parent if sys.platform == "linux" else None
    return subprocess.Popen(
        [sys.executable, "-m", "lms", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        preexec_fn=preexec,
    )


def _stop_children(children: dict[str, subprocess.Popen[bytes]]) -> None:
    for proc in children.values():
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + CHILD_STOP_TIMEOUT
    for name, proc in children.items():
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop in %.0fs; killing it", name, CHILD_STOP_TIMEOUT)
            proc.kill()
            proc.wait()


def cmd_dev(settings: Settings, args: argparse.Namespace) -> int:
    from lms.db.migrate import migrate_forward
    from lms.netutil import port_is_free

    stop_requested: list[int] = []

    def request_stop(signum: int, _frame: object) -> None:
        stop_requested.append(signum)

    # From here on a Ctrl-C or SIGTERM means "shut down in order", not an exception mid-start.
    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    if not port_is_free(settings.host, settings.port):
        raise StartupError(
            f"port {settings.port} on {settings.host} is already in use (set LMS_PORT)"
        )
    with resolved_services(settings) as s:
        s = with_secrets(s)
        if not s.database_url:
            raise RuntimeError("resolved_services() resolves database_url")
        applied = _run(migrate_forward(s.database_url, quiet=True))
        log.info("migrations applied", extra={"applied": applied})
        children: dict[str, subprocess.Popen[bytes]] = {}
        if not s.stripe_secret_key and not stop_requested:
            from lms.local_stripe import with_local_stripe

            preexec = _die_with_parent if sys.platform == "linux" else None
            s, local_stripe = with_local_stripe(s, preexec)
            children["localstripe"] = local_stripe.process
        env = {**os.environ, **s.to_environ()}
        exit_code = 0
        try:
            if not stop_requested:
                children["api"] = _spawn(["serve", "--dev"], env)
                worker_args = ["worker", "--concurrency", str(args.worker_concurrency)]
                children["worker"] = _spawn(worker_args, env)
                log.info(
                    "lms dev is up: API on http://%s:%s (docs at /schema); Ctrl-C stops everything",
                    s.host,
                    s.port,
                )
            while not stop_requested:
                exited = {n: p.returncode for n, p in children.items() if p.poll() is not None}
                if exited:
                    log.error("a process exited; stopping", extra={"exited": exited})
                    exit_code = 1
                    break
                time.sleep(0.2)
        finally:
            _stop_children(children)
    log.info("lms dev stopped")
    return exit_code


# ---------------------------------------------------------------------------------------------
# argument parsing


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lms",
        description="LMS backend. Without DATABASE_URL / NATS_URL, commands start (or reuse) "
        "embedded PostgreSQL and NATS under LMS_DATA_DIR (default .lms/).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    dev = sub.add_parser(
        "dev",
        help="everything on this machine: services, migrations, API and a worker",
        description="Start embedded PostgreSQL and NATS (unless DATABASE_URL / NATS_URL are set), "
        "apply migrations, serve the API on LMS_PORT (default 8000) under Granian and run one "
        "transcription worker, until Ctrl-C or SIGTERM. With LMS_STRIPE_SECRET_KEY unset, also a "
        "local Stripe-compatible server (localstripe) with the API's webhook registered on it.",
    )
    dev.add_argument("--worker-concurrency", type=int, default=1, metavar="N")
    dev.set_defaults(handler=cmd_dev)

    serve = sub.add_parser(
        "serve",
        help="serve the API under Granian (settings from granian.toml)",
        description="Serve the API under Granian. Server settings come from granian.toml "
        "(or LMS_GRANIAN_CONFIG); the schema must be current (`lms migrate`).",
    )
    serve.add_argument("--host", default=None, help="bind address (default LMS_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (default LMS_PORT or 8000)")
    serve.add_argument("--workers", type=int, default=None, help="Granian worker processes")
    serve.add_argument("--config", type=Path, default=None, help="path to granian.toml")
    # Set by `lms dev`, where codes in the log are the point: the warning becomes a notice.
    serve.add_argument("--dev", action="store_true", help=argparse.SUPPRESS)
    serve.set_defaults(handler=cmd_serve)

    worker = sub.add_parser(
        "worker",
        help="run a transcription worker pulling jobs from NATS JetStream",
        description="Pull jobs from the NATS JetStream work queue and run them until SIGTERM.",
    )
    worker.add_argument(
        "--concurrency",
        type=int,
        default=None,
        metavar="N",
        help="jobs run at once by this process, on one model (default: what the bench measured"
        " best for the device and model: 4 on CUDA and 1 on CPU with the bundled model)",
    )
    worker.add_argument(
        "--device",
        choices=["auto", "cpu", "cuda"],
        default=None,
        help="inference device (default LMS_WHISPER_DEVICE or auto)",
    )
    worker.add_argument(
        "--compute-type",
        default=None,
        help="CTranslate2 compute type, e.g. int8, float16 (default: by device)",
    )
    worker.set_defaults(handler=cmd_worker)

    migrate = sub.add_parser(
        "migrate",
        help="apply pending database migrations",
        description="Apply every pending migration (serialised across processes by an advisory "
        "lock).",
    )
    group = migrate.add_mutually_exclusive_group()
    group.add_argument(
        "--check", action="store_true", help="only report whether the schema is current"
    )
    group.add_argument("--backward", type=int, metavar="N", help="undo the newest N migrations")
    migrate.set_defaults(handler=cmd_migrate)

    admin = sub.add_parser(
        "create-admin",
        help="create (or promote) a verified ADMIN account, no prompt",
        description="Create a verified, profile-complete ADMIN, or promote and reset the password "
        "of the existing account with that email. The password comes from standard input "
        "(--password-stdin), --password, or LMS_ADMIN_PASSWORD.",
    )
    admin.add_argument("--email", required=True)
    source = admin.add_mutually_exclusive_group()
    source.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password (at least 10 characters) from the first line of standard input",
    )
    source.add_argument(
        "--password",
        default=None,
        help="the password, or - to read it from standard input. Given here it is visible to "
        "other users of this machine (in the process list) and lands in shell history: prefer "
        "--password-stdin or LMS_ADMIN_PASSWORD",
    )
    admin.add_argument("--full-name", default="Administrator")
    admin.add_argument("--username", default=None, help="default: from the email address")
    admin.set_defaults(handler=cmd_create_admin)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
        configure_logging(settings.log_level, settings.log_format)
        return int(args.handler(settings, args))
    except StartupError as exc:
        print(f"lms: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
