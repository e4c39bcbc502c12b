"""Who may read the Prometheus metrics: addresses in LMS_METRICS_ALLOW and callers presenting
LMS_METRICS_TOKEN as a bearer token (both, when both are set). One rule for the API's /metrics
and a worker's metrics port, so neither is the open side door of the other. With neither set,
whoever reaches them may read them: the metrics hold no personal data, but they do tell how busy
the service is and which routes exist, so a deployment reachable from outside sets one."""

from __future__ import annotations

import enum
import hmac
import ipaddress
from dataclasses import dataclass
from functools import cache

from lms.settings import Settings

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Verdict(enum.Enum):
    ALLOWED = enum.auto()
    ADDRESS_REFUSED = enum.auto()  # 403: no token makes this caller welcome
    TOKEN_MISSING = enum.auto()  # 401 (missing or wrong): the right bearer token would do


@dataclass(frozen=True, slots=True)
class MetricsAccess:
    token: str | None
    networks: tuple[Network, ...]

    @property
    def open(self) -> bool:
        return self.token is None and not self.networks

    def check(self, address: str | None, authorization: str | None) -> Verdict:
        """`address`: the caller's IP; `authorization`: its Authorization header, if any."""
        if self.networks and not _within(address, self.networks):
            return Verdict.ADDRESS_REFUSED
        if self.token is not None and not _bearer_is(authorization, self.token):
            return Verdict.TOKEN_MISSING
        return Verdict.ALLOWED


@cache
def metrics_access(settings: Settings) -> MetricsAccess:
    """The rule for `settings` (built once: the API checks it on every scrape)."""
    return MetricsAccess(
        token=settings.metrics_token or None,
        networks=tuple(ipaddress.ip_network(n, strict=False) for n in settings.metrics_allow),
    )


def _within(address: str | None, networks: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:  # no address (a Unix socket, a test transport): not on the list
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # a dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d
    return any(ip in net for net in networks)


def _bearer_is(authorization: str | None, token: str) -> bool:
    scheme, _, presented = (authorization or "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    # Constant time: the comparison must not tell a prober how much of the token it got right.
    return hmac.compare_digest(presented.strip().encode(), token.encode())
