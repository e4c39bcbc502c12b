"""Video storage on Cloudinary with its official SDK: uploads, deletes, delivery URLs, signatures.

The account comes from CLOUDINARY_URL (cloudinary://api_key:api_secret@cloud_name[?options]),
parsed the way the SDK's own Config parses it: the query string sets further options, notably
`upload_prefix` (the API base, default https://api.cloudinary.com; tests point it at a local
server), `signature_algorithm` and `auth_token[key]` (the account's token key, hex). Every SDK
call gets those settings as keyword options, so each instance is independent of the SDK's
process-wide `cloudinary.config()`.

Videos are private: uploaded as `type=authenticated`, which Cloudinary delivers only through a
signed URL, never at a guessable public address. Viewers get a URL minted for them per request
that expires (Cloudinary's signed URLs alone never do):
- with a token key: the CDN URL, signed (s--...--), carrying a `__cld_token__` that expires and
  whose ACL covers this one video, so it also covers the files of its HLS stream (`sp_auto`);
- without one (token authentication is an add-on of some plans): the API's private download URL,
  signed with the API secret and good until its `expires_at`. Cloudinary offers no expiring HLS
  stream of an authenticated video without tokens, so there is none then.
What the lesson row keeps is a reference that plays nothing (the unsigned delivery URL), never
Cloudinary's own `secure_url`, which for an authenticated asset is signed and valid for ever.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlparse, urlsplit

import cloudinary.auth_token
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
# Cloudinary's adaptive streaming: the profile picks the renditions, HLS is the format.
STREAMING_PROFILE = "auto"
STREAMING_FORMAT = "m3u8"
# Delivered only through signed URLs (or tokens): never at a public, guessable address.
DELIVERY_TYPE = "authenticated"
LEGACY_DELIVERY_TYPE = "upload"  # public; how videos were stored before
# The audio rendition the worker transcribes: fetched by us alone, never handed out.
WORKER_URL_TTL = 3600
# Cloudinary accepts a signed upload for an hour; a notification we accept for a few minutes,
# so one captured on the way is soon worthless (and its replay record can be pruned).
NOTIFICATION_MAX_AGE = 300
NOTIFICATION_CLOCK_SKEW = 60  # a notification stamped a little ahead of our clock is fine

_HEX = re.compile(r"(?:[0-9a-fA-F]{2})+")

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
    auth_token_key: str | None = None  # hex; token-based authentication of CDN delivery

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
        """Keyword options of cloudinary_url for this account's delivery. auth_token=False keeps
        the process-wide config's token settings out: tokens are made in _signed_cdn_url."""
        return {
            "cloud_name": self.cloud_name,
            "api_secret": self.api_secret,
            "signature_algorithm": self.signature_algorithm,
            "long_url_signature": False,
            "auth_token": False,
            **self.delivery,
        }


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
    token_key = query.get("auth_token[key]")
    if token_key is not None and not _HEX.fullmatch(token_key):
        raise ValueError("CLOUDINARY_URL: auth_token[key] must be the account's token key (hex)")
    return CloudinaryAccount(
        cloud_name=parts.hostname,
        api_key=parts.username,
        api_secret=parts.password,
        upload_prefix=query.get("upload_prefix", "").rstrip("/") or None,
        signature_algorithm=algorithm,
        signature_version=int(query.get("signature_version", "2")),
        delivery=delivery,
        auth_token_key=token_key,
    )


def public_id_for(key: str) -> str:
    """Cloudinary's public_id for a storage key: the key without its media extension
    ("lessons/<id>/v3.mp4" -> "lessons/<id>/v3"), since Cloudinary keeps the format apart."""
    validate_key(key)
    path = PurePosixPath(key)
    return str(path.with_suffix("")) if path.suffix.lower() in MEDIA_TYPES else key


