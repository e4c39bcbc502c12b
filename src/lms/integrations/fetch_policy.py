"""Which addresses the server may fetch a URL from on someone else's say-so (a lesson's videoUrl).

A creator chooses the URL, so without this rule the worker is a proxy into our own network: the
loopback interface, the private networks the database and NATS live on, the cloud's metadata
service. Only public unicast addresses are fetched, and only on the ports web servers use:

- refused: loopback, private (RFC 1918), carrier-grade NAT (100.64/10), link-local, unique-local,
  site-local, multicast, unspecified, documentation, benchmarking and other reserved ranges, and
  those same addresses written as IPv4-mapped, NAT64 (64:ff9b::/96) or 6to4 IPv6 addresses;
- cloud metadata services (169.254.169.254, fd00:ec2::254, 100.100.100.200, 168.63.129.16, ...)
  are refused even where the allow-list would cover them: credentials live there;
- ports: 80, 443, 8080 and 8443 only. A public address's other ports are mostly not web
  servers at all (SSH, SMTP, databases, admin consoles), and a body sent to them or an error
  they answer with could be read back through a transcript; no media host needs them;
- LMS_VIDEO_FETCH_ALLOW names the exceptions an operator vouches for: a network (`10.2.0.0/16`:
  any port there) or one endpoint (`media.internal:9000`, `127.0.0.1:8123`, `[fd00::5]:80`).

This module only decides; lms.integrations.safe_fetch applies the decision to the address each
connection is actually made to. Pure standard library, so the settings can check entries with it.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

SCHEMES = frozenset({"http", "https"})
WEB_PORTS = frozenset({80, 443, 8080, 8443})
DEFAULT_PORTS = {"http": 80, "https": 443}

# IANA's special-purpose registries: what is not reachable on the public internet, or not
# meant to be a destination. Anything listed is refused whatever DNS says.
_V4_REFUSED: tuple[tuple[str, str], ...] = (
    ("0.0.0.0/8", "an unspecified address"),  # 0.0.0.0 reaches this host on Linux
    ("10.0.0.0/8", "a private address"),
    ("100.64.0.0/10", "a carrier-grade NAT address"),
    ("127.0.0.0/8", "a loopback address"),
    ("169.254.0.0/16", "a link-local address"),
    ("172.16.0.0/12", "a private address"),
    ("192.0.0.0/24", "a reserved address"),
    ("192.0.2.0/24", "a documentation address"),
    ("192.88.99.0/24", "a reserved address"),
    ("192.168.0.0/16", "a private address"),
    ("198.18.0.0/15", "a reserved address"),
    ("198.51.100.0/24", "a documentation address"),
    ("203.0.113.0/24", "a documentation address"),
    ("224.0.0.0/4", "a multicast address"),
    ("240.0.0.0/4", "a reserved address"),  # 255.255.255.255 included
)
_V6_REFUSED: tuple[tuple[str, str], ...] = (
    ("::/128", "an unspecified address"),
    ("::1/128", "a loopback address"),
    ("100::/64", "a reserved address"),
    ("2001::/23", "a reserved address"),  # Teredo, benchmarking, ORCHID, ...
    ("2001:db8::/32", "a documentation address"),
    ("3fff::/20", "a documentation address"),
    ("5f00::/16", "a reserved address"),
    ("fc00::/7", "a unique-local address"),
    ("fe80::/10", "a link-local address"),
    ("fec0::/10", "a site-local address"),
    ("ff00::/8", "a multicast address"),
)
# Only this block of IPv6 is allocated for global unicast; the rest is reserved.
_V6_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")
# Addresses that carry an IPv4 address inside them: judged by the IPv4 address they reach.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_6TO4 = ipaddress.IPv6Network("2002::/16")
# Cloud instance metadata (AWS, ECS, GCP, Azure, Alibaba, Oracle, ...): refused even where an
# allow-list entry covers them. Most are link-local or unique-local anyway; Azure's is public.
_METADATA = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",
        "169.254.170.2",
        "169.254.169.253",
        "fd00:ec2::254",
        "fd20:ce::254",
        "100.100.100.200",
        "192.0.0.192",
        "168.63.129.16",
    )
)
_REFUSED = tuple((ipaddress.ip_network(n), why) for n, why in (*_V4_REFUSED, *_V6_REFUSED))
_HOSTNAME = re.compile(r"(?=.{1,253}$)[a-z0-9_]([a-z0-9_-]{0,62})(\.[a-z0-9_]([a-z0-9_-]{0,62}))*")
# What the C resolver also reads as an IPv4 address: 127.1, 2130706433, 0x7f.0.0.1, 0177.0.0.1.
_NUMERIC_HOST = re.compile(r"[0-9a-fA-FxX.]+")


class FetchRefused(Exception):
    """The URL, or an address it leads to, is not one the server fetches from."""


def _embedded_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.sixtofour


def non_public_reason(ip: IPAddress) -> str | None:
    """Why `ip` is not a public unicast address (e.g. "a loopback address"), or None."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            return "a scoped address"
        inner = _embedded_v4(ip)
        if inner is not None:
            why = non_public_reason(inner)
            return f"{why} (as IPv6 {ip})" if why else None
    for network, why in _REFUSED:
        if ip.version == network.version and ip in network:
            return why
    if isinstance(ip, ipaddress.IPv6Address) and ip not in _V6_GLOBAL_UNICAST:
        return "a reserved address"
    return None


