"""Draw bench/results/latest.png from latest.json: requests/s and p99 per scenario and
implementation. Runs in bench/.report-venv (matplotlib, bench/report-requirements.txt), never in
the project's environment; bench.suite creates that environment and calls this script:

    bench/.report-venv/bin/python bench/report_chart.py bench/results/latest.json out.png
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

SCENARIOS = ("catalog", "course", "heartbeat", "complete", "verify", "preflight")
VARIANTS = ("plain", "browser")  # bench.suite's; a run without one is plain
IMPLEMENTATIONS = ("lms", "raw-limit", "fastapi-sqlalchemy", "express-prisma", "postgresql")
COLOURS = {
    "lms": "#1f77b4",
    "raw-limit": "#7f7f7f",
    "fastapi-sqlalchemy": "#2ca02c",
    "express-prisma": "#d62728",
    "postgresql": "#bcbd22",
}


def main(source: str, target: str) -> int:
    report = json.loads(Path(source).read_text())
    # One group of bars per scenario and variant; the postgresql ceiling (one pgbench run) in
    # each variant's group.
    found = [r for r in report["runs"] if r.get("rps")]
    variants = [v for v in VARIANTS if any((r.get("variant") or "plain") == v for r in found)]
    runs = {}
    for r in found:
        shared = r["implementation"] == "postgresql"
        for variant in variants if shared else [r.get("variant") or "plain"]:
            runs[(r["scenario"], variant), r["implementation"]] = r
    scenarios = [(s, v) for s in SCENARIOS for v in variants if any(k[0] == (s, v) for k in runs)]
    names = [n for n in IMPLEMENTATIONS if any(k[1] == n for k in runs)]
    if not scenarios:
        print("report_chart: no successful runs to draw", file=sys.stderr)
        return 1
    size = (11 if len(variants) == 1 else 16, 8.5)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=size, constrained_layout=True)
    width = 0.8 / max(len(names), 1)
    for i, name in enumerate(names):
        xs = [s + (i - (len(names) - 1) / 2) * width for s in range(len(scenarios))]
        rps = [runs.get((sc, name), {}).get("rps") or 0 for sc in scenarios]
        p99 = [runs.get((sc, name), {}).get("p99_ms") or 0 for sc in scenarios]
        colour = COLOURS.get(name)
        bars = top.bar(xs, rps, width, label=name, color=colour)
        top.bar_label(bars, labels=[f"{v:,.0f}" if v else "" for v in rps], fontsize=6)
        bottom.bar(xs, p99, width, label=name, color=colour)
    for axis in (top, bottom):
        labels = [s if len(variants) == 1 else f"{s}\n{v}" for s, v in scenarios]
        axis.set_xticks(range(len(scenarios)), labels, fontsize=7)
        axis.grid(axis="y", alpha=0.3)
    top.set_ylabel("requests/s (higher is better)")
    bottom.set_ylabel("p99 latency, ms (log; lower is better)")
    bottom.set_yscale("log")
    top.legend(ncols=len(names), fontsize=8, loc="upper right")
    m, p = report.get("machine", {}), report.get("params", {})
    quick = "BENCH_QUICK, " if p.get("quick") else ""
    top.set_title(
        f"make bench ({quick}{p.get('duration_s')} s runs, wrk -c{p.get('connections')}; "
        f"{m.get('cores')} cores, PostgreSQL {m.get('postgres')}) {report.get('finished_at', '')}",
        fontsize=10,
    )
    fig.savefig(target, dpi=110)
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print("usage: report_chart.py LATEST_JSON OUTPUT_PNG", file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1], sys.argv[2]))
