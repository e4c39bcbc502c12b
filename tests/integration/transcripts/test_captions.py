"""Captions (.vtt, .srt): strictly valid files with the segments' times and text, 409, access."""

from __future__ import annotations

import html
import itertools
import math
import re
import uuid
from dataclasses import dataclass

import asyncpg
import httpx
import pytest

from lms.domain.transcripts.captions import MAX_LINE_CHARS, MAX_LINES, to_srt, to_webvtt
from lms.domain.transcripts.schemas import Segment
from tests.conftest import TestUser
from tests.integration.transcripts.helpers import (
    MakeUser,
    course_with_videos,
    enroll,
    new_video_version,
    store_transcript,
)

TIMESTAMP = r"(\d{2,}):([0-5]\d):([0-5]\d)[.,](\d{3})"
VTT_TIMING = re.compile(
    rf"^{TIMESTAMP.replace('[.,]', '[.]')} --> {TIMESTAMP.replace('[.,]', '[.]')}$"
)
SRT_TIMING = re.compile(rf"^{TIMESTAMP.replace('[.,]', ',')} --> {TIMESTAMP.replace('[.,]', ',')}$")
# The character references a WebVTT cue may hold (we never write tags).
VTT_REFERENCE = re.compile(r"&(amp|lt|gt|nbsp|lrm|rlm);")


@dataclass(frozen=True)
class Cue:
    start: float
    end: float
    lines: list[str]

    @property
    def text(self) -> str:
        return " ".join(self.lines)


def seconds(match: re.Match[str], first: int) -> float:
    h, m, s, ms = (int(match[first + i]) for i in range(4))
    return h * 3600 + m * 60 + s + ms / 1000


def parse_vtt(body: str) -> list[Cue]:
    """A strict WebVTT reader: the header, then blocks separated by one blank line; each cue a
    timing line and at least one non-empty text line; no "-->", no '<', every '&' a known
    character reference; end after start; starts never going back. Returns the unescaped cues."""
    assert "\r" not in body and "\0" not in body and not body.startswith("\ufeff")
    assert body.startswith("WEBVTT\n"), body[:20]
    assert body.endswith("\n") and not body.endswith("\n\n\n")
    blocks = body.rstrip("\n").split("\n\n")
    assert blocks[0] == "WEBVTT"
    cues: list[Cue] = []
    for block in blocks[1:]:
        lines = block.split("\n")
        timing = VTT_TIMING.match(lines[0])
        assert timing, f"not a timing line: {lines[0]!r}"
        start, end = seconds(timing, 1), seconds(timing, 5)
        assert end > start, lines[0]
        assert not cues or start >= cues[-1].start, "cues must be ordered by start time"
        text = lines[1:]
        assert text and all(line.strip() for line in text), block
        for line in text:
            assert "-->" not in line and "<" not in line and ">" not in line, line
            assert "&" not in VTT_REFERENCE.sub("", line), line
        cues.append(Cue(start, end, [html.unescape(line) for line in text]))
    return cues


def parse_srt(body: str) -> list[Cue]:
    """A strict SubRip reader: blocks numbered 1, 2, 3..., a timing line with comma
    milliseconds, then at least one non-empty text line; blocks separated by one blank line."""
    assert "\r" not in body
    if not body:
        return []
    assert body.endswith("\n") and not body.endswith("\n\n")
    cues: list[Cue] = []
    for number, block in enumerate(body.rstrip("\n").split("\n\n"), start=1):
        lines = block.split("\n")
        assert lines[0] == str(number), block
        timing = SRT_TIMING.match(lines[1])
        assert timing, f"not a timing line: {lines[1]!r}"
        start, end = seconds(timing, 1), seconds(timing, 5)
        assert end > start and (not cues or start >= cues[-1].start), block
        assert len(lines) > 2 and all(line.strip() for line in lines[2:]), block
        cues.append(Cue(start, end, lines[2:]))
    return cues


SPOKEN = [
    (0.0, 2.5, "Welcome to the course."),
    (2.5, 6.0, "if a < b && c > d --> done"),  # markup characters and an arrow in speech
    (6.0, 6.0, "A zero-length segment."),
    (7.0, 8.0, "   "),  # nothing to show: no cue
    (3723.5, 3725.042, "One hour, two minutes and three seconds in."),
]


async def published_lesson(
    api: httpx.AsyncClient, db: asyncpg.Pool, owner: TestUser, admin: TestUser, title: str
) -> tuple[dict[str, object], dict[str, object]]:
    course, (lesson,) = await course_with_videos(api, owner, [title], publish_as=admin)
    return course, lesson


