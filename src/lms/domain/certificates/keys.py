"""The key that signs certificates: read from LMS_CERT_SIGNING_KEY (PEM text or the path of a PEM
file: RSA of 2048 bits or more for RS256, P-256 for ES256, or Ed25519 for EdDSA), generated into
LMS_DATA_DIR when unset (RSA, RS256), and published as a JWK whose id is derived from the key
itself (its RFC 7638 thumbprint), so a rotated key gets a new id and the old one stays in the set.

The generated default is RS256 because Open Badges 3.0 makes RS256 the one algorithm every
conformant verifier must support ("MUST be RS256 as a minimum"); 1EdTech's validator also takes
ES256, which a P-256 key gives. Signing with RSA-2048 costs about a millisecond, once per
certificate (and per status list change).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from lms.errors import StartupError

SETTING = "LMS_CERT_SIGNING_KEY"
# The generated key's file. Installations that generated an Ed25519 key before RS256 became the
# default keep that file; its public key stays in the JWK set, and this one signs from now on.
KEY_FILE_NAME = "cert-signing-key-rs256.pem"
JWKS_PATH = "/.well-known/jwks.json"
MIN_RSA_BITS = 2048
GENERATED_RSA_BITS = 2048  # what RS256 asks; a larger key makes every signature slower

Algorithm = Literal["RS256", "ES256", "EdDSA"]
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | Ed25519PrivateKey


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _b64url_int(value: int) -> str:
    return _b64url(value.to_bytes((value.bit_length() + 7) // 8 or 1, "big"))


def algorithm_of_jwk(public_jwk: dict[str, str]) -> Algorithm:
    """The JWS algorithm a stored public key signs with (rows predate the alg member)."""
    if public_jwk.get("kty") == "RSA":
        return "RS256"
    if public_jwk.get("kty") == "EC" and public_jwk.get("crv") == "P-256":
        return "ES256"
    if public_jwk.get("kty") == "OKP" and public_jwk.get("crv") == "Ed25519":
        return "EdDSA"
    raise ValueError(f"no JWS algorithm for a {public_jwk.get('kty')} key")


@dataclass(frozen=True)
class SigningKey:
    private_key: PrivateKey
    algorithm: Algorithm
    public_jwk: dict[str, str]  # the RFC 7638 required members only: never a private part
    thumbprint: str

    def kid(self, base_url: str) -> str:
        """The JWS `kid`: a URI that names this key in the service's JWK set."""
        return f"{base_url}{JWKS_PATH}#{self.thumbprint}"


def _public_jwk(private_key: PrivateKey) -> tuple[Algorithm, dict[str, str]]:
    if isinstance(private_key, rsa.RSAPrivateKey):
        numbers = private_key.public_key().public_numbers()
        return "RS256", {"e": _b64url_int(numbers.e), "kty": "RSA", "n": _b64url_int(numbers.n)}
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        point = private_key.public_key().public_numbers()
        size = 32  # P-256 coordinates are 32 bytes, left-padded (RFC 7518 6.2.1.2)
        return "ES256", {
            "crv": "P-256",
            "kty": "EC",
            "x": _b64url(point.x.to_bytes(size, "big")),
            "y": _b64url(point.y.to_bytes(size, "big")),
        }
    raw = private_key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return "EdDSA", {"crv": "Ed25519", "kty": "OKP", "x": _b64url(raw)}


def thumbprint(public_jwk: dict[str, str]) -> str:
    """RFC 7638: SHA-256 of the required members, lexicographically ordered, no whitespace."""
    canonical = json.dumps(public_jwk, sort_keys=True, separators=(",", ":")).encode()
    return _b64url(hashlib.sha256(canonical).digest())


def signing_key_of(private_key: PrivateKey) -> SigningKey:
    algorithm, jwk = _public_jwk(private_key)
    return SigningKey(private_key, algorithm, jwk, thumbprint(jwk))


def _checked(key: object) -> PrivateKey:
    """The key, if it is one certificates may be signed with; else one clear StartupError."""
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < MIN_RSA_BITS:
            raise StartupError(
                f"{SETTING} is an RSA key of {key.key_size} bits: RS256 needs "
                f"{MIN_RSA_BITS} bits or more"
            )
        return key
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise StartupError(
                f"{SETTING} is an EC key on {key.curve.name}: ES256 needs P-256 (secp256r1)"
            )
        return key
    if isinstance(key, Ed25519PrivateKey):
        return key
    raise StartupError(
        f"{SETTING} must be an RSA (RS256), P-256 (ES256) or Ed25519 (EdDSA) private key, "
        f"got {type(key).__name__.removeprefix('_')}"
    )


def load_signing_key(value: str) -> SigningKey:
    """The key from PEM text or a PEM file; one clear StartupError line for anything else."""
    text = value.strip()
    if "-----BEGIN" not in text:
        path = Path(text).expanduser()
        try:
            text = path.read_text()
        except OSError as exc:
            raise StartupError(
                f"{SETTING} is neither PEM text nor a readable file: {path}: {exc.strerror}"
            ) from None
    try:
        key = serialization.load_pem_private_key(text.encode(), password=None)
    except (ValueError, TypeError) as exc:
        reason = str(exc).split("\n")[0] or type(exc).__name__
        raise StartupError(f"{SETTING} is not an unencrypted PEM private key: {reason}") from None
    return signing_key_of(_checked(key))


def new_private_key(algorithm: Algorithm = "RS256") -> PrivateKey:
    if algorithm == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=GENERATED_RSA_BITS)
    if algorithm == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    return Ed25519PrivateKey.generate()


def new_private_key_pem(algorithm: Algorithm = "RS256") -> str:
    return (
        new_private_key(algorithm)
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )


def key_file(data_dir: Path) -> Path:
    """LMS_DATA_DIR/cert-signing-key-rs256.pem, generated (mode 0600) the first time it is
    needed. The key is written to a private temporary file and hard-linked into place, so two
    processes starting at once agree on one key and neither ever reads a half-written file."""
    path = data_dir / KEY_FILE_NAME
    if path.exists():
        return path
    data_dir.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=data_dir, prefix=".cert-key-")  # mode 0600
    try:
        with os.fdopen(fd, "w") as out:
            out.write(new_private_key_pem())
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
    finally:
        os.unlink(temporary)
    return path
