"""Bodies of /certificates, /enrollments/:id/certificate, /admin/certificates and the JWK set."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from lms.api.schemas import CamelStruct
from lms.api.text import WORDS_PATTERN

CertificateStatus = Literal["VALID", "REVOKED"]


class CertificateCourse(CamelStruct):
    id: uuid.UUID
    title: str  # as it was when the certificate was issued


class CertificateLearner(CamelStruct):
    full_name: str  # as it was when the certificate was issued


class Certificate(CamelStruct):
    id: uuid.UUID
    serial_hash: str
    issued_at: datetime
    enrollment_id: uuid.UUID
    course: CertificateCourse
    learner: CertificateLearner
    creator_name: str | None
    verify_url: str
    status: CertificateStatus
    revoked_at: datetime | None
    jws: Annotated[
        str | None,
        Meta(
            description="the certificate as an Open Badges 3.0 OpenBadgeCredential in VC-JWT "
            "form: a compact JWS (alg RS256 or ES256; EdDSA where that key is configured) whose "
            "kid names a key of /.well-known/jwks.json and whose credentialStatus names its "
            "bit in a revocation status list. null once the certificate is revoked: a revoked "
            "certificate is never handed out as a credential that would look valid"
        ),
    ]


class VerifiedCertificate(CamelStruct):
    """What anyone holding the link may see: no email, no user id."""

    serial_hash: str
    issued_at: datetime
    learner_name: str
    course_title: str
    course_id: uuid.UUID
    creator_name: str | None
    status: CertificateStatus
    revoked_at: datetime | None
    verify_url: str
    jws: Annotated[
        str | None,
        Meta(description="the VC-JWT (as in Certificate); null once the certificate is revoked"),
    ]


class Verification(CamelStruct):
    valid: bool
    certificate: VerifiedCertificate


class NotVerified(msgspec.Struct, kw_only=True):
    """404 for a serial that names no certificate, in the usual error shape plus `valid`."""

    valid: bool
    status_code: int
    detail: str


# The one answer for every serial that names no certificate.
UNKNOWN_SERIAL = NotVerified(valid=False, status_code=404, detail="no certificate has this serial")


class Revocation(CamelStruct, forbid_unknown_fields=True):
    reason: Annotated[
        str,
        Meta(
            min_length=1,
            max_length=2000,
            pattern=WORDS_PATTERN,
            description="why (kept in the audit log)",
        ),
    ]


class PublicJwk(CamelStruct):
    """A public key of the set: RSA (n, e; alg RS256), EC P-256 (crv, x, y; ES256) or OKP
    Ed25519 (crv, x; EdDSA), never a private member."""

    kty: str
    kid: str
    use: str
    alg: str
    crv: str | UnsetType = UNSET
    x: str | UnsetType = UNSET
    y: str | UnsetType = UNSET
    n: str | UnsetType = UNSET
    e: str | UnsetType = UNSET


class JwkSet(CamelStruct):
    keys: list[PublicJwk]
