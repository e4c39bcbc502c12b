"""A local HTTP server speaking Cloudinary's upload API for one cloud (the part we use).

POST /v1_1/<cloud>/video/upload: a signed multipart upload, in one request (browser direct
upload, small server-side uploads) or in parts (the SDK's upload_large: Content-Range and
X-Unique-Upload-Id headers; the parts are kept per upload id and assembled on the last one).
POST /v1_1/<cloud>/video/destroy: removes an asset. Every request's signature is checked here,
independently of the SDK; a bad one gets Cloudinary's 401 JSON error. Point the SDK at it with
CLOUDINARY_URL=cloudinary://key:secret@cloud?upload_prefix=http://127.0.0.1:PORT.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import parse_qs

CLOUD_NAME = "lmstest"
API_KEY = "614335564976464"
API_SECRET = "fake-cloudinary-api-secret"

# Cloudinary leaves these out of the string to sign.
UNSIGNED_PARAMS = {"file", "cloud_name", "resource_type", "api_key", "signature"}
STALE_AFTER = 3600  # Cloudinary refuses a signed request whose timestamp is an hour old


@dataclass
class Asset:
    public_id: str
    data: bytes
    version: int
    format: str
    context: dict[str, str]


@dataclass
class Notification:
    """An upload notification as Cloudinary would POST it to notification_url."""

    url: str
    body: bytes
    headers: dict[str, str]


@dataclass
class CloudinaryServer:
    cloud_name: str = CLOUD_NAME
    api_key: str = API_KEY
    api_secret: str = API_SECRET
    signature_algorithm: str = "sha1"  # the account's setting; a request may name its own
    assets: dict[str, Asset] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)
    notifications: list[Notification] = field(default_factory=list)
    fail_with: int | None = None  # answer this status to every request instead
    server: ThreadingHTTPServer | None = None
    _parts: dict[str, dict[int, bytes]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def base_url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_port}"

    def cloudinary_url(self, secret: str | None = None) -> str:
        secret = self.api_secret if secret is None else secret
        return (
            f"cloudinary://{self.api_key}:{secret}@{self.cloud_name}?upload_prefix={self.base_url}"
        )

    def clear(self) -> None:
        with self._lock:
            self.assets.clear()
            self.requests.clear()
            self.notifications.clear()
            self._parts.clear()
            self.fail_with = None

    def sign(self, params: dict[str, str], algorithm: str | None = None) -> str:
        """Cloudinary's request signature: the signed params sorted by name as name=value
        (a "&" in a value escaped as %26), joined by "&", the API secret appended, hashed."""
        pairs = sorted((k, v) for k, v in params.items() if k not in UNSIGNED_PARAMS and v != "")
        text = "&".join(f"{k}={v}".replace("&", "%26") for k, v in pairs)
        digest = hashlib.new(algorithm or self.signature_algorithm)
        digest.update((text + self.api_secret).encode())
        return digest.hexdigest()

    def notification_headers(self, body: bytes, timestamp: int | None = None) -> dict[str, str]:
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        digest = hashlib.new(self.signature_algorithm)
        digest.update(body + stamp.encode() + self.api_secret.encode())
        return {"X-Cld-Timestamp": stamp, "X-Cld-Signature": digest.hexdigest()}

    def delivery_url(self, public_id: str, version: int, fmt: str, secure: bool = True) -> str:
        scheme = "https" if secure else "http"
        return f"{scheme}://res.cloudinary.com/{self.cloud_name}/video/upload/v{version}/{public_id}.{fmt}"


def parse_form(content_type: str, body: bytes) -> tuple[dict[str, str], tuple[str, bytes] | None]:
    """The text fields and the ("file") part of a multipart or urlencoded body."""
    if content_type.startswith("application/x-www-form-urlencoded"):
        return {k: v[-1] for k, v in parse_qs(body.decode()).items()}, None
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if not content_type.startswith("multipart/form-data") or not match:
        raise ValueError("not a form body")
    delimiter = b"\r\n--" + match[1].encode()
    sections = (b"\r\n" + body).split(delimiter)
    if len(sections) < 3 or not sections[-1].startswith(b"--"):
        raise ValueError("malformed multipart body")
    fields: dict[str, str] = {}
    upload: tuple[str, bytes] | None = None
    for section in sections[1:-1]:
        head, separator, payload = section.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        if not separator:
            raise ValueError("multipart part without headers")
        disposition = next(
            (
                line.split(":", 1)[1]
                for line in head.decode().split("\r\n")
                if line.lower().startswith("content-disposition:")
            ),
            "",
        )
        name = re.search(r';\s*name="([^"]*)"', disposition)
        filename = re.search(r';\s*filename="([^"]*)"', disposition)
        if not name:
            raise ValueError("multipart part without a name")
        if name[1] == "file":
            upload = (filename[1] if filename else "file", payload)
        else:
            fields[name[1]] = payload.decode()
    return fields, upload


def parse_context(text: str) -> dict[str, str]:
    """Cloudinary's context string "k=v|k2=v2", with "\\=" and "\\|" escaped in values."""
    result: dict[str, str] = {}
    for item in re.split(r"(?<!\\)\|", text) if text else []:
        pieces = re.split(r"(?<!\\)=", item, maxsplit=1)
        if len(pieces) == 2 and pieces[0]:
            result[pieces[0]] = pieces[1].replace("\\=", "=").replace("\\|", "|")
    return result


