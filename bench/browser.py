"""The browser variant of the bench: the headers a current Chromium sends for each bench request.

They are not invented: bench/fixtures/chromium-headers.json is what a real headless Chromium sent
(`python -m bench.browser_capture` writes it; see its docstring) when a page on one origin called
an API on another with fetch(), as a web player does: an anonymous GET (catalog, course page,
certificate check), the progress heartbeat (POST, JSON body, Authorization), the completion
(POST, Authorization), and the CORS preflight (OPTIONS) before each POST. Here they are replayed
with three changes, each a byte or two: the page's origin becomes ORIGIN (which the servers get as
LMS_CORS_ORIGINS), headless Chromium's "HeadlessChrome" in User-Agent becomes "Chrome" (what a
desktop Chromium sends), and a preflight also names x-request-id among its request headers (the
bench's POSTs carry X-Request-ID, which lms allows, so the preflight a browser sends for them asks
for it). Host and Content-Length are the load generator's; Authorization is each learner's own.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "chromium-headers.json"
ORIGIN = "http://app.bench.lms.test"  # the web player's origin: LMS_CORS_ORIGINS for every server
# Chromium's preflight cache: an answer without Access-Control-Max-Age is kept 5 s, at most 2 h
# (services/network/public/cpp/cors/preflight_result.cc: kDefaultTimeout, kMaxTimeout).
DEFAULT_PREFLIGHT_MAX_AGE = 5
MAX_PREFLIGHT_MAX_AGE = 7200
KINDS = ("get", "progress", "complete", "preflight_progress", "preflight_complete")
LOAD_GENERATOR_HEADERS = {"host", "content-length"}


@functools.cache
def fixture() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(FIXTURE.read_text())
    missing = [k for k in KINDS if k not in data["requests"]]
    if missing:
        raise ValueError(f"{FIXTURE.name} lacks {missing}: run python -m bench.browser_capture")
    return data


def headers(kind: str, origin: str = ORIGIN) -> list[tuple[str, str]]:
    """The header lines Chromium sent for `kind` (KINDS), in its order, as the bench sends them;
    ("Authorization", "") stands where the learner's token goes."""
    data = fixture()
    page = data["page_origin"]
    out: list[tuple[str, str]] = []
    for name, value in data["requests"][kind]["headers"]:
        lower = name.lower()
        if lower in LOAD_GENERATOR_HEADERS:
            continue
        if lower == "authorization":
            value = ""
        elif lower in ("origin", "referer"):
            value = value.replace(page, origin, 1)
        elif lower == "user-agent":
            value = value.replace("HeadlessChrome/", "Chrome/")
        elif lower == "access-control-request-headers":
            value = ",".join(sorted({*value.split(","), "x-request-id"}))
        if not value.isascii() or "\r" in value or "\n" in value:
            raise ValueError(f"{kind}: an odd header value for {name}")
        out.append((name, value))
    return out


def lines(pairs: list[tuple[str, str]]) -> str:
    """Header lines as they go on the wire, each ending in CRLF."""
    return "".join(f"{name}: {value}\r\n" for name, value in pairs)


def split_at_authorization(kind: str, origin: str = ORIGIN) -> tuple[str, str]:
    """(the lines before Authorization, the lines after it) for a request that carries a token."""
    pairs = headers(kind, origin)
    at = next(i for i, (name, _) in enumerate(pairs) if name.lower() == "authorization")
    return lines(pairs[:at]), lines(pairs[at + 1 :])


def as_dict(kind: str, origin: str = ORIGIN) -> dict[str, str]:
    """For httpx probes (order does not matter there); no Authorization."""
    return {n: v for n, v in headers(kind, origin) if n.lower() != "authorization"}


def lua_string(text: str) -> str:
    """A Lua string literal (json.dumps escapes what Lua's escapes also mean, for ASCII)."""
    if not text.isascii():
        raise ValueError("only ASCII goes into the wrk scripts")
    return json.dumps(text)
