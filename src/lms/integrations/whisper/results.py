"""What a transcription gives back: timed segments with their words, and how long it took."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lms.integrations.whisper.coverage import Coverage


@dataclass(frozen=True, slots=True)
class Word:
    start: float
    end: float
    word: str
    probability: float


@dataclass(frozen=True, slots=True)
class Segment:
    start: float
    end: float
    text: str
    words: tuple[Word, ...] = ()


@dataclass(frozen=True, slots=True)
class TranscriptResult:
    language: str
    language_probability: float | None  # None when the model is English-only (not detected)
    duration_seconds: float
    text: str
    segments: list[Segment]
    compute_seconds: float  # all of it: voice activity, and both decodings when there were two
    coverage: Coverage  # the speech VAD found against the segments' times
    redecoded: bool = False  # the first decoding was short and the audio was decoded again

    @property
    def warning(self) -> str | None:
        """What the transcript misses, for its readers, when it is still short."""
        return self.coverage.warning()

    @property
    def realtime_factor(self) -> float:
        """Seconds of audio per second of compute (higher is faster; 10 means 10x real time)."""
        return self.duration_seconds / self.compute_seconds if self.compute_seconds > 0 else 0.0


def _clamp(value: Any, duration: float) -> float:
    # Timestamps come in 20 ms steps and the last one can run past the end of the audio.
    return min(max(float(value), 0.0), duration)


def _word(word: Any, duration: float) -> Word:
    start, end = _clamp(word.start, duration), _clamp(word.end, duration)
    return Word(start, end, str(word.word).strip(), float(word.probability))


def collect_segments(raw: Any, duration: float) -> list[Segment]:
    """Consume faster-whisper's lazy segments (the decoding happens here) into our types."""
    segments: list[Segment] = []
    for seg in raw:
        text = str(seg.text).strip()
        if not text:
            continue  # an empty caption cue helps no one
        words = tuple(_word(w, duration) for w in seg.words or ())
        segments.append(
            Segment(_clamp(seg.start, duration), _clamp(seg.end, duration), text, words)
        )
    segments.sort(key=lambda s: (s.start, s.end))
    return segments
