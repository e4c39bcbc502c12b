"""Revocation status as W3C Bitstring Status List v1.0: every credential carries a
`BitstringStatusListEntry` naming one bit of a published list, and the list itself is a
`BitstringStatusListCredential` signed like the certificates (VC-JWT), its bit set once the
certificate is revoked.

Numbers come from the `certificate_status_seq` sequence: number n is bit n % LIST_SIZE of list
n // LIST_SIZE + 1, so lists fill in issue order and a new one starts when one is full. The
credential states its issue date anyway, so the order of the bits tells a verifier nothing new;
and a verifier fetches a whole list, never asking about one certificate (herd privacy).
"""

from __future__ import annotations

import base64
import gzip
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from lms.domain.certificates.keys import SigningKey

# 131,072 bits (16 KB): the spec's minimum size, which keeps each list's herd large.
LIST_SIZE = 131_072
PURPOSE = "revocation"
# How long a fetched list may be reused (Cache-Control max-age, and the list's `ttl`). A
# revocation shows in the list at once; a verifier or cache holding a copy sees it within this
# many seconds, the cache part of the bound README states for /certificates/verify.
STATUS_LIST_MAX_AGE = 25  # as VERIFY_MAX_AGE (certificates.controllers)
# A signed list is good for a day (validUntil): an old copy replayed later is refused by
# verifiers that check the window, so it cannot un-revoke a certificate for longer than that.
LIST_VALIDITY = timedelta(days=1)
# A process re-signs its copy of an unchanged list at this age, well inside LIST_VALIDITY.
RESIGN_AFTER = timedelta(hours=1)
CONTEXT = ["https://www.w3.org/ns/credentials/v2"]


def position(number: int) -> tuple[int, int]:
    """(list id, index in that list) of the sequence's `number`."""
    return number // LIST_SIZE + 1, number % LIST_SIZE


def list_url(base_url: str, list_id: int) -> str:
    return f"{base_url}/certificates/status/{list_id}"


def entry(base_url: str, list_id: int, index: int) -> dict[str, str]:
    """The credential's `credentialStatus` (the index is a string, as the spec says; the `id`
    is what Open Badges 3.0's schema requires of a status)."""
    url = list_url(base_url, list_id)
    return {
        "id": f"{url}#{index}",
        "type": "BitstringStatusListEntry",
        "statusPurpose": PURPOSE,
        "statusListIndex": str(index),
        "statusListCredential": url,
    }


def encoded_list(revoked: Iterable[int]) -> str:
    """The spec's encodedList: the bitstring (bit 0 the most significant bit of the first byte),
    GZIP-compressed, base64url without padding, with the multibase prefix 'u'."""
    bits = bytearray(LIST_SIZE // 8)
    for index in revoked:
        bits[index // 8] |= 0x80 >> (index % 8)
    # mtime=0: the same list always compresses to the same bytes.
    compressed = gzip.compress(bytes(bits), compresslevel=9, mtime=0)
    return "u" + base64.urlsafe_b64encode(compressed).rstrip(b"=").decode()


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def credential(
    base_url: str, list_id: int, revoked: Iterable[int], signed_at: datetime
) -> dict[str, Any]:
    """The status list credential (unsigned), issued by the issuer of the certificates."""
    url = list_url(base_url, list_id)
    return {
        "@context": CONTEXT,
        "id": url,
        "type": ["VerifiableCredential", "BitstringStatusListCredential"],
        "issuer": base_url,
        "validFrom": _iso(signed_at),
        "validUntil": _iso(signed_at + LIST_VALIDITY),
        "credentialSubject": {
            "id": f"{url}#list",
            "type": "BitstringStatusList",
            "statusPurpose": PURPOSE,
            "encodedList": encoded_list(revoked),
            "ttl": STATUS_LIST_MAX_AGE * 1000,  # milliseconds, per the spec
        },
    }


def sign(document: dict[str, Any], key: SigningKey, base_url: str) -> str:
    """The list as a VC-JWT, in the certificates' own form: the credential plus `iss`, `jti`,
    `nbf` and `exp` (its validity window), signed by the current key."""
    valid_from = datetime.strptime(document["validFrom"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    valid_until = datetime.strptime(document["validUntil"], "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=UTC
    )
    payload = {
        **document,
        "iss": document["issuer"],
        "jti": document["id"],
        "nbf": int(valid_from.timestamp()),
        "exp": int(valid_until.timestamp()),
    }
    return jwt.encode(
        payload, key.private_key, algorithm=key.algorithm, headers={"kid": key.kid(base_url)}
    )
