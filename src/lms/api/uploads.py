"""Streaming multipart/form-data reception: the file part goes to a temp file, never into memory."""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

import msgspec
from litestar import Request
from litestar.exceptions import (
    ClientException,
    HTTPException,
    InternalServerException,
    ValidationException,
)
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.status_codes import HTTP_415_UNSUPPORTED_MEDIA_TYPE
from multipart import MultipartError, MultipartSegment, PushMultipartParser

from lms.api.text import bad_character
from lms.domain.files import ReceivedUpload

DEFAULT_MAX_FIELD_BYTES = 64 * 1024
MAX_PARTS = 32  # a lesson form has a handful of fields; more is abuse, not a form
# Writes are batched to about 1 MiB: one thread hop per MiB rather than per ASGI message.
FLUSH_BYTES = 1024 * 1024


class _TempFile:
    """A temp file in `tmp_dir` written in batches from a worker thread."""

    def __init__(self, fd: int, path: Path) -> None:
        self.fd = fd
        self.path = path
        self._pending = bytearray()

    @classmethod
    async def create(cls, tmp_dir: Path) -> _TempFile:
        def make() -> tuple[int, str]:
            tmp_dir.mkdir(parents=True, exist_ok=True)
            return tempfile.mkstemp(dir=tmp_dir, prefix="upload-", suffix=".part")

        fd, name = await asyncio.to_thread(make)
        return cls(fd, Path(name))

    async def write(self, data: bytes) -> None:
        self._pending += data
        if len(self._pending) >= FLUSH_BYTES:
            await self.flush()

    async def flush(self) -> None:
        if self._pending:
            data, self._pending = bytes(self._pending), bytearray()
            await asyncio.to_thread(_write_all, self.fd, data)

    async def close(self) -> None:
        await self.flush()
        fd, self.fd = self.fd, -1
        await asyncio.to_thread(os.close, fd)

    def remove(self) -> None:
        # Synchronous on purpose: it also runs while the task is being cancelled, when awaiting
        # a thread is no longer reliable; close and unlink are single quick syscalls.
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        self.path.unlink(missing_ok=True)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _client_filename(raw: str | None) -> str | None:
    if not raw:
        return None
    # Old browsers send the full client path; keep the last component only.
    return PurePosixPath(raw.replace("\\", "/")).name or None


def _check_text(fields: dict[str, str]) -> None:
    """Nothing the API does not store (the rules of JSON bodies: free text keeps tab and line
    breaks, a field name nothing)."""
    for name, value in fields.items():
        bad = bad_character(name, free_text=False) or bad_character(value, free_text=True)
        if bad is not None:
            raise ClientException(detail=f"form field {name!r} may not contain {bad}")


def check_form(request: Request[Any, Any, Any], fields: dict[str, str], form: type[Any]) -> None:
    """The text fields against the Struct that declares them (lengths, required fields), with the
    error shape of a JSON body's validation; then the characters of the fields it declares (a
    field it does not know is ignored, as in a JSON body that tolerates unknown fields)."""
    try:
        known = msgspec.to_builtins(msgspec.convert(fields, form, strict=True))
    except msgspec.ValidationError as exc:
        message, _, where = str(exc).partition(" - at ")
        key = where.strip("`").removeprefix("$").removeprefix(".") or "form"
        raise ValidationException(
            detail=f"Validation failed for {request.method} {request.url.path}",
            extra=[{"message": message, "key": key, "source": "body"}],
        ) from None
    _check_text(known)


def _too_large(max_bytes: int) -> RequestEntityTooLarge:
    return RequestEntityTooLarge(detail=f"upload too large: the limit is {max_bytes} bytes")


async def receive_upload(
    request: Request[Any, Any, Any],
    *,
    max_bytes: int,
    tmp_dir: Path,
    file_field: str = "file",
    max_field_bytes: int = DEFAULT_MAX_FIELD_BYTES,
    form: type[Any] | None = None,
) -> ReceivedUpload:
    """Read a multipart/form-data body chunk by chunk: text fields into `fields`, the part named
    `file_field` into a temp file under `tmp_dir` (put it on the media file system, so storing
    it is a rename). 415 when the body is not multipart/form-data, 400 when it is malformed,
    413 as soon as more than `max_bytes` arrive (or Content-Length announces more). `form`, a
    Struct, declares the text fields (400 when they do not fit it). On every error the temp file
    is gone; on success the caller owns it (see ReceivedUpload.discard)."""
    media_type, options = request.content_type
    if media_type != "multipart/form-data":
        raise HTTPException(
            status_code=HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            detail="expected a multipart/form-data body",
        )
    boundary = options.get("boundary")
    if not boundary:
        raise ClientException(detail="multipart/form-data without a boundary")
    announced = request.content_length
    if announced is not None and announced > max_bytes:
        raise _too_large(max_bytes)

    fields: dict[str, str] = {}
    sink: _TempFile | None = None
    filename: str | None = None
    size = 0
    try:
        with PushMultipartParser(boundary, max_segment_count=MAX_PARTS) as parser:
            received = 0
            segment: MultipartSegment | None = None
            text = bytearray()
            async for chunk in request.stream():
                received += len(chunk)
                if received > max_bytes:
                    raise _too_large(max_bytes)
                for event in parser.parse(chunk):
                    if isinstance(event, MultipartSegment):
                        segment, text = event, bytearray()
                        if segment.name == file_field:
                            if sink is not None:
                                raise ClientException(detail=f"more than one {file_field!r} part")
                            sink = await _TempFile.create(tmp_dir)
                            filename = _client_filename(segment.filename)
                        elif segment.filename:
                            raise ClientException(detail=f"unexpected file part {segment.name!r}")
                    elif event:
                        if segment is None:
                            raise RuntimeError("the parser emits a segment before its data")
                        if segment.name == file_field and sink is not None:
                            size += len(event)
                            await sink.write(event)
                        else:
                            text += event
                            if len(text) > max_field_bytes:
                                raise RequestEntityTooLarge(
                                    detail=f"form field {segment.name!r} is over "
                                    f"{max_field_bytes} bytes"
                                )
                    elif segment is not None and segment.name != file_field:
                        fields[segment.name or ""] = text.decode(segment.charset or "utf-8")
                if parser.closed:
                    break  # anything after the closing boundary is epilogue, ignored
        if form is not None:
            check_form(request, fields, form)
        else:
            _check_text(fields)
        if sink is not None:
            await sink.close()
    except MultipartError as exc:
        if sink is not None:
            sink.remove()
        raise ClientException(detail=f"malformed multipart/form-data: {exc}") from None
    except (UnicodeError, LookupError):  # an unknown charset, or bytes not in it
        if sink is not None:
            sink.remove()
        raise ClientException(detail="a form field is not valid text") from None
    except InternalServerException:
        # Litestar's stream() says so when the client goes away mid-body.
        if sink is not None:
            sink.remove()
        raise ClientException(detail="the upload was interrupted") from None
    except BaseException:
        if sink is not None:
            sink.remove()
        raise
    return ReceivedUpload(fields, sink.path if sink else None, filename, size)
