"""lms.observability.paced: a refresh that took long waits a hundred times as long."""

from __future__ import annotations

import pytest

from lms.observability.paced import PacedRefresh


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def timed_out(paced: PacedRefresh, clock: Clock, seconds: float) -> None:
    with paced.timed():
        clock.now += seconds
        raise TimeoutError


def test_a_cheap_refresh_comes_back_after_its_period() -> None:
    clock = Clock()
    paced = PacedRefresh(10.0, clock=clock)
    assert paced.due()
    with paced.timed():
        clock.now += 0.01
    assert not paced.due()
    clock.now += 9.9
    assert not paced.due()
    clock.now += 0.2
    assert paced.due()


def test_a_dear_refresh_waits_in_proportion_to_its_cost() -> None:
    clock = Clock()
    paced = PacedRefresh(10.0, clock=clock)
    with paced.timed():
        clock.now += 2.5  # a count of a long backlog
    clock.now += 249.0
    assert not paced.due()
    clock.now += 2.0
    assert paced.due()


def test_a_refresh_with_no_period_waits_only_once_it_is_dear() -> None:
    clock = Clock()
    paced = PacedRefresh(0.0, clock=clock)
    with paced.timed():
        clock.now += 0.004  # a short queue's count: every scrape counts again
    assert paced.due()
    with pytest.raises(TimeoutError):
        timed_out(paced, clock, 1.0)  # the scrape's timeout: a failed count costs too
    clock.now += 99.0
    assert not paced.due()
    clock.now += 1.0
    assert paced.due()
