"""Revocation status lists (W3C Bitstring Status List v1.0): each certificate gets a bit of its
own, race-free; GET /certificates/status/:listId serves the signed list (VC-JWT or JSON), and a
revocation shows in it at once."""

from __future__ import annotations

import asyncio
import base64
import gzip
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from lms.domain.certificates.status_list import LIST_SIZE, STATUS_LIST_MAX_AGE
from tests.conftest import TestUser
from tests.integration.learning.helpers import complete, course_with_lessons, enroll
from tests.integration.learning.test_certificates import BASE_URL, earn
from tests.support.credentials import assert_expands, credential_of, segments


def status_of(certificate: dict[str, Any]) -> tuple[str, int]:
    """(the status list's path on this service, the certificate's bit) from its credential."""
    entry = segments(certificate["jws"])[1]["credentialStatus"]
    url = entry["statusListCredential"]
    assert url.startswith(BASE_URL)
    return url.removeprefix(BASE_URL), int(entry["statusListIndex"])


def bits_of(encoded: str) -> bytes:
    """The spec's decoding: multibase 'u', base64url, GZIP."""
    assert encoded.startswith("u")
    payload = encoded[1:]
    return gzip.decompress(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def bit(bits: bytes, index: int) -> int:
    return (bits[index // 8] >> (7 - index % 8)) & 1


async def served_list(api: httpx.AsyncClient, path: str) -> tuple[dict[str, Any], bytes]:
    """The list as a VC-JWT (no Accept), its signature checked against the JWK set: (claims,
    bitstring)."""
    response = await api.get(path)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/vc+jwt")
    assert response.headers["cache-control"] == f"public, max-age={STATUS_LIST_MAX_AGE}"
    # Origin too: the test settings configure CORS (lms.api.cors).
    assert response.headers["vary"] == "Accept, Origin"
    keys = KeySet.import_key_set((await api.get("/.well-known/jwks.json")).json())
    claims = jwt.decode(response.text, keys, algorithms=["RS256", "ES256"]).claims
    return claims, bits_of(claims["credentialSubject"]["encodedList"])


async def test_the_status_list_shows_a_revocation_at_once(
    api: httpx.AsyncClient, db: asyncpg.Pool, learner: TestUser, creator: TestUser, admin: TestUser
) -> None:
    kept = await earn(api, db, learner, creator, admin, title="Kept")
    revoked = await earn(api, db, learner, creator, admin, title="Revoked")
    path, kept_bit = status_of(kept)
    same_path, revoked_bit = status_of(revoked)
    assert same_path == path and kept_bit != revoked_bit

    claims, bits = await served_list(api, path)
    assert len(bits) == LIST_SIZE // 8  # 131,072 entries: the spec's minimum, for herd privacy
    assert bit(bits, kept_bit) == bit(bits, revoked_bit) == 0
    assert claims["type"] == ["VerifiableCredential", "BitstringStatusListCredential"]
    assert claims["id"] == claims["jti"] == f"{BASE_URL}{path}"
    assert claims["issuer"] == claims["iss"] == BASE_URL  # the certificates' issuer
    subject = claims["credentialSubject"]
    assert subject["type"] == "BitstringStatusList" and subject["statusPurpose"] == "revocation"
    assert subject["ttl"] == STATUS_LIST_MAX_AGE * 1000
    now = datetime.now(UTC).timestamp()
    assert claims["nbf"] <= now + 1 < claims["exp"]

    response = await api.post(
        f"/admin/certificates/{revoked['id']}/revoke", json={"reason": "x"}, headers=admin.headers
    )
    assert response.status_code == 200
    _, bits = await served_list(api, path)  # the process had this list signed a moment ago
    assert bit(bits, revoked_bit) == 1 and bit(bits, kept_bit) == 0
    assert sum(bin(byte).count("1") for byte in bits) == 1


@pytest.mark.parametrize(
    "accept",
    ["application/json", "application/ld+json", "application/vc", "application/ld+json, */*;q=0.1"],
)
async def test_the_list_is_also_served_as_json(
    api: httpx.AsyncClient,
    db: asyncpg.Pool,
    learner: TestUser,
    creator: TestUser,
    admin: TestUser,
    accept: str,
) -> None:
    earned = await earn(api, db, learner, creator, admin)
    path, _ = status_of(earned)
    signed = await api.get(path, headers={"Accept": "application/vc+jwt"})
    response = await api.get(path, headers={"Accept": accept})
    assert response.status_code == 200
    assert response.headers["content-type"].split(";")[0] == accept.split(",")[0]
    document = response.json()
    # The same credential as the signed one, and every property a term of its context.
    assert document == credential_of(segments(signed.text)[1])
    assert_expands(document)
    assert (await api.get(path, headers={"Accept": "application/jwt"})).text == signed.text


@pytest.mark.parametrize("list_id", ["0", "999999", "99999999999999999999", "-1", "abc"])
async def test_an_unknown_list_is_404(
    api: httpx.AsyncClient, db: asyncpg.Pool, list_id: str
) -> None:
    response = await api.get(f"/certificates/status/{list_id}")
    assert response.status_code in (400, 404), response.text
    assert response.json()["status_code"] == response.status_code


async def test_certificates_issued_at_once_get_bits_of_their_own(
    api: httpx.AsyncClient,
    db: asyncpg.Pool,
    creator: TestUser,
    admin: TestUser,
    make_user,  # type: ignore[no-untyped-def]
) -> None:
    course, lessons = await course_with_lessons(api, db, creator, admin, [None])
    learners = [await make_user("LEARNER") for _ in range(12)]
    for learner in learners:
        await enroll(api, learner, course["id"])
    answers = await asyncio.gather(*(complete(api, u, lessons[0]["id"]) for u in learners))
    entries = [status_of(a.json()["certificate"]) for a in answers]
    assert len(set(entries)) == len(learners)
    stored = await db.fetch("SELECT status_list, status_index FROM certificates")
    assert {(f"/certificates/status/{r['status_list']}", r["status_index"]) for r in stored} == set(
        entries
    )


async def test_a_full_list_starts_the_next(
    api: httpx.AsyncClient, db: asyncpg.Pool, learner: TestUser, creator: TestUser, admin: TestUser
) -> None:
    last = await db.fetchval("SELECT last_value FROM certificate_status_seq")
    list_id = last // LIST_SIZE + 1
    # The next number is the last bit of the current list.
    await db.execute("SELECT setval('certificate_status_seq', $1)", list_id * LIST_SIZE - 2)
    end = await earn(api, db, learner, creator, admin, title="The last bit")
    start = await earn(api, db, learner, creator, admin, title="The first bit")
    assert status_of(end) == (f"/certificates/status/{list_id}", LIST_SIZE - 1)
    assert status_of(start) == (f"/certificates/status/{list_id + 1}", 0)
    for certificate in (end, start):
        await api.post(
            f"/admin/certificates/{certificate['id']}/revoke",
            json={"reason": "x"},
            headers=admin.headers,
        )
        path, index = status_of(certificate)
        _, bits = await served_list(api, path)
        assert bit(bits, index) == 1
    assert (await api.get(f"/certificates/status/{list_id + 2}")).status_code == 404
