"""How much of the speech a transcript covers: voice activity against the segments' times.

Whisper's sequential decoder can drop a whole 30 s window without a word: when the text of a
window compresses too well (repeated phrasing, a lecture that repeats itself), it falls back to
sampling at temperatures up to 1.0, and a sample whose average log-probability is below -1 while
the model's no-speech probability is above 0.6 makes it treat the window as silence and jump past
it. The sample is random, so the same audio loses different windows from run to run. Measuring
coverage is how the worker sees that happen and decodes again (Transcriber.transcribe).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from faster_whisper.vad import VadOptions, get_speech_timestamps

from lms.integrations.whisper.audio import SAMPLE_RATE

Span = tuple[float, float]  # seconds from the start of the audio

# A pause between sentences is not lost speech: each segment counts as covering this much of the
# speech on either side of it (VAD also pads its speech by 0.4 s each side and joins speech across
# silences shorter than 2 s, so the gaps between two segments inside one stretch of speech are
# pauses of up to 2 s).
PAUSE_SECONDS = 1.0
# Below this share of the speech covered, or with a longer stretch of speech uncovered anywhere, a
# transcript is short: decoded again, and if still short, stored with a warning. A normal
# transcript covers 0.97-1.0 of the speech and has no uncovered stretch; one skipped window is a
# hole of up to 30 s, which the share alone would hide in an hour of audio.
MIN_COVERAGE = 0.9
MAX_GAP_SECONDS = 10.0


def speech_spans(samples: np.ndarray[Any, Any]) -> list[Span]:
    """Where Silero VAD (faster-whisper's, with its default options, as transcribe uses them)
    hears speech in 16 kHz mono samples."""
    chunks = get_speech_timestamps(samples, VadOptions())
    return [(c["start"] / SAMPLE_RATE, c["end"] / SAMPLE_RATE) for c in chunks]


@dataclass(frozen=True, slots=True)
class Coverage:
    speech_seconds: float  # what VAD found
    covered_seconds: float  # of that, what the segments cover (pauses between them included)
    longest_gap: Span | None  # the longest stretch of speech no segment covers

    @property
    def ratio(self) -> float:
        """Share of the speech covered, 1.0 where there is no speech to cover."""
        if self.speech_seconds <= 0:
            return 1.0
        return min(1.0, self.covered_seconds / self.speech_seconds)

    @property
    def gap_seconds(self) -> float:
        return self.longest_gap[1] - self.longest_gap[0] if self.longest_gap else 0.0

    @property
    def short(self) -> bool:
        return self.ratio < MIN_COVERAGE or self.gap_seconds > MAX_GAP_SECONDS

    def warning(self) -> str | None:
        """One sentence for the transcript when it is short, else None."""
        if not self.short:
            return None
        missing = self.speech_seconds - self.covered_seconds
        where = ""
        if self.longest_gap is not None:
            where = f", the longest from {_clock(self.longest_gap[0])} to"
            where += f" {_clock(self.longest_gap[1])}"
        return (
            f"incomplete: {missing:.0f} s of the {self.speech_seconds:.0f} s of speech detected"
            f" have no text ({self.ratio:.0%} covered{where})"
        )


def _clock(seconds: float) -> str:
    minutes, rest = divmod(int(seconds), 60)
    return (
        f"{minutes // 60}:{minutes % 60:02d}:{rest:02d}"
        if minutes >= 60
        else f"{minutes}:{rest:02d}"
    )


def _merged(spans: list[Span]) -> list[Span]:
    merged: list[Span] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def measure(speech: list[Span], segments: list[Span]) -> Coverage:
    """How much of `speech` the `segments` cover, each widened by PAUSE_SECONDS."""
    covered = _merged([(s - PAUSE_SECONDS, e + PAUSE_SECONDS) for s, e in segments])
    total = covered_total = 0.0
    longest: Span | None = None
    for start, end in _merged(speech):
        total += end - start
        cursor = start  # the first second of this stretch of speech not yet accounted for
        for c_start, c_end in covered:
            if c_end <= cursor:
                continue
            if c_start >= end:
                break
            if c_start > cursor:
                longest = _longer(longest, (cursor, c_start))
            overlap_start = max(cursor, c_start)
            overlap_end = min(end, c_end)
            covered_total += overlap_end - overlap_start
            cursor = overlap_end
            if cursor >= end:
                break
        if cursor < end:
            longest = _longer(longest, (cursor, end))
    return Coverage(round(total, 3), round(covered_total, 3), longest)


def _longer(current: Span | None, candidate: Span) -> Span:
    if current is None or candidate[1] - candidate[0] > current[1] - current[0]:
        return candidate
    return current
