"""The hot lane remembers header names and values it has seen to hold no control byte, so that
the browser headers every request repeats are searched once. A value made anew for each request
(X-Request-ID, an ETag asked for, a trace id) must not take the memo's bounded room: 4,096 such
requests would fill it, and from then on every value a client first sends is searched each time."""

from __future__ import annotations

import pytest

from lms import hot_lane


def scope_with(headers: list[tuple[bytes, bytes]]) -> dict[str, object]:
    return {"type": "http", "method": "GET", "path": "/courses", "headers": headers}


def test_values_made_for_each_request_are_checked_but_not_remembered() -> None:
    hot_lane._CLEAN.clear()
    browser = [(b"host", b"api.example"), (b"user-agent", b"Mozilla/5.0 (X11; Linux x86_64)")]
    for i in range(50):
        hot_lane.Request(
            scope_with(
                [
                    *browser,
                    (b"x-request-id", b"req-%d" % i),
                    (b"if-none-match", b'"etag-%d"' % i),
                    (b"traceparent", b"00-%032x-%016x-01" % (i, i)),
                ]
            )
        )
    remembered = set(hot_lane._CLEAN)
    assert b"Mozilla/5.0 (X11; Linux x86_64)" in remembered
    assert not any(v.startswith((b"req-", b'"etag-', b"00-")) for v in remembered)
    assert len(remembered) == 7  # 5 names, host's and user-agent's values


def test_a_control_byte_in_such_a_value_still_hands_the_request_on() -> None:
    with pytest.raises(hot_lane.HandOn):
        hot_lane.Request(scope_with([(b"host", b"api.example"), (b"x-request-id", b"a\x01b")]))
