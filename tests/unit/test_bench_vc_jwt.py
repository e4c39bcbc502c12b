"""The bench's certificate check (bench.vc_jwt) verifies what lms signs with each key it offers,
by the published key's algorithm, and refuses what an outside verifier must refuse."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import jwt
import pytest
from bench.vc_jwt import UnknownKey, published_keys, status_entry_matches, verified_claims
from cryptography.hazmat.primitives import serialization

from lms.domain.certificates import credential
from lms.domain.certificates.keys import Algorithm, SigningKey, new_private_key, signing_key_of

BASE = "https://lms.example"


def achievement(list_id: int = 3, index: int = 77) -> credential.Achievement:
    return credential.Achievement(
        certificate_id=uuid.uuid4(),
        serial_hash="ab" * 24,
        enrollment_id=uuid.uuid4(),
        issued_at=datetime.now(UTC).replace(microsecond=0),
        learner_name="Zoë Learner",
        course_id=uuid.uuid4(),
        course_title="Databases",
        status_list=list_id,
        status_index=index,
    )


def row(key: SigningKey, *, as_text: bool = False) -> dict[str, Any]:
    """A certificate_signing_keys row as lms registers the key."""
    return {
        "kid": key.kid(BASE),
        "public_jwk": json.dumps(key.public_jwk) if as_text else key.public_jwk,
    }


def signed(key: SigningKey, facts: credential.Achievement) -> str:
    return credential.sign(facts, key, issuer_url=BASE, issuer_name="LMS")


@pytest.mark.parametrize("algorithm", ["RS256", "ES256", "EdDSA"])
def test_each_algorithm_lms_offers_verifies(algorithm: Algorithm) -> None:
    key = signing_key_of(new_private_key(algorithm))
    facts = achievement()
    keys = published_keys([row(key, as_text=algorithm == "ES256")])
    claims = verified_claims(signed(key, facts), keys)
    assert keys[key.kid(BASE)].algorithm == algorithm
    assert claims["serialHash"] == facts.serial_hash
    assert status_entry_matches(claims, facts.status_list, facts.status_index)
    assert not status_entry_matches(claims, facts.status_list, facts.status_index + 1)
    assert not status_entry_matches(claims, facts.status_list + 1, facts.status_index)
    assert not status_entry_matches(claims, None, None)


def test_a_token_from_another_key_does_not_verify() -> None:
    published = signing_key_of(new_private_key("RS256"))
    other = signing_key_of(new_private_key("RS256"))
    token = signed(other, achievement())
    with pytest.raises(UnknownKey):
        verified_claims(token, published_keys([row(published)]))
    # The published key's kid on a token that key did not sign.
    head, payload, signature = token.split(".")
    header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    header["kid"] = published.kid(BASE)
    forged_head = base64.urlsafe_b64encode(json.dumps(header).encode()).rstrip(b"=").decode()
    with pytest.raises(jwt.InvalidSignatureError):
        verified_claims(f"{forged_head}.{payload}.{signature}", published_keys([row(published)]))


def test_the_header_cannot_choose_the_algorithm() -> None:
    """HS256 keyed with the RSA public key (the classic confusion) is refused, as is a key's
    token relabelled with another asymmetric algorithm."""
    key = signing_key_of(new_private_key("RS256"))
    keys = published_keys([row(key)])
    claims = jwt.decode(signed(key, achievement()), options={"verify_signature": False})
    public_pem = key.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    forged = _hs256(claims, public_pem, key.kid(BASE))
    with pytest.raises(jwt.InvalidAlgorithmError):
        verified_claims(forged, keys)


def _hs256(claims: dict[str, Any], secret: bytes, kid: str) -> str:
    """An HS256 token over `claims`, signed by hand (PyJWT refuses a PEM as an HMAC secret)."""

    def part(value: bytes) -> str:
        return base64.urlsafe_b64encode(value).rstrip(b"=").decode()

    head = part(json.dumps({"alg": "HS256", "kid": kid, "typ": "JWT"}).encode())
    body = part(json.dumps(claims).encode())
    mac = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{part(mac)}"
