"""Access tokens verified once per process (lms.domain.auth.verified_tokens): a token seen again
is the same claims without a second signature check, but never past its expiry, never for a
token text that was not itself verified, and never more than the bound."""

from __future__ import annotations

import dataclasses
import time

import pytest

from lms.domain.auth.tokens import InvalidToken, decode_token, issue_profile_token
from lms.domain.auth.verified_tokens import VerifiedTokens
from tests.unit.test_tokens import SETTINGS, USER_ID, access


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def test_a_token_seen_again_is_its_verified_claims_until_it_expires() -> None:
    clock = Clock()
    tokens = VerifiedTokens(clock=clock)
    token = access()
    first = tokens.access_claims(SETTINGS, token)
    assert first == decode_token(SETTINGS, token, ("access",))
    assert first.user_id == USER_ID and first.expires_at > clock.now
    # Verified once: a second look is the same claims, even under a secret that would now
    # refuse it (the check is not run again)...
    rotated = dataclasses.replace(SETTINGS, jwt_secret="y" * 48)
    assert tokens.access_claims(rotated, token) is first
    # ...but never past the token's expiry: refused, and forgotten.
    clock.now = first.expires_at
    with pytest.raises(InvalidToken, match="expired"):
        tokens.access_claims(SETTINGS, token)
    with pytest.raises(InvalidToken, match="invalid"):
        tokens.access_claims(rotated, token)  # verified afresh, and refused


def test_only_the_exact_text_verified_hits() -> None:
    tokens = VerifiedTokens()
    token = access()
    tokens.access_claims(SETTINGS, token)
    header, payload, signature = token.split(".")
    tampered = f"{header}.{payload}.{signature[:-2]}{'A' if signature[-2] != 'A' else 'B'}"
    with pytest.raises(InvalidToken):
        tokens.access_claims(SETTINGS, tampered)
    with pytest.raises(InvalidToken, match="access token is required"):
        tokens.access_claims(
            SETTINGS, issue_profile_token(SETTINGS, user_id=USER_ID, token_version=3)
        )


def test_the_oldest_token_goes_first_past_the_bound() -> None:
    tokens = VerifiedTokens(size=2)
    a, b, c = access(version=1), access(version=2), access(version=3)
    for token in (a, b, c):
        tokens.access_claims(SETTINGS, token)
    rotated = dataclasses.replace(SETTINGS, jwt_secret="y" * 48)
    assert tokens.access_claims(rotated, b).token_version == 2  # still kept
    assert tokens.access_claims(rotated, c).token_version == 3
    with pytest.raises(InvalidToken):
        tokens.access_claims(rotated, a)  # dropped: verified again, under the rotated secret
