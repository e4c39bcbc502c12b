"""POSTs to one URL, one request at a time, over one kept-alive HTTP/1.1 connection that obeys
the outbound address policy: what a webhook endpoint's deliverer needs, and nothing more.

Why not httpx/httpcore, which the rest of lms uses: measured on loopback, httpcore's async stack
(anyio, h11) took about 480 us of CPU per webhook POST, so a worker spent about 1 ms per event
with two endpoints, more than the API spent recording the event, and on a shared machine a
worker that far behind its API never catches up. This does the few things a delivery needs on
asyncio's streams, for about a tenth of that.

- Connecting: the host is resolved and every address it resolves to checked by the policy
  (lms.integrations.safe_fetch.checked_addresses), then one of those addresses itself is dialled,
  so a DNS answer that changes in between cannot point the connection elsewhere; TLS verifies the
  certificate against the URL's host name.
- The answer: the status line and headers (at most MAX_HEAD bytes), informational 1xx answers
  skipped, then the body (Content-Length, chunked, or to the close) read and dropped up to
  `max_body` bytes; past that the connection is closed instead of read further.
- The connection is kept for the next POST when both sides allow it. A POST on a kept
  connection that the server had closed meanwhile (nothing came back) is sent once more on a new
  connection: a delivery may arrive twice anyway (at least once, same webhook-id).
- No redirects (a 3xx is an answer like any other), no proxy, no compression, no HTTP/2.
The caller bounds the whole exchange with its own timeout.
"""

from __future__ import annotations

import asyncio
import ssl

import httpx

from lms.integrations.fetch_policy import FetchPolicy
from lms.integrations.safe_fetch import checked_addresses
from lms.invariants import present

MAX_HEAD = 64 * 1024  # the status line and headers of one answer


class NotHttp(Exception):
    """The peer's answer is not HTTP/1.x."""


class KeepAlivePoster:
    def __init__(
        self, url: str, policy: FetchPolicy, ssl_context: ssl.SSLContext, *, max_body: int
    ) -> None:
        parsed = httpx.URL(url)  # registered URLs were checked; this only takes them apart
        policy.check_scheme(parsed.scheme)
        self.host = parsed.host
        self.tls = parsed.scheme == "https"
        self.port = parsed.port or (443 if self.tls else 80)
        self.policy = policy
        self.ssl_context = ssl_context
        self.max_body = max_body
        target = parsed.raw_path or b"/"
        self._request_line = b"POST " + target + b" HTTP/1.1\r\nHost: " + parsed.netloc + b"\r\n"
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._answered = False  # the current exchange has read an answer's head

    async def post(self, body: bytes, headers: list[tuple[bytes, bytes]]) -> int:
        """Send the POST; the answer's status. Raises FetchRefused (the policy), OSError (the
        network), asyncio.IncompleteReadError (the peer closed mid-answer) or NotHttp."""
        head = b"".join(
            (
                self._request_line,
                *(name + b": " + value + b"\r\n" for name, value in headers),
                b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n",
            )
        )
        reused = self._writer is not None
        if not reused:
            await self._connect()
        try:
            return await self._exchange(head + body)
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            self.close()
            stale = reused and (not isinstance(exc, asyncio.IncompleteReadError) or not exc.partial)
            if not stale or self._answered:
                raise
        await self._connect()  # the kept connection had gone: once more on a new one
        return await self._exchange(head + body)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None

    async def _connect(self) -> None:
        failure: OSError | None = None
        for ip in await checked_addresses(self.policy, self.host, self.port):
            try:
                self._reader, self._writer = await asyncio.open_connection(
                    str(ip),
                    self.port,
                    ssl=self.ssl_context if self.tls else None,
                    server_hostname=self.host if self.tls else None,
                    limit=MAX_HEAD,
                )
                return
            except OSError as exc:
                failure = exc
        raise failure or ConnectionError(f"cannot connect to {self.host}")

    async def _exchange(self, request: bytes) -> int:
        reader = present(self._reader, "_connect gave the connection")
        writer = present(self._writer, "_connect gave the connection")
        self._answered = False
        writer.write(request)
        await writer.drain()
        while True:  # 1xx answers come before the answer
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.LimitOverrunError:
                raise NotHttp(f"an answer's head longer than {MAX_HEAD} bytes") from None
            self._answered = True
            version, status, fields = _parse_head(head)
            if not 100 <= status < 200:
                break
        keep = version == b"HTTP/1.1" and b"close" not in fields.get(b"connection", b"").lower()
        keep = await self._drop_body(reader, status, fields) and keep
        if not keep:
            self.close()
        return status

    async def _drop_body(
        self, reader: asyncio.StreamReader, status: int, fields: dict[bytes, bytes]
    ) -> bool:
        """Read the body and drop it; whether the connection can carry another request."""
        if status in (204, 304):
            return True
        encoding = fields.get(b"transfer-encoding")
        if encoding is not None:
            if encoding.lower().rsplit(b",", 1)[-1].strip() != b"chunked":
                return False  # the body runs to the close: not ours to wait for
            read = 0
            while True:
                size_line = await reader.readuntil(b"\r\n")
                try:
                    size = int(size_line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise NotHttp("a malformed chunk size") from None
                if size == 0:
                    while await reader.readuntil(b"\r\n") != b"\r\n":
                        pass  # trailers
                    return True
                read += size
                if read > self.max_body:
                    return False
                await reader.readexactly(size + 2)
        length = fields.get(b"content-length")
        if length is None:
            return False  # the body runs to the close
        try:
            size = int(length)
        except ValueError:
            raise NotHttp("a malformed Content-Length") from None
        if size > self.max_body:
            return False
        await reader.readexactly(size)
        return True


def _parse_head(head: bytes) -> tuple[bytes, int, dict[bytes, bytes]]:
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or len(parts[1]) != 3:
        raise NotHttp(f"not an HTTP/1.x answer: {lines[0][:80]!r}")
    try:
        status = int(parts[1])
    except ValueError:
        raise NotHttp(f"not an HTTP/1.x answer: {lines[0][:80]!r}") from None
    fields: dict[bytes, bytes] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(b":")
            fields[name.strip().lower()] = value.strip()
    return parts[0], status, fields
