"""The Transcriber: one WhisperModel per process, shared by the worker's threads."""

from __future__ import annotations

import threading
import time
from typing import Any

import faster_whisper
import numpy as np

from lms.integrations.whisper.audio import SAMPLE_RATE, Audio
from lms.integrations.whisper.coverage import measure, speech_spans
from lms.integrations.whisper.decoding import Decoding, DecodingPlan, plan
from lms.integrations.whisper.device import DeviceChoice
from lms.integrations.whisper.errors import AudioError
from lms.integrations.whisper.models import open_model, resolve_model, warm_up
from lms.integrations.whisper.results import Segment, TranscriptResult, collect_segments

# The second decoding of a short transcript: nothing in it can drop a window. Temperature 0 only,
# so no sampling (the random fallback that produces the skips) and no fallback to judge; no
# conditioning on the previous window's text, which is what makes repeated phrasing loop; and no
# no-speech check, which is what skips a window (VAD has already found speech in all of it).
NO_SKIP_OPTIONS: dict[str, Any] = {
    "temperature": 0.0,
    "condition_on_previous_text": False,
    "no_speech_threshold": None,
    "compression_ratio_threshold": None,
    "log_prob_threshold": None,
}


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
        first_pass: dict[str, Any] | None = None,
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
        # faster-whisper options over ours for the first decoding only (the bench and tests
        # make it skip on purpose; the worker never sets them).
        self.first_pass = dict(first_pass or {})
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

    def warm_up(self) -> float:
        """Load the model and run each kind of call once on every one of its workers, so that
        the first job pays no first-use cost (models.warm_up); the seconds it took."""
        model = self.load()
        return warm_up(model, beam_size=self.beam_size, parallel=self.num_workers)

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
        the language and multilingual ones detect it.

        The result never loses speech silently: when its segments cover too little of the speech
        VAD found (lms.integrations.whisper.coverage), the audio is decoded again with settings
        that cannot skip a window, and the result that covers more is kept; one still short
        carries a warning."""
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
            **self.first_pass,
        }
        started = time.perf_counter()
        speech = speech_spans(samples)
        segments, info = self._decode(model, samples, duration, use_batched, options)
        coverage = measure(speech, [(s.start, s.end) for s in segments])
        redecoded = False
        if coverage.short:
            # Beam search at temperature 0 only, with no fallback to sample, each window on
            # its own (no previous text to repeat), and no window judged silent (VAD already
            # says there is speech in it).
            again, again_info = self._decode(
                model, samples, duration, False, {**options, **NO_SKIP_OPTIONS}
            )
            again_coverage = measure(speech, [(s.start, s.end) for s in again])
            redecoded = True
            if again_coverage.ratio > coverage.ratio:
                segments, info, coverage = again, again_info, again_coverage
        elapsed = time.perf_counter() - started
        return TranscriptResult(
            language=str(info.language),
            language_probability=float(info.language_probability) if language is None else None,
            duration_seconds=duration,
            text=" ".join(s.text for s in segments).strip(),
            segments=segments,
            compute_seconds=elapsed,
            coverage=coverage,
            redecoded=redecoded,
        )

    def _decode(
        self,
        model: Any,
        samples: Audio,
        duration: float,
        batched: bool,
        options: dict[str, Any],
    ) -> tuple[list[Segment], Any]:
        if batched:
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
        return collect_segments(raw, duration), info  # lazy: decoding happens while consuming
