"""Bodies of the transcript routes: a lesson's transcript and where words are spoken in a course."""

from __future__ import annotations

import uuid
from typing import Annotated

from msgspec import Meta

from lms.api.schemas import CamelStruct
from lms.domain.courses.schemas import TranscriptStatus

Seconds = Annotated[float, Meta(ge=0, description="seconds from the start of the video")]


class Segment(CamelStruct):
    start: Seconds
    end: Seconds
    text: str


class Transcript(CamelStruct):
    """The lesson's transcript. Until `status` is DONE: language null, text "" and no segments."""

    status: TranscriptStatus
    language: str | None
    text: str
    duration_seconds: float | None
    segments: list[Segment]
    # Added by issue 20: never a transcript quietly short of speech.
    speech_coverage: Annotated[
        float | None,
        Meta(
            description="share (0 to 1) of the speech found by voice-activity detection that the "
            "segments cover; null until DONE, and for transcripts made before it was measured"
        ),
    ]
    warning: Annotated[
        str | None,
        Meta(
            description="null, or what speech the transcript misses when it is still short "
            "after a second decoding that cannot skip (the transcript is DONE all the same)"
        ),
    ]


class SearchHit(CamelStruct):
    lesson_id: uuid.UUID
    lesson_title: str
    start: Seconds
    end: Seconds
    text: str


class SearchResults(CamelStruct):
    """Matching segments by lesson order then time (at most 100)."""

    items: list[SearchHit]
