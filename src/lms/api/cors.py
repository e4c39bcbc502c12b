"""CORS for every response of the app, the hot lane's answers and Litestar's alike.

The app's edge (lms.edge), outside both, asks this policy: the preflight (OPTIONS with Origin)
is answered by it, for any path; every other response gets the Access-Control-* headers of the
app's CORSConfig (the same names and values Litestar's own middleware writes) and `Origin` added
to its `Vary`.

Why not Litestar's middleware: for an allowed origin it sets `Vary: Origin`, replacing the
route's own `Vary` (`Authorization` on the catalog, `Accept` on certificates), so a shared cache
could serve a signed-in learner's page to an anonymous browser or the reverse. Here the route's
values are kept and `Origin` is added once (`Vary: Authorization, Origin`), on every response,
whether or not the request had an Origin and whether or not it was allowed: the answer's
Access-Control-Allow-Origin depends on it either way, and a cache must not serve a response made
without it to a browser it would have allowed (the Fetch standard, "CORS protocol and HTTP
caches"). `Vary: *` is left as it is.
"""

from __future__ import annotations

from collections.abc import Sequence

from litestar.config.cors import CORSConfig
from litestar.constants import DEFAULT_ALLOWED_CORS_HEADERS

VARY = b"vary"
ALLOW_ORIGIN = b"access-control-allow-origin"
_VARY_ONLY = frozenset([VARY])
_ORIGIN_TOKEN = "origin"  # noqa: S105 (a header name)
# Bound on the memo of Vary values and origins seen (a client chooses its Origin).
_MEMO_SIZE = 256


def _raw(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]


def vary_with_origin(values: list[bytes]) -> bytes:
    """One Vary value: the route's, in order, each once, with Origin added unless already there
    (any case); `*` stays `*`."""
    tokens: list[str] = []
    seen: set[str] = set()
    for value in values:
        for token in value.decode("latin-1").split(","):
            token = token.strip()
            if token and token.lower() not in seen:
                seen.add(token.lower())
                tokens.append(token)
    if "*" in seen:
        return b"*"
    if _ORIGIN_TOKEN not in seen:
        tokens.append("Origin")
    return ", ".join(tokens).encode("latin-1")


