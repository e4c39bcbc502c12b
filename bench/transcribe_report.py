"""`python -m bench.transcribe --report`: seconds of audio per wall second and word error rate per
decoding mode and jobs at once, on the CPU or a GPU, and the decoding table's row from them.

Device-independent: the same jobs, inputs and measures on any device; only the figures differ.
Each job is the worker's path after decoding the media (Transcriber.transcribe, coverage check and
second decoding included), so the throughput is what a worker delivers. `concurrency` jobs run at
once in threads on one model with that many CTranslate2 workers (`lms worker --concurrency`);
throughput counts all of them: jobs x audio seconds / wall seconds of the batch. The inputs are
the speech fixture and a recording of `--copies` copies of it with 1 s of silence between them
(issue 20's 612 s recording is `--copies 29`); the word error rate is against speech.txt repeated
as many times. `--first-use` also measures, in fresh processes, what the first use of the model
costs with no kernel cache, an empty one and a warm one (CUDA_CACHE_PATH).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from tests.support.wer import word_error_rate

from lms.integrations.whisper import (
    SAMPLE_RATE,
    Transcriber,
    TranscriptResult,
    choose_device,
    decode_audio,
)
from lms.integrations.whisper.decoding import TABLE, Measurement, best, load_table

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"
SPEECH = REPO_ROOT / "tests" / "fixtures" / "speech.mp4"
SPEECH_TEXT = (REPO_ROOT / "tests" / "fixtures" / "speech.txt").read_text().strip()
GAP_SECONDS = 1.0


@dataclass(frozen=True)
class Recording:
    name: str
    audio: np.ndarray[Any, Any]
    reference: str

    @property
    def seconds(self) -> float:
        return len(self.audio) / SAMPLE_RATE


def recordings(copies: int) -> list[Recording]:
    clip = decode_audio(SPEECH)
    found = [Recording("clip", clip, SPEECH_TEXT)]
    if copies > 1:
        gap = np.zeros(int(GAP_SECONDS * SAMPLE_RATE), dtype=np.float32)
        audio = np.concatenate([part for _ in range(copies) for part in (clip, gap)][:-1])
        found.append(Recording(f"x{copies}", audio, " ".join([SPEECH_TEXT] * copies)))
    return found


def run_batch(
    transcriber: Transcriber, recording: Recording, jobs: int, batched: bool
) -> tuple[float, list[TranscriptResult]]:
    """`jobs` transcriptions of `recording` at once; the wall seconds until the last is done."""
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        started = time.perf_counter()
        futures = [
            pool.submit(transcriber.transcribe, recording.audio, batched=batched)
            for _ in range(jobs)
        ]
        results = [f.result() for f in futures]
        return time.perf_counter() - started, results


def measure(args: argparse.Namespace) -> dict[str, Any]:
    choice = choose_device(args.device, args.compute_type)
    print(f"device: {choice.reason}", flush=True)
    inputs = recordings(args.copies)
    rows: list[dict[str, Any]] = []
    for jobs in args.concurrency:
        transcriber = Transcriber(args.model, choice, num_workers=jobs)
        loading = time.perf_counter()
        transcriber.load()
        loaded = time.perf_counter() - loading
        warmed = transcriber.warm_up()
        print(
            f"{jobs} job(s) at once: loaded in {loaded:.1f}s, warmed in {warmed:.1f}s", flush=True
        )
        for recording in inputs:
            for mode in args.modes:
                walls: list[float] = []
                results: list[TranscriptResult] = []
                for _ in range(args.repeat):
                    wall, batch = run_batch(transcriber, recording, jobs, mode == "batched")
                    walls.append(wall)
                    results += batch
                wall = statistics.median(walls)
                wers = [word_error_rate(recording.reference, r.text) for r in results]
                row = {
                    "input": recording.name,
                    "audio_seconds": round(recording.seconds, 1),
                    "mode": mode,
                    "concurrency": jobs,
                    "wall_seconds": round(wall, 3),
                    "audio_seconds_per_second": round(jobs * recording.seconds / wall, 1),
                    "word_error_rate": round(statistics.mean(wers), 3),
                    "worst_word_error_rate": round(max(wers), 3),
                    "min_speech_coverage": round(min(r.coverage.ratio for r in results), 3),
                    "redecoded": sum(r.redecoded for r in results),
                    "jobs": len(results),
                }
                rows.append(row)
                print(_line(row), flush=True)
    return {
        "device": choice.device,
        "compute_type": choice.compute_type,
        "cpu_threads": choice.cpu_threads,
        "model": args.model,
        "rows": rows,
    }


def _line(row: dict[str, Any]) -> str:
    return (
        f"  {row['input']:>5} {row['mode']:>10} x{row['concurrency']}:"
        f" {row['audio_seconds_per_second']:7.1f} s/s, WER {row['word_error_rate']:.3f}"
        f" (worst {row['worst_word_error_rate']:.3f}), coverage >= {row['min_speech_coverage']},"
        f" redecoded {row['redecoded']}/{row['jobs']}"
    )


# --- first use, in fresh processes ------------------------------------------------------------


def first_use_child(args: argparse.Namespace) -> int:
    """In a fresh process: load, then the first call of each kind (the warm-up), then a job."""
    started = time.perf_counter()
    choice = choose_device(args.device, args.compute_type)
    transcriber = Transcriber(args.model, choice)
    transcriber.load()
    loaded = time.perf_counter() - started
    warmed = transcriber.warm_up()
    clip = decode_audio(SPEECH)
    first = transcriber.transcribe(clip).compute_seconds
    second = transcriber.transcribe(clip).compute_seconds
    print(
        json.dumps(
            {
                "load_seconds": round(loaded, 2),
                "warm_up_seconds": round(warmed, 2),
                "first_job_seconds": round(first, 3),
                "second_job_seconds": round(second, 3),
            }
        )
    )
    return 0


def first_use(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The first use with the kernel cache off, empty (then filled) and warm."""
    cache = Path(tempfile.mkdtemp(prefix="cuda-cache-"))
    command = [
        sys.executable,
        "-m",
        "bench.transcribe",
        "--report",
        "--first-use-child",
        "--device",
        args.device,
        "--compute-type",
        args.compute_type,
        "--model",
        args.model,
    ]
    runs = []
    for label, extra in (
        ("no kernel cache", {"CUDA_CACHE_DISABLE": "1"}),
        ("empty kernel cache", {"CUDA_CACHE_PATH": str(cache)}),
        ("warm kernel cache", {"CUDA_CACHE_PATH": str(cache)}),
    ):
        env = {k: v for k, v in os.environ.items() if not k.startswith("CUDA_CACHE_")}
        env.update({"CUDA_CACHE_MAXSIZE": str(4 * 1024**3), **extra})
        done = subprocess.run(
            command, env=env, capture_output=True, text=True, cwd=REPO_ROOT, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"{label}: {done.stderr.strip()[-2000:]}")
        figures = json.loads(done.stdout.strip().splitlines()[-1])
        runs.append({"cache": label, **figures})
        print(f"  first use, {label}: {figures}", flush=True)
    return runs


