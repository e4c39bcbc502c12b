"""The guarded GET against real local HTTP servers: a refused address is never connected to (the
server there sees no request), whatever form the URL writes it in and at whichever redirect it
appears; the connection is made to the address that was checked, not to a name resolved again;
credentials stay with the URL's own origin."""

from __future__ import annotations

import base64
import datetime
import ssl
from collections.abc import Iterable, Iterator
from typing import Any

import httpcore
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from lms.integrations.safe_fetch import (
    FetchFailed,
    FetchPolicy,
    FetchRefused,
    GuardedBackend,
    guarded_get,
)
from lms.netutil import free_port
from tests.support.media_server import MediaServer, media_server


@pytest.fixture
def allowed() -> Iterator[MediaServer]:
    with media_server() as server:
        yield server


@pytest.fixture
def target() -> Iterator[MediaServer]:
    """A server on loopback the policy does not name: it must never see a request."""
    with media_server() as server:
        server.serve("/secret", b"internal data")
        yield server


async def fetch(url: str, policy: FetchPolicy) -> tuple[int, bytes]:
    async with guarded_get(url, policy, stall_seconds=5) as response:
        return response.status, b"".join([chunk async for chunk in response.chunks])


def loopback_forms(port: int) -> list[str]:
    return [
        f"http://127.0.0.1:{port}/secret",
        f"http://localhost:{port}/secret",
        f"http://127.1:{port}/secret",
        f"http://2130706433:{port}/secret",
        f"http://0x7f000001:{port}/secret",
        f"http://[::ffff:127.0.0.1]:{port}/secret",
        f"http://[::1]:{port}/secret",
        f"http://0.0.0.0:{port}/secret",
    ]


async def test_loopback_is_refused_in_every_spelling(target: MediaServer) -> None:
    for url in loopback_forms(target.port):
        with pytest.raises(FetchRefused, match=r"loopback|unspecified"):
            await fetch(url, FetchPolicy())
    assert target.requests == []


async def test_an_allowed_endpoint_is_fetched_and_its_neighbours_are_not(
    allowed: MediaServer, target: MediaServer
) -> None:
    policy = FetchPolicy.from_entries([allowed.endpoint])
    url = allowed.serve("/v.mp4", b"video bytes")
    assert await fetch(url, policy) == (200, b"video bytes")
    for url in loopback_forms(target.port):
        with pytest.raises(FetchRefused):
            await fetch(url, policy)
    assert target.requests == []


async def test_every_redirect_is_checked_again(allowed: MediaServer, target: MediaServer) -> None:
    policy = FetchPolicy.from_entries([allowed.endpoint])
    allowed.serve("/v.mp4", b"video bytes")
    # Within the allowed server: followed.
    assert await fetch(allowed.redirect("/moved", "/v.mp4"), policy) == (200, b"video bytes")
    # From the allowed server to loopback, in several spellings and every redirect status.
    for status in (301, 302, 303, 307, 308):
        for index, location in enumerate(loopback_forms(target.port)):
            url = allowed.redirect(f"/to-{status}-{index}", location, status)
            with pytest.raises(FetchRefused):
                await fetch(url, policy)
    for location in ("file:///etc/passwd", "gopher://127.0.0.1:70/", "ftp://example.com/x"):
        with pytest.raises(FetchRefused, match="not an http"):
            await fetch(allowed.redirect("/scheme", location), policy)
    assert target.requests == []


async def test_redirects_are_capped(allowed: MediaServer) -> None:
    policy = FetchPolicy.from_entries([allowed.endpoint])
    url = allowed.redirect("/loop", "/loop")
    with pytest.raises(FetchRefused, match="more than 5 redirects"):
        await fetch(url, policy)
    assert allowed.paths() == ["/loop"] * 6  # the first request and five redirects


class RecordingBackend(httpcore.AnyIOBackend):
    """httpcore's own backend, noting the host it is asked to connect to."""

    def __init__(self) -> None:
        self.hosts: list[str] = []

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface passes it so
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.hosts.append(host)
        return await super().connect_tcp(host, port, timeout, local_address, socket_options)


