"""Coverage of the speech by a transcript's segments: what counts as covered, what is short."""

from __future__ import annotations

import pytest

from lms.integrations.whisper.coverage import (
    MAX_GAP_SECONDS,
    MIN_COVERAGE,
    PAUSE_SECONDS,
    Coverage,
    measure,
)


def sentences(start: float, end: float, every: float = 5.0, pause: float = 1.5) -> list:
    """Segments of `every - pause` seconds with `pause` between them, from start to end."""
    spans = []
    t = start
    while t < end:
        spans.append((t, min(end, t + every - pause)))
        t += every
    return spans


def test_pauses_between_sentences_are_not_lost_speech() -> None:
    coverage = measure([(0.0, 99.5)], sentences(0.4, 99.6))
    assert coverage.ratio == 1.0
    assert coverage.longest_gap is None
    assert not coverage.short
    assert coverage.warning() is None


def test_a_skipped_window_is_short_even_in_an_hour_of_speech() -> None:
    # One 30 s window without a word in an hour: 99% covered, but a hole no reader would accept.
    segments = [s for s in sentences(0.0, 3600.0) if not 1200.0 <= s[0] < 1230.0]
    coverage = measure([(0.0, 3600.0)], segments)
    assert coverage.ratio > 0.99
    assert coverage.gap_seconds > MAX_GAP_SECONDS
    assert coverage.longest_gap == (1198.5 + PAUSE_SECONDS, 1230.0 - PAUSE_SECONDS)
    assert coverage.short
    assert coverage.warning() == (
        "incomplete: 30 s of the 3600 s of speech detected have no text"
        " (99% covered, the longest from 19:59 to 20:29)"
    )


def test_many_small_holes_are_short_by_their_share() -> None:
    # Every other sentence missing: no hole past the gap limit, half the speech without text.
    segments = sentences(0.0, 100.0, every=12.0, pause=6.0)
    coverage = measure([(0.0, 100.0)], segments)
    assert coverage.gap_seconds <= MAX_GAP_SECONDS
    assert coverage.ratio < MIN_COVERAGE
    assert coverage.short


def test_only_speech_counts_and_overlaps_count_once() -> None:
    # Segments over silence (between the two stretches of speech) cover nothing; overlapping
    # segments are not counted twice.
    coverage = measure([(0.0, 10.0), (50.0, 60.0)], [(0.0, 10.0), (2.0, 8.0), (20.0, 40.0)])
    assert coverage.speech_seconds == 20.0
    assert coverage.covered_seconds == 10.0
    assert coverage.longest_gap == (50.0, 60.0)
    assert coverage.ratio == 0.5


def test_no_speech_is_fully_covered() -> None:
    coverage = measure([], [])
    assert (coverage.ratio, coverage.short, coverage.warning()) == (1.0, False, None)
    assert measure([(0.0, 5.0)], []).ratio == 0.0


def test_an_hour_long_gap_is_written_with_hours() -> None:
    coverage = Coverage(7200.0, 3600.0, (3600.0, 7265.0))
    warning = coverage.warning()
    assert warning is not None
    assert warning.endswith("(50% covered, the longest from 1:00:00 to 2:01:05)")


@pytest.mark.parametrize("ratio", [0.0, 0.5, 0.89])
def test_below_the_minimum_share_is_short(ratio: float) -> None:
    assert Coverage(100.0, ratio * 100.0, None).short
