"""Access tokens this process has verified, kept so that the next request carrying the same token
skips the signature check and the claims' JSON: a web player sends the same token with every
heartbeat, and verifying it again each time was about a sixth of a heartbeat's CPU.

Only the exact token text that was verified hits, so nothing unverified is ever trusted; its
expiry is checked on every hit; and everything authentication decides after the signature (the
user's current state, whether the login was ended) runs on every request as before. Bounded:
past `size` tokens the oldest verified goes first.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from lms.domain.auth.tokens import ACCESS, InvalidToken, TokenClaims, decode_token
from lms.settings import Settings

SIZE = 10_000  # about 5 MB of tokens and claims: a process's active players, and more


class VerifiedTokens:
    def __init__(self, size: int = SIZE, clock: Callable[[], float] = time.time) -> None:
        self._size = size
        self._clock = clock
        self._claims: dict[str, TokenClaims] = {}

    def access_claims(self, settings: Settings, token: str) -> TokenClaims:
        """decode_token(settings, token, (ACCESS,)), verified once per token text."""
        known = self._claims.get(token)
        if known is not None:
            if self._clock() < known.expires_at:
                return known
            del self._claims[token]
            raise InvalidToken("token has expired")
        claims = decode_token(settings, token, (ACCESS,))
        if len(self._claims) >= self._size:
            del self._claims[next(iter(self._claims))]  # the oldest: dicts keep insertion order
        self._claims[token] = claims
        return claims
