"""The collector's settings for a long-running process, once it has started (the API's workers
and `lms worker`)."""

from __future__ import annotations

import gc

# A young-generation collection every 10,000 net allocations instead of CPython's 700. What a
# collection walks is what is alive and young at that moment: the requests in flight, about as
# many objects whatever the threshold. So fewer collections is less work, not more per
# collection. Measured on verifications served in process (lms's edge, 64 in flight, real
# PostgreSQL): 64 collections per 4,000 requests, 1.4-2.3 us of collector per request, became 3
# and 0.9-1.2 us. Cyclic garbage waits a little longer to be freed: 10,000 objects at
# most, a few megabytes.
YOUNG_THRESHOLD = 10_000


def settle() -> None:
    """Freeze what exists (modules, the app, its routes and schemas: some 140,000 objects in an
    API worker), which lives as long as the process: the collector stops walking it. Unfrozen,
    a full collection took tens of milliseconds, a pause every request in flight waited out (it
    showed in the bench's p99). Then collect the young generation less often."""
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