# --- the decoding table -----------------------------------------------------------------------


def table_measurements(rows: list[dict[str, Any]]) -> tuple[Measurement, ...]:
    """The figures of the longest input: what decides on real lessons (the clip is one window)."""
    longest = max(r["audio_seconds"] for r in rows)
    return tuple(
        Measurement(
            r["mode"], r["concurrency"], r["audio_seconds_per_second"], r["word_error_rate"]
        )
        for r in rows
        if r["audio_seconds"] == longest
    )


def dump_table(table: dict[str, Any]) -> str:
    """The table as JSON, indented, with each measurement on one line (easier to read and diff)."""
    text = json.dumps(table, indent=2)
    innermost = re.compile(r"\{\n\s+([^{}\[\]]*?)\n\s+\}")
    return innermost.sub(lambda m: "{" + " ".join(m.group(1).split()) + "}", text) + "\n"


def write_table(report: dict[str, Any], measured: str) -> dict[str, Any]:
    """Replace (or add) the decoding table's row for this device and model with these figures
    and the choice decoding.best makes from them."""
    table = json.loads(TABLE.read_text())
    measurements = table_measurements(report["rows"])
    chosen = best(measurements, load_table().tolerance_wer)
    row = {
        "device": report["device"],
        "model": report["model"],
        "decoding": chosen.mode,
        "concurrency": chosen.concurrency,
        "measured": measured,
        "measurements": [
            {
                "mode": m.mode,
                "concurrency": m.concurrency,
                "audio_seconds_per_second": m.audio_seconds_per_second,
                "word_error_rate": m.word_error_rate,
            }
            for m in measurements
        ],
    }
    key = (report["device"], report["model"])
    rows = [r for r in table["rows"] if (r["device"], r["model"]) != key]
    table["rows"] = [row, *rows]
    TABLE.write_text(dump_table(table))
    load_table.cache_clear()
    return row


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"`{report['command']}` on {report['machine']}: {report['device']}"
        f" {report['compute_type']}, model {report['model']}",
        "",
        "| input | decoding | jobs at once | audio s per wall s | WER | min coverage | redecoded |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        lines.append(
            f"| {r['input']} ({r['audio_seconds']:g} s) | {r['mode']} | {r['concurrency']} |"
            f" {r['audio_seconds_per_second']} | {r['word_error_rate']:.3f} |"
            f" {r['min_speech_coverage']} | {r['redecoded']}/{r['jobs']} |"
        )
    if report.get("first_use"):
        lines += ["", "| kernel cache | load s | warm-up s | first job s | second job s |"]
        lines.append("|---|---|---|---|---|")
        for f in report["first_use"]:
            lines.append(
                f"| {f['cache']} | {f['load_seconds']} | {f['warm_up_seconds']} |"
                f" {f['first_job_seconds']} | {f['second_job_seconds']} |"
            )
    return "\n".join(lines) + "\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("--report")
    group.add_argument(
        "--modes",
        type=lambda s: s.split(","),
        default=["sequential", "batched"],
        help="decoding modes, comma-separated (default sequential,batched)",
    )
    group.add_argument(
        "--concurrency",
        type=lambda s: [int(n) for n in s.split(",")],
        default=[1],
        help="jobs at once, comma-separated (default 1; 1,4,8 on a GPU)",
    )
    group.add_argument(
        "--copies",
        type=int,
        default=8,
        help="copies of the clip in the long recording, 1 s apart (default 8; 29 is 612 s)",
    )
    group.add_argument("--first-use", action="store_true", help="also time the first use")
    group.add_argument("--first-use-child", action="store_true", help=argparse.SUPPRESS)
    group.add_argument(
        "--write-table",
        metavar="WHERE",
        default=None,
        help="write the decoding table's row for this device and model, with WHERE (the machine,"
        " in words) as its source",
    )


