"""The refusals a service can make, in the service's own terms; the API maps each kind to its
HTTP status in one exception handler (lms.api.errors), so no service knows about HTTP.

Each class carries the status it becomes (`status_code`) only so that route handlers can list
them in `raises=` and the OpenAPI document names the same classes the services raise.
"""

from __future__ import annotations


class DomainError(Exception):
    """A request the rules refuse; `detail` is safe to show to the caller."""

    status_code = 400

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class Invalid(DomainError):
    """The input breaks a rule (a blank title, a malformed cursor, a position past the end)."""

    status_code = 400


class Unauthenticated(DomainError):
    """No valid credentials: a missing, expired or revoked token, a wrong password."""

    status_code = 401


class PaymentRequired(DomainError):
    """The course is sold: buy it at `checkoutPath` first (a paid order enrolls)."""

    status_code = 402

    def __init__(self, detail: str, *, checkout_path: str) -> None:
        super().__init__(detail)
        self.checkout_path = checkout_path


class Forbidden(DomainError):
    """The caller is known but may not do this (wrong role, not the owner)."""

    status_code = 403


class NotFound(DomainError):
    """No such thing, or nothing the caller may know exists."""

    status_code = 404


class Conflict(DomainError):
    """Well formed, but it clashes with the current state (a duplicate, a lifecycle step)."""

    status_code = 409


class TooLarge(DomainError):
    """More bytes than the service takes (an upload past maxUploadBytes)."""

    status_code = 413


class UnsupportedMedia(DomainError):
    """The body is not of a kind this operation takes (judged by its bytes, not its label)."""

    status_code = 415


class UpstreamFailed(DomainError):
    """A service we depend on (video storage) failed; the request may succeed if repeated."""

    status_code = 502


class TooMany(DomainError):
    """Too many attempts; the caller may try again after `retry_after` seconds."""

    status_code = 429

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = max(1, retry_after)


class Unavailable(DomainError):
    """Temporarily unable to answer (a search over its time budget); try again later."""

    status_code = 503

    def __init__(self, detail: str, *, retry_after: int = 1) -> None:
        super().__init__(detail)
        self.retry_after = max(1, retry_after)
