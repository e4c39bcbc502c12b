"""Which addresses a user-supplied URL may be fetched from: every non-public range refused, in
IPv4, IPv6 and the IPv6 forms that carry an IPv4 address; cloud metadata refused whatever the
allow-list says; web ports only; the allow-list's networks and host:port endpoints."""

from __future__ import annotations

import ipaddress

import pytest

from lms.errors import StartupError
from lms.integrations.fetch_policy import (
    Endpoint,
    FetchPolicy,
    FetchRefused,
    allow_entry,
    literal_address,
    non_public_reason,
)
from lms.settings import load_settings

REFUSED = {
    str(ipaddress.IPv4Address(0)): "unspecified",  # 0.0.0.0: this host, on Linux
    "0.1.2.3": "unspecified",
    "10.0.0.1": "private",
    "100.64.0.1": "carrier-grade NAT",
    "100.127.255.254": "carrier-grade NAT",
    "127.0.0.1": "loopback",
    "127.255.255.254": "loopback",
    "169.254.10.10": "link-local",
    "172.16.0.1": "private",
    "172.31.255.255": "private",
    "192.0.0.8": "reserved",
    "192.0.2.1": "documentation",
    "192.168.1.1": "private",
    "198.18.0.1": "reserved",
    "198.51.100.7": "documentation",
    "203.0.113.9": "documentation",
    "224.0.0.1": "multicast",
    "239.255.255.250": "multicast",
    "240.0.0.1": "reserved",
    "255.255.255.255": "reserved",
    "::": "unspecified",
    "::1": "loopback",
    "fe80::1": "link-local",
    "fc00::1": "unique-local",
    "fd12:3456::1": "unique-local",
    "fec0::1": "site-local",
    "ff02::1": "multicast",
    "2001:db8::1": "documentation",
    "2001::1": "reserved",  # Teredo
    "100::1": "reserved",
    "::ffff:127.0.0.1": "loopback",  # IPv4-mapped
    "::ffff:10.1.2.3": "private",
    "::ffff:169.254.10.10": "link-local",
    "64:ff9b::7f00:1": "loopback",  # NAT64 of 127.0.0.1
    "64:ff9b::a00:1": "private",  # NAT64 of 10.0.0.1
    "2002:7f00:1::1": "loopback",  # 6to4 of 127.0.0.1
    "2002:c0a8:101::1": "private",  # 6to4 of 192.168.1.1
    "::127.0.0.1": "reserved",  # IPv4-compatible (deprecated)
    "64:ff9b:1::a00:1": "reserved",  # NAT64 local use
    "4000::1": "reserved",  # outside 2000::/3
}
PUBLIC = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.216.34",
    "100.63.255.255",  # just below the carrier-grade NAT block
    "100.128.0.1",  # just above it
    "172.32.0.1",
    "2606:4700:4700::1111",
    "2a00:1450:4001:80b::200e",
    "64:ff9b::808:808",  # NAT64 of 8.8.8.8: what DNS64 answers on an IPv6-only host
    "2002:808:808::1",  # 6to4 of 8.8.8.8
]
METADATA = [
    "169.254.169.254",
    "169.254.170.2",
    "fd00:ec2::254",
    "100.100.100.200",
    "168.63.129.16",  # Azure's: a public address
    "::ffff:169.254.169.254",  # the same, as IPv6 forms of the IPv4 address
    "64:ff9b::a9fe:a9fe",
]


@pytest.mark.parametrize(("address", "kind"), sorted(REFUSED.items()))
def test_non_public_addresses_are_named(address: str, kind: str) -> None:
    reason = non_public_reason(ipaddress.ip_address(address))
    assert reason is not None and kind in reason
    with pytest.raises(FetchRefused, match=kind):
        FetchPolicy().check_address(address, 80, ipaddress.ip_address(address))


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass_on_web_ports(address: str) -> None:
    ip = ipaddress.ip_address(address)
    assert non_public_reason(ip) is None
    for port in (80, 443, 8080, 8443):
        FetchPolicy().check_address("media.example.com", port, ip)


@pytest.mark.parametrize("port", [21, 22, 25, 3306, 5432, 6379, 4222, 9200, 11211, 8000, 65535])
def test_other_ports_are_refused_on_public_addresses(port: int) -> None:
    with pytest.raises(FetchRefused, match=f"port {port} .* not a web port"):
        FetchPolicy().check_address("media.example.com", port, ipaddress.ip_address("8.8.8.8"))


