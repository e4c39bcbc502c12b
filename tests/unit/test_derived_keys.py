"""One key per purpose (lms.derived_keys): what is signed for one purpose is refused as another,
and the keys are HKDF-SHA256 of LMS_JWT_SECRET with info b"lms/<purpose>", as the bench's peers
derive them too."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from lms.derived_keys import Purpose, derived_key
from lms.domain.errors import Invalid
from lms.domain.paging import decode_cursor, encode_cursor
from lms.integrations.storage import sign_media_path, verify_media_signature

SECRET = "derived-keys-test-secret-" + "s" * 32
MEDIA_KEY = "lessons/6f1c2d1e-9a57-4a8e-8f1e-2b7c1b0d4e55/v1.mp4"


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def hkdf(purpose: str) -> bytes:
    """RFC 5869 as written, apart from lms's code."""
    kdf = HKDF(algorithm=hashes.SHA256(), length=64, salt=None, info=f"lms/{purpose}".encode())
    return kdf.derive(SECRET.encode())


@pytest.mark.parametrize("purpose", list(Purpose))
def test_each_key_is_hkdf_of_the_secret_for_its_purpose(purpose: Purpose) -> None:
    assert derived_key(SECRET, purpose) == hkdf(purpose.value)


def test_a_media_url_is_signed_with_the_media_key_alone() -> None:
    exp = int(time.time()) + 600
    message = f"{MEDIA_KEY}\n{exp}".encode()
    signature = sign_media_path(SECRET, MEDIA_KEY, exp)
    assert signature == b64(hmac.new(hkdf("media-url"), message, hashlib.sha256).digest())
    assert verify_media_signature(SECRET, MEDIA_KEY, exp, signature, time.time())
    # The same message signed with any other key: the secret itself, or another purpose's key
    # (a cursor's signature is such a MAC), is no media URL signature.
    for key in [SECRET.encode(), *(derived_key(SECRET, p) for p in Purpose if p != "media-url")]:
        forged = b64(hmac.new(key, message, hashlib.sha256).digest())
        assert not verify_media_signature(SECRET, MEDIA_KEY, exp, forged, time.time())


def test_a_cursor_is_signed_with_the_cursor_key_alone() -> None:
    row_id = str(uuid.uuid4())
    cursor = encode_cursor(SECRET, "users", "2026-11-25T12:00:00+00:00", row_id)
    body, signature = cursor.split(".")
    payload = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    assert json.loads(payload) == ["users", "2026-11-25T12:00:00+00:00", row_id]
    expected = hmac.new(hkdf("cursor"), payload, hashlib.sha256).digest()[:12]
    assert signature == b64(expected)
    assert decode_cursor(SECRET, "users", cursor)[1] == row_id
    # A media URL's signature (or one with the secret itself) over the same payload is refused.
    for key in [SECRET.encode(), derived_key(SECRET, Purpose.MEDIA_URL)]:
        forged = f"{body}.{b64(hmac.new(key, payload, hashlib.sha256).digest()[:12])}"
        with pytest.raises(Invalid, match="malformed cursor"):
            decode_cursor(SECRET, "users", forged)


def test_an_earlier_cursor_signed_the_old_way_is_refused() -> None:
    """Cursors rotate with this change: one made by the previous release (an HMAC of the secret
    labelled "lms keyset cursor") is a 400, and the client starts from the first page."""
    old_key = hmac.new(SECRET.encode(), b"lms keyset cursor", hashlib.sha256).digest()
    payload = json.dumps(["users", "2026-11-25T12:00:00+00:00", str(uuid.uuid4())]).encode()
    old = f"{b64(payload)}.{b64(hmac.new(old_key, payload, hashlib.sha256).digest()[:12])}"
    with pytest.raises(Invalid):
        decode_cursor(SECRET, "users", old)
