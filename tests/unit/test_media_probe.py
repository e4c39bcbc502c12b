"""probe_video on the committed fixtures: a video is described, everything else is NotAVideo."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from lms.integrations.media import NotAVideo, probe_video, probe_video_async

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
        ("pixel.png", "image"),
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
