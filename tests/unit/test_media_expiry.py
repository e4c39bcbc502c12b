"""A signed media URL lives at least its TTL, even when made just after a minute begins (the
fresh-clone suite once made one at hh:mm:00.37 that ended 0.37 s early)."""

from __future__ import annotations

from lms.integrations.cloudinary import expiry


def test_an_url_made_in_the_first_second_of_a_minute_lives_its_whole_ttl() -> None:
    minute = 1_796_418_420.0  # a multiple of 60
    for moment in (minute, minute + 0.37, minute + 59.9, minute + 60):
        ends = expiry(600, now=moment)
        assert moment + 600 <= ends <= moment + 660
        assert ends % 60 == 0
