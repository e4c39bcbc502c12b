"""A local HTTP server speaking Cloudinary's upload API and its delivery for one cloud (the
parts we use).

POST /v1_1/<cloud>/video/upload: a signed multipart upload, in one request (browser direct
upload, small server-side uploads) or in parts (the SDK's upload_large: Content-Range and
X-Unique-Upload-Id headers; the parts are kept per upload id and assembled on the last one).
The asset keeps its delivery `type` (upload, authenticated); `overwrite=0|false` leaves an
existing asset as it is. POST /v1_1/<cloud>/video/destroy: removes an asset of the named type.
Every request's signature is checked here, independently of the SDK; a bad one gets Cloudinary's
401 JSON error. Point the SDK at it with
CLOUDINARY_URL=cloudinary://key:secret@cloud?upload_prefix=http://127.0.0.1:PORT.

Delivery, as Cloudinary's CDN and API serve it (`local()` maps a res.cloudinary.com URL here):
- GET /<cloud>/video/upload/...: public assets, to anyone.
- GET /<cloud>/video/authenticated/[s--SIG--/][transformation/]v<n>/<public_id>.<format>: only
  with the URL signature (s--, over "transformation/public_id.format") and, when the account has
  a token key (`auth_token_key`: token-based authentication enforced), only with an unexpired
  `__cld_token__` whose ACL (or URL) covers the path. `sp_*` transformations with .m3u8 answer an
  HLS master playlist.
- GET /v1_1/<cloud>/video/download?...: the API's private download URL (signed like an upload
  request) until its `expires_at`.
Anything else is refused (401 for a bad or missing signature or token, 404 for no such asset
of that type). `clock_offset` moves this server's clock, to show expiry without waiting.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

CLOUD_NAME = "lmstest"
API_KEY = "614335564976464"
API_SECRET = "fake-cloudinary-api-secret"

# Cloudinary leaves these out of the string to sign.
UNSIGNED_PARAMS = {"file", "cloud_name", "resource_type", "api_key", "signature"}
STALE_AFTER = 3600  # Cloudinary refuses a signed request whose timestamp is an hour old
DELIVERY_HOST = "https://res.cloudinary.com"
TOKEN_NAME = "__cld_token__"
# The characters Cloudinary's token escapes (in lowercase %xx) in the ACL and URL it signs.
TOKEN_UNSAFE = re.compile(r"""([ "#%&'/:;<=>?@\[\\\]^`{|}~]+)""")
MEDIA_TYPES = {"mp4": "video/mp4", "mp3": "audio/mpeg", "webm": "video/webm"}
HLS_PLAYLIST = "application/vnd.apple.mpegurl"


@dataclass
class Asset:
    public_id: str
    data: bytes
    version: int
    format: str
    context: dict[str, str]
    type: str = "upload"


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
    deliveries: list[str] = field(default_factory=list)  # paths of the GETs served or refused
    notifications: list[Notification] = field(default_factory=list)
    fail_with: int | None = None  # answer this status to every request instead
    auth_token_key: str | None = None  # hex; set: token auth on authenticated delivery
    clock_offset: float = 0.0  # seconds added to this server's clock
    server: ThreadingHTTPServer | None = None
    _parts: dict[str, dict[int, bytes]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def base_url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_port}"

    def cloudinary_url(self, secret: str | None = None, *, token_key: str | None = None) -> str:
        """CLOUDINARY_URL for this server; `token_key` names the account's token key the way
        the SDK reads it from the URL (auth_token[key]=...)."""
        secret = self.api_secret if secret is None else secret
        url = (
            f"cloudinary://{self.api_key}:{secret}@{self.cloud_name}?upload_prefix={self.base_url}"
        )
        return f"{url}&auth_token[key]={token_key}" if token_key else url

    def clear(self) -> None:
        with self._lock:
            self.assets.clear()
            self.requests.clear()
            self.deliveries.clear()
            self.notifications.clear()
            self._parts.clear()
            self.fail_with = None
            self.auth_token_key = None
            self.clock_offset = 0.0

    def now(self) -> float:
        return time.time() + self.clock_offset

    def local(self, url: str) -> str:
        """A delivery URL (Cloudinary's CDN or its API) as a URL of this server."""
        parts = urlsplit(url)
        query = f"?{parts.query}" if parts.query else ""
        return f"{self.base_url}{parts.path}{query}"

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

    def url_signature(self, transformation: str, source: str, algorithm: str | None = None) -> str:
        """The s--...-- of a signed delivery URL: the first 8 characters of the URL-safe base64
        hash of "transformation/public_id.format" (the version is not signed) + the secret."""
        signed = "/".join(part for part in (transformation, source) if part)
        digest = hashlib.new(algorithm or self.signature_algorithm)
        digest.update((signed + self.api_secret).encode())
        return base64.urlsafe_b64encode(digest.digest())[:8].decode()

    def delivery_url(
        self, public_id: str, version: int, fmt: str, secure: bool = True, kind: str = "upload"
    ) -> str:
        """What Cloudinary answers as an asset's url/secure_url: signed, and for ever, for an
        authenticated asset."""
        scheme = "https" if secure else "http"
        source = f"{public_id}.{fmt}"
        signature = f"s--{self.url_signature('', source)}--/" if kind == "authenticated" else ""
        return (
            f"{scheme}://res.cloudinary.com/{self.cloud_name}/video/{kind}/{signature}"
            f"v{version}/{source}"
        )


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


def escape_to_lower(text: str) -> str:
    """How Cloudinary's token escapes what it signs: unsafe characters as lowercase %xx."""
    return TOKEN_UNSAFE.sub(
        lambda m: "".join(f"%{b:02x}" for b in m.group(1).encode()),
        text,
    )


def media_type(fmt: str) -> str:
    return MEDIA_TYPES.get(fmt, "application/octet-stream")


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
                public_id, kind = fields.get("public_id", ""), fields.get("type", "upload")
                with cloud._lock:
                    asset = cloud.assets.get(public_id)
                    gone = asset is not None and asset.type == kind
                    if gone:
                        del cloud.assets[public_id]
                return self._answer(200, {"result": "ok" if gone else "not found"})
            return self._error(404, f"Unknown action {action}")

        def _check_signature(self, fields: dict[str, str], *, fresh: bool = True) -> str | None:
            """A signed API request: our api_key, the signature, and (`fresh`) a timestamp
            under an hour old."""
            if fields.get("api_key") != cloud.api_key:
                return f"Invalid api_key {fields.get('api_key')}"
            try:
                timestamp = int(fields.get("timestamp", ""))
            except ValueError:
                return "Missing required parameter - timestamp"
            if fresh and timestamp < cloud.now() - STALE_AFTER:
                return f"Stale request - reported time is {timestamp}"
            signed = {k: v for k, v in fields.items() if k != "signature_algorithm"}
            expected = cloud.sign(signed, fields.get("signature_algorithm"))
            if not hmac.compare_digest(fields.get("signature", ""), expected):
                return f"Invalid Signature {fields.get('signature')}"
            return None

        def do_GET(self) -> None:
            path, _, query = self.path.partition("?")
            with cloud._lock:
                cloud.deliveries.append(path)
            if cloud.fail_with:
                return self._error(cloud.fail_with, "General Error")
            if path == f"{prefix}download":
                return self._private_download({k: v[-1] for k, v in parse_qs(query).items()})
            if path.startswith(f"/{cloud.cloud_name}/video/"):
                return self._deliver(path, query)
            return self._error(404, f"Unknown path {path}")

        def _private_download(self, params: dict[str, str]) -> None:
            """The API's download of a private or authenticated asset: a signed request (as an
            upload is signed) that is good until expires_at (an hour after timestamp without)."""
            if problem := self._check_signature(params, fresh=False):
                return self._error(401, problem)
            try:
                expires = int(params.get("expires_at") or int(params["timestamp"]) + 3600)
            except ValueError:
                return self._error(400, "Invalid expires_at")
            if expires <= cloud.now():
                return self._error(401, "The download link has expired")
            asset = cloud.assets.get(params.get("public_id", ""))
            if asset is None or asset.type != params.get("type", "upload"):
                return self._error(404, "Resource not found")
            self._media(asset.data, params.get("format") or asset.format)

        def _deliver(self, path: str, query: str) -> None:
            parts = unquote(path).split("/")[3:]  # after "", cloud, "video"
            kind, parts = parts[0], parts[1:]
            signature = None
            if parts and re.fullmatch(r"s--[A-Za-z0-9_-]{8,32}--", parts[0]):
                signature, parts = parts[0][3:-2], parts[1:]
            at = next((i for i, p in enumerate(parts) if re.fullmatch(r"v\d+", p)), None)
            if at is None or at == len(parts) - 1:
                return self._error(404, "Resource not found")
            transformation, source = "/".join(parts[:at]), "/".join(parts[at + 1 :])
            public_id, _, fmt = source.rpartition(".")
            asset = cloud.assets.get(public_id)
            if asset is None or asset.type != kind or kind not in ("upload", "authenticated"):
                return self._error(404, "Resource not found")
            problem = (
                self._authorize(path, query, signature, transformation, source)
                if kind == "authenticated"
                else None
            )
            if problem:
                return self._error(401, problem)
            if fmt == "m3u8" and transformation.startswith("sp_"):
                playlist = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-STREAM-INF:BANDWIDTH=800000\n"
                return self._media(f"{playlist}{public_id}/360p.m3u8\n".encode(), fmt)
            self._media(asset.data, fmt)

        def _authorize(
            self, path: str, query: str, signature: str | None, transformation: str, source: str
        ) -> str | None:
            if signature is not None:
                expected = cloud.url_signature(transformation, source)
                if not hmac.compare_digest(signature, expected):
                    return "Invalid URL signature"
            if cloud.auth_token_key is None:
                return None if signature is not None else "An authenticated asset needs a signature"
            return self._check_token(path, query)

        def _check_token(self, path: str, query: str) -> str | None:
            """Cloudinary's token: name=value pairs joined by "~", the last hmac=HMAC-SHA256
            (hex key) of the others (plus url=<the escaped path> when there is no ACL)."""
            token = next(
                (q.split("=", 1)[1] for q in query.split("&") if q.startswith(f"{TOKEN_NAME}=")),
                None,
            )
            if not token:
                return "A token is required"
            fields = token.split("~")
            given = dict(f.split("=", 1) for f in fields if "=" in f)
            signed = [f for f in fields if not f.startswith("hmac=")]
            if "acl" not in given:
                signed.append(f"url={escape_to_lower(path)}")
            key = bytes.fromhex(cloud.auth_token_key or "")
            expected = hmac.new(key, "~".join(signed).encode(), hashlib.sha256).hexdigest()
            if not hmac.compare_digest(given.get("hmac", ""), expected):
                return "Invalid token"
            try:
                expires, starts = int(given["exp"]), int(given.get("st", "0"))
            except (KeyError, ValueError):
                return "Invalid token"
            if expires <= cloud.now() or starts > cloud.now():
                return "The token has expired"
            if "acl" in given and not any(
                re.fullmatch(".*".join(map(re.escape, acl.split("*"))), path)
                for acl in unquote(given["acl"]).split("!")
            ):
                return "The token does not cover this path"
            return None

        def _media(self, data: bytes, fmt: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", HLS_PLAYLIST if fmt == "m3u8" else media_type(fmt))
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

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
            kind = fields.get("type") or "upload"
            keep = fields.get("overwrite", "true").lower() in ("0", "false")
            with cloud._lock:
                existing = cloud.assets.get(public_id) if keep else None
                if existing is None:
                    context = parse_context(fields.get("context", ""))
                    asset = Asset(public_id, data, int(cloud.now()), fmt, context, kind)
                    cloud.assets[public_id] = asset
                else:
                    asset = existing  # overwrite=false: the asset stays as it was
            version, fmt, kind, context = asset.version, asset.format, asset.type, asset.context
            result: dict[str, Any] = {
                "public_id": public_id,
                "version": version,
                "resource_type": "video",
                "type": kind,
                "format": fmt,
                "bytes": len(asset.data),
                "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "original_filename": PurePosixPath(filename).stem,
                "url": cloud.delivery_url(public_id, version, fmt, secure=False, kind=kind),
                "secure_url": cloud.delivery_url(public_id, version, fmt, kind=kind),
            }
            if existing is not None:
                result["existing"] = True
            data = asset.data
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
