"""JWT access/profile tokens and opaque refresh tokens (lms.domain.auth.tokens)."""

from __future__ import annotations

import dataclasses
import hashlib
import re
import time
import uuid

import jwt
import pytest

from lms.derived_keys import Purpose, derived_key
from lms.domain.auth.tokens import (
    ACCESS,
    PROFILE,
    InvalidToken,
    decode_token,
    hash_refresh_token,
    issue_access_token,
    issue_profile_token,
    new_refresh_token,
)
from lms.settings import Settings, load_settings

SECRET = "x" * 48
SETTINGS = load_settings({"LMS_JWT_SECRET": SECRET})
USER_ID = uuid.UUID("0b5c2f9e-3c51-4f0e-9a55-5d1b8f1b9a10")
SESSION_ID = uuid.UUID("6f1d3c3e-0c8a-4d0e-8a7e-2d0c1f9b7a55")
ACCESS_KEY = derived_key(SECRET, Purpose.ACCESS_TOKEN)
PROFILE_KEY = derived_key(SECRET, Purpose.PROFILE_TOKEN)


def access(settings: Settings = SETTINGS, version: int = 3) -> str:
    token: str = issue_access_token(
        settings, user_id=USER_ID, role="CREATOR", token_version=version, session_id=SESSION_ID
    )
    return token


def signed(claims: dict[str, object], key: bytes = ACCESS_KEY) -> str:
    """`claims` with a live iat/exp, signed with `key` (the access key unless told)."""
    now = int(time.time())
    return jwt.encode({**claims, "iat": now, "exp": now + 60}, key, algorithm="HS256")


def test_access_token_round_trip() -> None:
    token = access()
    claims = decode_token(SETTINGS, token, (ACCESS,))
    assert claims.user_id == USER_ID and claims.token_version == 3 and claims.kind == ACCESS
    raw = jwt.decode(token, ACCESS_KEY, algorithms=["HS256"])
    assert raw["role"] == "CREATOR" and raw["typ"] == "access" and raw["jti"]
    assert raw["exp"] - raw["iat"] == SETTINGS.access_token_ttl_seconds == 900
    assert abs(raw["iat"] - time.time()) < 5


def test_profile_token_round_trip_and_lifetime() -> None:
    token = issue_profile_token(SETTINGS, user_id=USER_ID, token_version=0)
    claims = decode_token(SETTINGS, token, (PROFILE, ACCESS))
    assert claims.kind == PROFILE and claims.token_version == 0 and claims.user_id == USER_ID
    raw = jwt.decode(token, PROFILE_KEY, algorithms=["HS256"])
    assert raw["exp"] - raw["iat"] == 30 * 60 and "role" not in raw


def test_an_access_token_names_its_login() -> None:
    token = issue_access_token(
        SETTINGS, user_id=USER_ID, role="LEARNER", token_version=0, session_id=SESSION_ID
    )
    claims = decode_token(SETTINGS, token, (ACCESS,))
    assert claims.session_id == SESSION_ID
    assert jwt.decode(token, ACCESS_KEY, algorithms=["HS256"])["sid"] == str(SESSION_ID)
    for bad_sid in ("x", "", 7, None):
        forged = signed({"sub": str(USER_ID), "ver": 0, "typ": "access", "sid": bad_sid})
        with pytest.raises(InvalidToken, match=r"^invalid token$"):
            decode_token(SETTINGS, forged, (ACCESS,))


def test_an_access_token_that_names_no_login_is_refused_as_invalid() -> None:
    """Signed with the right key and otherwise whole, but no `sid`: not a token the API issues
    (every access token belongs to a login), so it gets the answer any invalid token gets."""
    sidless = signed({"sub": str(USER_ID), "role": "LEARNER", "ver": 0, "typ": "access"})
    with pytest.raises(InvalidToken, match=r"^invalid token$"):
        decode_token(SETTINGS, sidless, (ACCESS,))
    with pytest.raises(InvalidToken, match=r"^invalid token$"):
        decode_token(SETTINGS, sidless, (PROFILE, ACCESS))


def test_a_profile_token_names_no_login_and_needs_none() -> None:
    token = issue_profile_token(SETTINGS, user_id=USER_ID, token_version=0)
    assert "sid" not in jwt.decode(token, PROFILE_KEY, algorithms=["HS256"])
    assert decode_token(SETTINGS, token, (PROFILE,)).session_id is None


