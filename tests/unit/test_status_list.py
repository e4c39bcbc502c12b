"""The Bitstring Status List encoding, decoded by an independent implementation (openbadgeslib's),
and the numbering: each sequence number is one bit of one list, a new list when one is full."""

from __future__ import annotations

import pytest
from openbadgeslib.ob3.status import decode_encoded_list, set_indices

from lms.domain.certificates.status_list import LIST_SIZE, encoded_list, entry, position


@pytest.mark.parametrize("revoked", [set(), {0}, {7, 8}, {LIST_SIZE - 1}, {1, 94567, 131000}])
def test_the_encoded_list_holds_exactly_the_revoked_bits(revoked: set[int]) -> None:
    encoded = encoded_list(revoked)
    assert encoded.startswith("u") and "=" not in encoded  # multibase base64url, no padding
    bits = decode_encoded_list(encoded)
    assert len(bits) == LIST_SIZE // 8 == 16_384
    assert set_indices(bits) == revoked
    assert encoded_list(sorted(revoked)) == encoded  # the same list, the same bytes


def test_numbers_fill_one_list_then_the_next() -> None:
    assert position(0) == (1, 0)
    assert position(LIST_SIZE - 1) == (1, LIST_SIZE - 1)
    assert position(LIST_SIZE) == (2, 0)
    assert position(5 * LIST_SIZE + 42) == (6, 42)


def test_the_entry_names_its_list_and_bit() -> None:
    assert entry("https://lms.example.test", 3, 94567) == {
        "id": "https://lms.example.test/certificates/status/3#94567",
        "type": "BitstringStatusListEntry",
        "statusPurpose": "revocation",
        "statusListIndex": "94567",
        "statusListCredential": "https://lms.example.test/certificates/status/3",
    }
