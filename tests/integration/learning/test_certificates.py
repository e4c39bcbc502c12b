"""Certificates: who reads them, the PDF, public verification (JSON and page), revocation, and
the VC-JWT checked with an independent JOSE library against the served JWK set."""

from __future__ import annotations

import base64
import json
import re
import uuid
from datetime import datetime
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest
from joserfc import jws, jwt
from joserfc.errors import BadSignatureError
from joserfc.jwk import KeySet, RSAKey
from litestar import Litestar

from lms.domain.certificates import services as certificate_services
from lms.domain.certificates.keys import load_signing_key, new_private_key_pem
from lms.domain.certificates.schemas import Certificate, JwkSet, Verification
from tests.conftest import TestUser
from tests.integration.learning.helpers import complete, course_with_lessons, enroll
from tests.support.credentials import (
    assert_schema_valid,
    assert_standard_credential,
    credential_of,
)
from tests.support.credentials import segments as _segments
from tests.support.documents import pdf_qr_codes, pdf_text, screenshot

# An Ed25519 key (the EdDSA option, and keys from before RS256) still verifies: RFC 9864 has
# deprecated the name "EdDSA", which Open Badges verifiers expect.
pytestmark = pytest.mark.filterwarnings("ignore:EdDSA is deprecated")

BASE_URL = "https://lms.example.test"  # LMS_PUBLIC_BASE_URL in the test settings
# The JWK members each key type publishes (RFC 7517/7518/8037), never a private one.
PUBLIC_MEMBERS = {
    ("RSA", "RS256"): {"n", "e"},
    ("EC", "ES256"): {"crv", "x", "y"},
    ("OKP", "EdDSA"): {"crv", "x"},
}


async def earn(
    api: httpx.AsyncClient,
    db: asyncpg.Pool,
    learner: TestUser,
    creator: TestUser,
    admin: TestUser,
    **fields: Any,
) -> dict[str, Any]:
    """A course of one lesson, enrolled and completed by `learner`: the certificate."""
    course, lessons = await course_with_lessons(api, db, creator, admin, [None], **fields)
    await enroll(api, learner, course["id"])
    certificate = (await complete(api, learner, lessons[0]["id"])).json()["certificate"]
    assert certificate is not None
    # Every credential these tests issue meets the standards: JSON-LD, Open Badges 3.0's schema.
    assert_standard_credential(certificate["jws"])
    return dict(certificate)


def disclosed(body: str, *users: TestUser) -> list[str]:
    """Emails and user ids of `users` found in `body`."""
    return [v for u in users for v in (u.email, str(u.id), u.username) if v.lower() in body.lower()]


async def test_the_learner_and_admins_read_the_enrollments_certificate(
    api: httpx.AsyncClient,
    db: asyncpg.Pool,
    learner: TestUser,
    creator: TestUser,
    admin: TestUser,
    make_user,  # type: ignore[no-untyped-def]
) -> None:
    earned = await earn(api, db, learner, creator, admin, title="Category Theory")
    path = f"/enrollments/{earned['enrollmentId']}/certificate"
    for user in (learner, admin):
        response = await api.get(path, headers=user.headers)
        assert response.status_code == 200, response.text
        assert msgspec.json.decode(response.content, type=Certificate, strict=True)
        assert response.json() == earned
    stranger = await make_user("LEARNER")
    for user in (stranger, creator):  # another learner's enrollment is private: 404, not 403
        assert (await api.get(path, headers=user.headers)).status_code == 404
    assert (
        await api.get(f"/enrollments/{uuid.uuid4()}/certificate", headers=admin.headers)
    ).status_code == 404
    assert (await api.get(path)).status_code == 401

    assert earned["verifyUrl"] == f"{BASE_URL}/certificates/verify/{earned['serialHash']}"
    assert re.fullmatch(r"[0-9a-f]{48}", earned["serialHash"])  # 192 bits


async def test_no_certificate_while_the_course_is_not_completed(
    api: httpx.AsyncClient, db: asyncpg.Pool, learner: TestUser, creator: TestUser, admin: TestUser
) -> None:
    course, lessons = await course_with_lessons(api, db, creator, admin, [None, None])
    enrollment = await enroll(api, learner, course["id"])
    await complete(api, learner, lessons[0]["id"])
    response = await api.get(
        f"/enrollments/{enrollment['id']}/certificate", headers=learner.headers
    )
    assert response.status_code == 404 and "every lesson" in response.json()["detail"]
    pdf = await api.get(
        f"/enrollments/{enrollment['id']}/certificate",
        headers={**learner.headers, "Accept": "application/pdf"},
    )
    assert pdf.status_code == 404