def _duration(data: bytes) -> float | None:
    try:
        import av

        with av.open(io.BytesIO(data), mode="r") as container:
            return container.duration / 1_000_000 if container.duration else None
    except Exception:
        return None


def _handler(cloud: CloudinaryServer) -> type[BaseHTTPRequestHandler]:
    prefix = f"/v1_1/{cloud.cloud_name}/video/"

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            return

        def _answer(self, status: int, body: dict[str, Any]) -> None:
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("X-Request-Id", f"fake-{time.monotonic_ns()}")
            self.end_headers()
            self.wfile.write(payload)

        def _error(self, status: int, message: str) -> None:
            self._answer(status, {"error": {"message": message}})

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            try:
                fields, upload = parse_form(self.headers.get("Content-Type", ""), body)
            except (ValueError, UnicodeDecodeError):
                return self._error(400, "Invalid request body")
            record = {
                "path": self.path,
                "fields": fields,
                "file_bytes": len(upload[1]) if upload else 0,
                "content_range": self.headers.get("Content-Range"),
                "upload_id": self.headers.get("X-Unique-Upload-Id"),
            }
            with cloud._lock:
                cloud.requests.append(record)
            if cloud.fail_with:
                return self._error(cloud.fail_with, "General Error")
            if not self.path.startswith(prefix):
                return self._error(404, f"Unknown path {self.path}")
            if problem := self._check_signature(fields):
                return self._error(401, problem)
            action = self.path.removeprefix(prefix)
            if action == "upload":
                return self._upload(fields, upload)
            if action == "destroy":
                with cloud._lock:
                    gone = cloud.assets.pop(fields.get("public_id", ""), None)
                return self._answer(200, {"result": "ok" if gone else "not found"})
            return self._error(404, f"Unknown action {action}")

        def _check_signature(self, fields: dict[str, str]) -> str | None:
            if fields.get("api_key") != cloud.api_key:
                return f"Invalid api_key {fields.get('api_key')}"
            try:
                timestamp = int(fields.get("timestamp", ""))
            except ValueError:
                return "Missing required parameter - timestamp"
            if timestamp < time.time() - STALE_AFTER:
                return f"Stale request - reported time is {timestamp}"
            signed = {k: v for k, v in fields.items() if k != "signature_algorithm"}
            expected = cloud.sign(signed, fields.get("signature_algorithm"))
            if fields.get("signature") != expected:
                return f"Invalid Signature {fields.get('signature')}"
            return None

        def _upload(self, fields: dict[str, str], upload: tuple[str, bytes] | None) -> None:
            if upload is None:
                return self._error(400, "Missing required parameter - file")
            filename, data = upload
            content_range = self.headers.get("Content-Range")
            upload_id = self.headers.get("X-Unique-Upload-Id")
            public_id = fields.get("public_id") or (upload_id or f"auto{time.monotonic_ns()}")
            if content_range and upload_id:
                match = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", content_range)
                if not match or int(match[2]) - int(match[1]) + 1 != len(data):
                    return self._error(400, f"Invalid Content-Range {content_range}")
                start, total = int(match[1]), int(match[3])
                with cloud._lock:
                    parts = cloud._parts.setdefault(upload_id, {})
                    parts[start] = data
                    received = sum(len(p) for p in parts.values())
                    if received < total:
                        return self._answer(200, {"done": False, "public_id": public_id})
                    del cloud._parts[upload_id]
                data = b"".join(parts[s] for s in sorted(parts))
                if len(data) != total:
                    return self._error(400, "Chunks do not add up to the announced size")
            self._store(public_id, filename, data, fields)

        def _store(
            self, public_id: str, filename: str, data: bytes, fields: dict[str, str]
        ) -> None:
            fmt = PurePosixPath(filename).suffix.lstrip(".").lower() or "mp4"
            version = int(time.time())
            context = parse_context(fields.get("context", ""))
            with cloud._lock:
                cloud.assets[public_id] = Asset(public_id, data, version, fmt, context)
            result: dict[str, Any] = {
                "public_id": public_id,
                "version": version,
                "resource_type": "video",
                "type": "upload",
                "format": fmt,
                "bytes": len(data),
                "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "original_filename": PurePosixPath(filename).stem,
                "url": cloud.delivery_url(public_id, version, fmt, secure=False),
                "secure_url": cloud.delivery_url(public_id, version, fmt),
            }
            if (duration := _duration(data)) is not None:
                result["duration"] = duration
            if context:
                result["context"] = {"custom": context}
            if url := fields.get("notification_url"):
                note = json.dumps({"notification_type": "upload", **result}).encode()
                with cloud._lock:
                    cloud.notifications.append(
                        Notification(url, note, cloud.notification_headers(note))
                    )
            self._answer(200, result)

    return Handler


def start_cloudinary_server() -> CloudinaryServer:
    cloud = CloudinaryServer()
    cloud.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(cloud))
    threading.Thread(target=cloud.server.serve_forever, daemon=True).start()
    return cloud
