"""The client IP for rate limits (lms.api.client_ip): X-Forwarded-For counts only via trusted
proxies."""

from __future__ import annotations

from typing import Any, cast

import pytest
from litestar import Request

from lms.api.client_ip import client_ip
from lms.domain.errors import Invalid

TRUSTED = ("10.0.0.0/8",)


def request(peer: str | None, forwarded: str | list[str] | None = None) -> Request[Any, Any, Any]:
    values = [forwarded] if isinstance(forwarded, str) else (forwarded or [])
    headers = [(b"x-forwarded-for", value.encode()) for value in values]
    scope: dict[str, Any] = {
        "type": "http",
        "method": "POST",
        "path": "/auth/login",
        "query_string": b"",
        "headers": [(b"host", b"testserver"), *headers],
        "client": (peer, 40000) if peer is not None else None,
    }
    return Request(cast(Any, scope))


def test_without_trusted_proxies_the_header_is_ignored() -> None:
    assert client_ip(request("127.0.0.1", "10.9.9.9"), ()) == "127.0.0.1"
    assert client_ip(request("203.0.113.7", "198.51.100.1, 10.0.0.1"), ()) == "203.0.113.7"
    assert client_ip(request("203.0.113.7"), ()) == "203.0.113.7"


def test_via_a_trusted_proxy_the_rightmost_untrusted_hop_is_the_client() -> None:
    # The client may forge the left part; the proxies append what they saw on the right.
    chain = "6.6.6.6, 198.51.100.23, 10.0.0.7"
    assert client_ip(request("10.1.2.3", chain), TRUSTED) == "198.51.100.23"
    assert client_ip(request("10.1.2.3", "198.51.100.23"), TRUSTED) == "198.51.100.23"
    assert client_ip(request("10.1.2.3", " 198.51.100.23 ,10.2.2.2 "), TRUSTED) == "198.51.100.23"


def test_an_all_trusted_chain_gives_the_first_hop() -> None:
    assert client_ip(request("10.1.2.3", "10.0.0.9, 10.0.0.8"), TRUSTED) == "10.0.0.9"


def test_a_trusted_peer_without_the_header_is_the_client() -> None:
    assert client_ip(request("10.1.2.3"), TRUSTED) == "10.1.2.3"
    assert client_ip(request("10.1.2.3", ""), TRUSTED) == "10.1.2.3"
    assert client_ip(request("10.1.2.3", " , ,"), TRUSTED) == "10.1.2.3"


def test_an_untrusted_peer_cannot_choose_its_address() -> None:
    assert client_ip(request("203.0.113.7", "10.9.9.9"), TRUSTED) == "203.0.113.7"
    assert client_ip(request("203.0.113.7", "198.51.100.1"), TRUSTED) == "203.0.113.7"


@pytest.mark.parametrize(
    "hop",
    ["not-an-ip", "1.2.3.4\x00", "9" * 300, "fe80::1%" + "x" * 100, "1.2.3.4:80", "[2001:db8::1]"],
)
def test_a_client_hop_that_is_no_address_is_a_malformed_header(hop: str) -> None:
    # It would become a rate-limit key and be stored with the session: refuse it (400) rather
    # than key on, or store, whatever text the client chose.
    with pytest.raises(Invalid, match="X-Forwarded-For"):
        client_ip(request("10.1.2.3", f"1.2.3.4, {hop}"), TRUSTED)


def test_garbage_left_of_the_client_is_not_read() -> None:
    chain = "not-an-ip, \x00, 198.51.100.23, 10.0.0.7"
    assert client_ip(request("10.1.2.3", chain), TRUSTED) == "198.51.100.23"


def test_the_client_address_is_written_the_standard_way() -> None:
    assert client_ip(request("10.1.2.3", "2001:DB8:0:0::1"), TRUSTED) == "2001:db8::1"


def test_single_addresses_and_ipv6_networks_can_be_trusted() -> None:
    trusted = ("127.0.0.1", "fd00::/8")
    assert client_ip(request("127.0.0.1", "2001:db8::1"), trusted) == "2001:db8::1"
    assert client_ip(request("fd00::5", "2001:db8::2, fd00::9"), trusted) == "2001:db8::2"
    assert client_ip(request("127.0.0.2", "2001:db8::1"), trusted) == "127.0.0.2"


@pytest.mark.parametrize("trusted", [(), TRUSTED])
def test_no_client_in_the_scope(trusted: tuple[str, ...]) -> None:
    assert client_ip(request(None, "198.51.100.1"), trusted) == "unknown"


def test_repeated_header_lines_are_one_list_in_order() -> None:
    # RFC 9110 5.3: several X-Forwarded-For lines mean their values joined by commas. A proxy that
    # appends its own line (HAProxy's `option forwardfor`) puts the address it saw last; the
    # client's forged line comes first and must not be taken as the client.
    forged_then_real = ["6.6.6.6", "198.51.100.23"]
    assert client_ip(request("10.1.2.3", forged_then_real), TRUSTED) == "198.51.100.23"
