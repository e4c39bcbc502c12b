"""Lesson media over HTTP into a scratch file, behind the fetch policy, bounded in size and time."""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlsplit

from lms.integrations.safe_fetch import FetchFailed, FetchPolicy, FetchRefused, guarded_get
from lms.integrations.whisper.errors import DownloadError, DownloadRefused


def _describe(url: str) -> str:
    # Without the query (signatures, tokens) and any user:password, safe for errors and logs.
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"


def _discard(path: Path) -> None:
    # Synchronous on purpose: one unlink, and it must run even in a task being cancelled.
    path.unlink(missing_ok=True)


async def _stream_to(
    url: str, out: BinaryIO, *, policy: FetchPolicy, max_bytes: int, stall_seconds: float
) -> int:
    """GET `url` into `out`; the number of bytes written."""
    received = 0
    async with guarded_get(url, policy, stall_seconds=stall_seconds) as response:
        if response.status != 200:
            raise DownloadError(f"{_describe(url)} answered HTTP {response.status}")
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise DownloadError(
                f"{_describe(url)} is {declared} bytes, over the {max_bytes} byte limit"
            )
        async for chunk in response.chunks:
            received += len(chunk)
            # Counted as it arrives: a missing or lying Content-Length changes nothing.
            if received > max_bytes:
                raise DownloadError(f"{_describe(url)} is over the {max_bytes} byte limit")
            await asyncio.to_thread(out.write, chunk)
    return received


async def download(
    url: str,
    directory: Path,
    *,
    max_bytes: int,
    policy: FetchPolicy | None = None,
    stall_seconds: float = 60.0,
    total_seconds: float = 1800.0,
) -> Path:
    """Stream an http(s) URL into a new file in `directory` and return its path; the caller
    deletes it. Nothing is left behind on any error. Refused (DownloadRefused) where `policy`
    (by default: public addresses on web ports only) says no, at the first hop or any redirect.
    More than max_bytes is refused; `stall_seconds` bounds each wait (resolving, connecting,
    every read) and `total_seconds` the whole transfer."""
    policy = policy or FetchPolicy()
    # No name taken from the URL: FFmpeg picks some demuxers by extension (an .m3u8 playlist
    # that reads other files), and the bytes alone decide what this is (open_media).
    fd, name = tempfile.mkstemp(dir=directory, prefix="media-")
    path = Path(name)
    deadline = asyncio.timeout(total_seconds)
    try:
        with os.fdopen(fd, "wb") as out:
            async with deadline:
                received = await _stream_to(
                    url, out, policy=policy, max_bytes=max_bytes, stall_seconds=stall_seconds
                )
        if received == 0:
            raise DownloadError(f"{_describe(url)} is empty")
    except FetchRefused as exc:
        _discard(path)
        raise DownloadRefused(
            f"refused to fetch {_describe(url)}: {exc}; the worker fetches only public addresses"
            " on web ports, and what LMS_VIDEO_FETCH_ALLOW lists"
        ) from None
    except FetchFailed as exc:
        _discard(path)
        raise DownloadError(f"could not download {_describe(url)} ({exc})") from exc
    except TimeoutError:
        _discard(path)
        if not deadline.expired():
            raise
        raise DownloadError(
            f"{_describe(url)} took longer than {total_seconds:g} s to download"
        ) from None
    except BaseException:
        _discard(path)  # cancellation included: a worker shutting down mid-download
        raise
    return path
