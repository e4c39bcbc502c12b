"""A certificate as an Open Badges 3.0 `OpenBadgeCredential` (a W3C Verifiable Credential 2.0),
secured as a VC-JWT: a compact JWS signed with the signing key's algorithm (RS256 by default,
ES256 for a P-256 key, EdDSA for an Ed25519 one).

Following the Open Badges 3.0 JSON Web Token proof format: the JOSE header holds only `alg`,
`typ` ("JWT") and `kid` (a URI naming the public key in /.well-known/jwks.json); the JWT payload
is the credential itself plus the registered claims `iss` (issuer.id), `jti` (the credential id),
`nbf` (validFrom) and `sub` (credentialSubject.id), and the certificate's `serialHash`. The
learner is named by an IdentityObject of type "name" (never an email or a user id); the subject
id is the enrollment's URN, which identifies the achievement without identifying the account.
`credentialStatus` names the certificate's bit in a revocation status list this service
publishes (lms.domain.certificates.status_list). The credential has no expiry: a course, once
completed, stays completed; revocation is how a certificate ends.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jwt

from lms.domain.certificates import status_list
from lms.domain.certificates.keys import SigningKey

CONTEXT = [
    "https://www.w3.org/ns/credentials/v2",
    "https://purl.imsglobal.org/spec/ob/v3p0/context-3.0.3.json",
]


@dataclass(frozen=True, slots=True)
class Achievement:
    """What was earned and by whom, as recorded when the certificate is issued."""

    certificate_id: uuid.UUID
    serial_hash: str
    enrollment_id: uuid.UUID
    issued_at: datetime  # whole seconds, UTC: nbf and validFrom must be equal
    learner_name: str
    course_id: uuid.UUID
    course_title: str
    status_list: int  # the revocation status list, and this certificate's bit in it
    status_index: int


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def open_badge_credential(
    achievement: Achievement, *, issuer_url: str, issuer_name: str
) -> dict[str, Any]:
    """The unsigned credential (the JSON-LD document a displayer shows)."""
    return {
        "@context": CONTEXT,
        "id": f"urn:uuid:{achievement.certificate_id}",
        "type": ["VerifiableCredential", "OpenBadgeCredential"],
        "name": f"Certificate of completion: {achievement.course_title}",
        "issuer": {"id": issuer_url, "type": ["Profile"], "name": issuer_name, "url": issuer_url},
        "validFrom": _iso(achievement.issued_at),
        "credentialStatus": status_list.entry(
            issuer_url, achievement.status_list, achievement.status_index
        ),
        "credentialSubject": {
            "id": f"urn:uuid:{achievement.enrollment_id}",
            "type": ["AchievementSubject"],
            "identifier": [
                {
                    "type": "IdentityObject",
                    "identityType": "name",
                    "hashed": False,
                    "identityHash": achievement.learner_name,
                }
            ],
            "achievement": {
                "id": f"{issuer_url}/courses/{achievement.course_id}",
                "type": ["Achievement"],
                "achievementType": "Course",
                "name": achievement.course_title,
                "description": f"Completion of the course {achievement.course_title}",
                "criteria": {
                    "narrative": "Completed every lesson of the course "
                    f"{achievement.course_title}, as recorded by {issuer_name}."
                },
            },
        },
    }


def jwt_payload(credential: dict[str, Any], serial_hash: str) -> dict[str, Any]:
    """The credential with the registered claims the proof format requires beside it."""
    valid_from = datetime.strptime(credential["validFrom"], "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=UTC
    )
    return {
        **credential,
        "iss": credential["issuer"]["id"],
        "jti": credential["id"],
        "sub": credential["credentialSubject"]["id"],
        "nbf": int(valid_from.timestamp()),
        "serialHash": serial_hash,
    }


def sign(achievement: Achievement, key: SigningKey, *, issuer_url: str, issuer_name: str) -> str:
    """The certificate's VC-JWT (compact JWS)."""
    credential = open_badge_credential(achievement, issuer_url=issuer_url, issuer_name=issuer_name)
    return jwt.encode(
        jwt_payload(credential, achievement.serial_hash),
        key.private_key,
        algorithm=key.algorithm,
        headers={"kid": key.kid(issuer_url), "typ": "JWT"},
    )
