"""LMS_WHISPER_DECODING and the worker's default concurrency follow the bench's decoding table."""

from __future__ import annotations

import json

import pytest
from bench.transcribe_report import dump_table, table_measurements

from lms.cli import build_parser
from lms.errors import StartupError
from lms.integrations.whisper import Transcriber, choose_device
from lms.integrations.whisper.decoding import (
    ANY_MODEL,
    TABLE,
    Measurement,
    best,
    load_table,
    plan,
    row_for,
)
from lms.settings import load_settings


def test_every_measured_row_is_what_the_bench_rule_picks() -> None:
    # The table is data the bench writes; a hand edit that disagrees with its own figures fails.
    table = load_table()
    measured = [row for row in table.rows if row.measurements]
    assert measured
    for row in measured:
        chosen = best(row.measurements, table.tolerance_wer)
        assert (row.decoding, row.concurrency) == (chosen.mode, chosen.concurrency), row.model


def test_auto_on_cuda_with_the_bundled_model_is_sequential_with_several_jobs() -> None:
    # What the H200 measured: batched faster on repeated speech, but with many more words wrong
    # (it drops and garbles speech); sequential is accurate, and several jobs at once on the
    # one model raise its throughput.
    row = row_for("cuda", "default")
    assert row.model == "default"
    assert "H200" in row.measured
    chosen = plan("cuda", "default", "auto")
    assert not chosen.batched
    assert chosen.concurrency == row.concurrency == 4
    assert "sequential (table row cuda/default)" in chosen.reason
    sequential = {m.concurrency: m for m in row.measurements if m.mode == "sequential"}
    batched = {m.concurrency: m for m in row.measurements if m.mode == "batched"}
    assert sequential[4].audio_seconds_per_second > 2 * sequential[1].audio_seconds_per_second
    assert all(batched[n].word_error_rate > sequential[n].word_error_rate + 0.1 for n in sequential)


def test_auto_on_cpu_with_the_bundled_model_is_sequential_one_job() -> None:
    chosen = plan("cpu", "default")
    assert (chosen.batched, chosen.concurrency) == (False, 1)


def test_a_model_nobody_measured_takes_the_devices_fallback_row() -> None:
    for device in ("cpu", "cuda"):
        row = row_for(device, "large-v3")
        assert row.model == ANY_MODEL
        assert row.device == device
        assert not row.measurements
        assert row.measured.startswith("not measured")


@pytest.mark.parametrize("mode", ["batched", "sequential"])
def test_a_forced_mode_keeps_the_tables_concurrency(mode: str) -> None:
    chosen = plan("cuda", "default", mode)  # type: ignore[arg-type]
    assert chosen.batched == (mode == "batched")
    assert chosen.concurrency == row_for("cuda", "default").concurrency
    assert "requested" in chosen.reason


def test_a_bad_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="must be auto, batched or sequential"):
        plan("cpu", "default", "fast")  # type: ignore[arg-type]
    with pytest.raises(StartupError, match="LMS_WHISPER_DECODING must be one of"):
        load_settings({"LMS_WHISPER_DECODING": "fast"})


def test_the_setting_reaches_the_transcriber() -> None:
    assert load_settings({}).whisper_decoding == "auto"
    assert load_settings({"LMS_WHISPER_DECODING": "Batched"}).whisper_decoding == "batched"
    gpu = choose_device("cuda", cuda_devices=1)
    assert Transcriber("default", gpu, decoding="batched").batched  # never loaded
    assert not Transcriber("default", gpu, decoding="sequential").batched
    assert not Transcriber("default", gpu).batched


def test_accuracy_comes_before_speed_then_fewer_jobs() -> None:
    fast_but_wrong = Measurement("batched", 1, 100.0, 0.30)
    slower = Measurement("sequential", 1, 50.0, 0.10)
    same_speed_more_jobs = Measurement("sequential", 4, 50.0, 0.11)
    assert best((fast_but_wrong, slower, same_speed_more_jobs), 0.02) == slower
    assert best((fast_but_wrong, slower), 0.25) == fast_but_wrong
    with pytest.raises(ValueError, match="no measurements"):
        best((), 0.02)


def test_the_table_is_plain_json_with_one_row_per_device_and_model() -> None:
    raw = json.loads(TABLE.read_text())
    keys = [(r["device"], r["model"]) for r in raw["rows"]]
    assert len(keys) == len(set(keys))
    assert {("cpu", ANY_MODEL), ("cuda", ANY_MODEL)} <= set(keys)


def test_the_worker_concurrency_defaults_to_the_table() -> None:
    parser = build_parser()
    assert parser.parse_args(["worker"]).concurrency is None
    assert parser.parse_args(["worker", "--concurrency", "3"]).concurrency == 3


def test_the_committed_table_is_in_the_form_the_bench_writes() -> None:
    # bench.transcribe --report --write-table rewrites the file; a hand edit keeps its form.
    assert dump_table(json.loads(TABLE.read_text())) == TABLE.read_text()


def test_the_table_takes_the_long_recordings_figures() -> None:
    rows = [
        {"audio_seconds": 13.1, "mode": "batched", "concurrency": 1,
         "audio_seconds_per_second": 99.0, "word_error_rate": 0.0},
        {"audio_seconds": 111.4, "mode": "sequential", "concurrency": 1,
         "audio_seconds_per_second": 2.8, "word_error_rate": 0.008},
    ]  # fmt: skip
    assert table_measurements(rows) == (Measurement("sequential", 1, 2.8, 0.008),)
