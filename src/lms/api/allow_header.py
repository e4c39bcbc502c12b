"""OPTIONS answers with every method of its path in `Allow`.

Litestar 2 builds a path's OPTIONS handler when the path's first handler is registered and keeps
it as more arrive, so `Allow` names only that first method (litestar#4169, fixed in Litestar 3).
This middleware writes the header from the app's route map instead.
"""

from __future__ import annotations

from typing import Any

from litestar.enums import ScopeType
from litestar.routes import HTTPRoute
from litestar.types import ASGIApp, Message, Receive, Scope, Send


class AllowHeader:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        http: Any = scope
        if scope["type"] != ScopeType.HTTP or http["method"] != "OPTIONS":
            await self.app(scope, receive, send)
            return
        # The route in the app's final table: its methods are all of the path's handlers'.
        template = http.get("path_template")
        methods = next(
            (
                route.methods
                for route in http["app"].routes
                if isinstance(route, HTTPRoute) and route.path_format == template
            ),
            (),
        )
        allow = ", ".join(sorted(methods)).encode()

        async def send_with_allow(message: Message) -> None:
            if message["type"] == "http.response.start" and allow:
                headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != b"allow"]
                message["headers"] = [*headers, (b"allow", allow)]
            await send(message)

        await self.app(scope, receive, send_with_allow)