def literal_address(host: str) -> IPAddress | None:
    """The address `host` names without DNS: an IP literal, or a numeric form the resolver reads
    as one (`127.1`, `2130706433`, `0x7f.1`); None for a name."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    if _NUMERIC_HOST.fullmatch(host) and any(c.isdigit() for c in host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def is_localhost(host: str) -> bool:
    """RFC 6761: `localhost` and every name under it are the loopback interface."""
    name = host.lower().rstrip(".")
    return name == "localhost" or name.endswith(".localhost")


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One allow-list entry of the form host:port."""

    host: str  # lower case; an IP literal without brackets
    port: int
    ip: IPAddress | None  # when host is an IP literal

    def matches(self, host: str, port: int, ip: IPAddress) -> bool:
        if port != self.port:
            return False
        if self.ip is not None:
            return ip == self.ip
        return host.lower().rstrip(".") == self.host


def allow_entry(text: str) -> IPNetwork | Endpoint:
    """An LMS_VIDEO_FETCH_ALLOW entry: an IP or CIDR network, or host:port; ValueError saying
    what is wrong otherwise."""
    text = text.strip()
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        pass
    if text.startswith("["):
        host, sep, port_text = text[1:].partition("]:")
    else:
        host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(
            f"{text!r} is neither an IP network (10.0.0.0/8) nor host:port (media.internal:9000)"
        )
    host = host.lower().rstrip(".")
    try:
        ip: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        ip = None
        if not _HOSTNAME.fullmatch(host):
            raise ValueError(f"{text!r}: {host!r} is not a host name") from None
    return Endpoint(host, int(port_text), ip)


@dataclass(frozen=True, slots=True)
class FetchPolicy:
    """Where user-supplied URLs may be fetched from. The default refuses every non-public
    address and every port but the web's; `allow` lists what the operator vouches for."""

    networks: tuple[IPNetwork, ...] = ()
    endpoints: tuple[Endpoint, ...] = ()
    ports: frozenset[int] = field(default=WEB_PORTS)
    max_redirects: int = 5

    @classmethod
    def from_entries(cls, entries: Iterable[str]) -> FetchPolicy:
        networks: list[IPNetwork] = []
        endpoints: list[Endpoint] = []
        for text in entries:
            entry = allow_entry(text)
            if isinstance(entry, Endpoint):
                endpoints.append(entry)
            else:
                networks.append(entry)
        return cls(tuple(networks), tuple(endpoints))

    def check_scheme(self, scheme: str) -> None:
        if scheme.lower() not in SCHEMES:
            raise FetchRefused(f"not an http(s) URL (scheme {scheme or 'missing'})")

    def check_address(self, host: str, port: int, ip: IPAddress) -> None:
        """Refuse connecting to `ip` on `port` for a URL naming `host` (FetchRefused says why)."""
        named = host if literal_address(host) == ip else f"{host} ({ip})"
        inner = _embedded_v4(ip) if isinstance(ip, ipaddress.IPv6Address) else None
        if ip in _METADATA or inner in _METADATA:
            raise FetchRefused(f"{named} is a cloud metadata address")
        if any(e.matches(host, port, ip) for e in self.endpoints) or any(
            ip.version == n.version and ip in n for n in self.networks
        ):
            return
        why = non_public_reason(ip)
        if why is not None:
            raise FetchRefused(f"{named} is {why}, not a public one")
        if port not in self.ports:
            allowed = ", ".join(str(p) for p in sorted(self.ports))
            raise FetchRefused(f"port {port} of {named} is not a web port ({allowed})")

    def check_url_early(self, url: str) -> None:
        """What can be told from the URL alone, without DNS: an http(s) URL whose host is not a
        non-public address written literally (`http://10.0.0.5/`, `http://[::1]/`,
        `http://2130706433/`) or `localhost`. For quick feedback when the URL is given; the
        fetch itself checks every address it connects to."""
        parts = urlsplit(url)
        self.check_scheme(parts.scheme)
        host = parts.hostname or ""
        if not host:
            raise FetchRefused("the URL names no host")
        try:
            port = parts.port
        except ValueError:
            port = 0
        if port == 0:
            raise FetchRefused("the URL's port is not a number from 1 to 65535")
        port = port or DEFAULT_PORTS[parts.scheme.lower()]
        ip = literal_address(host)
        if ip is None and is_localhost(host):
            ip = ipaddress.IPv4Address("127.0.0.1")
        if ip is not None:
            self.check_address(host, port, ip)