async def test_webvtt_from_the_segments(
    api: httpx.AsyncClient, db: asyncpg.Pool, creator: TestUser, admin: TestUser, learner: TestUser
) -> None:
    course, lesson = await published_lesson(api, db, creator, admin, "Intro to Parsing (C++)!")
    await store_transcript(db, str(lesson["id"]), SPOKEN)
    await enroll(db, learner, str(course["id"]))

    response = await api.get(f"/lessons/{lesson['id']}/captions.vtt", headers=learner.headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/vtt; charset=utf-8"
    assert response.headers["content-disposition"] == 'inline; filename="intro-to-parsing-c.vtt"'
    body = response.text
    assert "if a &lt; b &amp;&amp; c &gt; d --&gt; done" in body
    cues = parse_vtt(body)
    assert [(c.start, c.end, c.text) for c in cues] == [
        (0.0, 2.5, "Welcome to the course."),
        (2.5, 6.0, "if a < b && c > d --> done"),
        (6.0, 6.5, "A zero-length segment."),  # given half a second, not an empty instant
        (3723.5, 3725.042, "One hour, two minutes and three seconds in."),
    ]
    assert "\n01:02:03.500 --> 01:02:05.042\n" in body
    for user in (creator, admin):
        again = await api.get(f"/lessons/{lesson['id']}/captions.vtt", headers=user.headers)
        assert again.status_code == 200 and again.text == body


async def test_subrip_from_the_segments(
    api: httpx.AsyncClient, db: asyncpg.Pool, creator: TestUser, admin: TestUser
) -> None:
    _, lesson = await published_lesson(api, db, creator, admin, "Über Café")
    await store_transcript(db, str(lesson["id"]), SPOKEN)

    response = await api.get(f"/lessons/{lesson['id']}/captions.srt", headers=creator.headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/x-subrip; charset=utf-8"
    assert response.headers["content-disposition"] == 'inline; filename="uber-cafe.srt"'
    body = response.text
    assert body.startswith("1\n00:00:00,000 --> 00:00:02,500\nWelcome to the course.\n\n2\n")
    # 43 characters: two lines, balanced.
    assert (
        "\n4\n01:02:03,500 --> 01:02:05,042\nOne hour, two minutes\nand three seconds in.\n" in body
    )
    cues = parse_srt(body)
    assert [c.text for c in cues] == [
        "Welcome to the course.",
        "if a < b && c > d --> done",  # SubRip has no escapes: the words as spoken
        "A zero-length segment.",
        "One hour, two minutes and three seconds in.",
    ]


async def test_captions_wait_for_the_transcript_and_follow_its_access_rules(
    api: httpx.AsyncClient,
    db: asyncpg.Pool,
    creator: TestUser,
    admin: TestUser,
    learner: TestUser,
    make_user: MakeUser,
) -> None:
    _, lesson = await published_lesson(api, db, creator, admin, "Intro")
    for ext in ("vtt", "srt"):
        response = await api.get(f"/lessons/{lesson['id']}/captions.{ext}", headers=admin.headers)
        assert response.status_code == 409
        assert "transcriptStatus QUEUED" in response.json()["detail"]

    await store_transcript(db, str(lesson["id"]), SPOKEN)
    await new_video_version(db, str(lesson["id"]))  # the transcript on file is of the old video
    response = await api.get(f"/lessons/{lesson['id']}/captions.vtt", headers=creator.headers)
    assert response.status_code == 409
    await db.execute(
        "UPDATE lessons SET transcript_status = 'DONE' WHERE id = $1", uuid.UUID(str(lesson["id"]))
    )
    response = await api.get(f"/lessons/{lesson['id']}/captions.srt", headers=creator.headers)
    assert response.status_code == 409 and "older video" in response.json()["detail"]
    await store_transcript(db, str(lesson["id"]), [(0.0, 1.0, "New take.")])
    response = await api.get(f"/lessons/{lesson['id']}/captions.vtt", headers=creator.headers)
    assert response.status_code == 200 and [c.text for c in parse_vtt(response.text)] == [
        "New take."
    ]

    _, (draft_lesson,) = await course_with_videos(api, creator, ["Draft"])
    await store_transcript(db, draft_lesson["id"], [(0.0, 1.0, "Hidden.")])
    other_creator = await make_user("CREATOR")
    for ext in ("vtt", "srt"):
        url = f"/lessons/{lesson['id']}/captions.{ext}"
        assert (await api.get(url)).status_code == 401
        assert (await api.get(url, headers=learner.headers)).status_code == 403
        assert (await api.get(url, headers=other_creator.headers)).status_code == 403
        hidden = f"/lessons/{draft_lesson['id']}/captions.{ext}"
        assert (await api.get(hidden, headers=other_creator.headers)).status_code == 404
        assert (await api.get(hidden, headers=learner.headers)).status_code == 404
        missing = f"/lessons/{uuid.uuid4()}/captions.{ext}"
        assert (await api.get(missing, headers=admin.headers)).status_code == 404


async def test_a_transcript_without_words_gives_empty_but_valid_files(
    api: httpx.AsyncClient, db: asyncpg.Pool, creator: TestUser
) -> None:
    _, (lesson,) = await course_with_videos(api, creator, ["Silence"])
    await store_transcript(db, lesson["id"], [])
    vtt = await api.get(f"/lessons/{lesson['id']}/captions.vtt", headers=creator.headers)
    assert vtt.status_code == 200 and vtt.text == "WEBVTT\n" and parse_vtt(vtt.text) == []
    srt = await api.get(f"/lessons/{lesson['id']}/captions.srt", headers=creator.headers)
    assert srt.status_code == 200 and srt.text == "" and parse_srt(srt.text) == []


# The renderer on its own: the edge cases a real transcript rarely shows all at once.


def seg(start: float, end: float, text: str) -> Segment:
    return Segment(start=start, end=end, text=text)


def test_timestamps_past_an_hour_and_past_a_hundred_hours() -> None:
    cues = parse_vtt(to_webvtt([seg(3599.9995, 3600.0, "edge"), seg(360_000.25, 360_001, "long")]))
    body = to_webvtt([seg(360_000.25, 360_001, "long")])
    assert "100:00:00.250 --> 100:00:01.000" in body
    assert [(c.start, c.end) for c in cues] == [(3600.0, 3600.5), (360_000.25, 360_001.0)]
    assert "01:00:00,000 --> 01:00:00,500" in to_srt([seg(3599.9995, 3600.0, "edge")])


def test_cues_are_ordered_non_empty_and_never_zero_length() -> None:
    segments = [
        seg(10.0, 12.0, "third"),
        seg(1.0, 1.0004, "rounds to nothing"),  # same millisecond: lengthened
        seg(1.2, 1.5, "next"),  # ... but not past the next cue
        seg(0.0, 0.5, "first"),
        seg(20.0, 19.0, "ends before it starts"),
        seg(21.0, 22.0, "\n\t "),
        seg(-1.0, 0.2, "negative start"),
        seg(math.nan, 1.0, "no time"),
    ]
    cues = parse_vtt(to_webvtt(segments))
    assert [(c.start, c.end, c.text) for c in cues] == [
        (0.0, 0.2, "negative start"),  # clamped to 0; equal starts: the shorter first
        (0.0, 0.5, "first"),
        (1.0, 1.2, "rounds to nothing"),
        (1.2, 1.5, "next"),
        (10.0, 12.0, "third"),
        (20.0, 20.5, "ends before it starts"),
    ]
    assert [c.text for c in parse_srt(to_srt(segments))] == [c.text for c in cues]


def test_text_is_cleaned_and_escaped() -> None:
    body = to_webvtt([seg(0, 1, " line one\n\nline\r\ntwo \x00\x1b[31m <b>bold</b> &amp; -->")])
    (cue,) = parse_vtt(body)
    assert cue.text == "line one line two [31m <b>bold</b> &amp; -->"
    assert "&lt;b&gt;bold&lt;/b&gt; &amp;amp;" in body and "--&gt;" in body


def test_long_text_is_wrapped_and_split_over_its_time() -> None:
    words = " ".join(f"word{i:02d}" for i in range(40))  # 279 characters
    cues = parse_vtt(to_webvtt([seg(10.0, 20.0, words), seg(15.0, 16.0, "overlapping")]))
    ours = [c for c in cues if c.text != "overlapping"]
    assert len(ours) > 1 and " ".join(c.text for c in ours) == words
    assert all(len(c.lines) <= MAX_LINES for c in cues)
    assert all(len(line) <= MAX_LINE_CHARS for c in cues for line in c.lines)
    # The parts follow each other over the segment's time, in order.
    assert ours[0].start == 10.0 and ours[-1].end == 20.0
    assert all(a.end == b.start for a, b in itertools.pairwise(ours))
    # A word longer than a line is kept whole on a line of its own.
    (cue,) = parse_vtt(to_webvtt([seg(0, 1, "see https://example.test/" + "x" * 60)]))
    assert cue.lines == ["see", "https://example.test/" + "x" * 60]


@pytest.mark.parametrize("duration_ms", [1, 2, 3])
def test_a_segment_too_short_to_split_stays_one_cue(duration_ms: int) -> None:
    words = " ".join(["word"] * 40)
    cues = parse_vtt(to_webvtt([seg(5.0, 5.0 + duration_ms / 1000, words)]))
    assert " ".join(c.text for c in cues) == words
