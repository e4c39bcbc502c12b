"""The app's Request class: its JSON body goes through lms.api.json_body, so every handler taking
`data` gets the same refusals (malformed, too deep, control characters, numbers out of range) and
a strict conversion to the type it declares, without remembering to ask for them."""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.exceptions import ValidationException
from litestar.handlers import HTTPRouteHandler
from litestar.types import Empty

from lms.api import json_body


def body_type(handler: HTTPRouteHandler) -> Any:
    """The type the handler's `data` parameter declares; Any when it has none."""
    data = handler.parsed_fn_signature.parameters.get("data")
    return Any if data is None else data.annotation


class LmsRequest(Request[Any, Any, Any]):
    async def json(self) -> Any:
        if self._json is Empty:
            cached = self._connection_state.json
            if cached is Empty:
                cached = self._connection_state.json = await self._decode()
            self._json = cached
        return self._json

    async def _decode(self) -> Any:
        body = await self.body()
        try:
            return json_body.decode(body or b"null", body_type(self.route_handler))
        except json_body.FieldError as exc:
            # The shape Litestar gives its own validation errors, so every 400 for a field reads
            # the same whether it came from the body, the query or the path.
            raise ValidationException(
                detail=f"Validation failed for {self.method} {self.url.path}",
                extra=[{"message": exc.message, "key": exc.key, "source": "body"}],
            ) from None
