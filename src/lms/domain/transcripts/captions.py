"""WebVTT and SubRip captions rendered from transcript segments (the same cues in both)."""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

# Times are handled in whole milliseconds, the unit both formats write, so that "end after start"
# and "cues in order" hold for what is written, not only for the floats the segments carry.
# Text is put on one line (whisper's segments hold no meaningful line breaks), then wrapped at 42
# characters a line (the common broadcast and streaming limit), at most 2 lines a cue, balanced;
# a longer segment becomes consecutive cues that share its time in proportion to their length, so
# nothing is cut and no cue fills the screen. Words are never broken.
MAX_LINE_CHARS = 42
MAX_LINES = 2
# A zero-length segment (whisper emits them around silence) would be an invalid or invisible cue:
# it is lengthened to this, though not past the start of the next cue.
MIN_CUE_MS = 500


class TimedText(Protocol):
    """A segment as the captions need it (the API's Segment Struct is one)."""

    @property
    def start(self) -> float: ...

    @property
    def end(self) -> float: ...

    @property
    def text(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Cue:
    start_ms: int
    end_ms: int
    lines: tuple[str, ...]


def to_webvtt(segments: Iterable[TimedText]) -> str:
    """A WebVTT file: "WEBVTT", a blank line, then cues separated by blank lines."""
    blocks = [
        f"{_timestamp(c.start_ms, '.')} --> {_timestamp(c.end_ms, '.')}\n"
        + "\n".join(_escape_vtt(line) for line in c.lines)
        for c in cues(segments)
    ]
    return "WEBVTT\n" + "".join(f"\n{block}\n" for block in blocks)


def to_srt(segments: Iterable[TimedText]) -> str:
    """A SubRip file: numbered cues (from 1) separated by blank lines."""
    # SubRip defines no escapes (an entity may well be shown as typed), so text goes as spoken.
    blocks = [
        f"{n}\n{_timestamp(c.start_ms, ',')} --> {_timestamp(c.end_ms, ',')}\n" + "\n".join(c.lines)
        for n, c in enumerate(cues(segments), start=1)
    ]
    return "\n".join(f"{block}\n" for block in blocks)


def cues(segments: Iterable[TimedText]) -> list[Cue]:
    """The cues to write: non-empty, ordered by start, each ending after it starts."""
    timed: list[tuple[int, int, str]] = []
    for segment in segments:
        text = clean_text(segment.text)
        if not text or not (math.isfinite(segment.start) and math.isfinite(segment.end)):
            continue
        start = max(0, round(segment.start * 1000))
        timed.append((start, max(start, round(segment.end * 1000)), text))
    timed.sort(key=lambda t: (t[0], t[1]))  # stable: equal times keep the transcript's order

    result: list[Cue] = []
    for i, (start, end, text) in enumerate(timed):
        if end <= start:
            following = next((t[0] for t in timed[i + 1 :] if t[0] > start), None)
            end = start + MIN_CUE_MS if following is None else min(start + MIN_CUE_MS, following)
        result.extend(_split(start, end, wrap(text)))
    # The later parts of a split segment may start after the next segment does (segments can
    # overlap); WebVTT wants cues ordered by start, so order them again (stable).
    result.sort(key=lambda c: c.start_ms)
    return result


def clean_text(text: str) -> str:
    """One line of text: whitespace runs (newlines included) become one space; control
    characters, which no player shows and which could end a cue early, are dropped."""
    kept = "".join(ch for ch in text if ch.isspace() or unicodedata.category(ch) != "Cc")
    return " ".join(kept.split())


def wrap(text: str, width: int = MAX_LINE_CHARS) -> list[str]:
    """Lines of at most `width` characters (a longer word gets a line of its own, unbroken),
    each pair that shares a cue balanced so that no orphan word hangs on its second line."""
    lines: list[str] = []
    current = ""
    for word in text.split():
        if current and len(current) + 1 + len(word) > width:
            lines.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    if current:
        lines.append(current)
    balanced: list[str] = []
    for i in range(0, len(lines), MAX_LINES):
        balanced.extend(_balance(lines[i : i + MAX_LINES], width))
    return balanced


def _balance(lines: list[str], width: int) -> list[str]:
    """Two lines re-broken where the longer of them is shortest (the greedy break is one option,
    so this never does worse)."""
    if len(lines) != 2:
        return lines
    words = " ".join(lines).split()
    best = lines
    for cut in range(1, len(words)):
        first, second = " ".join(words[:cut]), " ".join(words[cut:])
        longest = max(len(first), len(second))
        if longest <= max(width, *map(len, lines)) and longest < max(map(len, best)):
            best = [first, second]
    return best


def _split(start: int, end: int, lines: Sequence[str]) -> list[Cue]:
    """Cues of at most MAX_LINES lines over [start, end), timed in proportion to their text."""
    groups = [tuple(lines[i : i + MAX_LINES]) for i in range(0, len(lines), MAX_LINES)]
    if len(groups) == 1 or end - start < len(groups):  # too short to share: keep it whole
        return [Cue(start, end, tuple(lines))]
    sizes = [sum(len(line) for line in group) for group in groups]
    total = sum(sizes)
    result: list[Cue] = []
    cue_start, done = start, 0
    for i, (group, size) in enumerate(zip(groups, sizes, strict=True)):
        done += size
        cue_end = end if i == len(groups) - 1 else start + (end - start) * done // total
        # Each later cue keeps at least one millisecond for itself.
        cue_end = max(cue_start + 1, min(cue_end, end - (len(groups) - 1 - i)))
        result.append(Cue(cue_start, cue_end, group))
        cue_start = cue_end
    return result


def _timestamp(ms: int, separator: str) -> str:
    """HH:MM:SS.mmm (WebVTT) or HH:MM:SS,mmm (SubRip); hours take more digits past 99."""
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}{separator}{millis:03d}"


def _escape_vtt(line: str) -> str:
    # WebVTT cue text treats '&' and '<' as markup; '>' is escaped too so that no cue can
    # contain "-->", which the format forbids in cue text.
    return line.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
