"""The webhook deliverer's HTTP client against loopback servers that answer as real ones do:
every way a body can end, connections kept and dropped, answers that are not HTTP, and the
outbound address policy."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from lms.integrations.fetch_policy import FetchPolicy, FetchRefused
from lms.integrations.keepalive_post import KeepAlivePoster, NotHttp

LOOPBACK = FetchPolicy.from_entries(["127.0.0.0/8"])
HEADERS = [(b"Content-Type", b"application/json"), (b"webhook-id", b"msg_1")]


@dataclass
class Server:
    """Reads each request whole, then writes what `answer(n)` gives for the n-th request on the
    whole server (bytes; None closes the connection without a word)."""

    answer: Callable[[int], bytes | None]
    requests: list[bytes] = field(default_factory=list)
    connections: int = 0
    port: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                self.requests.append(head + await reader.readexactly(length))
                reply = self.answer(len(self.requests))
                if reply is None:
                    break
                writer.write(reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


Serve = Callable[[Callable[[int], bytes | None]], Awaitable[Server]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    servers: list[asyncio.Server] = []

    async def started(answer: Callable[[int], bytes | None]) -> Server:
        server = Server(answer)
        listening = await asyncio.start_server(server.handle, "127.0.0.1", 0)
        servers.append(listening)
        server.port = listening.sockets[0].getsockname()[1]
        return server

    yield started
    for listening in servers:
        listening.close()


def poster(server: Server, *, max_body: int = 1024) -> KeepAlivePoster:
    return KeepAlivePoster(
        f"http://127.0.0.1:{server.port}/hooks?x=1",
        LOOPBACK,
        ssl.create_default_context(),
        max_body=max_body,
    )


NO_CONTENT = b"HTTP/1.1 204 No Content\r\n\r\n"


async def test_one_connection_carries_every_post_and_the_request_is_what_a_receiver_expects(
    serve: Serve,
) -> None:
    server = await serve(lambda n: NO_CONTENT)
    client = poster(server)
    for _ in range(3):
        assert await client.post(b'{"a":1}', HEADERS) == 204
    assert server.connections == 1
    assert server.requests[0] == (
        b"POST /hooks?x=1 HTTP/1.1\r\n"
        + f"Host: 127.0.0.1:{server.port}\r\n".encode()
        + b"Content-Type: application/json\r\nwebhook-id: msg_1\r\nContent-Length: 7\r\n\r\n"
        + b'{"a":1}'
    )
    client.close()


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n"
        b"3\r\nabc\r\n0\r\nX-Trailer: t\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n",
    ],
    ids=["content-length", "chunked-with-trailers", "after-100-continue"],
)
async def test_a_body_read_to_its_end_leaves_the_connection_for_the_next_post(
    serve: Serve, answer: bytes
) -> None:
    server = await serve(lambda n: answer)
    client = poster(server)
    first = await client.post(b"{}", HEADERS)
    assert first in (200, 202)
    assert await client.post(b"{}", HEADERS) == first
    assert server.connections == 1
    client.close()


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + b"x" * 5000,
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"800\r\n" + b"x" * 2048,
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
    ],
    ids=["too-long", "too-long-chunked", "connection-close", "http-1.0"],
)
async def test_a_body_too_long_or_a_connection_the_server_ends_is_not_used_again(
    serve: Serve, answer: bytes
) -> None:
    server = await serve(lambda n: answer)
    client = poster(server)
    assert await client.post(b"{}", HEADERS) == 200
    assert await client.post(b"{}", HEADERS) == 200
    assert server.connections == 2
    client.close()


async def test_a_kept_connection_the_server_closed_meanwhile_is_replaced_once(
    serve: Serve,
) -> None:
    # The server answers the first request, then drops the connection when the second comes
    # (an idle timeout racing the request): nothing came back, so it is sent again.
    server = await serve(lambda n: None if n == 2 else NO_CONTENT)
    client = poster(server)
    assert await client.post(b"{}", HEADERS) == 204
    assert await client.post(b"{}", HEADERS) == 204
    assert len(server.requests) == 3 and server.connections == 2
    client.close()


async def test_a_fresh_connection_closed_without_an_answer_is_a_failure_not_a_retry(
    serve: Serve,
) -> None:
    server = await serve(lambda n: None)
    client = poster(server)
    with pytest.raises(asyncio.IncompleteReadError):
        await client.post(b"{}", HEADERS)
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        (b"SSH-2.0-OpenSSH_9.2\r\n\r\n", "not an HTTP/1.x answer"),
        (b"HTTP/1.1 20 OK\r\n\r\n", "not an HTTP/1.x answer"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: many\r\n\r\n", "Content-Length"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "chunk size"),
        (b"HTTP/1.1 200 OK\r\nX: " + b"y" * 70_000 + b"\r\n\r\n", "longer than"),
    ],
    ids=["not-http", "bad-status", "bad-length", "bad-chunk", "head-too-long"],
)
async def test_an_answer_that_is_not_http_is_refused_with_the_reason(
    serve: Serve, answer: bytes, why: str
) -> None:
    server = await serve(lambda n: answer)
    client = poster(server)
    with pytest.raises(NotHttp, match=why):
        await client.post(b"{}", HEADERS)
    client.close()


async def test_an_address_the_policy_refuses_is_never_connected_to(
    serve: Serve,
) -> None:
    server = await serve(lambda n: NO_CONTENT)
    client = KeepAlivePoster(
        f"http://localhost:{server.port}/",
        FetchPolicy.from_entries([]),
        ssl.create_default_context(),
        max_body=1024,
    )
    with pytest.raises(FetchRefused):
        await client.post(b"{}", HEADERS)
    assert server.connections == 0
