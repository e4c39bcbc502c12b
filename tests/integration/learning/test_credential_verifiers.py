"""Two independent verifiers from the registries, over HTTP against a live `lms serve`: each
accepts a fresh certificate and, once it is revoked, reports it revoked through its status list.

- PyPI `openbadgeslib` (OB3Verifier): the VC-JWT's signature with the key its `kid` names, the
  Open Badges 3.0 structure and registered claims, and the Bitstring Status List, whose own
  VC-JWT signature and issuer it checks too (`verify_status_list=True`).
- Node.js (tests/clients/credentials): `jose` for the signatures against the served JWK set, and
  the Digital Credentials Consortium's Bitstring Status List checker for the bit.
  `@digitalcredentials/verifier-core` itself verifies only Data Integrity proofs (eddsa-rdfc-2022,
  Ed25519Signature2020): it answers any VC-JWT with its fatal "no digital signature" error before
  looking at the status, so its status component is used directly.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from jwt import PyJWK
from openbadgeslib.ob3 import OB3Verifier
from openbadgeslib.ob3.verifier import OB3VerificationError

from tests.conftest import TestUser
from tests.integration.learning.test_certificates import BASE_URL, earn
from tests.integration.test_openapi_clients import digest, ensure_installed
from tests.support.credentials import segments

ROOT = Path(__file__).resolve().parents[3]
NODE_CLIENT = ROOT / "tests" / "clients" / "credentials"


def public_key(server: str, kid: str) -> Any:
    """The key the JWK set served by `server` publishes under `kid` (a cryptography key)."""
    keys = httpx.get(f"{server}/.well-known/jwks.json").json()["keys"]
    [jwk] = [key for key in keys if key["kid"] == kid]
    return PyJWK(jwk).key


def downloader(server: str) -> Any:
    """openbadgeslib's fetcher, for the issuer's URLs: the live server, plain HTTP on loopback
    (its own fetcher insists on HTTPS, which a test server on 127.0.0.1 does not speak)."""

    def download(url: str) -> bytes:
        assert url.startswith(BASE_URL), url
        response = httpx.get(server + url.removeprefix(BASE_URL))
        response.raise_for_status()
        return response.content

    return download


async def revoke(api: httpx.AsyncClient, admin: TestUser, certificate: dict[str, Any]) -> None:
    response = await api.post(
        f"/admin/certificates/{certificate['id']}/revoke",
        json={"reason": "found to be plagiarised"},
        headers=admin.headers,
    )
    assert response.status_code == 200, response.text


async def test_openbadgeslib_accepts_the_certificate_then_reports_it_revoked(
    api: httpx.AsyncClient,
    db: asyncpg.Pool,
    learner: TestUser,
    creator: TestUser,
    admin: TestUser,
    served_lms: str,
) -> None:
    earned = await earn(api, db, learner, creator, admin, title="Verified elsewhere")
    header, _ = segments(earned["jws"])
    verifier = OB3Verifier(public_key(served_lms, header["kid"]))

    def verify() -> Any:
        return verifier.verify(
            earned["jws"],
            check_status=True,
            verify_status_list=True,
            download=downloader(served_lms),
        )

    credential = await asyncio.to_thread(verify)
    assert credential.issuer.id == BASE_URL
    assert credential.credential_status[0]["type"] == "BitstringStatusListEntry"

    await revoke(api, admin, earned)
    with pytest.raises(OB3VerificationError, match="status 'revocation' is set"):
        await asyncio.to_thread(verify)


def node_verify(jws: str, server: str) -> dict[str, Any]:
    node = shutil.which("node")
    assert node is not None
    result = subprocess.run(
        [node, "verify.mjs"],
        cwd=NODE_CLIENT,
        input=json.dumps({"jws": jws, "issuer": BASE_URL, "server": server}),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"node verify.mjs failed:\n{result.stdout}\n{result.stderr}"
    return dict(json.loads(result.stdout))


async def test_a_node_verifier_accepts_the_certificate_then_reports_it_revoked(
    api: httpx.AsyncClient,
    db: asyncpg.Pool,
    learner: TestUser,
    creator: TestUser,
    admin: TestUser,
    served_lms: str,
) -> None:
    """Needs Node.js 20+ with npm. The first run fetches the packages pinned in
    tests/clients/credentials/package-lock.json (`npm ci`, a few seconds) into its node_modules
    (git-ignored); later runs reuse them until package.json or the lock change."""
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not found: install Node.js 20+ with npm")
    await asyncio.to_thread(
        ensure_installed,
        NODE_CLIENT / "node_modules" / ".lms-installed",
        digest(NODE_CLIENT / "package.json", NODE_CLIENT / "package-lock.json"),
        [["npm", "ci", "--no-audit", "--no-fund"]],
        NODE_CLIENT,
    )
    earned = await earn(api, db, learner, creator, admin, title="Verified in Node.js")
    fresh = await asyncio.to_thread(node_verify, earned["jws"], served_lms)
    assert fresh["alg"] == "RS256" and fresh["kid"] == segments(earned["jws"])[0]["kid"]
    assert fresh["credentialId"] == f"urn:uuid:{earned['id']}"
    assert fresh["statusVerified"] is True, fresh

    await revoke(api, admin, earned)
    revoked = await asyncio.to_thread(node_verify, earned["jws"], served_lms)
    assert revoked["statusVerified"] is False and revoked["statusError"] is None, revoked