def test_the_allow_list_opens_exactly_what_it_names() -> None:
    policy = FetchPolicy.from_entries(
        ["10.2.0.0/16", "127.0.0.1:8123", "media.internal:9000", "[fd00::5]:80"]
    )
    loopback = ipaddress.ip_address("127.0.0.1")
    policy.check_address("10.2.3.4", 5432, ipaddress.ip_address("10.2.3.4"))  # a network: any port
    policy.check_address("127.0.0.1", 8123, loopback)
    policy.check_address("127.1", 8123, loopback)  # the same address, written otherwise
    policy.check_address("media.internal", 9000, ipaddress.ip_address("10.9.9.9"))
    policy.check_address("MEDIA.internal.", 9000, ipaddress.ip_address("10.9.9.9"))
    policy.check_address("fd00::5", 80, ipaddress.ip_address("fd00::5"))
    refused = [
        ("10.3.0.1", 80, "10.3.0.1"),  # outside the network
        ("127.0.0.1", 8124, "127.0.0.1"),  # another port of the allowed address
        ("localhost", 8124, "127.0.0.1"),
        ("media.internal", 9001, "10.9.9.9"),  # another port of the allowed name
        ("other.internal", 9000, "10.9.9.9"),  # another name on the allowed port
        ("fd00::5", 81, "fd00::5"),
    ]
    for host, port, address in refused:
        with pytest.raises(FetchRefused):
            policy.check_address(host, port, ipaddress.ip_address(address))


@pytest.mark.parametrize("address", METADATA)
def test_cloud_metadata_is_refused_even_when_allowed(address: str) -> None:
    policy = FetchPolicy.from_entries(["0.0.0.0/0", "::/0", "metadata.internal:80"])
    with pytest.raises(FetchRefused, match="cloud metadata"):
        policy.check_address("metadata.internal", 80, ipaddress.ip_address(address))


@pytest.mark.parametrize(
    ("entry", "parsed"),
    [
        ("10.0.0.0/8", ipaddress.ip_network("10.0.0.0/8")),
        ("192.168.1.7", ipaddress.ip_network("192.168.1.7/32")),
        ("fd00::/8", ipaddress.ip_network("fd00::/8")),
        ("127.0.0.1:8123", Endpoint("127.0.0.1", 8123, ipaddress.ip_address("127.0.0.1"))),
        ("[::1]:8000", Endpoint("::1", 8000, ipaddress.ip_address("::1"))),
        ("Media.Internal:9000", Endpoint("media.internal", 9000, None)),
    ],
)
def test_allow_entries(entry: str, parsed: object) -> None:
    assert allow_entry(entry) == parsed


@pytest.mark.parametrize(
    "entry", ["media.internal", "media.internal:0", "media.internal:70000", "a b:80", ":80", "*"]
)
def test_bad_allow_entries_stop_the_settings(entry: str) -> None:
    with pytest.raises(ValueError, match=r"neither an IP network|not a host name"):
        allow_entry(entry)
    with pytest.raises(StartupError, match="LMS_VIDEO_FETCH_ALLOW"):
        load_settings({"LMS_VIDEO_FETCH_ALLOW": f"10.0.0.0/8,{entry}"})


def test_the_setting_defaults_to_refusing_everything_private() -> None:
    assert load_settings({}).video_fetch_allow == ()
    listed = load_settings({"LMS_VIDEO_FETCH_ALLOW": " 10.0.0.0/8 , media.internal:9000 "})
    assert listed.video_fetch_allow == ("10.0.0.0/8", "media.internal:9000")


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0x7f.0.0.1", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("[::1]", "::1"),
        ("::ffff:127.0.0.1", "::ffff:7f00:1"),
        ("example.com", None),
        ("cafe", None),
        ("1e100.net", None),
    ],
)
def test_literal_addresses_are_read_as_the_resolver_reads_them(
    host: str, address: str | None
) -> None:
    expected = ipaddress.ip_address(address) if address else None
    assert literal_address(host) == expected


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/v.mp4",
        "http://127.1/v.mp4",
        "http://2130706433/v.mp4",
        "http://0x7f000001/v.mp4",
        "http://[::1]:8080/v.mp4",
        "http://[::ffff:127.0.0.1]/v.mp4",
        "http://localhost/v.mp4",
        "http://media.localhost./v.mp4",
        "https://10.1.2.3/v.mp4",
        "https://192.168.0.10/v.mp4",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://100.100.100.200/latest/meta-data/",
        "http://8.8.8.8:22/v.mp4",
        "ftp://example.com/v.mp4",
        "file:///etc/passwd",
        "http://example.com:0/v.mp4",
        "http:///v.mp4",
    ],
)
def test_urls_refused_from_their_text_alone(url: str) -> None:
    with pytest.raises(FetchRefused):
        FetchPolicy().check_url_early(url)


@pytest.mark.parametrize(
    "url",
    [
        "https://videos.example.com/lesson.mp4",
        "http://8.8.8.8/v.mp4",
        "https://[2606:4700:4700::1111]/v.mp4",
        "http://internal.example.com/v.mp4",  # a name: its addresses are checked when fetched
    ],
)
def test_urls_that_may_be_fetched(url: str) -> None:
    FetchPolicy().check_url_early(url)


def test_allowed_literal_urls_pass_early() -> None:
    FetchPolicy.from_entries(["127.0.0.1:8123"]).check_url_early("http://127.0.0.1:8123/v.mp4")
