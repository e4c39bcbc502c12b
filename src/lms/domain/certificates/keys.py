"""The Ed25519 key that signs certificates: read from LMS_CERT_SIGNING_KEY (PEM text or the path
of a PEM file), generated into LMS_DATA_DIR when unset, and published as a JWK whose id is
derived from the key itself (its RFC 7638 thumbprint), so a rotated key gets a new id and the
old one stays in the JWK set."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from lms.errors import StartupError

SETTING = "LMS_CERT_SIGNING_KEY"
KEY_FILE_NAME = "cert-signing-key.pem"
JWKS_PATH = "/.well-known/jwks.json"


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@dataclass(frozen=True)
class SigningKey:
    private_key: Ed25519PrivateKey
    public_jwk: dict[str, str]  # the required members only: crv, kty, x
    thumbprint: str

    def kid(self, base_url: str) -> str:
        """The JWS `kid`: a URI that names this key in the service's JWK set."""
        return f"{base_url}{JWKS_PATH}#{self.thumbprint}"


def signing_key_of(private_key: Ed25519PrivateKey) -> SigningKey:
    raw = private_key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    jwk = {"crv": "Ed25519", "kty": "OKP", "x": _b64url(raw)}
    # RFC 7638: SHA-256 of the required members, lexicographically ordered, no whitespace.
    canonical = json.dumps(jwk, sort_keys=True, separators=(",", ":")).encode()
    return SigningKey(private_key, jwk, _b64url(hashlib.sha256(canonical).digest()))


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
    if not isinstance(key, Ed25519PrivateKey):
        raise StartupError(
            f"{SETTING} must be an Ed25519 private key (certificates are signed with EdDSA), "
            f"got {type(key).__name__.removeprefix('_')}"
        )
    return signing_key_of(key)


def new_private_key_pem() -> str:
    return (
        Ed25519PrivateKey.generate()
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )


def key_file(data_dir: Path) -> Path:
    """LMS_DATA_DIR/cert-signing-key.pem, generated (mode 0600) the first time it is needed. The
    key is written to a private temporary file and hard-linked into place, so two processes
    starting at once agree on one key and neither ever reads a half-written file."""
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
