"""Video storage on Cloudinary with its official SDK: uploads, deletes, delivery URLs, signatures.

The account comes from CLOUDINARY_URL (cloudinary://api_key:api_secret@cloud_name[?options]),
parsed the way the SDK's own Config parses it: the query string sets further options, notably
`upload_prefix` (the API base, default https://api.cloudinary.com; tests point it at a local
server) and `signature_algorithm`. Every SDK call gets those settings as keyword options, so
each instance is independent of the SDK's process-wide `cloudinary.config()`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlparse

import cloudinary.exceptions
import cloudinary.uploader
import cloudinary.utils

from lms.integrations.storage import MEDIA_TYPES, StorageError, StoredVideo, validate_key

if TYPE_CHECKING:
    from lms.settings import Settings

DEFAULT_CHUNK_SIZE = 20 * 1024 * 1024  # the SDK's own default is 20 MB; keep chunks MiB-aligned
REQUEST_TIMEOUT = 600.0  # seconds for one API request (one chunk of an upload)
PLAYBACK_FORMAT = "mp4"  # H.264/AAC in MP4 plays in every browser, whatever was uploaded
AUDIO_FORMAT = "mp3"

_ALGORITHMS = {"sha1": hashlib.sha1, "sha256": hashlib.sha256}
_TRUE = {"1", "true", "yes"}
# Query options of CLOUDINARY_URL that shape delivery URLs (cloudinary_url's keyword options).
_DELIVERY_FLAGS = ("cdn_subdomain", "secure_cdn_subdomain")


@dataclass(frozen=True, slots=True)
class CloudinaryAccount:
    cloud_name: str
    api_key: str
    api_secret: str
    upload_prefix: str | None = None
    signature_algorithm: str = "sha1"
    signature_version: int = 2
    delivery: Mapping[str, Any] = field(default_factory=dict)

    @property
    def api_options(self) -> dict[str, Any]:
        """Keyword options that make an SDK API call use this account and nothing global."""
        return {
            "cloud_name": self.cloud_name,
            "api_key": self.api_key,
            "api_secret": self.api_secret,
            "upload_prefix": self.upload_prefix,
            "signature_algorithm": self.signature_algorithm,
            "signature_version": self.signature_version,
            "oauth_token": None,
            "upload_preset": None,
        }

    @property
    def url_options(self) -> dict[str, Any]:
        return {"cloud_name": self.cloud_name, "api_secret": self.api_secret, **self.delivery}


def parse_cloudinary_url(url: str) -> CloudinaryAccount:
    """CLOUDINARY_URL as the SDK's Config reads it: host = cloud, user = key, password = secret,
    a path = private CDN distribution, query parameters = further options."""
    parts = urlparse(url)
    if parts.scheme.lower() != "cloudinary":
        raise ValueError("CLOUDINARY_URL must start with cloudinary://")
    if not (parts.hostname and parts.username and parts.password):
        raise ValueError("CLOUDINARY_URL must be cloudinary://api_key:api_secret@cloud_name")
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    algorithm = query.get("signature_algorithm", "sha1").lower()
    if algorithm not in _ALGORITHMS:
        raise ValueError(f"CLOUDINARY_URL: unsupported signature_algorithm {algorithm!r}")
    delivery: dict[str, Any] = {"secure": True}
    distribution = parts.path.strip("/")
    if distribution:
        delivery.update(private_cdn=True, secure_distribution=distribution)
    if query.get("secure_distribution"):
        delivery["secure_distribution"] = query["secure_distribution"]
    if query.get("cname"):
        delivery["cname"] = query["cname"]
    for flag in ("private_cdn", *_DELIVERY_FLAGS):
        if flag in query:
            # The SDK keeps "false" as a (truthy) string; read it as the boolean it means.
            delivery[flag] = query[flag].lower() in _TRUE
    return CloudinaryAccount(
        cloud_name=parts.hostname,
        api_key=parts.username,
        api_secret=parts.password,
        upload_prefix=query.get("upload_prefix", "").rstrip("/") or None,
        signature_algorithm=algorithm,
        signature_version=int(query.get("signature_version", "2")),
        delivery=delivery,
    )


def public_id_for(key: str) -> str:
    """Cloudinary's public_id for a storage key: the key without its media extension
    ("lessons/<id>/v3.mp4" -> "lessons/<id>/v3"), since Cloudinary keeps the format apart."""
    validate_key(key)
    path = PurePosixPath(key)
    return str(path.with_suffix("")) if path.suffix.lower() in MEDIA_TYPES else key


def stored_video(result: Mapping[str, Any]) -> StoredVideo:
    """The StoredVideo for an upload API answer (or an upload notification's body)."""
    public_id, secure_url = result.get("public_id"), result.get("secure_url")
    if not isinstance(public_id, str) or not isinstance(secure_url, str):
        raise StorageError("Cloudinary's answer lacks public_id or secure_url")
    return StoredVideo("cloudinary", public_id, secure_url)


@dataclass(frozen=True, slots=True)
class DirectUpload:
    """What a browser POSTs to upload straight to Cloudinary: multipart form with `params`
    and the file as field "file", to `upload_url`."""

    upload_url: str
    params: dict[str, str]


class CloudinaryVideoStorage:
    """VideoStorage on Cloudinary; every SDK call (blocking HTTP) runs in a worker thread."""

    provider = "cloudinary"

    def __init__(
        self,
        settings: Settings,
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        timeout: float = REQUEST_TIMEOUT,
    ) -> None:
        if not settings.cloudinary_url:
            raise ValueError("CloudinaryVideoStorage needs CLOUDINARY_URL")
        self.account = parse_cloudinary_url(settings.cloudinary_url)
        self.chunk_size = chunk_size
        self.timeout = timeout

    @property
    def upload_url(self) -> str:
        """{upload_prefix or https://api.cloudinary.com}/v1_1/{cloud}/video/upload"""
        return str(
            cloudinary.utils.cloudinary_api_url(
                "upload", resource_type="video", **self.account.api_options
            )
        )

    def _upload(self, source: Path, public_id: str) -> StoredVideo:
        try:
            # upload_large sends files under chunk_size in one request and bigger ones in
            # chunk_size parts (Content-Range + X-Unique-Upload-Id), so memory stays bounded.
            result = cloudinary.uploader.upload_large(
                str(source),
                resource_type="video",
                public_id=public_id,
                overwrite=True,
                chunk_size=self.chunk_size,
                timeout=self.timeout,
                **self.account.api_options,
            )
        except Exception as exc:  # the SDK raises its own errors, urllib3's and ValueError
            raise StorageError(f"Cloudinary upload of {public_id!r} failed: {exc}") from exc
        if not isinstance(result, Mapping):
            raise StorageError(f"Cloudinary upload of {public_id!r} returned nothing")
        return stored_video(result)

    async def save(self, source: Path, *, key: str) -> StoredVideo:
        public_id = public_id_for(key)
        try:
            size = (await asyncio.to_thread(source.stat)).st_size
            if size == 0:
                raise StorageError("refusing to upload an empty file")
            return await asyncio.to_thread(self._upload, source, public_id)
        finally:
            # The temp file is ours after the call either way: uploaded, or not worth keeping.
            await asyncio.to_thread(source.unlink, True)

    async def delete(self, key: str) -> None:
        public_id = public_id_for(key)
        try:
            result = await asyncio.to_thread(
                cloudinary.uploader.destroy,
                public_id,
                resource_type="video",
                invalidate=True,
                timeout=self.timeout,
                **self.account.api_options,
            )
        except cloudinary.exceptions.NotFound:
            return
        except Exception as exc:
            raise StorageError(f"Cloudinary delete of {public_id!r} failed: {exc}") from exc
        outcome = result.get("result") if isinstance(result, Mapping) else None
        if outcome not in ("ok", "not found"):
            raise StorageError(f"Cloudinary delete of {public_id!r} answered {outcome!r}")

    def _delivery_url(self, key: str, fmt: str) -> str:
        url, _ = cloudinary.utils.cloudinary_url(
            public_id_for(key), resource_type="video", format=fmt, **self.account.url_options
        )
        return str(url)

    def playback_url(self, key: str, *, ttl_seconds: int = 3600) -> str:
        # Public delivery ("upload" type): the URL does not expire, so ttl_seconds is moot.
        return self._delivery_url(key, PLAYBACK_FORMAT)

    def audio_url(self, key: str) -> str | None:
        return self._delivery_url(key, AUDIO_FORMAT)

    def local_path(self, key: str) -> Path | None:
        return None

    def direct_upload_params(
        self, public_id: str, *, notification_url: str, context: dict[str, str] | None = None
    ) -> DirectUpload:
        """A signed upload a browser makes itself (the API never sees the bytes); Cloudinary
        then POSTs its notification, signed with the same secret, to `notification_url`."""
        params = {
            "timestamp": str(int(time.time())),
            "public_id": public_id_for(public_id),
            "notification_url": notification_url,
        }
        if context:
            params["context"] = str(cloudinary.utils.encode_context(context))
        signature = cloudinary.utils.api_sign_request(
            params,
            self.account.api_secret,
            self.account.signature_algorithm,
            self.account.signature_version,
        )
        signed = {**params, "api_key": self.account.api_key, "signature": str(signature)}
        if self.account.signature_algorithm != "sha1":
            signed["signature_algorithm"] = self.account.signature_algorithm
        return DirectUpload(self.upload_url, signed)

    def verify_notification(
        self, body: bytes, timestamp: str, signature: str, *, max_age_seconds: int = 7200
    ) -> bool:
        """Check the X-Cld-Timestamp / X-Cld-Signature headers of a notification: the
        signature is hex(hash(body + timestamp + api_secret)), and old timestamps are refused
        (the SDK's verify_notification_signature, on raw bytes and in constant time)."""
        try:
            issued = int(timestamp)
        except ValueError:
            return False
        if issued < time.time() - max_age_seconds:
            return False
        digest = _ALGORITHMS[self.account.signature_algorithm](
            body + timestamp.encode() + self.account.api_secret.encode()
        ).hexdigest()
        return hmac.compare_digest(digest.encode(), signature.encode())
