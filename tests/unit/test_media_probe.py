"""probe_video on the committed fixtures: a video is described, everything else is NotAVideo.
And the rule every media open follows (the upload probe and the worker's decode alike): the
formats of self-contained video and audio files are read; playlists and lists that make FFmpeg
read other files are refused without a byte of those files being read."""

from __future__ import annotations

import shutil
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from lms.integrations.media import NotAVideo, probe_video, probe_video_async
from lms.integrations.whisper import AudioError, UnsupportedMedia, decode_audio

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def test_tiny_video_is_described() -> None:
    info = probe_video(FIXTURES / "tiny.mp4")
    assert info.duration_seconds == pytest.approx(2.0, abs=0.1)
    assert (info.width, info.height) == (64, 48)
    assert info.has_audio
    assert "mp4" in info.container.split(",")


def test_the_name_does_not_matter(tmp_path: Path) -> None:
    disguised = tmp_path / "notes.txt"
    shutil.copyfile(FIXTURES / "tiny.mp4", disguised)
    assert probe_video(disguised).duration_seconds == pytest.approx(2.0, abs=0.1)
    posing = tmp_path / "lesson.mp4"
    shutil.copyfile(FIXTURES / "not-a-video.txt", posing)
    with pytest.raises(NotAVideo):
        probe_video(posing)


async def test_async_probe() -> None:
    info = await probe_video_async(FIXTURES / "tiny.mp4")
    assert info.duration_seconds == pytest.approx(2.0, abs=0.1)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("not-a-video.txt", "not a media file"),
        ("pixel.png", "not a video or audio format this service reads"),
        ("tone.m4a", "no video stream"),
    ],
)
def test_other_files_are_not_videos(name: str, reason: str) -> None:
    with pytest.raises(NotAVideo, match=reason):
        probe_video(FIXTURES / name)


@pytest.mark.parametrize("length", [0, 300, 4000])
def test_truncated_video_is_not_a_video(tmp_path: Path, length: int) -> None:
    truncated = tmp_path / "cut.mp4"
    truncated.write_bytes((FIXTURES / "tiny.mp4").read_bytes()[:length])
    with pytest.raises(NotAVideo):
        probe_video(truncated)


