"""The certificate signing key: RSA (RS256), P-256 (ES256) or Ed25519 (EdDSA), read from PEM text
or a file, refused in one clear line when it is anything else (a short RSA key, another curve,
encrypted), generated once (RSA) into the data directory, and named by its RFC 7638 thumbprint."""

from __future__ import annotations

import base64
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from lms.domain.certificates.keys import (
    KEY_FILE_NAME,
    algorithm_of_jwk,
    key_file,
    load_signing_key,
    new_private_key_pem,
    signing_key_of,
    thumbprint,
)
from lms.errors import StartupError

# RFC 8037, appendix A.1 and A.3: an Ed25519 key and its JWK thumbprint.
RFC8037_D = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"
RFC8037_X = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
RFC8037_THUMBPRINT = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


def test_the_jwk_and_its_thumbprint_follow_rfc_8037() -> None:
    raw = base64.urlsafe_b64decode(RFC8037_D + "=")
    key = signing_key_of(Ed25519PrivateKey.from_private_bytes(raw))
    assert key.public_jwk == {"crv": "Ed25519", "kty": "OKP", "x": RFC8037_X}
    assert key.thumbprint == RFC8037_THUMBPRINT
    assert key.kid("https://lms.example.test") == (
        f"https://lms.example.test/.well-known/jwks.json#{RFC8037_THUMBPRINT}"
    )


# RFC 7638, section 3.1: an RSA public key and its thumbprint.
RFC7638_N = (
    "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECP"
    "ebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY"
    "368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0f"
    "M4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
)
RFC7638_THUMBPRINT = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_an_rsa_jwk_and_its_thumbprint_follow_rfc_7638() -> None:
    assert thumbprint({"e": "AQAB", "kty": "RSA", "n": RFC7638_N}) == RFC7638_THUMBPRINT
    # And a generated key's members are its numbers, big-endian, base64url without padding.
    key = load_signing_key(new_private_key_pem("RS256"))
    assert isinstance(key.private_key, rsa.RSAPrivateKey)
    numbers = key.private_key.public_key().public_numbers()
    n = key.public_jwk["n"]
    assert int.from_bytes(base64.urlsafe_b64decode(n + "=" * (-len(n) % 4)), "big") == numbers.n
    assert key.public_jwk["e"] == "AQAB" and key.thumbprint == thumbprint(key.public_jwk)


@pytest.mark.parametrize(
    ("algorithm", "members"),
    [
        ("RS256", {"kty", "n", "e"}),
        ("ES256", {"kty", "crv", "x", "y"}),
        ("EdDSA", {"kty", "crv", "x"}),
    ],
)
def test_each_algorithm_publishes_only_its_public_members(
    algorithm: str, members: set[str]
) -> None:
    key = load_signing_key(new_private_key_pem(algorithm))  # type: ignore[arg-type]
    assert key.algorithm == algorithm and set(key.public_jwk) == members
    assert algorithm_of_jwk(key.public_jwk) == algorithm


def test_the_generated_default_is_rsa_for_rs256() -> None:
    key = load_signing_key(new_private_key_pem())
    assert key.algorithm == "RS256"
    assert isinstance(key.private_key, rsa.RSAPrivateKey) and key.private_key.key_size >= 2048


def test_a_key_loads_from_pem_text_or_a_file(tmp_path: Path) -> None:
    pem = new_private_key_pem()
    path = tmp_path / "key.pem"
    path.write_text(pem)
    assert load_signing_key(pem).thumbprint == load_signing_key(str(path)).thumbprint
    assert load_signing_key(f"\n  {pem}  \n").public_jwk == load_signing_key(pem).public_jwk


def _pem(key: object, password: bytes | None = None) -> str:
    encryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return key.private_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    ).decode()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("/no/such/file.pem", "is neither PEM text nor a readable file"),
        (
            "-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----",
            "not an unencrypted PEM",
        ),
        (
            _pem(rsa.generate_private_key(public_exponent=65537, key_size=1024)),  # noqa: S505
            "is an RSA key of 1024 bits: RS256 needs 2048 bits or more",
        ),
        (_pem(ec.generate_private_key(ec.SECP384R1())), "ES256 needs P-256"),
        (_pem(dsa.generate_private_key(key_size=2048)), "must be an RSA (RS256), P-256 (ES256)"),
        (_pem(Ed25519PrivateKey.generate(), b"secret"), "not an unencrypted PEM"),
    ],
    ids=["missing-file", "garbage", "rsa-1024", "p384", "dsa", "encrypted"],
)
def test_anything_else_is_one_clear_error(value: str, message: str) -> None:
    with pytest.raises(StartupError) as error:
        load_signing_key(value)
    assert str(error.value).startswith("LMS_CERT_SIGNING_KEY ")
    assert message in str(error.value) and "\n" not in str(error.value)
    assert "BEGIN" not in str(error.value)  # never echo key material


def test_the_development_key_is_generated_once_private_and_shared(tmp_path: Path) -> None:
    with ThreadPoolExecutor(8) as pool:
        paths = list(pool.map(lambda _: key_file(tmp_path / "data"), range(16)))
    assert set(paths) == {tmp_path / "data" / KEY_FILE_NAME}
    path = paths[0]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == [KEY_FILE_NAME]  # no temporary left
    first = load_signing_key(str(path))
    assert first.algorithm == "RS256"
    assert load_signing_key(str(key_file(tmp_path / "data"))).thumbprint == first.thumbprint


def test_an_ed25519_key_generated_before_rs256_is_left_alone(tmp_path: Path) -> None:
    """The old generated file stays (its key is in the JWK set); the RSA key signs from now on."""
    old = tmp_path / "cert-signing-key.pem"
    old.write_text(new_private_key_pem("EdDSA"))
    assert load_signing_key(str(key_file(tmp_path))).algorithm == "RS256"
    assert load_signing_key(str(old)).algorithm == "EdDSA"
