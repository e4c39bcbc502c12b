"""Hot-path metrics, gathered in plain Python and added to their Prometheus series together.

Under `lms serve` every series lives in a memory-mapped file shared by the workers
(PROMETHEUS_MULTIPROC_DIR): each increment takes a lock, checks the process id and writes the
file. Per request that cost some 18 us of CPU under load (three series, measured by turning them
off), a tenth of a certificate check. Here a request adds to a dict; the sums reach Prometheus
at most FLUSH_DELAY later, and before every scrape of this process's /metrics.
"""

from __future__ import annotations

import weakref
from bisect import bisect_left
from typing import Any

from lms.observability.flush_soon import FlushSoon


class Tally:
    FLUSH_DELAY = 0.05

    def __init__(self) -> None:
        self._counts: dict[Any, float] = {}
        # A histogram child -> its per-bucket counts (as Histogram keeps them, not cumulative),
        # then the sum of the values.
        self._observed: dict[Any, list[float]] = {}
        self._soon = FlushSoon(self.flush, self.FLUSH_DELAY)
        # What gathers counts of its own (the edge's request records): asked to hand them in
        # before every flush, so a scrape sees every request that has ended.
        self._sources: weakref.WeakSet[Any] = weakref.WeakSet()

    def feed_from(self, source: Any) -> None:
        """`source.flush()` is called first at every flush (a weak reference: the source may go)."""
        self._sources.add(source)

    def inc(self, counter: Any, amount: float = 1) -> None:
        """counter.inc(amount), soon: `counter` is a Counter or a labelled child of one."""
        counts = self._counts
        first = not counts
        counts[counter] = counts.get(counter, 0) + amount
        if first:  # the first since the last flush, which is then due FLUSH_DELAY later
            self._soon.ask()

    def observe(self, histogram: Any, value: float) -> None:
        """histogram.observe(value), soon: `histogram` is a Histogram or a labelled child."""
        observed = self._observed.get(histogram)
        bounds = histogram._upper_bounds
        if observed is None:
            observed = self._observed[histogram] = [0.0] * (len(bounds) + 1)
        # Histogram.observe counts a value in the first bucket whose bound is >= it.
        observed[bisect_left(bounds, value)] += 1
        observed[-1] += value
        self._soon.ask()

    def observe_many(self, histogram: Any, values: list[float]) -> None:
        """observe(histogram, value) for each of `values`."""
        observed = self._observed.get(histogram)
        bounds = histogram._upper_bounds
        if observed is None:
            observed = self._observed[histogram] = [0.0] * (len(bounds) + 1)
        for value in values:
            observed[bisect_left(bounds, value)] += 1
        observed[-1] += sum(values)
        self._soon.ask()

    def flush(self) -> None:
        for source in list(self._sources):
            source.flush()
        counts, self._counts = self._counts, {}
        for counter, amount in counts.items():
            counter.inc(amount)
        observed, self._observed = self._observed, {}
        for histogram, sums in observed.items():
            # What Histogram.observe writes, once per bucket instead of once per value.
            histogram._sum.inc(sums[-1])
            for bucket, count in zip(histogram._buckets, sums[:-1], strict=True):
                if count:
                    bucket.inc(count)


# The process's tally: what the request layer and the read router count.
TALLY = Tally()