class Cors:
    """CORS by `config`: preflight answers, and the headers of every other answer."""

    def __init__(self, config: CORSConfig) -> None:
        self.config = config
        # What a response to a request with Origin gets, allowed or not (as Litestar sends it).
        self.simple = _raw(config.simple_headers)
        self.simple_tail = _raw(
            {
                "Access-Control-Allow-Headers": ", ".join(sorted(set(config.allow_headers))),
                "Access-Control-Allow-Methods": ", ".join(sorted(set(config.allow_methods))),
            }
        )
        # Headers this layer writes: the route's own of these names are replaced (ASGI header
        # names are lower case).
        self.written = frozenset(
            [ALLOW_ORIGIN, VARY] + [k for k, _ in self.simple] + [k for k, _ in self.simple_tail]
        )
        preflight = dict(config.preflight_headers)
        preflight.pop("Vary", None)
        self.preflight_headers = _raw(preflight)
        self.allowed_headers = {h.lower() for h in config.allow_headers} | {
            h.lower() for h in DEFAULT_ALLOWED_CORS_HEADERS
        }
        self._origins: dict[bytes, bool] = {}
        self._extras: dict[tuple[bytes, bool], list[tuple[bytes, bytes]]] = {}
        self._varies: dict[tuple[bytes, ...], bytes] = {(): b"Origin"}
        # A player's preflights repeat exactly (its origin, method and header list): the answer
        # to each is worked out once (status, headers, body), bounded as the memos above.
        self._preflights: dict[
            tuple[bytes, bytes | None, bytes | None], tuple[int, list[tuple[bytes, bytes]], bytes]
        ] = {}

    def allowed(self, origin: bytes) -> bool:
        found = self._origins.get(origin)
        if found is None:
            found = self.config.is_origin_allowed(origin.decode("latin-1"))
            if len(self._origins) < _MEMO_SIZE:
                self._origins[origin] = found
        return found

    def vary(self, values: tuple[bytes, ...]) -> bytes:
        found = self._varies.get(values)
        if found is None:
            found = vary_with_origin(list(values))
            if len(self._varies) < _MEMO_SIZE:
                self._varies[values] = found
        return found

    def headers_for(
        self,
        headers: Sequence[tuple[bytes, bytes]],
        origin: bytes | None,
        request: dict[bytes, bytes],
    ) -> list[tuple[bytes, bytes]]:
        """An answer's headers as sent: with Origin added to its Vary, and for a request with
        an Origin (`request` its header map), the Access-Control-* ones replacing the route's."""
        # One pass over the route's headers (a loop, not generators: this runs for every answer).
        replaced = self.written if origin is not None else _VARY_ONLY
        kept: list[tuple[bytes, bytes]] = []
        varies: list[bytes] = []
        for header in headers:
            name = header[0]
            if name not in replaced:
                kept.append(header)
            elif name == VARY:
                varies.append(header[1])
        kept.append((VARY, self.vary(tuple(varies))))
        if origin is not None:
            kept += self.allow_headers_for(origin, b"cookie" in request)
        return kept

    def allow_headers_for(self, origin: bytes, with_cookie: bool) -> list[tuple[bytes, bytes]]:
        """The Access-Control-* headers of an answer to a request from `origin`."""
        key = (origin, with_cookie)
        found = self._extras.get(key)
        if found is None:
            config = self.config
            found = list(self.simple)
            if (config.is_allow_all_origins and with_cookie) or (
                not config.is_allow_all_origins and self.allowed(origin)
            ):
                found.append((ALLOW_ORIGIN, origin))
            found += self.simple_tail
            if len(self._extras) < _MEMO_SIZE:
                self._extras[key] = found
        return found

    def preflight(
        self, origin: bytes, request: dict[bytes, bytes]
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """The answer to a preflight (OPTIONS with Origin; `request` its header map): 204 with
        the preflight headers, or 400 naming what is not allowed; `Vary: Origin`. A new list of
        headers each time (the caller may add to it)."""
        method = request.get(b"access-control-request-method")
        requested = request.get(b"access-control-request-headers")
        key = (origin, method, requested)
        answer = self._preflights.get(key)
        if answer is None:
            answer = self._preflight_answer(origin, method, requested)
            if len(self._preflights) < _MEMO_SIZE:
                self._preflights[key] = answer
        status, headers, body = answer
        return status, list(headers), body

    def _preflight_answer(
        self, origin: bytes, method: bytes | None, requested: bytes | None
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        config = self.config
        failures: list[str] = []
        headers = list(self.preflight_headers)
        if (
            not config.is_allow_all_methods
            and method
            and method.decode("latin-1") not in config.allow_methods
        ):
            failures.append("method")
        if not self.allowed(origin):
            failures.append("Origin")
        elif not config.is_allow_all_origins:
            headers.append((ALLOW_ORIGIN, origin))
        names = [h.strip() for h in (requested or b"").decode("latin-1").split(",") if h.strip()]
        if names:
            if config.is_allow_all_headers:
                every = ", ".join(sorted(set(names) | DEFAULT_ALLOWED_CORS_HEADERS))
                headers = [h for h in headers if h[0] != b"access-control-allow-headers"]
                headers.append((b"access-control-allow-headers", every.encode("latin-1")))
            elif any(name.lower() not in self.allowed_headers for name in names):
                failures.append("headers")
        if failures:
            body = f"Disallowed CORS {', '.join(failures)}".encode()
            return (
                400,
                [
                    (b"content-type", b"text/plain; charset=utf-8"),
                    (b"content-length", str(len(body)).encode()),
                    (VARY, b"Origin"),
                ],
                body,
            )
        return 204, [*headers, (VARY, b"Origin")], b""
