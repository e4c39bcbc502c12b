"""What LMS_ENV=production refuses to start without: each setting whose absence is safe on a
developer's machine and unsafe where the API is reachable from outside. `lms serve` checks them
before anything starts; the README's production checklist lists exactly these."""

from __future__ import annotations

from lms.errors import StartupError
from lms.settings import Settings

MIN_JWT_SECRET_BYTES = 32


def undelivered_channels(settings: Settings) -> list[str]:
    """The settings whose absence makes codes go to the log instead of to people."""
    channels = [("LMS_SMTP_URL", settings.smtp_url), ("LMS_SMS_URL", settings.sms_url)]
    return [name for name, value in channels if not value]


def refusals(settings: Settings) -> list[str]:
    """Why production may not start with `settings` (empty: it may), one reason per setting."""
    found = []
    unsent = undelivered_channels(settings)
    if unsent:
        found.append(
            f"{' and '.join(unsent)}: without them one-time codes are only written to the log"
        )
    if not settings.metrics_token and not settings.metrics_allow:
        found.append(
            "LMS_METRICS_TOKEN or LMS_METRICS_ALLOW: without one /metrics is open to anyone "
            "(and each scrape costs a database query)"
        )
    # Long enough to carry the 256 bits the HMAC-SHA256 keys derived from it (lms.derived_keys)
    # are worth; and given, as the signing key must be.
    if not settings.jwt_secret or len(settings.jwt_secret.encode()) < MIN_JWT_SECRET_BYTES:
        found.append(
            f"LMS_JWT_SECRET of at least {MIN_JWT_SECRET_BYTES} bytes: a secret generated into "
            "LMS_DATA_DIR differs on every host and is lost with the directory"
        )
    if not settings.cert_signing_key:
        found.append(
            "LMS_CERT_SIGNING_KEY: a key generated into LMS_DATA_DIR differs on every host and "
            "is lost with the directory"
        )
    if not settings.public_base_url:
        found.append(
            "LMS_PUBLIC_BASE_URL: certificates would name http://LMS_HOST:LMS_PORT as their "
            "issuer, key id and QR target"
        )
    if settings.stripe_secret_key:
        if not settings.stripe_webhook_secret:
            found.append(
                "LMS_STRIPE_WEBHOOK_SECRET (with LMS_STRIPE_SECRET_KEY set): without it no Stripe "
                "event can be verified, so no payment is ever fulfilled"
            )
        if not settings.stripe_api_base.startswith("https://"):
            found.append(
                "LMS_STRIPE_API_BASE of https:// (Stripe's own by default): "
                f"{settings.stripe_api_base} is a local Stripe server, for development only"
            )
    return found


def check(settings: Settings) -> None:
    """One line naming every missing or unsafe setting, under LMS_ENV=production."""
    if settings.environment != "production":
        return
    found = refusals(settings)
    if found:
        raise StartupError(f"LMS_ENV=production needs {'; '.join(found)}")
