"""The decoding path (sequential or batched) and jobs per worker, chosen from the bench's table."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

import msgspec

from lms.integrations.whisper.device import Device

Decoding = Literal["auto", "batched", "sequential"]
Mode = Literal["batched", "sequential"]
TABLE = Path(__file__).with_name("decoding_table.json")
ANY_MODEL = "*"


class Measurement(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One bench figure: a decoding mode run `concurrency` jobs at once on one model."""

    mode: Mode
    concurrency: int
    audio_seconds_per_second: float  # all jobs together: seconds of audio per wall second
    word_error_rate: float


class Row(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    device: Device
    model: str  # an LMS_WHISPER_MODEL value, or ANY_MODEL
    decoding: Mode
    concurrency: int
    measured: str  # where the figures come from, or why there are none
    measurements: tuple[Measurement, ...] = ()


class Table(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    about: str
    tolerance_wer: float
    rows: tuple[Row, ...]


@cache
def load_table(path: Path = TABLE) -> Table:
    return msgspec.json.decode(path.read_bytes(), type=Table)


def best(measurements: tuple[Measurement, ...], tolerance_wer: float) -> Measurement:
    """The bench's rule: the fastest mode and concurrency whose word error rate is within
    `tolerance_wer` of the best one measured. Accuracy first (a faster transcript with more
    wrong words is not a better one), then throughput; on a tie the fewer jobs at once (less
    memory) and sequential (timestamps per window, not per batch)."""
    if not measurements:
        raise ValueError("no measurements to choose from")
    floor = min(m.word_error_rate for m in measurements)
    eligible = [m for m in measurements if m.word_error_rate <= floor + tolerance_wer]
    return max(
        eligible,
        key=lambda m: (m.audio_seconds_per_second, -m.concurrency, m.mode == "sequential"),
    )


def row_for(device: Device, model: str, table: Table | None = None) -> Row:
    """The table's row for this device and LMS_WHISPER_MODEL value, else the device's `*` row."""
    rows = (table or load_table()).rows
    for wanted in (model, ANY_MODEL):
        for row in rows:
            if row.device == device and row.model == wanted:
                return row
    raise LookupError(f"the decoding table has no row for {device}")


@dataclass(frozen=True, slots=True)
class DecodingPlan:
    batched: bool
    concurrency: int  # jobs at once a worker runs by default (lms worker --concurrency)
    reason: str  # one line for the worker's start-up log


def plan(device: Device, model: str, requested: Decoding = "auto") -> DecodingPlan:
    """What LMS_WHISPER_DECODING `requested` means for this device and model: `auto` takes the
    table's mode; `batched` and `sequential` force one. The default concurrency is the table's
    either way (it was measured with the mode the table chose)."""
    if requested not in ("auto", "batched", "sequential"):
        raise ValueError(f"Whisper decoding must be auto, batched or sequential, got {requested!r}")
    row = row_for(device, model)
    mode: Mode = row.decoding if requested == "auto" else requested
    source = f"table row {row.device}/{row.model}" if requested == "auto" else "requested"
    return DecodingPlan(
        batched=mode == "batched",
        concurrency=row.concurrency,
        reason=f"{requested}: {mode} ({source}), {row.concurrency} job(s) at once by default",
    )
