"""A certificate's VC-JWT checked as an outside verifier checks it: with the published key its
`kid` names, and the algorithm that key signs with (RS256, ES256 or EdDSA, as lms offers them)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import jwt


@dataclass(frozen=True)
class PublishedKey:
    algorithm: str
    key: Any  # the public key object PyJWK builds


def published_keys(rows: Iterable[Mapping[str, Any]]) -> dict[str, PublishedKey]:
    """kid -> key, from `certificate_signing_keys` rows (public_jwk as jsonb text or a dict). The
    stored JWK has only the RFC 7638 members; its algorithm follows from them as lms's JWK set
    says it (lms.domain.certificates.keys.algorithm_of_jwk), an `alg` member taking precedence."""
    from lms.domain.certificates.keys import algorithm_of_jwk

    keys = {}
    for row in rows:
        raw = row["public_jwk"]
        jwk = json.loads(raw) if isinstance(raw, str) else dict(raw)
        algorithm = jwk.get("alg") or algorithm_of_jwk(jwk)
        keys[row["kid"]] = PublishedKey(algorithm, jwt.PyJWK(jwk, algorithm=algorithm).key)
    return keys


class UnknownKey(jwt.InvalidTokenError):
    """The token's kid names no published key."""


def verified_claims(
    token: str, keys: Mapping[str, PublishedKey], *, check_times: bool = True
) -> dict[str, Any]:
    """The claims of `token` once its signature verified. The algorithm is the key's, never the
    one the token's header claims: a header saying another one is refused (no algorithm
    confusion), as a conformant verifier refuses it."""
    header = jwt.get_unverified_header(token)
    kid = header.get("kid")
    published = keys.get(kid) if isinstance(kid, str) else None
    if published is None:
        raise UnknownKey(f"the kid {kid!r} names no published key")
    if header.get("alg") != published.algorithm:
        raise jwt.InvalidAlgorithmError(
            f"the header says {header.get('alg')!r}, the key signs with {published.algorithm}"
        )
    claims: dict[str, Any] = jwt.decode(
        token,
        published.key,
        algorithms=[published.algorithm],
        options={"verify_exp": check_times, "verify_nbf": check_times},
    )
    return claims


def status_entry_matches(claims: Mapping[str, Any], list_id: int | None, index: int | None) -> bool:
    """Whether the credential's `credentialStatus` names the bit its certificate row holds
    (status_list, status_index: allocated from certificate_status_seq when it was issued)."""
    entry = claims.get("credentialStatus")
    if list_id is None or index is None or not isinstance(entry, dict):
        return False
    url = str(entry.get("statusListCredential", ""))
    return (
        entry.get("type") == "BitstringStatusListEntry"
        and entry.get("statusPurpose") == "revocation"
        and entry.get("statusListIndex") == str(index)
        and url.endswith(f"/certificates/status/{list_id}")
        and entry.get("id") == f"{url}#{index}"
    )
