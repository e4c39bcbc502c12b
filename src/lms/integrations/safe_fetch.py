"""GET a URL someone else chose, without becoming a proxy into our own network.

Checking a URL's host and then handing the URL to an HTTP client leaves a gap: the client
resolves the name again, and a DNS answer can change in between (rebinding), or a redirect can
lead anywhere. So the check sits where the connection is made: the network backend under
httpcore resolves the host itself, refuses unless every address it resolves to passes
lms.integrations.fetch_policy, and connects to one of exactly those addresses. TLS still
verifies the certificate against the host named in the URL (httpcore passes the URL's host as
the server name). Redirects are followed by hand, at most FetchPolicy.max_redirects of them, and
each hop's scheme is checked again; its connection goes through the same backend, so its
addresses are too. No proxy from the environment is used (a proxy would do its own resolving),
and only GET is sent.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import socket
import ssl
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

import httpcore
import httpx

from lms.integrations.fetch_policy import FetchPolicy, FetchRefused, IPAddress

REDIRECTS = frozenset({301, 302, 303, 307, 308})
# Every way httpcore reports a failed exchange; none of them shares a base class but Exception.
_TRANSPORT_ERRORS: tuple[type[Exception], ...] = (
    httpcore.TimeoutException,
    httpcore.NetworkError,
    httpcore.ProtocolError,
    httpcore.UnsupportedProtocol,
    httpcore.ProxyError,
    httpcore.ConnectionNotAvailable,
)


class FetchFailed(Exception):
    """The exchange failed: unreachable, timed out, or not spoken as HTTP."""


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, connecting only to addresses the policy accepts."""

    def __init__(self, policy: FetchPolicy, inner: httpcore.AsyncNetworkBackend | None = None):
        self._policy = policy
        self._inner = inner or httpcore.AnyIOBackend()

    async def resolve(self, host: str, port: int, within: float | None) -> list[IPAddress]:
        """checked_addresses, its failures as httpcore's."""
        try:
            async with asyncio.timeout(within):
                return await checked_addresses(self._policy, host, port)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from None
        except ConnectionError as exc:
            raise httpcore.ConnectError(str(exc)) from None

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface passes it so
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        failure: httpcore.ConnectError | httpcore.ConnectTimeout | None = None
        for ip in await self.resolve(host, port, timeout):
            try:
                # The address itself, not the name: nothing is resolved again after the check.
                return await self._inner.connect_tcp(
                    str(ip), port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        raise failure or httpcore.ConnectError(f"cannot connect to {host}")

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface passes it so
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise FetchRefused("a Unix socket is never fetched from")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


async def checked_addresses(policy: FetchPolicy, host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to, each checked; FetchRefused if any is refused (one bad
    address in the answer and a later connection attempt could land on it), ConnectionError if
    the name does not resolve. Connect to these addresses themselves: nothing is resolved again
    after the check."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ConnectionError(f"cannot resolve {host}: {exc.strerror}") from None
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        ip = ipaddress.ip_address(_sockaddr_host(sockaddr))
        policy.check_address(host, port, ip)
        if ip not in addresses:
            addresses.append(ip)
    if not addresses:
        raise ConnectionError(f"{host} resolves to no address")
    return addresses


def _sockaddr_host(sockaddr: tuple[Any, ...]) -> str:
    host = str(sockaddr[0])
    # An IPv6 link-local answer carries its interface: keep it, so the policy sees the scope.
    if len(sockaddr) == 4 and sockaddr[3]:
        host = f"{host.partition('%')[0]}%{sockaddr[3]}"
    return host


@dataclass(frozen=True, slots=True)
class Fetched:
    """The final (non-redirect) response; `chunks` yields the body as it arrives."""

    status: int
    headers: dict[str, str]  # lower-case names; a repeated header keeps its last value
    chunks: AsyncIterator[bytes]


def _parse(url: str | httpx.URL, policy: FetchPolicy) -> httpx.URL:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise FetchRefused(f"not a valid URL ({exc})") from None
    policy.check_scheme(parsed.scheme)
    if not parsed.host:
        raise FetchRefused("the URL names no host")
    return parsed


def _request_url(url: httpx.URL) -> httpcore.URL:
    return httpcore.URL(
        scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path
    )


def _basic_auth(url: httpx.URL) -> list[tuple[bytes, bytes]]:
    if not url.userinfo:
        return []
    credentials = f"{url.username}:{url.password}".encode()
    return [(b"Authorization", b"Basic " + base64.b64encode(credentials))]


@contextlib.asynccontextmanager
async def guarded_get(
    url: str,
    policy: FetchPolicy,
    *,
    stall_seconds: float,
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncIterator[Fetched]:
    """GET `url`, following redirects under `policy`; yields the final response while its body
    is open. FetchRefused when the policy says no (at any hop), FetchFailed when the exchange
    fails, body reads included. `stall_seconds` bounds each wait (resolving, connecting, every
    read), not the whole transfer: the caller bounds that. `ssl_context` holds the trusted CAs
    (certifi's bundle, as httpx uses, by default: a slim container may have no system one)."""
    first = current = _parse(url, policy)
    timeouts = dict.fromkeys(("connect", "read", "write", "pool"), stall_seconds)
    pool = httpcore.AsyncConnectionPool(
        ssl_context=ssl_context or httpcore.default_ssl_context(),
        network_backend=GuardedBackend(policy),
        max_connections=1,
        retries=0,
    )
    try:
        async with pool:
            for _hop in range(policy.max_redirects + 1):
                headers = [
                    (b"Host", current.netloc),
                    (b"Accept-Encoding", b"identity"),  # the bytes as stored, for FFmpeg
                    (b"User-Agent", b"lms-worker"),
                ]
                if (current.scheme, current.host, current.port) == (
                    first.scheme,
                    first.host,
                    first.port,
                ):
                    # The URL's own credentials, and never to another origin a redirect names.
                    headers += _basic_auth(first)
                async with pool.stream(
                    "GET",
                    _request_url(current),
                    headers=headers,
                    extensions={"timeout": timeouts},
                ) as response:
                    location = _header(response.headers, b"location")
                    if response.status not in REDIRECTS or location is None:
                        yield Fetched(
                            status=response.status,
                            headers={
                                k.decode("latin-1").lower(): v.decode("latin-1")
                                for k, v in response.headers
                            },
                            chunks=response.aiter_stream(),
                        )
                        return
                current = _parse(current.join(location), policy)
            raise FetchRefused(f"more than {policy.max_redirects} redirects")
    except _TRANSPORT_ERRORS as exc:
        raise FetchFailed(_describe_error(exc)) from exc


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _describe_error(exc: Exception) -> str:
    detail = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {detail[0]}" if detail else type(exc).__name__


__all__ = ["FetchFailed", "FetchPolicy", "FetchRefused", "Fetched", "GuardedBackend", "guarded_get"]
