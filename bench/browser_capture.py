"""Capture the headers a real Chromium sends for the bench's requests, for bench/browser.py.

    .venv/bin/python -m bench.browser_capture   # writes bench/fixtures/chromium-headers.json

Two local HTTP servers: a page on one port (the web player's origin) and a stand-in API on
another (a cross-origin API, same site, as app.example.com calling api.example.com). The page
makes the requests a web player makes with fetch(): an anonymous GET of a public page, the
progress heartbeat (POST, JSON body, Authorization) and the lesson completion (POST,
Authorization); the two POSTs are preceded by Chromium's CORS preflight (OPTIONS), which the
stand-in API answers as lms does (allowing the origin, Access-Control-Max-Age 600). Every header
Chromium sent is recorded in the order and case it sent them. Needs `chromium` on PATH (Debian:
apt-get install chromium); runs it headless with a throw-away profile.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "chromium-headers.json"
TOKEN = "Bearer eyJhbGciOiJIUzI1NiJ9.capture.token"  # noqa: S105 - a placeholder, not a secret

PAGE = """<!doctype html><title>player</title><script>
const api = "%(api)s";
const auth = {"Authorization": "%(token)s"};
(async () => {
  await fetch(api + "/courses?limit=20", {headers: {"Accept": "application/json"}});
  await fetch(api + "/lessons/00000000-0000-0000-0000-000000000001/progress", {
    method: "POST",
    headers: {...auth, "Accept": "application/json", "Content-Type": "application/json"},
    body: JSON.stringify({positionSeconds: 12.5}),
  });
  await fetch(api + "/lessons/00000000-0000-0000-0000-000000000001/complete", {
    method: "POST", headers: {...auth, "Accept": "application/json"},
  });
  await fetch("/done");
})();
</script>"""


class Capture:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.done = threading.Event()


def api_handler(capture: Capture) -> type[BaseHTTPRequestHandler]:
    class Api(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_: object) -> None:
            pass

        def record(self) -> None:
            capture.requests.append(
                {
                    "method": self.command,
                    "path": self.path,
                    "headers": [[k, v] for k, v in self.headers.items()],
                }
            )

        def cors(self) -> None:
            self.send_header("Access-Control-Allow-Origin", self.headers.get("Origin", "*"))
            self.send_header("Access-Control-Expose-Headers", "X-Request-ID, ETag")

        def do_OPTIONS(self) -> None:
            self.record()
            self.send_response(204)
            self.cors()
            self.send_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
            self.send_header(
                "Access-Control-Allow-Headers", "Authorization, Content-Type, X-Request-ID"
            )
            self.send_header("Access-Control-Max-Age", "600")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def answer(self) -> None:
            self.record()
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            body = b"{}"
            self.send_response(200)
            self.cors()
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = answer
        do_POST = answer

    return Api


def page_handler(capture: Capture, api: str) -> type[BaseHTTPRequestHandler]:
    class Page(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_: object) -> None:
            pass

        def do_GET(self) -> None:
            if self.path == "/done":
                capture.done.set()
            body = (PAGE % {"api": api, "token": TOKEN}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Page


def kind_of(request: dict[str, Any]) -> str:
    path = request["path"]
    if request["method"] == "OPTIONS":
        return "preflight_progress" if path.endswith("/progress") else "preflight_complete"
    if request["method"] == "GET":
        return "get"
    return "progress" if path.endswith("/progress") else "complete"


def capture(chromium: str, timeout: float) -> dict[str, Any]:
    found = Capture()
    api_server = ThreadingHTTPServer(("127.0.0.1", 0), api_handler(found))
    api = f"http://127.0.0.1:{api_server.server_port}"
    page_server = ThreadingHTTPServer(("127.0.0.1", 0), page_handler(found, api))
    page = f"http://127.0.0.1:{page_server.server_port}"
    for server in (api_server, page_server):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    version = subprocess.run(
        [chromium, "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="bench-chromium-") as profile:
        proc = subprocess.Popen(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                f"--user-data-dir={profile}",
                page + "/learn/lesson",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            if not found.done.wait(timeout):
                raise SystemExit(f"browser_capture: chromium made no requests in {timeout:.0f} s")
            time.sleep(0.2)
        finally:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
            if proc.poll() is None:
                proc.kill()
            api_server.shutdown()
            page_server.shutdown()
    requests = {kind_of(r): r for r in found.requests}
    return {
        "source": "bench/browser_capture.py: headless Chromium's fetch() from a page on one "
        "port to an API on another (cross-origin, same site); every header as sent, in order",
        "chromium": version,
        "captured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "page_origin": page,
        "api_origin": api,
        "placeholder_token": TOKEN,
        "requests": requests,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.browser_capture", description=__doc__)
    parser.add_argument("--out", type=Path, default=FIXTURE)
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args(argv)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("browser_capture: error: chromium is not installed", file=sys.stderr)
        return 2
    result = capture(chromium, args.timeout)
    missing = {"get", "progress", "complete", "preflight_progress", "preflight_complete"} - set(
        result["requests"]
    )
    if missing:
        print(f"browser_capture: error: not captured: {sorted(missing)}", file=sys.stderr)
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
