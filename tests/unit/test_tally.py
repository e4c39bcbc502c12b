"""The tally adds to Prometheus series exactly what observing each value would have."""

from __future__ import annotations

import asyncio
import random

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from lms.observability.tally import Tally

BUCKETS = (0.001, 0.01, 0.1, 1.0)


def series(registry: CollectorRegistry) -> list[str]:
    """The samples, sums rounded: added in another order, floats differ in the last digits."""
    lines = []
    for line in generate_latest(registry).decode().splitlines():
        if not line or line.startswith("#") or "_created" in line:
            continue
        name, _, value = line.rpartition(" ")
        lines.append(f"{name} {round(float(value), 9)}" if "_sum" in name else line)
    return lines


def test_a_flush_writes_what_one_increment_and_observation_at_a_time_would() -> None:
    direct, tallied = CollectorRegistry(), CollectorRegistry()
    values = [random.Random(7).expovariate(20) for _ in range(500)] + [0.001, 0.1, 1.0, 5.0, 0.0]
    made = []
    for registry in (direct, tallied):
        counter = Counter("hits", "hits", ["route"], registry=registry)
        histogram = Histogram("took", "took", ["route"], buckets=BUCKETS, registry=registry)
        made.append((counter.labels("/a"), histogram.labels("/a")))
    (count_a, time_a), (count_b, time_b) = made
    tally = Tally()

    async def on_a_loop() -> None:  # where the tally waits before writing
        for value in values:
            count_a.inc()
            time_a.observe(value)
            tally.inc(count_b)
            tally.observe(time_b, value)
        assert series(tallied) != series(direct)  # nothing written yet
        tally.flush()

    asyncio.run(on_a_loop())
    assert series(tallied) == series(direct)
    tally.flush()  # a second flush adds nothing
    assert series(tallied) == series(direct)


def test_on_an_event_loop_the_sums_arrive_within_the_delay() -> None:
    registry = CollectorRegistry()
    counter = Counter("beats", "beats", registry=registry)
    tally = Tally()

    async def run() -> tuple[float | None, float | None]:
        for _ in range(10):
            tally.inc(counter)
        before = registry.get_sample_value("beats_total")
        await asyncio.sleep(Tally.FLUSH_DELAY * 3)
        return before, registry.get_sample_value("beats_total")

    assert asyncio.run(run()) == (0.0, 10.0)


def test_off_an_event_loop_it_adds_at_once() -> None:
    registry = CollectorRegistry()
    counter = Counter("jobs", "jobs", registry=registry)
    Tally().inc(counter, 3)
    assert registry.get_sample_value("jobs_total") == 3.0