async def test_the_connection_goes_to_the_address_that_was_checked(allowed: MediaServer) -> None:
    """No second resolution after the check (DNS rebinding): the socket is opened on an address
    the guard resolved and accepted, not on the name."""
    policy = FetchPolicy.from_entries([f"localhost:{allowed.port}"])
    inner = RecordingBackend()
    backend = GuardedBackend(policy, inner)
    checked = {str(ip) for ip in await backend.resolve("localhost", allowed.port, 5)}
    stream = await backend.connect_tcp("localhost", allowed.port, timeout=5)
    await stream.aclose()
    assert inner.hosts and set(inner.hosts) <= checked
    assert "localhost" not in inner.hosts


async def test_a_name_with_any_refused_address_is_refused() -> None:
    # localhost resolves to 127.0.0.1 (and ::1 where configured): all of them are checked.
    with pytest.raises(FetchRefused, match="loopback"):
        await GuardedBackend(FetchPolicy()).resolve("localhost", 80, 5)


async def test_credentials_go_only_to_the_urls_own_origin(allowed: MediaServer) -> None:
    with media_server() as other:
        other.serve("/v.mp4", b"elsewhere")
        policy = FetchPolicy.from_entries([allowed.endpoint, other.endpoint])
        allowed.redirect("/away", f"{other.url}/v.mp4")
        url = f"http://user:secret@127.0.0.1:{allowed.port}/away"
        assert await fetch(url, policy) == (200, b"elsewhere")
        sent = base64.b64encode(b"user:secret").decode()
        assert allowed.requests[0].headers.get("authorization") == f"Basic {sent}"
        assert "authorization" not in other.requests[0].headers


async def test_an_allowed_address_with_nothing_listening_fails_plainly() -> None:
    port = free_port()
    policy = FetchPolicy.from_entries([f"127.0.0.1:{port}"])
    with pytest.raises(FetchFailed, match="ConnectError"):
        await fetch(f"http://127.0.0.1:{port}/v.mp4", policy)


def certificate(
    subject: str,
    public_key: ec.EllipticCurvePublicKey,
    signer: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate | None = None,
) -> x509.Certificate:
    """A CA certificate (no issuer: self-signed), or a server certificate naming only the DNS
    host `subject`, signed by `issuer`."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.subject if issuer else name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
    )
    if issuer is None:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), True)
    else:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(subject)]), False)
    return builder.sign(signer, hashes.SHA256())


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(a server context whose certificate names only the host `localhost`, a client context
    trusting the CA that signed it)."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    ca = certificate("Test CA", ca_key.public_key(), ca_key)
    leaf = certificate("localhost", leaf_key.public_key(), ca_key, ca)
    pem = tmp_path_factory.mktemp("tls") / "leaf.pem"
    pem.write_bytes(
        leaf.public_bytes(serialization.Encoding.PEM)
        + leaf_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(pem)
    client = ssl.create_default_context(cadata=ca.public_bytes(serialization.Encoding.PEM).decode())
    return server, client


async def test_tls_verifies_the_name_in_the_url_not_the_address_connected_to(
    tls: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    """The socket goes to the checked address (127.0.0.1), yet the certificate is checked
    against the URL's host: a certificate for `localhost` passes for https://localhost/ and
    fails for https://127.0.0.1/, which it does not name."""
    server_context, client_context = tls
    with media_server(server_context) as server:
        server.serve("/v.mp4", b"video bytes")
        policy = FetchPolicy.from_entries([f"localhost:{server.port}", server.endpoint])
        async with guarded_get(
            f"https://localhost:{server.port}/v.mp4",
            policy,
            stall_seconds=5,
            ssl_context=client_context,
        ) as response:
            assert response.status == 200
            assert b"".join([c async for c in response.chunks]) == b"video bytes"
        with pytest.raises(FetchFailed, match=r"CERTIFICATE_VERIFY_FAILED|IP address mismatch"):
            async with guarded_get(
                f"https://127.0.0.1:{server.port}/v.mp4",
                policy,
                stall_seconds=5,
                ssl_context=client_context,
            ):
                pass
        with pytest.raises(FetchFailed, match="CERTIFICATE_VERIFY_FAILED"):
            # The default trust store does not know the test CA: verification is on.
            async with guarded_get(
                f"https://localhost:{server.port}/v.mp4", policy, stall_seconds=5
            ):
                pass
        assert server.paths() == ["/v.mp4"]
