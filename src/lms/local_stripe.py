"""`lms dev` with LMS_STRIPE_SECRET_KEY unset: a local Stripe-compatible server (localstripe,
installed by `uv sync` as a development dependency) in a process of its own, with the API's
webhook registered on it, so a priced course can be bought end to end on a fresh machine.

localstripe is GPL-3.0: it is only ever run as a separate program, never imported. It keeps
its objects in memory (started --from-scratch): a restart forgets them, and the reconciler
fails the PENDING orders whose PaymentIntent it no longer knows. Production never uses it
(lms.production refuses a non-https LMS_STRIPE_API_BASE)."""

from __future__ import annotations

import contextlib
import logging
import secrets
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import httpx

from lms.errors import StartupError
from lms.netutil import free_port, wait_until
from lms.settings import Settings

log = logging.getLogger("lms.local_stripe")

START_TIMEOUT = 30.0
LOCAL_SECRET_KEY = "sk_test_lms_local"  # noqa: S105 - localstripe takes any sk_test_ key


@dataclass
class LocalStripe:
    url: str
    process: subprocess.Popen[bytes]


def binary() -> Path:
    path = Path(sys.executable).parent / "localstripe"
    if not path.is_file():
        raise StartupError(
            "localstripe is not installed (a development dependency: run `make run`, or "
            "`uv sync`), or set LMS_STRIPE_SECRET_KEY to use Stripe"
        )
    return path


def _answers(url: str) -> bool:
    try:
        httpx.get(f"{url}/v1/balance", auth=(LOCAL_SECRET_KEY, ""), timeout=1)
    except httpx.HTTPError:
        return False
    return True


def start(data_dir: Path, preexec: Callable[[], None] | None) -> LocalStripe:
    port = free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / "localstripe.log"
    with log_path.open("ab") as sink:
        proc = subprocess.Popen(  # noqa: S603 - our venv's program, our arguments
            [str(binary()), "--port", str(port), "--from-scratch"],
            stdout=sink,
            stderr=sink,
            stdin=subprocess.DEVNULL,
            preexec_fn=preexec,
        )
    url = f"http://127.0.0.1:{port}"
    if not wait_until(lambda: proc.poll() is not None or _answers(url), START_TIMEOUT):
        proc.kill()
        raise StartupError(f"localstripe did not start (see {log_path})")
    if proc.poll() is not None:
        raise StartupError(f"localstripe exited at start (see {log_path})")
    return LocalStripe(url, proc)


def register_webhook(server: LocalStripe, target: str, secret: str) -> None:
    """Tell localstripe where to deliver its (signed) events."""
    answer = httpx.post(
        f"{server.url}/_config/webhooks/lms", data={"url": target, "secret": secret}, timeout=10
    )
    if answer.status_code != 200:
        raise StartupError(f"localstripe refused the webhook: {answer.status_code}")


def with_local_stripe(
    settings: Settings, preexec: Callable[[], None] | None
) -> tuple[Settings, LocalStripe]:
    """`settings` pointed at a fresh localstripe, whose webhook calls this API."""
    server = start(settings.data_dir, preexec)
    try:
        secret = "whsec_" + secrets.token_hex(24)
        webhook = f"http://127.0.0.1:{settings.port}/payments/stripe/webhook"
        register_webhook(server, webhook, secret)
    except Exception:
        with contextlib.suppress(ProcessLookupError):
            server.process.kill()
        raise
    log.info(
        "local Stripe (localstripe, development only) on %s, delivering to %s; "
        "pay with pm_card_visa (see the README's Payments section)",
        server.url,
        webhook,
    )
    configured = replace(
        settings,
        stripe_secret_key=LOCAL_SECRET_KEY,
        stripe_webhook_secret=secret,
        stripe_api_base=server.url,
    )
    return configured, server
