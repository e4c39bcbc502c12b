"""GET/HEAD /media/{key}: local video files for holders of a signed URL, with byte ranges."""

from __future__ import annotations

import asyncio
import io
import os
import re
import stat
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, head
from litestar.exceptions import HTTPException, NotFoundException, PermissionDeniedException
from litestar.openapi import ResponseSpec
from litestar.params import HeaderParameter, PathParameter, QueryParameter
from litestar.response import Stream
from litestar.status_codes import (
    HTTP_200_OK,
    HTTP_206_PARTIAL_CONTENT,
    HTTP_416_REQUESTED_RANGE_NOT_SATISFIABLE,
)

from lms.api.openapi import FORBIDDEN, NOT_FOUND, ErrorBody, errors
from lms.api.security import PUBLIC_OPT
from lms.integrations.storage import LocalVideoStorage, media_type_for, verify_media_signature
from lms.settings import Settings

CHUNK_BYTES = 256 * 1024
CACHE_CONTROL = "private, max-age=3600"
_RANGE = re.compile(r"bytes=([0-9]*)-([0-9]*)")
# A byte position with more digits than this lies past the end of any file; converting thousands
# of digits would only burn CPU (and int() refuses past 4300).
_MAX_DIGITS = 18
_BEYOND_ANY_FILE = 10**_MAX_DIGITS
# What the API hands out (lms.integrations.storage): a key of plain path segments, an expiry in
# unix seconds and a base64url HMAC-SHA256. Anything else cannot verify: 404 for a key, 403 for
# the rest (checked before comparing, which refuses text that is not ASCII).
_SEGMENT = "[A-Za-z0-9_-][A-Za-z0-9._-]*"
KEY_PATTERN = f"^{_SEGMENT}(/{_SEGMENT})*$"
EXP_PATTERN = "^[0-9]{1,12}$"
SIG_PATTERN = "^[A-Za-z0-9_-]{43}$"
_SIG = re.compile(SIG_PATTERN)

MediaKey = Annotated[
    Path,
    PathParameter(
        description="the stored video's key, as in the lesson's videoUrl",
        schema_extra={"format": None, "pattern": KEY_PATTERN, "max_length": 512},
    ),
]
Expiry = Annotated[
    str | None,
    QueryParameter(
        description="exp of the signed URL (unix seconds)", schema_extra={"pattern": EXP_PATTERN}
    ),
]
Signature = Annotated[
    str | None,
    QueryParameter(description="sig of the signed URL", schema_extra={"pattern": SIG_PATTERN}),
]
ByteRange = Annotated[
    str | None,
    HeaderParameter(
        name="Range",
        description="one byte range: bytes=a-b, bytes=a- or bytes=-n (others are ignored)",
    ),
]


def _answers(body: bool) -> dict[int, ResponseSpec]:
    """The video (whole or a range) and the refusals, for GET (`body`) and HEAD."""
    video = {
        "data_container": bytes if body else None,
        "media_type": "video/*",
        "generate_examples": False,
    }
    return {
        HTTP_200_OK: ResponseSpec(description="The whole file", **video),  # type: ignore[arg-type]
        HTTP_206_PARTIAL_CONTENT: ResponseSpec(
            description="The range asked for (Content-Range)",
            **video,  # type: ignore[arg-type]
        ),
        **errors(FORBIDDEN, NOT_FOUND),
        HTTP_416_REQUESTED_RANGE_NOT_SATISFIABLE: ResponseSpec(
            data_container=ErrorBody,
            description="The Range lies outside the file (Content-Range: bytes */size)",
            generate_examples=False,
        ),
    }