def test_a_missing_file_is_not_the_uploaders_fault(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        probe_video(tmp_path / "nothing.mp4")


def test_fixtures_stay_small() -> None:
    for path in FIXTURES.iterdir():
        assert path.stat().st_size < 100_000, path.name


def remux(source: Path, target: Path, container_format: str, *, audio: bool = True) -> Path:
    """`source`'s streams (without its audio if asked), packets untouched, in another
    container."""
    with av.open(str(source)) as src, av.open(str(target), "w", format=container_format) as out:
        kept = [s for s in src.streams if audio or s.type != "audio"]
        mapping = {s.index: out.add_stream_from_template(s) for s in kept}
        for packet in src.demux(*kept):
            if packet.dts is None:
                continue  # the flush packet at the end of each stream
            packet.stream = mapping[packet.stream.index]
            out.mux(packet)
    return target


def encoded(target: Path, container_format: str, codec: str) -> Path:
    """One second of 64x48 video at 10 fps, for containers the fixture's H.264 does not go into
    as it is (VP8 for WebM, MPEG-4 part 2 for AVI)."""
    with av.open(str(target), "w", format=container_format) as out:
        stream = out.add_stream(codec, rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for index in range(10):
            image = np.full((48, 64, 3), index * 20, dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = index, Fraction(1, 10)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return target


@pytest.mark.parametrize(
    ("container_format", "name"),
    [("mov", "v.mov"), ("matroska", "v.mkv"), ("mpegts", "v.ts"), ("flv", "v.flv")],
)
def test_video_containers_that_stand_alone_are_read(
    tmp_path: Path, container_format: str, name: str
) -> None:
    video = remux(FIXTURES / "tiny.mp4", tmp_path / name, container_format)
    info = probe_video(video)
    assert info.duration_seconds == pytest.approx(2.0, abs=0.3)
    assert (info.width, info.height) == (64, 48)
    assert len(decode_audio(video)) == pytest.approx(2 * 16_000, rel=0.1)


@pytest.mark.parametrize(("container_format", "codec"), [("webm", "libvpx"), ("avi", "mpeg4")])
def test_encoded_videos_are_read(tmp_path: Path, container_format: str, codec: str) -> None:
    video = encoded(tmp_path / f"v.{container_format}", container_format, codec)
    assert probe_video(video).duration_seconds == pytest.approx(1.0, abs=0.2)


def tone(target: Path, container_format: str, codec: str) -> Path:
    """One second of a 440 Hz tone; PyAV converts the float frames to what the codec takes."""
    rate = 48_000 if codec == "opus" else 16_000
    samples = 0.3 * np.sin(2 * np.pi * 440 * np.arange(rate) / rate)
    with av.open(str(target), "w", format=container_format) as out:
        stream = out.add_stream(codec, rate=rate, layout="mono")
        for start in range(0, rate, 1024):
            chunk = samples[start : start + 1024].astype(np.float32).reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(chunk, format="flt", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return target


@pytest.mark.parametrize(
    ("container_format", "codec"),
    [
        ("wav", "pcm_s16le"),
        ("flac", "flac"),
        ("mp3", "libmp3lame"),
        ("adts", "aac"),
        ("ogg", "opus"),
    ],
)
def test_audio_files_are_decoded(tmp_path: Path, container_format: str, codec: str) -> None:
    audio = decode_audio(tone(tmp_path / f"tone.{container_format}", container_format, codec))
    assert len(audio) == pytest.approx(16_000, rel=0.15)
    assert 0.1 < float(np.abs(audio).max()) <= 1.0


def test_what_has_no_audio_is_told_apart(tmp_path: Path) -> None:
    silent = remux(FIXTURES / "tiny.mp4", tmp_path / "silent.mp4", "mp4", audio=False)
    with pytest.raises(AudioError, match="no audio stream"):
        decode_audio(silent)
    with pytest.raises(UnsupportedMedia, match="not a video or audio format"):
        decode_audio(FIXTURES / "pixel.png")
    with pytest.raises(UnsupportedMedia, match="not a media file"):
        decode_audio(FIXTURES / "not-a-video.txt")


def other_lessons_video(tmp_path: Path) -> Path:
    """Another lesson's stored video, where the hostile files below point."""
    target = tmp_path / "media" / "lessons" / "other" / "v1.mp4"
    target.parent.mkdir(parents=True)
    shutil.copyfile(FIXTURES / "tiny.mp4", target)
    return target


PLAYLIST = (
    "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:10\n#EXT-X-MEDIA-SEQUENCE:0\n"
    "#EXTINF:2.0,\n{}\n#EXT-X-ENDLIST\n"
)
# Media that makes FFmpeg read another file (each was read before open_media's rule): an HLS
# playlist naming another lesson's stored video by a relative path, an absolute path or a file:
# URL, and a concat list (known by its first line, whatever the name) naming a file beside it.
HOSTILE = {
    "hls-relative": ("media-1.m3u8", PLAYLIST.format("../../media/lessons/other/v1.mp4")),
    "hls-absolute": ("media-2.m3u8", PLAYLIST.format("{root}/media/lessons/other/v1.mp4")),
    "hls-file-url": ("media-3.m3u8", PLAYLIST.format("file:{root}/media/lessons/other/v1.mp4")),
    "concat": ("media-4.mp4", "ffconcat version 1.0\nfile beside.mp4\n"),
}


def hostile_file(tmp_path: Path, kind: str) -> Path:
    """A downloaded file in the worker's scratch folder (LMS_DATA_DIR/tmp/worker), pointing at
    another lesson's stored video (LMS_DATA_DIR/media/lessons/other/v1.mp4) or a file beside
    it."""
    other_lessons_video(tmp_path)
    scratch = tmp_path / "tmp" / "worker"
    scratch.mkdir(parents=True)
    shutil.copyfile(FIXTURES / "tiny.mp4", scratch / "beside.mp4")
    name, body = HOSTILE[kind]
    path = scratch / name
    path.write_text(body.replace("{root}", str(tmp_path)))
    return path


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_playlists_and_file_lists_are_not_videos(tmp_path: Path, kind: str) -> None:
    with pytest.raises(NotAVideo, match="not a video or audio format this service reads"):
        probe_video(hostile_file(tmp_path, kind))


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_playlists_and_file_lists_are_not_decoded(tmp_path: Path, kind: str) -> None:
    with pytest.raises(UnsupportedMedia, match="not a video or audio format"):
        decode_audio(hostile_file(tmp_path, kind))
