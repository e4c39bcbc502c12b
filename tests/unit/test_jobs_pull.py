"""A worker's pull loop outlasts a JetStream cluster electing a consumer leader: a pull answered
503 (no responders) or caught between servers is tried again instead of ending the worker, while
an error that will not pass by itself still ends it. (tests/integration/faults/test_nats_cluster.py
kills a real node.)"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from nats.errors import ConnectionReconnectingError, NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.errors import BadRequestError, ServiceUnavailableError

from lms import broker as broker_module
from lms.broker import make_broker
from lms.settings import load_settings


@dataclass
class Message:
    data: bytes
    acked: bool = False

    async def ack(self) -> None:
        self.acked = True


@dataclass
class Consumer:
    """Answers each fetch with the next of `answers`: an exception to raise, or messages."""

    answers: list[Any]
    fetches: int = 0

    async def fetch(self, **pull: Any) -> list[Message]:
        self.fetches += 1
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return list(answer)


def broker_with(consumer: Consumer, tmp_path: Any) -> Any:
    settings = load_settings(
        {
            "NATS_URL": "nats://127.0.0.1:1,nats://127.0.0.1:2",
            "DATABASE_URL": "postgresql://postgres@127.0.0.1:1/lms",
            "LMS_DATA_DIR": str(tmp_path),
        }
    )
    broker = make_broker(settings)
    broker.consumer = consumer  # type: ignore[assignment]
    return broker


@pytest.fixture(autouse=True)
def no_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(broker_module, "PULL_RETRY_SECONDS", 0.0)


async def test_pulls_again_while_the_cluster_has_no_consumer_leader(tmp_path: Any) -> None:
    job = Message(b"job")
    consumer = Consumer(
        [
            ServiceUnavailableError(),
            NoRespondersError(),
            NatsTimeoutError(),
            ConnectionReconnectingError(),
            [job],
        ]
    )
    messages = broker_with(consumer, tmp_path).listen()
    first = await anext(messages)
    await first.ack()  # also stops its in-progress heartbeat
    await messages.aclose()
    assert (first.data, job.acked, consumer.fetches) == (b"job", True, 5)


async def test_an_error_that_lasts_still_ends_the_pull_loop(tmp_path: Any) -> None:
    consumer = Consumer([BadRequestError()])
    with pytest.raises(BadRequestError):
        await anext(broker_with(consumer, tmp_path).listen())
