"""Invariants that hold at run time, checked without `assert`.

`assert` statements vanish under `python -O`: an invariant checked with one would go unchecked
there, and the code after it would fail later with an error that hides the cause. An invariant
that does not hold is a bug, and it must fail loudly with its reason: `present()` raises
RuntimeError with the reason given. This module imports nothing from lms, so any module can use it.
"""

from __future__ import annotations

from typing import TypeVar

T = TypeVar("T")


def present(value: T | None, why: str) -> T:
    """`value`, which cannot be None here for the reason `why`; raises RuntimeError(why) if it
    is None after all."""
    if value is None:
        raise RuntimeError(why)
    return value
