"""The README's side-by-side figures are those of bench/results/latest.json, the run `make bench`
wrote last: pasting a table by hand, or running the bench without updating the README, fails."""

from __future__ import annotations

import json
from pathlib import Path

from bench.suite import ratios_table, results_table

ROOT = Path(__file__).resolve().parents[2]


def test_the_readme_shows_the_latest_bench_run() -> None:
    report = json.loads((ROOT / "bench" / "results" / "latest.json").read_text())
    readme = (ROOT / "README.md").read_text()
    for table in (results_table(report), ratios_table(report)):
        assert "\n".join(table) in readme, (
            "README's performance tables are not bench/results/latest.json's: paste "
            "`.venv/bin/python -m bench.suite --readme`"
        )
