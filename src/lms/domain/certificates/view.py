"""What a certificate shows to the people who check it: the one input of the HTML page and the
PDF."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal


@dataclass(frozen=True, slots=True)
class CertificateView:
    """A certificate as printed and as shown on its public verification page. It never holds an
    email address or a user id: everything here may be seen by anyone holding the link."""

    serial_hash: str
    learner_name: str
    course_title: str
    creator_name: str | None
    issued_at: datetime  # timezone-aware, UTC
    status: Literal["VALID", "REVOKED"]
    revoked_at: datetime | None
    verify_url: str  # the public verification page (what the QR code encodes)
    issuer_name: str  # the service that issues it (LMS_ISSUER_NAME)
    issuer_url: str  # the service's public base URL