@dataclass(frozen=True, slots=True)
class _Served:
    """An open file and the part of it to send."""

    file: io.FileIO
    size: int
    start: int
    length: int
    partial: bool
    media_type: str

    def headers(self) -> dict[str, str]:
        headers = {
            "Accept-Ranges": "bytes",
            "Cache-Control": CACHE_CONTROL,
            "Content-Length": str(self.length),
        }
        if self.partial:
            end = self.start + self.length - 1
            headers["Content-Range"] = f"bytes {self.start}-{end}/{self.size}"
        return headers


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(start, length) of a single `bytes=` range; None to send the whole file. Raises 416 when
    the range lies outside the file. Multiple or malformed ranges are ignored (RFC 9110 allows
    it), so the client gets the whole file rather than an error."""
    match = _RANGE.fullmatch(header.strip()) if header else None
    if match is None or not (match[1] or match[2]):
        return None
    if match[1]:
        start = _position(match[1])
        if match[2] and _position(match[2]) < start:
            return None  # syntactically invalid: ignore the header
        if start >= size:
            raise _unsatisfiable(size)
        last = min(_position(match[2]), size - 1) if match[2] else size - 1
        return start, last - start + 1
    suffix = _position(match[2])  # bytes=-n: the last n bytes
    if suffix == 0 or size == 0:
        raise _unsatisfiable(size)
    return max(size - suffix, 0), min(suffix, size)


def _position(digits: str) -> int:
    significant = digits.lstrip("0") or "0"
    return int(significant) if len(significant) <= _MAX_DIGITS else _BEYOND_ANY_FILE


def _unsatisfiable(size: int) -> HTTPException:
    return HTTPException(
        status_code=HTTP_416_REQUESTED_RANGE_NOT_SATISFIABLE,
        detail="requested range not satisfiable",
        headers={"Content-Range": f"bytes */{size}"},
    )


def _open(path: Path) -> tuple[io.FileIO, int]:
    # A file object rather than a bare descriptor: should a response never be streamed, the
    # garbage collector still closes it.
    file = io.FileIO(path, "r")
    try:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise IsADirectoryError(str(path))
    except OSError:
        file.close()
        raise
    return file, info.st_size


async def _prepare(
    request: Request[Any, Any, Any],
    raw_key: Path,
    exp: str | None,
    sig: str | None,
    byte_range: str | None,
) -> _Served:
    """Check the signature, open the file and resolve the range; the caller closes the file."""
    settings: Settings = request.app.state.settings
    key = raw_key.as_posix().lstrip("/")
    try:
        path = LocalVideoStorage(settings).path_for(key)
    except ValueError:
        raise NotFoundException(detail="no such media") from None
    if not exp or not sig or not settings.jwt_secret:
        raise PermissionDeniedException(detail="a signed media URL is required")
    try:
        expires = int(exp)
    except ValueError:
        raise PermissionDeniedException(detail="invalid media URL signature") from None
    if not _SIG.fullmatch(sig) or not verify_media_signature(
        settings.jwt_secret, key, expires, sig, time.time()
    ):
        raise PermissionDeniedException(detail="invalid or expired media URL signature")
    try:
        file, size = await asyncio.to_thread(_open, path)
    except OSError:
        raise NotFoundException(detail="no such media") from None
    try:
        wanted = parse_range(byte_range, size)
    except HTTPException:
        file.close()
        raise
    start, length = wanted if wanted else (0, size)
    return _Served(file, size, start, length, wanted is not None, media_type_for(key))


async def _chunks(file: io.FileIO, start: int, length: int) -> AsyncIterator[bytes]:
    try:
        offset, end = start, start + length
        while offset < end:
            size = min(CHUNK_BYTES, end - offset)
            chunk = await asyncio.to_thread(os.pread, file.fileno(), size, offset)
            if not chunk:
                break  # the file shrank under us; the client sees a short body
            offset += len(chunk)
            yield chunk
    finally:
        # A plain close: this also runs when the client hung up and the stream was cancelled.
        file.close()


class MediaController(Controller):
    path = "/media"
    tags = ("lessons",)
    # No bearer token: a <video> element cannot send one. The URL's signature authorizes.
    opt = PUBLIC_OPT

    @get(
        "/{key:path}",
        summary="A locally stored video, by signed URL (the videoUrl of a lesson)",
        description="Needs the exp and sig query parameters of the URL the API handed out. "
        "Supports a single HTTP Range (bytes=a-b, bytes=a-, bytes=-n): 206, or 416.",
        responses=_answers(body=True),
    )
    async def fetch_media(
        self,
        request: Request[Any, Any, Any],
        key: MediaKey,
        exp: Expiry = None,
        sig: Signature = None,
        byte_range: ByteRange = None,
    ) -> Stream:
        served = await _prepare(request, key, exp, sig, byte_range)
        return Stream(
            _chunks(served.file, served.start, served.length),
            status_code=HTTP_206_PARTIAL_CONTENT if served.partial else HTTP_200_OK,
            media_type=served.media_type,
            headers=served.headers(),
        )

    @head(
        "/{key:path}",
        summary="Size and type of a locally stored video",
        responses=_answers(body=False),
    )
    async def head_media(
        self,
        request: Request[Any, Any, Any],
        key: MediaKey,
        exp: Expiry = None,
        sig: Signature = None,
        byte_range: ByteRange = None,
    ) -> Response[None]:
        served = await _prepare(request, key, exp, sig, byte_range)
        served.file.close()
        headers = {**served.headers(), "Content-Type": served.media_type}
        return Response(
            None,
            status_code=HTTP_206_PARTIAL_CONTENT if served.partial else HTTP_200_OK,
            headers=headers,
        )
