"""Group commit for progress heartbeats: heartbeats arriving together in one process share one
statement and one transaction (lms.db.queries.learning.HEARTBEATS).

How a heartbeat travels:
- It joins the batch being collected. When no batch statement is in flight the batch is sent at
  once, so a lone heartbeat waits for nothing (no timer, no fixed window); while one is in
  flight, heartbeats collect, and the next batch goes out the moment it returns. The batch
  window is therefore exactly one statement's latency, and only under load.
- Each heartbeat is answered after the statement that carried it committed (a statement outside
  a transaction block commits before PostgreSQL answers it): an acknowledged heartbeat is
  durable. Each gets its own row: its own 404/400/429/completion, as if the batch ran in
  sequence (lms.db.queries.learning explains the duplicates).
- The statement runs in a task of its own, never in a caller's: a client that disconnects
  cancels its own wait, not the batch; its heartbeat is either in the batch (and written, like
  a heartbeat whose answer was lost on the wire) or dropped before it was sent.
- A batch failing for one member's sake (a lesson deleted meanwhile: a foreign-key violation; a
  deadlock with a cascading deletion; a value PostgreSQL refuses) runs again heartbeat by
  heartbeat, so only the member at fault gets the error. A failure of the database itself
  (connection lost, shutting down) fails every member with that error (a 503 for each): none
  of them was acknowledged.
- At most MAX_IN_FLIGHT statements per pool at a time (one connection each), and at most
  MAX_BATCH heartbeats per statement: the pool's other connections stay free for other work.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import asyncpg

from lms.db.queries import learning as sql
from lms.domain.learning.concurrency import again_after_deadlock

MAX_BATCH = 256
MAX_IN_FLIGHT = 2

# Failures that may be one member's fault: the batch runs again member by member.
_MEMBER_FAULTS = (
    asyncpg.IntegrityConstraintViolationError,  # class 23: a lesson or enrollment deleted meanwhile
    asyncpg.TransactionRollbackError,  # class 40: a deadlock with a cascading deletion
    asyncpg.DataError,  # class 22: a value PostgreSQL refuses
)


@dataclass(slots=True)
class Member:
    lesson_id: uuid.UUID
    user_id: uuid.UUID
    position_seconds: float
    answer: asyncio.Future[asyncpg.Record] = field(repr=False)


@dataclass(frozen=True, slots=True)
class Rules:
    seek_slack_seconds: float
    min_interval_seconds: float
    carry_seconds: float


class HeartbeatBatcher:
    """One per connection pool (and so per event loop): see the module's docstring."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        rules: Rules,
        *,
        max_batch: int = MAX_BATCH,
        max_in_flight: int = MAX_IN_FLIGHT,
    ) -> None:
        self.pool = pool
        self.rules = rules
        self.max_batch = max_batch
        self.max_in_flight = max_in_flight
        self._pending: list[Member] = []
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()
        # Observability and tests: statements sent, heartbeats they carried.
        self.statements = 0
        self.heartbeats = 0

    async def submit(
        self, lesson_id: uuid.UUID, user_id: uuid.UUID, position_seconds: float
    ) -> asyncpg.Record:
        """The heartbeat's row of HEARTBEATS, once its statement committed; or the error that
        statement (or, for a member's own fault, its own statement) raised."""
        answer: asyncio.Future[asyncpg.Record] = asyncio.get_running_loop().create_future()
        self._pending.append(Member(lesson_id, user_id, position_seconds, answer))
        if self._in_flight < self.max_in_flight:
            self._start()
        # A cancelled caller cancels its answer, never the batch: a heartbeat not sent yet is
        # dropped from its batch (_start skips it); one in flight goes on, its answer ignored.
        return await answer

    def _start(self) -> None:
        batch = [m for m in self._pending[: self.max_batch] if not m.answer.cancelled()]
        del self._pending[: self.max_batch]
        if not batch:
            return
        self._in_flight += 1
        self.statements += 1
        self.heartbeats += len(batch)
        task = asyncio.get_running_loop().create_task(self._flush(batch))
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._in_flight -= 1
        while self._pending and self._in_flight < self.max_in_flight:
            self._start()

    async def _flush(self, batch: list[Member]) -> None:
        try:
            try:
                rows = await self._run(batch)
            except _MEMBER_FAULTS:
                if len(batch) == 1:
                    raise
                # One by one, in arrival order (so duplicates still behave as in sequence).
                for member in batch:
                    try:
                        one = await self._run([member])
                    except _MEMBER_FAULTS as exc:
                        _fail(member, exc)
                    else:
                        _answer(member, one[0])
                return
            for member, row in zip(batch, rows, strict=True):
                _answer(member, row)
        except BaseException as exc:  # the database failed: every unanswered member fails
            for member in batch:
                _fail(member, exc)
            if not isinstance(exc, Exception):
                raise

    async def _run(self, batch: Sequence[Member]) -> list[asyncpg.Record]:
        """The statement, again if PostgreSQL broke a deadlock with it
        (lms.domain.learning.concurrency.again_after_deadlock)."""

        async def statement() -> list[asyncpg.Record]:
            async with self.pool.acquire() as conn:
                return await sql.heartbeats(
                    conn,
                    lesson_ids=[m.lesson_id for m in batch],
                    user_ids=[m.user_id for m in batch],
                    positions_seconds=[m.position_seconds for m in batch],
                    seek_slack_seconds=self.rules.seek_slack_seconds,
                    min_interval_seconds=self.rules.min_interval_seconds,
                    carry_seconds=self.rules.carry_seconds,
                )

        return await again_after_deadlock(statement)


def _answer(member: Member, row: asyncpg.Record) -> None:
    if not member.answer.done():
        member.answer.set_result(row)


def _fail(member: Member, exc: BaseException) -> None:
    if not member.answer.done():
        if isinstance(exc, asyncio.CancelledError):
            member.answer.cancel()
        else:
            member.answer.set_exception(exc)


# One batcher per pool. asyncpg pools take no weak references, so the entry holds its pool and
# is looked up by identity; entries of closed pools are dropped when a new pool comes.
_batchers: dict[int, HeartbeatBatcher] = {}


def batcher_for(pool: asyncpg.Pool, rules: Callable[[], Rules]) -> HeartbeatBatcher:
    batcher = _batchers.get(id(pool))
    if batcher is None or batcher.pool is not pool:
        for key, other in list(_batchers.items()):
            if other.pool.is_closing():
                del _batchers[key]
        batcher = _batchers[id(pool)] = HeartbeatBatcher(pool, rules())
    return batcher
