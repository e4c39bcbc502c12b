"""Open media files with PyAV under one rule, and probe uploads: is it a video, how long, how
big; decided by its bytes alone. The worker measures the length of what it downloads the same way.

The rule (open_media), for the upload probe and the worker's decode alike: FFmpeg reads the file's
bytes and nothing else. Left to itself it picks a demuxer by sniffing, and some demuxers read
further files or URLs named inside the media: an HLS or DASH playlist, a concat list, an image
sequence, tee, subfile, a QuickTime reference. A creator's file or URL would then make the server
read another lesson's video, or anything on its disk or network, and hand it back as a
transcript. So the bytes go to FFmpeg through a Python file object, no protocol is allowed for
anything the demuxer might open itself, and only demuxers of self-contained video and audio files
may be picked (FFmpeg's format_whitelist, checked again on the result).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

# PyAV (FFmpeg's libraries, some 23 MB resident) is imported by the first probe, not with the
# module: an API process that never receives an upload does not carry it.
if TYPE_CHECKING:
    import av.container

# FFmpeg's names of the demuxers of real video and audio files, none of which opens anything but
# the input it is given: MP4/QuickTime (external references off, below), Matroska/WebM, AVI,
# FLV, MPEG-TS, Ogg, WAV, MP3, ADTS AAC and FLAC.
ALLOWED_DEMUXERS = (
    "mov,mp4,m4a,3gp,3g2,mj2",
    "matroska,webm",
    "avi",
    "flv",
    "mpegts",
    "ogg",
    "wav",
    "mp3",
    "aac",
    "flac",
)
_ALLOWED_NAMES = frozenset(",".join(ALLOWED_DEMUXERS).split(","))
_OPEN_OPTIONS = {
    "format_whitelist": ",".join(ALLOWED_DEMUXERS),
    # Names no protocol, so whatever a demuxer tries to open besides the input (the input itself
    # is the file object, read through no protocol at all) fails: no file:, http:, pipe:, ...
    "protocol_whitelist": "none",
    "enable_drefs": "0",  # QuickTime data references to other files (off by default; kept off)
}

# A picture inside an allowed container (cover art, a one-frame "video"): not a lesson video.
# Image files themselves (png_pipe, image2, gif, ...) are not among the allowed demuxers.
_STILL_IMAGE_CODECS = frozenset({"png", "apng", "bmp", "gif", "tiff", "webp", "jpegls", "qoi"})


class MediaRefused(ValueError):
    """The file is not media in a format this service reads."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NotAVideo(MediaRefused):
    """The file is not a media container with a playable video stream."""


@contextlib.contextmanager
def open_media(path: Path) -> Iterator[av.container.InputContainer]:
    """`path` opened for reading under the rule above; MediaRefused when its bytes are not one of
    the allowed formats (or not media at all). A missing or unreadable file is an OSError: our
    problem, not the uploader's."""
    import av
    import av.error

    with path.open("rb") as source:
        try:
            container = av.open(
                source, mode="r", options=dict(_OPEN_OPTIONS), metadata_errors="ignore"
            )
        except av.error.ArgumentError:
            # What format_whitelist answers for a demuxer it does not name (EINVAL).
            raise MediaRefused(
                "not a video or audio format this service reads (MP4, MOV, WebM, MKV, AVI, FLV,"
                " MPEG-TS, Ogg, WAV, MP3, AAC or FLAC)"
            ) from None
        except (av.error.FFmpegError, UnicodeDecodeError) as exc:
            raise MediaRefused(
                f"not a media file FFmpeg can read ({exc.__class__.__name__})"
            ) from None
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise  # the disk failed us: our problem, not the uploader's
            # The bytes made the demuxer seek where no file can (before its start).
            raise MediaRefused(
                "not a media file FFmpeg can read (a seek outside the file)"
            ) from None
        with container:
            if not _ALLOWED_NAMES.intersection(container.format.name.split(",")):
                raise MediaRefused(f"the {container.format.name} format is not read here")
            yield container


@dataclass(frozen=True, slots=True)
class VideoInfo:
    duration_seconds: float
    container: str
    width: int | None
    height: int | None
    has_audio: bool


def _seconds(value: int | None, time_base: Fraction | None) -> float:
    if value is None or value <= 0 or time_base is None:
        return 0.0
    return float(value * time_base)


def _demuxed_duration(container: av.container.InputContainer) -> float:
    """The end of the last packet, for containers whose header carries no duration (some WebM
    and MPEG-TS files); reads the packets but decodes nothing."""
    end = 0.0
    for packet in container.demux():
        if packet.pts is None or packet.time_base is None:
            continue
        end = max(end, float((packet.pts + (packet.duration or 0)) * packet.time_base))
    return end


def probe_video(path: Path) -> VideoInfo:
    """Open `path` with FFmpeg and describe its video, or raise NotAVideo saying why not."""
    try:
        with open_media(path) as container:
            return _describe(container)
    except NotAVideo:
        raise
    except MediaRefused as exc:
        raise NotAVideo(exc.reason) from None


def _describe(container: av.container.InputContainer) -> VideoInfo:
    import av
    import av.error
    from av.stream import Disposition

    format_name = container.format.name
    videos = [
        s
        for s in container.streams.video
        # Cover art in an audio file is a "video" stream holding one picture.
        if not s.disposition & Disposition.attached_pic
        and s.codec_context.name not in _STILL_IMAGE_CODECS
    ]
    if not videos:
        raise NotAVideo("the file has no video stream")
    video = videos[0]
    try:
        # A header can promise what the bytes do not hold: insist on one decodable frame.
        frame = next(container.decode(video), None)
    except av.error.FFmpegError as exc:
        raise NotAVideo(f"the video stream cannot be decoded ({exc})") from None
    if frame is None:
        raise NotAVideo("the video stream holds no frames")
    duration = _duration(container)
    if duration <= 0:
        raise NotAVideo("the video has no duration")
    width = video.codec_context.width or frame.width or None
    height = video.codec_context.height or frame.height or None
    return VideoInfo(
        duration_seconds=duration,
        container=format_name,
        width=width,
        height=height,
        has_audio=bool(container.streams.audio),
    )


def _duration(container: av.container.InputContainer) -> float:
    """Seconds: the container's own figure, else its longest stream's, else where its last
    packet ends; 0.0 when none says."""
    import av

    duration = _seconds(container.duration, Fraction(1, av.time_base))
    if duration <= 0:
        duration = max((_seconds(s.duration, s.time_base) for s in container.streams), default=0.0)
    if duration <= 0:
        container.seek(0)
        duration = _demuxed_duration(container)
    return duration


def media_duration(path: Path) -> float | None:
    """How long the media at `path` plays (a video, or the audio-only rendition a store gives
    for one), read under the same rule as the probe; None when its bytes do not say (or are not
    media this service reads: the decoding that follows reports why)."""
    import av.error

    try:
        with open_media(path) as container:
            duration = _duration(container)
    except (MediaRefused, av.error.FFmpegError):
        return None
    return duration if duration > 0 else None


async def probe_video_async(path: Path) -> VideoInfo:
    """probe_video in a worker thread: FFmpeg does blocking I/O and CPU work."""
    return await asyncio.to_thread(probe_video, path)
