"""The app's edge: the one ASGI layer every HTTP request passes, outside the hot lane and Litestar.

Per request it gives the request id (X-Request-ID on the answer, the id in every log line made
meanwhile), answers CORS preflights and puts the CORS headers and Vary on every answer
(lms.api.cors), hands the request to the hot lane (lms.hot_lane) or to Litestar, and records it
(one access-log line, the HTTP metrics: lms.observability.middleware).

A preflight it answers 204 is counted like any request, but its line is at DEBUG: it is the
browser asking whether it may send the request that follows (whose own line says what was
done), a line a browser player adds for every lesson it opens. Under load an access line costs
some 6 us of server CPU (README, Performance), over a tenth of what a preflight costs in all; a
refused preflight (400) is logged at INFO, as it may be a misconfigured frontend.

One layer, not three wrapped in each other: a preflight and a hot-lane answer are sent from here
with their whole header list made once (no send wrapper at all); only an answer of Litestar's
passes one wrapper, which adds the same headers. The request-context and CORS layers this
replaces, each wrapping the next, cost a browser's preflight some 40 % more CPU than the bare
ASGI peer (one worker pinned to a core under wrk, bench/README.md); with the records batched
(RequestRecorder) this edge answered 9 % more preflights and 8 % more verifications.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from logging import DEBUG, INFO
from typing import Any

from lms.api.cors import Cors
from lms.hot_lane import HotLane
from lms.observability.logs import request_id_var
from lms.observability.middleware import REQUEST_ID_HEADER, RequestRecorder, incoming_request_id
from lms.request_headers import header_map

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class Edge:
    """ASGI: `lane` first, `app` (Litestar's handler) for what the lane hands on; CORS by `cors`
    (None: no CORS configured) and the request record around both.

    It is Litestar's handler (the Litestar app calls it), and may also be served itself
    (lms.app.serve_app) with `litestar`, the app, given: a server's lifespan messages then go to
    the app, and the scope keys the app would set are set for what is handed on to it (the app's
    own call cost every request some 3 us)."""

    def __init__(
        self, app: ASGIApp, lane: HotLane, cors: Cors | None, litestar: ASGIApp | None = None
    ) -> None:
        self.app = app
        self.lane = lane
        self.cors = cors
        self.litestar = litestar
        self.recorder = RequestRecorder()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if self.litestar is not None and "litestar_app" not in scope:
                await self.litestar(scope, receive, send)  # served: lifespan, websockets
            else:
                await self.app(scope, receive, send)
            return
        request = header_map(scope)
        request_id = incoming_request_id(scope, request, self.recorder.ids)
        token = request_id_var.set(request_id)
        id_header = (REQUEST_ID_HEADER, request_id.encode())
        started = time.perf_counter()
        status = 500
        level = INFO
        cors = self.cors
        origin = None if cors is None else request.get(b"origin")
        try:
            if origin is not None and scope["method"] == "OPTIONS":
                status, headers, body = cors.preflight(origin, request)  # type: ignore[union-attr]
                if status == 204:
                    level = DEBUG  # counted, but its line only where DEBUG is shown (see above)
                headers.append(id_header)
            else:
                answered = await self.lane.answer(scope, receive)
                if answered is None:  # the client went away: no one to answer
                    return
                if not isinstance(answered, tuple):
                    sent = [status]
                    try:
                        await self._litestar(
                            scope, answered, send, origin, request, id_header, sent
                        )
                    finally:
                        status = sent[0]
                    return
                status, headers, body = answered
                if cors is not None:
                    headers = cors.headers_for(headers, origin, request)
                headers.append(id_header)
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
        finally:
            self.recorder.add(scope, status, time.perf_counter() - started, request_id, level)
            request_id_var.reset(token)

    async def _litestar(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        origin: bytes | None,
        request: dict[bytes, bytes],
        id_header: tuple[bytes, bytes],
        sent: list[int],
    ) -> None:
        """Litestar answers; `sent` gets the status it sends."""
        # Litestar's request.state carries the id (only what Litestar answers reads it there).
        scope.setdefault("state", {})["request_id"] = id_header[1].decode()
        if self.litestar is not None and "litestar_app" not in scope:
            scope["app"] = scope["litestar_app"] = self.litestar  # as the app's own call does
        cors = self.cors

        async def send_at_edge(message: Message) -> None:
            if message["type"] == "http.response.start":
                sent[0] = message["status"]
                headers = message.get("headers", ())
                headers = (
                    list(headers) if cors is None else cors.headers_for(headers, origin, request)
                )
                headers.append(id_header)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_at_edge)
