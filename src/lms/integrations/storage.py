"""Video storage: the interface lessons use, local files under LMS_DATA_DIR/media, signed URLs."""

from __future__ import annotations

import asyncio
import base64
import errno
import hashlib
import hmac
import math
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Literal, Protocol
from urllib.parse import quote, urlencode

from lms.derived_keys import Purpose, derived_key

if TYPE_CHECKING:
    from lms.settings import Settings

Provider = Literal["local", "cloudinary"]

# Keys are made by the server ("lessons/<uuid>/v3.mp4"), so a strict alphabet costs nothing and
# rules out traversal, hidden files, odd encodings and Windows separators in one go.
_KEY_SEGMENT = r"[A-Za-z0-9_-][A-Za-z0-9._-]*"
_KEY = re.compile(rf"{_KEY_SEGMENT}(?:/{_KEY_SEGMENT})*")
MAX_KEY_LENGTH = 512

MEDIA_TYPES = {
    ".mp4": "video/mp4",
    ".m4v": "video/mp4",
    ".mov": "video/quicktime",
    ".webm": "video/webm",
    ".mkv": "video/x-matroska",
    ".ogv": "video/ogg",
    ".avi": "video/x-msvideo",
    ".ts": "video/mp2t",
    ".mpg": "video/mpeg",
    ".mpeg": "video/mpeg",
    ".flv": "video/x-flv",
    ".3gp": "video/3gpp",
    ".mp3": "audio/mpeg",
    ".m4a": "audio/mp4",
    ".ogg": "audio/ogg",
    ".opus": "audio/ogg",
    ".wav": "audio/wav",
    ".vtt": "text/vtt",
}


class StorageError(Exception):
    """The store could not keep or remove a video (provider down, credentials refused, ...)."""


@dataclass(frozen=True, slots=True)
class StoredVideo:
    provider: Provider
    key: str  # the storage key, or Cloudinary's public_id
    url: str  # a stable reference to the original, not a signed playback URL


class VideoStorage(Protocol):
    provider: str

    async def save(self, source: Path, *, key: str) -> StoredVideo:
        """Store the temp file `source` under `key`. A bad key is a ValueError before anything
        happens; from then on the file is the store's: moved, uploaded, or removed on failure
        (StorageError)."""
        ...

    async def delete(self, key: str) -> None:
        """Remove the video; a video that is already gone is not an error."""
        ...

    def playback_url(self, key: str, *, ttl_seconds: int = 3600) -> str:
        """The URL an authorized viewer plays the video from: minted for each request, it
        stops working about `ttl_seconds` later."""
        ...

    def streaming_url(self, key: str, *, ttl_seconds: int = 3600) -> str | None:
        """An adaptive (HLS) stream of the video, expiring like playback_url, where the store
        makes one."""
        ...

    def audio_url(self, key: str) -> str | None:
        """An audio-only rendition, where the store makes one (cheaper to transcribe)."""
        ...

    def local_path(self, key: str) -> Path | None:
        """The file on this machine, for stores that keep one."""
        ...


def validate_key(key: str) -> str:
    """`key` when it is a safe relative POSIX path, else ValueError."""
    if not key or len(key) > MAX_KEY_LENGTH:
        raise ValueError("a storage key must be 1 to 512 characters")
    if "\\" in key or key.startswith("/") or ".." in key:
        raise ValueError(f"storage key {key!r} must be a relative path without '..' or '\\'")
    if not _KEY.fullmatch(key):
        raise ValueError(f"storage key {key!r} may hold only letters, digits, '.', '_', '-', '/'")
    return key


def media_type_for(key: str) -> str:
    return MEDIA_TYPES.get(PurePosixPath(key).suffix.lower(), "application/octet-stream")


def _signing_key(secret: str) -> bytes:
    # Derived (lms.derived_keys), so a media URL signature can never be replayed as a token or a
    # cursor signature, nor one of those as a media URL's.
    return derived_key(secret, Purpose.MEDIA_URL)


def sign_media_path(secret: str, key: str, exp: int) -> str:
    """The signature of "`key` may be fetched until unix time `exp`" (URL-safe base64)."""
    mac = hmac.new(_signing_key(secret), f"{key}\n{exp}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def verify_media_signature(secret: str, key: str, exp: int, sig: str, now: float) -> bool:
    """True when `sig` signs (`key`, `exp`) and `exp` has not passed."""
    if exp < now:
        return False
    return hmac.compare_digest(sign_media_path(secret, key, exp), sig)


def _move(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(source, target)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        # The temp file sits on another file system: copy beside the target, then rename, so
        # a reader never sees half a video.
        fd, partial = tempfile.mkstemp(dir=target.parent, prefix=".partial-")
        os.close(fd)
        try:
            shutil.copyfile(source, partial)
            os.replace(partial, target)
        except BaseException:
            Path(partial).unlink(missing_ok=True)
            raise
        source.unlink(missing_ok=True)


def _remove(path: Path, root: Path) -> None:
    path.unlink(missing_ok=True)
    # Drop the directories the key made (lessons/<id>/) once empty; rmdir refuses non-empty ones.
    parent = path.parent
    while parent != root and root in parent.parents:
        try:
            parent.rmdir()
        except OSError:
            break
        parent = parent.parent


class LocalVideoStorage:
    """Files under settings.media_dir, served by the signed /media/{key} route."""

    provider = "local"

    def __init__(self, settings: Settings) -> None:
        self.root = settings.media_dir
        self.base_url = settings.base_url.rstrip("/")
        self._secret = settings.jwt_secret

    def path_for(self, key: str) -> Path:
        return self.root / validate_key(key)

    async def save(self, source: Path, *, key: str) -> StoredVideo:
        target = self.path_for(key)
        try:
            await asyncio.to_thread(_move, source, target)
        except OSError as exc:
            await asyncio.to_thread(source.unlink, True)  # ours now, kept or not
            raise StorageError(f"could not store {key!r}: {exc.strerror or exc}") from exc
        return StoredVideo("local", key, f"{self.base_url}/media/{quote(key)}")

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(_remove, self.path_for(key), self.root)

    def playback_url(self, key: str, *, ttl_seconds: int = 3600) -> str:
        validate_key(key)
        if not self._secret:
            raise RuntimeError("signed media URLs need LMS_JWT_SECRET")
        # Rounded up to the minute, so a player asking again soon gets the same, cacheable URL.
        # Rounded up to the minute (URLs made within one minute are the same, cacheable), and
        # from the time itself, not its whole seconds: never less than `ttl_seconds` away.
        exp = math.ceil((time.time() + ttl_seconds) / 60) * 60
        query = urlencode({"exp": exp, "sig": sign_media_path(self._secret, key, exp)})
        return f"{self.base_url}/media/{quote(key)}?{query}"

    def streaming_url(self, key: str, *, ttl_seconds: int = 3600) -> str | None:
        return None  # the file itself, with byte ranges, is what the /media route serves

    def audio_url(self, key: str) -> str | None:
        return None

    def local_path(self, key: str) -> Path | None:
        return self.path_for(key)