async def test_the_pdf_names_the_verify_url_and_its_qr_code_scans_to_it(
    api: httpx.AsyncClient, db: asyncpg.Pool, learner: TestUser, creator: TestUser, admin: TestUser
) -> None:
    earned = await earn(api, db, learner, creator, admin, title="Compilers from scratch")
    response = await api.get(
        f"/enrollments/{earned['enrollmentId']}/certificate",
        headers={**learner.headers, "Accept": "application/pdf"},
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/pdf"
    assert response.headers["content-disposition"].startswith("inline; filename=")
    assert response.content.startswith(b"%PDF-")
    text = " ".join(pdf_text(response.content).split())
    assert earned["verifyUrl"] in text
    assert "Compilers from scratch" in text and earned["learner"]["fullName"] in text
    assert pdf_qr_codes(response.content) == [earned["verifyUrl"]]
    assert not disclosed(text, learner)


async def test_certificates_lists_the_callers_own(
    api: httpx.AsyncClient,
    db: asyncpg.Pool,
    learner: TestUser,
    creator: TestUser,
    admin: TestUser,
    make_user,  # type: ignore[no-untyped-def]
) -> None:
    first = await earn(api, db, learner, creator, admin, title="First")
    second = await earn(api, db, learner, creator, admin, title="Second")
    other = await make_user("LEARNER")
    await earn(api, db, other, creator, admin, title="Someone else's")
    response = await api.get("/certificates", headers=learner.headers)
    assert response.status_code == 200
    listed = msgspec.json.decode(response.content, type=list[Certificate], strict=True)
    assert {str(c.id) for c in listed} == {first["id"], second["id"]}
    assert len({c.serial_hash for c in listed}) == 2
    assert (await api.get("/certificates", headers=creator.headers)).json() == []


async def test_anyone_verifies_by_serial_without_seeing_emails_or_ids(
    api: httpx.AsyncClient, db: asyncpg.Pool, learner: TestUser, creator: TestUser, admin: TestUser
) -> None:
    earned = await earn(api, db, learner, creator, admin, title="Category Theory")
    response = await api.get(f"/certificates/verify/{earned['serialHash']}")
    assert response.status_code == 200
    answer = msgspec.json.decode(response.content, type=Verification, strict=True)
    assert answer.valid and answer.certificate.status == "VALID"
    assert answer.certificate.learner_name == earned["learner"]["fullName"]
    assert answer.certificate.course_title == "Category Theory"
    assert answer.certificate.creator_name and answer.certificate.creator_name.startswith("Test")
    assert str(answer.certificate.issued_at.isoformat()).startswith(earned["issuedAt"][:19])
    assert not disclosed(response.text, learner, creator)
    assert response.headers["cache-control"] == "public, max-age=25"


@pytest.mark.parametrize("serial", ["0" * 48, "not-a-serial", "A" * 3000, "abc" * 16])
async def test_an_unknown_serial_is_404_valid_false(
    api: httpx.AsyncClient, db: asyncpg.Pool, serial: str
) -> None:
    response = await api.get(f"/certificates/verify/{serial}")
    assert response.status_code == 404
    body = response.json()
    assert body["valid"] is False and body["status_code"] == 404 and body["detail"]
    page = await api.get(f"/certificates/verify/{serial}", headers={"Accept": "text/html"})
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
    assert "No certificate with this number exists" in page.text


@pytest.mark.parametrize("serial", ["%00", "ab%1Bcd", "%ED%A0%80"])
async def test_a_serial_with_a_control_character_or_surrogate_is_400(
    api: httpx.AsyncClient, serial: str
) -> None:
    response = await api.get(f"/certificates/verify/{serial}")
    assert response.status_code == 400, response.text
    assert response.json()["status_code"] == 400 and response.json()["detail"]


async def test_the_verification_page_is_readable_html_for_browsers(
    api: httpx.AsyncClient, db: asyncpg.Pool, learner: TestUser, creator: TestUser, admin: TestUser
) -> None:
    earned = await earn(api, db, learner, creator, admin, title="Category <Theory> & Practice")
    browser_accept = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    response = await api.get(
        f"/certificates/verify/{earned['serialHash']}", headers={"Accept": browser_accept}
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in response.headers["content-security-policy"]
    # Origin too: the test settings configure CORS (lms.api.cors).
    assert response.headers["vary"] == "Accept, Origin"
    page = response.text
    assert "Verified" in page and earned["learner"]["fullName"] in page
    assert "Category &lt;Theory&gt; &amp; Practice" in page and "<Theory>" not in page
    assert not disclosed(page, learner, creator)
    pixels = screenshot(page, "certificate-verify-served.png")
    assert pixels.std() > 10


async def test_revocation_shows_on_json_and_page_and_is_audited(
    api: httpx.AsyncClient,
    db: asyncpg.Pool,
    learner: TestUser,
    creator: TestUser,
    admin: TestUser,
) -> None:
    earned = await earn(api, db, learner, creator, admin)
    path = f"/admin/certificates/{earned['id']}/revoke"
    for user in (learner, creator):
        assert (await api.post(path, json={"reason": "x"}, headers=user.headers)).status_code == 403
    assert (await api.post(path, json={"reason": "   "}, headers=admin.headers)).status_code == 400
    assert (await api.post(path, json={}, headers=admin.headers)).status_code == 400
    unknown = f"/admin/certificates/{uuid.uuid4()}/revoke"
    assert (await api.post(unknown, json={"reason": "x"}, headers=admin.headers)).status_code == 404

    response = await api.post(
        path, json={"reason": "plagiarised final project"}, headers=admin.headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "REVOKED" and response.json()["revokedAt"]
    again = await api.post(path, json={"reason": "twice"}, headers=admin.headers)
    assert again.status_code == 409

    verified = await api.get(f"/certificates/verify/{earned['serialHash']}")
    assert verified.status_code == 200
    assert verified.json()["valid"] is False
    assert verified.json()["certificate"]["status"] == "REVOKED"
    assert "plagiarised" not in verified.text  # the reason stays with admins
    page = await api.get(
        f"/certificates/verify/{earned['serialHash']}", headers={"Accept": "text/html"}
    )
    assert page.status_code == 200 and "Revoked" in page.text and "Verified" not in page.text

    mine = await api.get(
        f"/enrollments/{earned['enrollmentId']}/certificate", headers=learner.headers
    )
    assert mine.json()["status"] == "REVOKED"
    audit = await api.get("/admin/audit?action=certificate.revoke", headers=admin.headers)
    [entry] = audit.json()["items"]
    assert entry["targetId"] == earned["id"] and entry["actorId"] == str(admin.id)
    assert entry["before"] == {"status": "VALID"}
    assert entry["after"] == {"status": "REVOKED", "reason": "plagiarised final project"}


async def served_key_set(api: httpx.AsyncClient) -> KeySet:
    response = await api.get("/.well-known/jwks.json")
    assert response.status_code == 200
    assert msgspec.json.decode(response.content, type=JwkSet, strict=True)
    for key in response.json()["keys"]:
        members = PUBLIC_MEMBERS[(key["kty"], key["alg"])]
        assert set(key) == {"kty", "kid", "use", "alg"} | members  # never a private "d"
        # Each key keeps the kid it was registered with: other services of this test session
        # (the fault tests' `lms serve`) register theirs under their own base URL.
        assert key["use"] == "sig" and "/.well-known/jwks.json#" in key["kid"]
        assert key.get("crv", "P-256" if key["kty"] == "EC" else "Ed25519") in {"P-256", "Ed25519"}
    return KeySet.import_key_set(response.json())


async def test_the_credential_verifies_offline_against_the_served_jwk_set(
    api: httpx.AsyncClient, db: asyncpg.Pool, learner: TestUser, creator: TestUser, admin: TestUser
) -> None:
    earned = await earn(api, db, learner, creator, admin, title="Category Theory")
    key_set = await served_key_set(api)
    header, _ = _segments(earned["jws"])
    assert set(header) == {"alg", "kid", "typ"}  # Open Badges 3.0 allows no other JOSE header
    # The default key is RSA: RS256, the algorithm every Open Badges 3.0 verifier must accept.
    assert header["alg"] == "RS256" and header["typ"] == "JWT"
    assert header["kid"].startswith(f"{BASE_URL}/.well-known/jwks.json#")

    token = jwt.decode(earned["jws"], key_set, algorithms=["RS256"])
    claims = token.claims
    credential_id = f"urn:uuid:{earned['id']}"
    assert claims["type"] == ["VerifiableCredential", "OpenBadgeCredential"]
    assert claims["@context"][0] == "https://www.w3.org/ns/credentials/v2"
    assert claims["id"] == claims["jti"] == credential_id
    assert claims["issuer"]["id"] == claims["iss"] == BASE_URL
    assert claims["issuer"]["type"] == ["Profile"] and claims["issuer"]["name"] == "LMS"
    subject = claims["credentialSubject"]
    assert subject["id"] == claims["sub"] == f"urn:uuid:{earned['enrollmentId']}"
    assert subject["type"] == ["AchievementSubject"]
    assert subject["identifier"] == [
        {
            "type": "IdentityObject",
            "identityType": "name",
            "hashed": False,
            "identityHash": earned["learner"]["fullName"],
        }
    ]
    achievement = subject["achievement"]
    assert achievement["name"] == "Category Theory" and achievement["type"] == ["Achievement"]
    assert achievement["id"] == f"{BASE_URL}/courses/{earned['course']['id']}"
    assert claims["serialHash"] == earned["serialHash"]
    assert claims["validFrom"] == earned["issuedAt"]
    issued_at = datetime.fromisoformat(earned["issuedAt"].replace("Z", "+00:00"))
    assert claims["nbf"] == int(issued_at.timestamp())
    assert "exp" not in claims and "validUntil" not in claims  # a completed course stays so
    status = claims["credentialStatus"]
    assert status["type"] == "BitstringStatusListEntry"
    assert status["statusPurpose"] == "revocation"
    assert re.fullmatch(r"\d+", status["statusListIndex"])  # a base-10 string, per the spec
    assert re.fullmatch(rf"{BASE_URL}/certificates/status/[1-9]\d*", status["statusListCredential"])
    assert status["id"] == f"{status['statusListCredential']}#{status['statusListIndex']}"
    assert not disclosed(json.dumps(claims), learner, creator)


async def test_a_tampered_or_foreign_credential_is_refused(
    api: httpx.AsyncClient, db: asyncpg.Pool, learner: TestUser, creator: TestUser, admin: TestUser
) -> None:
    earned = await earn(api, db, learner, creator, admin)
    key_set = await served_key_set(api)
    header_b64, _payload_b64, signature = earned["jws"].split(".")
    _, payload = _segments(earned["jws"])
    payload["credentialSubject"]["identifier"][0]["identityHash"] = "Mallory"
    forged = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
    with pytest.raises(BadSignatureError):
        jwt.decode(f"{header_b64}.{forged}.{signature}", key_set, algorithms=["RS256"])
    # Signed by a key that is not the issuer's, under the issuer's kid.
    header, _ = _segments(earned["jws"])
    impostor = RSAKey.import_key(new_private_key_pem("RS256"))
    foreign = jws.serialize_compact(
        header, json.dumps(payload).encode(), impostor, algorithms=["RS256"]
    )
    with pytest.raises(BadSignatureError):
        jwt.decode(foreign, key_set, algorithms=["RS256"])


async def test_a_rotated_key_keeps_old_certificates_verifiable(
    api: httpx.AsyncClient,
    app: Litestar,
    db: asyncpg.Pool,
    learner: TestUser,
    creator: TestUser,
    admin: TestUser,
) -> None:
    """RS256 (the default), then an Ed25519 key (the EdDSA option, as installations had before
    RS256), then a P-256 key (ES256): each certificate verifies with its own key, and the JWK set
    keeps every key that ever signed, each with its algorithm."""
    ctx = app.state.ctx
    before = await earn(api, db, learner, creator, admin, title="Before the rotation")
    old_key = ctx.signing_key
    issued = {"RS256": before}
    try:
        for algorithm in ("EdDSA", "ES256"):
            # As after a restart with a new LMS_CERT_SIGNING_KEY.
            ctx.signing_key = load_signing_key(new_private_key_pem(algorithm))
            await certificate_services.register_signing_key(ctx, db)
            issued[algorithm] = await earn(api, db, learner, creator, admin, title=algorithm)
        key_set = await served_key_set(api)
        published = {
            k["kid"]: k["alg"] for k in (await api.get("/.well-known/jwks.json")).json()["keys"]
        }
        for algorithm, certificate in issued.items():
            header, _ = _segments(certificate["jws"])
            assert header["alg"] == algorithm and published[header["kid"]] == algorithm
            claims = jwt.decode(certificate["jws"], key_set, algorithms=[algorithm]).claims
            assert claims["serialHash"] == certificate["serialHash"]
        assert len({_segments(c["jws"])[0]["kid"] for c in issued.values()}) == 3
    finally:
        ctx.signing_key = old_key
        await db.execute(
            "DELETE FROM certificate_signing_keys WHERE kid = ANY($1::text[])",
            [_segments(issued[a]["jws"])[0]["kid"] for a in ("EdDSA", "ES256") if a in issued],
        )


async def test_a_revoked_certificate_is_never_handed_out_as_a_credential(
    api: httpx.AsyncClient,
    db: asyncpg.Pool,
    learner: TestUser,
    creator: TestUser,
    admin: TestUser,
) -> None:
    """Revocation replayed: before the fix every answer still carried the signed `jws`, which
    verified against the JWK set like a valid certificate."""
    course, lessons = await course_with_lessons(api, db, creator, admin, [None])
    await enroll(api, learner, course["id"])
    earned = (await complete(api, learner, lessons[0]["id"])).json()["certificate"]
    assert earned["jws"]
    revoked = await api.post(
        f"/admin/certificates/{earned['id']}/revoke",
        json={"reason": "fraud"},
        headers=admin.headers,
    )
    assert revoked.status_code == 200 and revoked.json()["jws"] is None

    verified = await api.get(f"/certificates/verify/{earned['serialHash']}")
    assert verified.json()["valid"] is False and verified.json()["certificate"]["jws"] is None
    own = await api.get(
        f"/enrollments/{earned['enrollmentId']}/certificate", headers=learner.headers
    )
    assert own.json()["status"] == "REVOKED" and own.json()["jws"] is None
    listed = (await api.get("/certificates", headers=learner.headers)).json()
    assert [(c["status"], c["jws"]) for c in listed] == [("REVOKED", None)]
    again = await complete(api, learner, lessons[0]["id"])  # idempotent: the same certificate
    assert again.json()["certificate"]["status"] == "REVOKED"
    assert again.json()["certificate"]["jws"] is None
    for answer in (revoked, verified, own, again):
        assert earned["jws"] not in answer.text
    # The page and the PDF never carried the credential; they say REVOKED (tested above).
    pdf = await api.get(
        f"/enrollments/{earned['enrollmentId']}/certificate",
        headers={**learner.headers, "Accept": "application/pdf"},
    )
    assert "REVOKED" in pdf_text(pdf.content)
    assert pdf_qr_codes(pdf.content) == [earned["verifyUrl"]]  # the QR code leads to the verdict


async def test_the_credential_meets_the_open_badges_3_schema(
    api: httpx.AsyncClient, db: asyncpg.Pool, learner: TestUser, creator: TestUser, admin: TestUser
) -> None:
    """1EdTech's AchievementCredential JSON Schema, offline (vendored: SOURCES.md). earn() runs it
    on every credential these tests issue; this test shows it can fail."""
    earned = await earn(api, db, learner, creator, admin, title="Schema-valid")
    document = credential_of(_segments(earned["jws"])[1])
    assert_schema_valid(document)
    broken = {name: value for name, value in document.items() if name != "issuer"}
    with pytest.raises(AssertionError, match="issuer"):
        assert_schema_valid(broken)


async def test_the_credential_stays_in_the_row_even_with_the_longest_names(
    api: httpx.AsyncClient, db: asyncpg.Pool, learner: TestUser, creator: TestUser, admin: TestUser
) -> None:
    """lms_0021: a certificate's row is never toasted (its credential is read with the row on
    every verification), even with a title and a learner name at their 200-character limits in
    two-byte characters."""
    course, lessons = await course_with_lessons(api, db, creator, admin, [None], title="é" * 200)
    await db.execute("UPDATE users SET full_name = $2 WHERE id = $1", learner.id, "ü" * 200)
    await enroll(api, learner, course["id"])
    response = await complete(api, learner, lessons[0]["id"])
    assert response.status_code == 200, response.text
    assert len(response.json()["certificate"]["jws"]) > 2_500  # past the default toast threshold
    toast = await db.fetchval(
        "SELECT reltoastrelid::regclass::text FROM pg_class WHERE oid = 'certificates'::regclass"
    )
    assert await db.fetchval(f"SELECT count(*) FROM {toast}") == 0
