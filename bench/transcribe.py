"""Seconds of audio per second of compute: the worker's transcription path against bare
faster-whisper; with --report, throughput and word error rate per decoding mode and jobs at once
(bench/transcribe_report.py)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import ctranslate2
import faster_whisper
import numpy as np

from bench import transcribe_report
from lms.integrations.whisper import (
    SAMPLE_RATE,
    DeviceChoice,
    ModelUnavailable,
    Transcriber,
    WhisperError,
    choose_device,
    decode_audio,
    usable_cpus,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"
DEFAULT_FILE = REPO_ROOT / "tests" / "fixtures" / "speech.mp4"


def bare_run(model: Any, path: Path, concat: int, batched: bool, language: str | None) -> str:
    """What a script using faster-whisper directly does: the same file, options and pipeline."""
    options: dict[str, Any] = {
        "language": language,
        "beam_size": 5,
        "vad_filter": True,
        "word_timestamps": True,
    }
    # faster-whisper decodes a path itself; a repeated file is decoded once and tiled, as below.
    audio: Any = str(path)
    if concat > 1:
        audio = np.tile(faster_whisper.decode_audio(str(path), sampling_rate=SAMPLE_RATE), concat)
    if batched:
        pipeline = faster_whisper.BatchedInferencePipeline(model)
        segments, _ = pipeline.transcribe(audio, batch_size=8, without_timestamps=False, **options)
    else:
        segments, _ = model.transcribe(audio, **options)
    return "".join(s.text for s in segments).strip()  # the generator does the work


def worker_run(transcriber: Transcriber, path: Path, concat: int) -> tuple[str, float]:
    """What the worker does with a downloaded file; also the transcription time alone."""
    audio = decode_audio(path)
    if concat > 1:
        audio = np.tile(audio, concat)
    result = transcriber.transcribe(audio)
    return result.text, result.compute_seconds


def timed(run: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    value = run()
    return time.perf_counter() - started, value


def gpu_names() -> list[str]:
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            check=True,
            timeout=20,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def machine() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": usable_cpus(),
        "cuda_devices": int(ctranslate2.get_cuda_device_count()),
        "gpus": gpu_names(),
        "python": platform.python_version(),
        "faster_whisper": faster_whisper.__version__,
        "ctranslate2": ctranslate2.__version__,
    }


def summary(seconds: list[float], audio_seconds: float) -> dict[str, Any]:
    median = statistics.median(seconds)
    return {
        "median_seconds": round(median, 4),
        "runs_seconds": [round(s, 4) for s in seconds],
        "audio_seconds_per_compute_second": round(audio_seconds / median, 2),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    choice: DeviceChoice = choose_device(args.device, args.compute_type)
    print(f"device: {choice.reason}")
    transcriber = Transcriber(args.model, choice)
    started = time.perf_counter()
    transcriber.load()
    # The same folder, device, type and threads, built the way a faster-whisper user would.
    bare_model = faster_whisper.WhisperModel(
        transcriber.model_path,
        device=choice.device,
        compute_type=choice.compute_type,
        cpu_threads=choice.cpu_threads,
    )
    print(f"models loaded in {time.perf_counter() - started:.1f}s")
    audio_seconds = len(decode_audio(args.file)) * args.concat / SAMPLE_RATE
    batched = transcriber.batched
    language = None if transcriber.is_multilingual else "en"
    pipeline = "BatchedInferencePipeline" if batched else "WhisperModel.transcribe"
    print(f"audio: {audio_seconds:.1f}s ({args.file.name} x{args.concat}), pipeline: {pipeline}")

    def bare() -> str:
        return bare_run(bare_model, args.file, args.concat, batched, language)

    def worker() -> tuple[str, float]:
        return worker_run(transcriber, args.file, args.concat)

    # Warm-up: first calls pay for allocations, the VAD model's loading and CPU caches.
    bare_text = bare()
    worker_text, _ = worker()
    bare_times: list[float] = []
    worker_times: list[float] = []
    transcribe_times: list[float] = []
    for index in range(args.repeat):
        # Interleaved, and the order swapped each round, so that a noisy neighbour or a CPU
        # clocking down hits both paths alike.
        order = ("bare", "worker") if index % 2 == 0 else ("worker", "bare")
        for which in order:
            if which == "bare":
                bare_times.append(timed(bare)[0])
            else:
                elapsed, (_, transcribe_seconds) = timed(worker)
                worker_times.append(elapsed)
                transcribe_times.append(transcribe_seconds)
        print(f"  round {index + 1}: bare {bare_times[-1]:.3f}s, worker {worker_times[-1]:.3f}s")
    a = statistics.median(bare_times)
    b = statistics.median(worker_times)
    return {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, "-m", "bench.transcribe", *sys.argv[1:]]),
        "machine": machine(),
        "settings": {
            "file": str(args.file),
            "concat": args.concat,
            "model": args.model,
            "device": choice.device,
            "compute_type": choice.compute_type,
            "cpu_threads": choice.cpu_threads,
            "pipeline": pipeline,
            "language": language,
            "repeat": args.repeat,
        },
        "audio_seconds": round(audio_seconds, 3),
        "bare": summary(bare_times, audio_seconds),
        "worker": {
            **summary(worker_times, audio_seconds),
            "transcribe_only_median_seconds": round(statistics.median(transcribe_times), 4),
        },
        "overhead_percent": round((b - a) / a * 100, 2),
        "same_text": bare_text == worker_text,
        "text_sample": worker_text[:200],
    }


def write_results(record: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS_DIR / f"transcribe-{stamp}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.transcribe",
        description="Seconds of audio per second of compute for a bare faster-whisper call and "
        "for the worker's path (decode_audio + Transcriber.transcribe) on the same file and "
        "settings, models loaded beforehand, after a warm-up; medians of --repeat runs.",
    )
    parser.add_argument("--file", type=Path, default=DEFAULT_FILE, help="media file (speech)")
    parser.add_argument(
        "--repeat", type=int, default=None, help="timed runs per path (default 5; --report: 1)"
    )
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--compute-type", default="default", help="CTranslate2 type (default)")
    parser.add_argument("--model", default="default", help="size name or CTranslate2 folder")
    parser.add_argument(
        "--report",
        action="store_true",
        help="throughput and WER per decoding mode and jobs at once instead (see --report below)",
    )
    parser.add_argument(
        "--concat",
        type=int,
        default=1,
        metavar="N",
        help="repeat the decoded audio N times in memory (20 makes the speech clip ~4.3 min); "
        "repeated text trips Whisper's compression-ratio check, so this is a worst case",
    )
    transcribe_report.add_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.report:
        args.repeat = args.repeat or 1
        command = " ".join([Path(sys.executable).name, "-m", "bench.transcribe", *sys.argv[1:]])
        try:
            return transcribe_report.main(args, machine(), command)
        except (WhisperError, ValueError, OSError) as exc:
            print(f"transcribe: error: {exc}", file=sys.stderr)
            return 1
    args.repeat = args.repeat or 5
    if args.repeat < 1 or args.concat < 1:
        print("transcribe: error: --repeat and --concat must be at least 1", file=sys.stderr)
        return 2
    try:
        record = run(args)
    except (WhisperError, ValueError, OSError) as exc:
        kind = "" if isinstance(exc, ModelUnavailable) else f"{type(exc).__name__}: "
        print(f"transcribe: error: {kind}{exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    bare, worker = record["bare"], record["worker"]
    print(
        f"bare faster-whisper: {bare['audio_seconds_per_compute_second']:.2f} s audio / s compute"
        f" (median {bare['median_seconds']:.3f}s)"
    )
    print(
        f"worker path:         {worker['audio_seconds_per_compute_second']:.2f} s audio / s"
        f" compute (median {worker['median_seconds']:.3f}s, transcription alone"
        f" {worker['transcribe_only_median_seconds']:.3f}s)"
    )
    print(f"pipeline overhead:   {record['overhead_percent']:+.2f}%")
    if not record["same_text"]:
        # Whisper's temperature fallback samples at random; repeated text (--concat) trips its
        # compression-ratio check in every window, so the two paths did different work.
        print(
            "note: the two paths produced different text (temperature fallback, which --concat"
            " triggers: measure a long real recording with --file instead)",
            file=sys.stderr,
        )
    print(f"results: {write_results(record).relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
