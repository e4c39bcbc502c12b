"""Probe an uploaded file with PyAV: is it a video, how long, how big; decided by its bytes
alone."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import av.error
from av.stream import Disposition

# Demuxers that read single images (png_pipe, jpeg_pipe, image2, ...) or image animations:
# FFmpeg reports them with a "video" stream, but a picture is not a lesson video.
_IMAGE_FORMATS = frozenset({"image2", "gif", "apng", "webp", "tiff", "bmp"})
_STILL_IMAGE_CODECS = frozenset({"png", "apng", "bmp", "gif", "tiff", "webp", "jpegls", "qoi"})


class NotAVideo(ValueError):
    """The file is not a media container with a playable video stream."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class VideoInfo:
    duration_seconds: float
    container: str
    width: int | None
    height: int | None
    has_audio: bool


def _is_image_format(name: str) -> bool:
    return any(part.endswith("_pipe") or part in _IMAGE_FORMATS for part in name.split(","))


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
        container = av.open(str(path), mode="r")
    except OSError:
        raise  # a missing or unreadable file is our problem, not the uploader's
    except (av.error.FFmpegError, UnicodeDecodeError) as exc:
        raise NotAVideo(f"not a media file FFmpeg can read ({exc.__class__.__name__})") from None
    with container:
        format_name = container.format.name
        if _is_image_format(format_name):
            raise NotAVideo(f"an image ({format_name}), not a video")
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
        duration = _seconds(container.duration, Fraction(1, av.time_base))
        if duration <= 0:
            duration = max(_seconds(s.duration, s.time_base) for s in container.streams)
        if duration <= 0:
            container.seek(0)
            duration = _demuxed_duration(container)
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


async def probe_video_async(path: Path) -> VideoInfo:
    """probe_video in a worker thread: FFmpeg does blocking I/O and CPU work."""
    return await asyncio.to_thread(probe_video, path)
