"""bench.suite's records of same_bytes' database work, the events on/off runs and the payments
runs, and the tables latest.md shows of them."""

from __future__ import annotations

import json

from bench import suite

WORK = {
    "lms": {"heartbeat": {"requests": 31, "statements": 0.71, "transaction_control": 0.0}},
    "raw-limit": {"heartbeat": {"requests": 31, "statements": 0.71, "transaction_control": 0.0}},
    "express": {"heartbeat": {"requests": 31, "statements": 0.74, "transaction_control": 0.06}},
}


def test_the_work_line_is_kept_under_the_suites_names() -> None:
    output = "raw-limit: 3 checks: 3 IDENTICAL\n\nsame_bytes work: " + json.dumps(WORK) + "\n"
    work = suite.parse_db_work(output)
    assert set(work) == {"lms", "raw-limit", "express-prisma"}
    assert suite.parse_db_work("no such line") == {}
    table = suite.db_work_table({"db_work": {"per_request": work}})
    assert table[0] == "| scenario (same_bytes) | lms | raw-limit | express-prisma |"
    assert table[2] == "| heartbeat | 0.71 + 0.00 | 0.71 + 0.00 | 0.74 + 0.06 |"
    assert suite.db_work_table({}) == []


def test_a_known_extra_explanation_is_not_read_as_the_difference_before_it() -> None:
    """same_bytes prints a KNOWN-EXTRA outcome's lines under it; they are not the problems of
    the DIFFERENT check printed just before (which then looked like an unexpected one)."""
    output = "\n".join(
        [
            "express: 3 checks: 1 DIFFERENT, 1 IDENTICAL, 1 KNOWN-EXTRA",
            "  DIFFERENT  200 complete: the last lesson again",
            "      the same but for the microseconds of timestamps",
            "  KNOWN-EXTRA     database work: complete",
            "      more database work than lms (statements+BEGIN/COMMIT)",
            "      known: lms completes in a stored function",
        ]
    )
    (diff,) = suite.parse_same_bytes(output)["express"]["different"]
    assert diff == {
        "check": "200 complete: the last lesson again",
        "problems": ["the same but for the microseconds of timestamps"],
    }


def test_events_on_over_off_with_the_delivery_check() -> None:
    runs = [
        {
            "scenario": "enroll",
            "events": mode,
            "rps": rps,
            "p50_ms": 1.0,
            "p99_ms": 2.0,
            "errors": 0,
            "cpu_share": share,
        }
        for mode, rps, share in (
            ("off", 100.0, {"api": 0.4, "postgres_bench": 0.5, "idle": 0.1}),
            (
                "on",
                95.0,
                {
                    "api": 0.38,
                    "postgres_bench": 0.48,
                    "delivery_worker": 0.06,
                    "postgres_delivery": 0.04,
                    "delivery_receivers": 0.02,
                    "idle": 0.02,
                },
            ),
        )
    ]
    deliveries = {
        "events": 10,
        "delivered": 20,
        "received_per_endpoint": [10, 10],
        "xapi_sent": 4,
        "xapi_queued": 4,
        "lrs_received": 4,
        "lost": 0,
    }
    report = {
        "events": {
            "runs": runs,
            "ratios": {"enroll": {"rps_on_over_off": 0.95, "p99_on_over_off": 1.0}},
            "deliveries": deliveries,
        }
    }
    lines = suite.events_table(report)
    assert "- enroll: events on / events off = 0.95 x requests/s" in "\n".join(lines)
    assert "(target >= 0.90: ok)" in "\n".join(lines)
    (share,) = [line for line in lines if "delivery took" in line]
    assert share == (
        "- enroll, events on: delivery took 12% of the machine during the run (lms worker 6%, "
        "the worker's PostgreSQL backends 4%, the receivers and the LRS stand-in 2%); the API "
        "38%, its PostgreSQL backends 48%, idle 2%"
    )
    assert lines[-1].endswith("lost 0")
    assert suite.events_table({}) == []


def test_events_rounds_ratio_line_and_summed_delivery_checks() -> None:
    report = {
        "events": {
            "runs": [
                {"scenario": "complete", "events": m, "rps": r, "p50_ms": 1.0, "p99_ms": 2.0}
                | {"errors": 0}
                for m, r in (("off", 100.0), ("on", 89.0))
            ],
            "ratios": {
                "complete": {
                    "rps_on_over_off": 0.89,
                    "p99_on_over_off": 1.1,
                    "rounds": [0.87, 0.89, 0.93],
                }
            },
        }
    }
    (line,) = [x for x in suite.events_table(report) if x.startswith("- complete:")]
    assert line.endswith("(target >= 0.90: MISSED); round by round 0.87, 0.89, 0.93")

    def check(events: int, drained: float | None) -> dict[str, object]:
        return {
            "events": events,
            "delivered": 2 * events,
            "received_per_endpoint": [events, events - 1],
            "lost": 1,
            "drained_s": drained,
        }

    total = suite.sum_delivery_checks([check(10, 3.5), check(20, 7.0)])
    assert total == {
        "events": 30,
        "delivered": 60,
        "received_per_endpoint": [30, 28],
        "lost": 2,
        "drained_s": 7.0,
        "rounds": 2,
    }
    assert suite.sum_delivery_checks([check(10, 3.5), check(5, None)])["drained_s"] is None
    assert suite.sum_delivery_checks([]) == {}


def test_rounds_take_turns_at_going_first() -> None:
    """What goes first in a round meets what the scenario before it left; over the rounds each
    implementation (each events mode) goes first as often as the other, give or take one."""
    pair = ("lms", "raw-limit")
    firsts = [suite.in_turn(pair, index)[0] for index in range(4)]
    assert firsts == ["lms", "raw-limit", "lms", "raw-limit"]
    assert all(sorted(suite.in_turn(pair, index)) == sorted(pair) for index in range(4))
    modes = suite.EVENT_MODES
    assert [suite.in_turn(modes, index)[0] for index in range(3)] == ["off", "on", "off"]
