"""The certificate signing key: read from PEM text or a file, refused in one clear line when it
is anything but an unencrypted Ed25519 key, generated once into the data directory, and named
by its RFC 7638 thumbprint."""

from __future__ import annotations

import base64
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from lms.domain.certificates.keys import (
    KEY_FILE_NAME,
    key_file,
    load_signing_key,
    new_private_key_pem,
    signing_key_of,
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
            _pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)),
            "must be an Ed25519",
        ),
        (_pem(ec.generate_private_key(ec.SECP256R1())), "must be an Ed25519"),
        (_pem(Ed25519PrivateKey.generate(), b"secret"), "not an unencrypted PEM"),
    ],
    ids=["missing-file", "garbage", "rsa", "p256", "encrypted"],
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
    first = load_signing_key(str(path)).thumbprint
    assert load_signing_key(str(key_file(tmp_path / "data"))).thumbprint == first