def test_a_token_signed_with_the_secret_itself_or_another_purposes_key_is_refused() -> None:
    """Each kind of token has a key of its own (HKDF of the secret): the secret signs nothing,
    and a key made for cursors, media URLs or codes does not sign a token."""
    now = int(time.time())
    claims = {"sub": str(USER_ID), "ver": 3, "typ": "access", "sid": str(SESSION_ID)}
    claims |= {"iat": now, "exp": now + 60}
    assert decode_token(SETTINGS, jwt.encode(claims, ACCESS_KEY, algorithm="HS256"), (ACCESS,))
    others = [SECRET.encode(), PROFILE_KEY]
    others += [derived_key(SECRET, p) for p in (Purpose.CURSOR, Purpose.MEDIA_URL, Purpose.OTP)]
    for key in others:
        with pytest.raises(InvalidToken, match="invalid token"):
            decode_token(SETTINGS, jwt.encode(claims, key, algorithm="HS256"), (ACCESS,))
    # A profile-typed token signed with the access key is not a profile token either.
    as_profile = jwt.encode({**claims, "typ": "profile"}, ACCESS_KEY, algorithm="HS256")
    with pytest.raises(InvalidToken):
        decode_token(SETTINGS, as_profile, (PROFILE,))
    with pytest.raises(InvalidToken, match="invalid token"):
        decode_token(SETTINGS, as_profile, (ACCESS,))


def test_every_purpose_has_a_key_of_its_own() -> None:
    keys = {derived_key(SECRET, purpose) for purpose in Purpose}
    assert len(keys) == len(Purpose) and SECRET.encode() not in keys
    assert all(len(key) == 64 for key in keys)
    assert derived_key("y" * 48, Purpose.CURSOR) != derived_key(SECRET, Purpose.CURSOR)


def test_every_token_is_unique() -> None:
    assert access() != access()


def test_an_expired_token_is_refused() -> None:
    expired_settings = dataclasses.replace(SETTINGS, access_token_ttl_seconds=-10)
    token = access(expired_settings)
    with pytest.raises(InvalidToken, match="expired"):
        decode_token(SETTINGS, token, (ACCESS,))


def test_a_token_of_the_wrong_kind_is_refused() -> None:
    profile = issue_profile_token(SETTINGS, user_id=USER_ID, token_version=1)
    with pytest.raises(InvalidToken, match="access token is required"):
        decode_token(SETTINGS, profile, (ACCESS,))
    with pytest.raises(InvalidToken, match="profile token is required"):
        decode_token(SETTINGS, access(), (PROFILE,))


def test_a_tampered_token_is_refused() -> None:
    token = access()
    header, payload, signature = token.split(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    for bad in (
        f"{header}.{payload}.{flipped}",
        f"{header}.{payload}.",
        f"{header}.{payload[:-2]}.{signature}",
        token + "x",
        "not.a.jwt",
        "",
    ):
        with pytest.raises(InvalidToken, match="invalid token"):
            decode_token(SETTINGS, bad, (ACCESS,))


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_a_token_from_another_secret_or_algorithm_is_refused() -> None:
    other = dataclasses.replace(SETTINGS, jwt_secret="y" * 48)
    with pytest.raises(InvalidToken):
        decode_token(SETTINGS, access(other), (ACCESS,))
    hs512 = dataclasses.replace(SETTINGS, jwt_algorithm="HS512")
    with pytest.raises(InvalidToken):
        decode_token(SETTINGS, access(hs512), (ACCESS,))
    now = int(time.time())
    unsigned = jwt.encode(
        {"sub": str(USER_ID), "ver": 1, "typ": "access", "sid": str(SESSION_ID), "iat": now}
        | {"exp": now + 60},
        key="",
        algorithm="none",
    )
    with pytest.raises(InvalidToken):
        decode_token(SETTINGS, unsigned, (ACCESS,))


@pytest.mark.parametrize(
    "claims",
    [
        {"ver": 1, "typ": "access"},  # no sub
        {"sub": str(USER_ID), "typ": "access"},  # no ver
        {"sub": str(USER_ID), "ver": 1},  # no typ
        {"sub": "not-a-uuid", "ver": 1, "typ": "access"},
        {"sub": str(USER_ID), "ver": "one", "typ": "access"},
    ],
)
def test_a_signed_token_without_our_claims_is_refused(claims: dict[str, object]) -> None:
    with pytest.raises(InvalidToken):
        decode_token(SETTINGS, signed({**claims, "sid": str(SESSION_ID)}), (ACCESS,))


def test_refresh_tokens_are_random_and_stored_as_sha256() -> None:
    token, digest = new_refresh_token()
    assert len(token) >= 43 and re.fullmatch(r"[A-Za-z0-9_-]+", token)
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    assert digest == hashlib.sha256(token.encode()).hexdigest() == hash_refresh_token(token)
    assert token not in digest
    other, other_digest = new_refresh_token()
    assert other != token and other_digest != digest
    assert hash_refresh_token(token + "x") != digest
