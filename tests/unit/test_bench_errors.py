"""bench.suite counts a run's errors (socket errors, timeouts, answers not 2xx/3xx) and says
which kinds they were, so that a run with errors can be read without running it again."""

from __future__ import annotations

from bench.suite import error_kinds, wrk_figures

RESULT = {
    "duration_us": 2_000_000,
    "requests": 1000,
    "latency_us": {"p50": 1500, "p99": 9000, "p90": 4000},
    "errors": {"connect": 0, "read": 2, "write": 0, "status": 7, "timeout": 3},
}


def test_the_kinds_of_a_runs_errors_add_up_to_its_count() -> None:
    output = "  1000 requests in 2.00s\n  Non-2xx or 3xx responses: 7\n"
    assert error_kinds(RESULT, output) == {"read": 2, "timeout": 3, "not_2xx_3xx": 7}
    assert wrk_figures(RESULT, output) == (500.0, 1.5, 9.0, 12)


def test_without_wrks_line_the_scripts_status_count_stands() -> None:
    assert error_kinds(RESULT, "") == {"read": 2, "timeout": 3, "not_2xx_3xx": 7}
    clean = {**RESULT, "errors": dict.fromkeys(RESULT["errors"], 0)}
    assert error_kinds(clean, "") == {}
    assert wrk_figures(clean, "")[3] == 0
