"""The client's IP address, looking through X-Forwarded-For only when the peer is a proxy we
were told to trust (LMS_TRUSTED_PROXIES); otherwise a client could pick its own rate-limit key."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from functools import cache
from typing import Any

from litestar.connection import ASGIConnection

from lms.domain.errors import Invalid

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@cache
def _networks(trusted: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(t, strict=False) for t in trusted)


def _is_trusted(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)


def client_ip(connection: ASGIConnection[Any, Any, Any, Any], trusted: tuple[str, ...]) -> str:
    return client_ip_of(
        connection.scope.get("client"),
        lambda: connection.headers.getall("x-forwarded-for", []),
        trusted,
    )


def client_ip_of(
    client: tuple[str, int] | list[Any] | None,
    forwarded_for: Callable[[], list[str]],
    trusted: tuple[str, ...],
) -> str:
    """The address of `client` (the ASGI scope's), or the one the X-Forwarded-For values (read
    only when the peer is trusted) name for it."""
    peer = client[0] if client else "unknown"
    networks = _networks(trusted)
    if not networks or not _is_trusted(peer, networks):
        return peer
    # Repeated header lines are one comma-separated list (RFC 9110 5.3), in order.
    forwarded = ",".join(forwarded_for())
    hops = [h.strip() for h in forwarded.split(",") if h.strip()]
    # The rightmost address a trusted proxy did not add is the client.
    nearest = next((hop for hop in reversed(hops) if not _is_trusted(hop, networks)), None)
    if nearest is None:
        return hops[0] if hops else peer
    # It becomes a rate-limit key and is stored with the session: a hop that is not an address
    # (forged text, a NUL, an IPv6 scope of any length) is a malformed header, not a client.
    try:
        address = ipaddress.ip_address(nearest)
    except ValueError:
        address = None
    if address is None or getattr(address, "scope_id", None):
        raise Invalid("X-Forwarded-For does not name the client by its IP address")
    return str(address)
