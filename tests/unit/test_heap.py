"""lms.heap.settle: what a started process does to the collector."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from lms import heap


@pytest.fixture
def restored_collector() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_settling_freezes_the_heap_and_collects_the_young_less_often(
    restored_collector: None,
) -> None:
    _, middle, old = gc.get_threshold()
    made_before = {"kept": True}
    heap.settle()
    assert gc.get_freeze_count() > 0
    assert all(made_before is not o for o in gc.get_objects())  # frozen: in no generation
    assert gc.get_threshold() == (heap.YOUNG_THRESHOLD, middle, old)
    # The young generation collects only past the threshold: a few thousand objects made now
    # stay young (at CPython's 700 they would have been collected and moved on).
    young = [{"n": n} for n in range(2_000)]
    assert gc.get_count()[0] > 1_000, len(young)