def expiry(ttl_seconds: int, now: float | None = None) -> int:
    """Unix time `ttl_seconds` from now, rounded up to the minute: a player asking again soon
    gets the same, cacheable URL."""
    moment = time.time() if now is None else now
    # Up from the second too: made at 12:00:00.4, a 600 s URL must not end at 12:10:00.
    return (math.ceil(moment) + ttl_seconds + 59) // 60 * 60


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

    def stored_video(self, result: Mapping[str, Any]) -> StoredVideo:
        """The StoredVideo for an upload API answer (or an upload notification's body); its url
        is the unsigned delivery URL, a reference that plays nothing."""
        public_id, version, fmt = (result.get(k) for k in ("public_id", "version", "format"))
        if not isinstance(public_id, str) or not public_id:
            raise StorageError("Cloudinary's answer lacks the public_id")
        url, _ = cloudinary.utils.cloudinary_url(
            public_id,
            resource_type="video",
            type=DELIVERY_TYPE,
            version=version if isinstance(version, int) else None,
            format=fmt if isinstance(fmt, str) and fmt else PLAYBACK_FORMAT,
            **{**self.account.url_options, "sign_url": False},
        )
        return StoredVideo("cloudinary", public_id, str(url))

    def _upload(self, source: Path, public_id: str) -> StoredVideo:
        try:
            # upload_large sends files under chunk_size in one request and bigger ones in
            # chunk_size parts (Content-Range + X-Unique-Upload-Id), so memory stays bounded.
            # A public id is used once (a new lesson, a new version): overwrite=False makes sure
            # nothing ever replaces a stored video under it.
            result = cloudinary.uploader.upload_large(
                str(source),
                resource_type="video",
                type=DELIVERY_TYPE,
                public_id=public_id,
                overwrite=False,
                chunk_size=self.chunk_size,
                timeout=self.timeout,
                **self.account.api_options,
            )
        except Exception as exc:  # the SDK raises its own errors, urllib3's and ValueError
            raise StorageError(f"Cloudinary upload of {public_id!r} failed: {exc}") from exc
        if not isinstance(result, Mapping):
            raise StorageError(f"Cloudinary upload of {public_id!r} returned nothing")
        return self.stored_video(result)

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
        # An asset lives under one delivery type; videos stored before delivery was
        # authenticated are public ("upload") ones.
        for kind in (DELIVERY_TYPE, LEGACY_DELIVERY_TYPE):
            if await self._destroy(public_id, kind):
                return

    async def _destroy(self, public_id: str, kind: str) -> bool:
        """Delete the asset of that type; False when there was none."""
        try:
            result = await asyncio.to_thread(
                cloudinary.uploader.destroy,
                public_id,
                resource_type="video",
                type=kind,
                invalidate=True,
                timeout=self.timeout,
                **self.account.api_options,
            )
        except cloudinary.exceptions.NotFound:
            return False
        except Exception as exc:
            raise StorageError(f"Cloudinary delete of {public_id!r} failed: {exc}") from exc
        outcome = result.get("result") if isinstance(result, Mapping) else None
        if outcome == "ok":
            return True
        if outcome == "not found":
            return False
        raise StorageError(f"Cloudinary delete of {public_id!r} answered {outcome!r}")

    def _signed_cdn_url(
        self, key: str, fmt: str, *, expires: int | None, **transformation: str
    ) -> str:
        """The CDN URL of the video, signed (s--...--); with a token key, carrying a token that
        expires at `expires` and whose ACL covers every delivery of this one video (the files
        of its HLS stream too, which Cloudinary names after the public id)."""
        public_id = public_id_for(key)
        url, _ = cloudinary.utils.cloudinary_url(
            public_id,
            resource_type="video",
            type=DELIVERY_TYPE,
            format=fmt,
            sign_url=True,
            **transformation,
            **self.account.url_options,
        )
        url = str(url)
        token_key = self.account.auth_token_key
        if token_key is None or expires is None:
            return url
        path = urlsplit(url).path
        root = path[: path.index(f"/video/{DELIVERY_TYPE}/") + len(f"/video/{DELIVERY_TYPE}/")]
        acl = f"{root}*/{public_id}*"
        # The SDK's token: exp~acl~hmac, HMAC-SHA256 under the hex key, as __cld_token__=...
        token = cloudinary.auth_token.generate(acl=acl, expiration=expires, key=token_key)
        return f"{url}?{token}"

    def playback_url(self, key: str, *, ttl_seconds: int = 3600) -> str:
        """A URL that plays the video until about `ttl_seconds` from now, and then no more."""
        expires = expiry(ttl_seconds)
        if self.account.auth_token_key is not None:
            return self._signed_cdn_url(key, PLAYBACK_FORMAT, expires=expires)
        url = cloudinary.utils.private_download_url(
            public_id_for(key),
            PLAYBACK_FORMAT,
            resource_type="video",
            type=DELIVERY_TYPE,
            expires_at=expires,
            **self.account.api_options,
        )
        return str(url)

    def streaming_url(self, key: str, *, ttl_seconds: int = 3600) -> str | None:
        """The HLS stream (adaptive bitrate), expiring like playback_url; only with a token key:
        its playlists and segments are separate requests that only the token's ACL covers."""
        if self.account.auth_token_key is None:
            return None
        return self._signed_cdn_url(
            key,
            STREAMING_FORMAT,
            expires=expiry(ttl_seconds),
            streaming_profile=STREAMING_PROFILE,
        )

    def audio_url(self, key: str) -> str | None:
        """The audio rendition for transcription: a signed URL (with an expiring token when
        there is a token key), fetched by the worker and never handed out."""
        return self._signed_cdn_url(key, AUDIO_FORMAT, expires=expiry(WORKER_URL_TTL))

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
            # Signed, so the browser cannot change them: a private video, and one that never
            # replaces another (the same parameters used again leave the first upload alone).
            "type": DELIVERY_TYPE,
            "overwrite": "false",
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
        self,
        body: bytes,
        timestamp: str,
        signature: str,
        *,
        max_age_seconds: int = NOTIFICATION_MAX_AGE,
    ) -> bool:
        """Check the X-Cld-Timestamp / X-Cld-Signature headers of a notification: the
        signature is hex(hash(body + timestamp + api_secret)), and timestamps more than
        `max_age_seconds` old (or ahead of our clock by more than the skew) are refused (the
        SDK's verify_notification_signature, on raw bytes and in constant time)."""
        try:
            issued = int(timestamp)
        except ValueError:
            return False
        now = time.time()
        if not now - max_age_seconds <= issued <= now + NOTIFICATION_CLOCK_SKEW:
            return False
        digest = _ALGORITHMS[self.account.signature_algorithm](
            body + timestamp.encode() + self.account.api_secret.encode()
        ).hexdigest()
        return hmac.compare_digest(digest.encode(), signature.encode())