def main(args: argparse.Namespace, machine: dict[str, Any], command: str) -> int:
    if args.first_use_child:
        return first_use_child(args)
    report: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command,
        "machine": machine,
        **measure(args),
    }
    if args.first_use:
        report["first_use"] = first_use(args)
    if args.write_table:
        row = write_table(report, args.write_table)
        print(
            f"decoding table: {row['device']}/{row['model']} -> {row['decoding']}"
            f" x{row['concurrency']} ({TABLE.relative_to(REPO_ROOT)})"
        )
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS_DIR / f"transcribe-report-{report['device']}-{stamp}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    summary = {**report, "machine": _machine_words(machine)}
    latest = RESULTS_DIR / f"transcribe-report-{report['device']}.md"
    latest.write_text(markdown(summary))
    print(markdown(summary))
    print(f"results: {path.relative_to(REPO_ROOT)}, {latest.relative_to(REPO_ROOT)}")
    return 0


def _machine_words(machine: dict[str, Any]) -> str:
    gpus = ", ".join(machine.get("gpus") or []) or "no GPU"
    return (
        f"{machine.get('usable_cpus')} usable CPU(s), {gpus}, CTranslate2"
        f" {machine.get('ctranslate2')}, faster-whisper {machine.get('faster_whisper')}"
    )
