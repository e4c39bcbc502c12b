"""The Transcriber: one WhisperModel per process, shared by the worker's threads."""

from __future__ import annotations

import threading
import time
from typing import Any

import faster_whisper
import numpy as np

from lms.integrations.whisper.audio import SAMPLE_RATE, Audio
from lms.integrations.whisper.decoding import Decoding, DecodingPlan, plan
from lms.integrations.whisper.device import DeviceChoice
from lms.integrations.whisper.errors import AudioError
from lms.integrations.whisper.models import open_model, resolve_model
from lms.integrations.whisper.results import TranscriptResult, collect_segments


class Transcriber:
    """One WhisperModel per process, loaded on first use; transcribe() may be called from many
    threads at once (CTranslate2 runs up to num_workers of them in parallel)."""

    def __init__(
        self,
        model_name: str,
        choice: DeviceChoice,
        *,
        num_workers: int = 1,
        decoding: Decoding = "auto",
        beam_size: int = 5,
        batch_size: int = 8,
    ) -> None:
        if num_workers < 1:
            raise ValueError("num_workers must be at least 1")
        self.model_name = model_name
        self.model_path = resolve_model(model_name)  # a missing default fails at start, not later
        self.choice = choice
        # Decided before the model loads, so that a bad value fails at start.
        self.plan: DecodingPlan = plan(choice.device, model_name, decoding)
        self.num_workers = num_workers
        self.beam_size = beam_size
        self.batch_size = batch_size
        self._model: Any = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def load(self) -> Any:
        """The WhisperModel, loaded once (a few seconds for large models) however many threads
        ask at the same time; the worker calls it at start so the first job does not wait."""
        model = self._model
        if model is None:
            with self._lock:
                if self._model is None:
                    self._model = open_model(
                        self.model_name, self.model_path, self.choice, self.num_workers
                    )
                model = self._model
        return model

    @property
    def is_multilingual(self) -> bool:
        return bool(self.load().model.is_multilingual)

    @property
    def batched(self) -> bool:
        """Whether transcribe() takes BatchedInferencePipeline (LMS_WHISPER_DECODING).

        The batched pipeline cuts the speech (found by VAD) into independent chunks of up to
        30 s and decodes several in one call, with one temperature and no conditioning on the
        text before; the sequential decoder feeds the model one 30 s window at a time. Which is
        better was measured (bench.transcribe --report, the table in decoding_table.json): with
        the bundled tiny.en, batched is slower on an H200 (69.7 against 77.9 s of audio a
        second) and much less accurate on long recordings (WER 0.187 against 0.107); on 2 CPU
        cores it ran 2.1x faster for WER 0.19 against 0.12. Throughput on a GPU comes from
        running several jobs at once on the one model instead (num_workers): 2x with 8.
        """
        return self.plan.batched

    def transcribe(self, audio: Audio, *, batched: bool | None = None) -> TranscriptResult:
        """Transcribe 16 kHz mono float32 samples; blocking and CPU/GPU-heavy (run it in a
        thread). VAD skips the silences, word timestamps are kept, English-only models are told
        the language and multilingual ones detect it."""
        if audio.ndim != 1:
            raise AudioError(f"expected mono samples, got an array of shape {audio.shape}")
        samples = np.ascontiguousarray(audio, dtype=np.float32)
        model = self.load()
        duration = samples.shape[0] / SAMPLE_RATE
        language = None if model.model.is_multilingual else "en"
        use_batched = self.plan.batched if batched is None else batched
        options: dict[str, Any] = {
            "language": language,
            "beam_size": self.beam_size,
            "vad_filter": True,
            "word_timestamps": True,
        }
        started = time.perf_counter()
        if use_batched:
            # A pipeline per call: it keeps the last word's time on itself while it runs, so
            # one shared between worker threads would mix up their word timestamps.
            pipeline = faster_whisper.BatchedInferencePipeline(model)
            raw, info = pipeline.transcribe(
                samples,
                batch_size=self.batch_size,
                # Its default (True) makes one segment of each chunk of up to 30 s: far too
                # long for a caption cue or a search hit's timestamp.
                without_timestamps=False,
                **options,
            )
        else:
            raw, info = model.transcribe(samples, **options)
        segments = collect_segments(raw, duration)  # lazy: the decoding happens while consuming
        elapsed = time.perf_counter() - started
        return TranscriptResult(
            language=str(info.language),
            language_probability=float(info.language_probability) if language is None else None,
            duration_seconds=duration,
            text=" ".join(s.text for s in segments).strip(),
            segments=segments,
            compute_seconds=elapsed,
        )
