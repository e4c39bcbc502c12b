"""A write PostgreSQL failed to break a deadlock runs again, after a wait that lets the
transaction it made way for take its locks first (CI once saw a heartbeat's immediate second
try win the enrollment's lock back from a cascading deletion, deadlock again, and answer 500)."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from lms.domain.learning import concurrency
from lms.domain.learning.concurrency import DEADLOCK_BACKOFF_SECONDS, again_after_deadlock


class Deadlocking:
    """A statement PostgreSQL fails `times` times before it goes through."""

    def __init__(self, times: int) -> None:
        self.left = times
        self.tried_at: list[float] = []

    async def __call__(self) -> str:
        self.tried_at.append(asyncio.get_running_loop().time())
        if self.left:
            self.left -= 1
            raise asyncpg.DeadlockDetectedError("deadlock detected")
        return "written"


async def test_a_statement_deadlocking_twice_in_a_row_still_goes_through() -> None:
    statement = Deadlocking(times=2)
    assert await again_after_deadlock(statement) == "written"
    assert len(statement.tried_at) == 3


async def test_each_new_try_waits_first() -> None:
    statement = Deadlocking(times=len(DEADLOCK_BACKOFF_SECONDS))
    assert await again_after_deadlock(statement) == "written"
    gaps = [b - a for a, b in zip(statement.tried_at, statement.tried_at[1:], strict=False)]
    assert len(gaps) == len(DEADLOCK_BACKOFF_SECONDS)
    for gap, wait in zip(gaps, DEADLOCK_BACKOFF_SECONDS, strict=True):
        assert gap >= wait / 2 * 0.9  # jitter takes off at most half


async def test_a_deadlock_that_keeps_coming_is_the_answer_in_the_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(concurrency, "DEADLOCK_BACKOFF_SECONDS", (0.0, 0.0))
    statement = Deadlocking(times=10)
    with pytest.raises(asyncpg.DeadlockDetectedError):
        await again_after_deadlock(statement)
    assert len(statement.tried_at) == 3


async def test_other_errors_are_not_tried_again() -> None:
    tries = 0

    async def refused() -> None:
        nonlocal tries
        tries += 1
        raise asyncpg.ForeignKeyViolationError("gone")

    with pytest.raises(asyncpg.ForeignKeyViolationError):
        await again_after_deadlock(refused)
    assert tries == 1
