"""The bench's loopback receivers (bench.events.Sink) answer as a webhook receiver and an LRS
would, over kept-alive connections, and count what they took."""

from __future__ import annotations

import uuid

import httpx
from bench.events import Sink


def test_a_webhook_sink_counts_deliveries_by_id_over_one_connection() -> None:
    sink = Sink("webhook")
    sink.start()
    try:
        with httpx.Client() as client:
            ids = [f"msg_{i}" for i in range(3)]
            for i in [*ids, ids[0]]:  # a retry carries the same id
                answer = client.post(sink.url, content=b'{"type":"x"}', headers={"webhook-id": i})
                assert answer.status_code == 204
                assert answer.content == b""
        assert sink.count() == 3
        assert sink.posts == 4
    finally:
        sink.stop()


def test_an_lrs_sink_answers_the_ids_of_a_batch() -> None:
    sink = Sink("lrs")
    sink.start()
    try:
        statements = [{"id": str(uuid.uuid4()), "verb": {}} for _ in range(5)]
        with httpx.Client() as client:
            answer = client.post(f"{sink.url}/statements", json=statements)
            single = client.post(f"{sink.url}/statements", json=statements[0])
        assert answer.status_code == 200
        assert answer.headers["X-Experience-API-Version"] == "1.0.3"
        assert answer.json() == [s["id"] for s in statements]
        assert single.json() == [statements[0]["id"]]
        assert sink.count() == 5
    finally:
        sink.stop()
